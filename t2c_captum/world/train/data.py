"""Training data: rendered image tensors, normalisation, shift augmentation, index batches and the
samples' factor labels (class indices, group keys)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from t2c_captum.world.generator import FACTORS, Sample, render
from t2c_captum.world.models import WORLD_MEAN, WORLD_STD


def render_array(samples: list[Sample]) -> Tensor:
    """Rendered samples as a uint8 tensor ``[N, 3, 64, 64]``."""
    pixels = np.stack([np.asarray(render(s)) for s in samples])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def normalise(images: Tensor) -> Tensor:
    """uint8 ``[N,3,H,W]`` -> float, normalised like ``world_transform``."""
    mean = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def random_shift(images: Tensor, max_shift: int, gen: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge pixels replicated)."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, [max_shift] * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, 3, h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, 3, h, w)
    return out.gather(3, cols)


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled index batches."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


def hard_negative_batches(
    groupings: list[np.ndarray],
    batch_size: int,
    gen: torch.Generator,
    fraction: float = 0.5,
    weights: Sequence[float] | None = None,
) -> Iterator[Tensor]:
    """Endless batches: ``fraction`` from one group of a random grouping, the rest random.

    Images in one group share e.g. colour and background, so telling their captions apart
    needs the remaining factors (shape, pattern): contrastive training cannot ignore them.
    ``weights`` are the groupings' relative probabilities (default: uniform).
    """
    n = len(groupings[0])
    members = [
        [torch.from_numpy(np.flatnonzero(keys == g)) for g in np.unique(keys)] for keys in groupings
    ]
    probs = None if weights is None else torch.tensor(weights, dtype=torch.float)
    half = int(batch_size * fraction)
    while True:
        if probs is None:
            groups = members[int(torch.randint(len(members), (1,), generator=gen))]
        else:
            groups = members[int(torch.multinomial(probs, 1, generator=gen))]
        group = groups[int(torch.randint(len(groups), (1,), generator=gen))]
        chosen = group[torch.randperm(len(group), generator=gen)[:half]]
        rest = torch.randint(0, n, (batch_size - len(chosen),), generator=gen)
        yield torch.unique(torch.cat([chosen, rest]))


def labels_of(samples: list[Sample], factor: str) -> np.ndarray:
    """Class indices of ``factor`` for each sample."""
    return np.array([FACTORS[factor].index(s.value(factor)) for s in samples])


def factor_values(samples: list[Sample]) -> np.ndarray:
    """Class index of every factor (``FACTORS`` order) per sample, ``[N, n_factors]``."""
    return np.stack([labels_of(samples, f) for f in FACTORS], axis=1)


def factor_keys(samples: list[Sample], factors: tuple[str, ...]) -> np.ndarray:
    """One integer group id per sample for the combination of ``factors``."""
    combos = [tuple(s.value(f) for f in factors) for s in samples]
    index = {c: i for i, c in enumerate(sorted(set(combos)))}
    return np.array([index[c] for c in combos])
