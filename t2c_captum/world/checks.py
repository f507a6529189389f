"""Ground-truth checks of the concept world used by benchmarks and meaning tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from t2c_captum.world.generator import FACTORS, Sample, object_mask

__all__ = ["object_masks", "unit_selectivity"]


def object_masks(samples: Sequence[Sample]) -> torch.Tensor:
    """Boolean ``[N, 64, 64]`` masks of the objects of ``samples``."""
    return torch.from_numpy(np.stack([object_mask(s) for s in samples]))


def unit_selectivity(features: torch.Tensor, samples: Sequence[Sample]) -> list[tuple[str, str]]:
    """For each unit (column of ``features``), the ``(factor, value)`` it is most selective for:
    the largest standardised mean difference (Cohen's d) between images with and without it."""
    x = features.double().numpy()
    best = np.full(x.shape[1], -np.inf)
    names: list[tuple[str, str]] = [("", "")] * x.shape[1]
    for factor, values in FACTORS.items():
        labels = np.array([s.value(factor) for s in samples])
        for value in values:
            has = labels == value
            if has.sum() < 2 or (~has).sum() < 2:
                continue
            a, b = x[has], x[~has]
            pooled = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2) + 1e-12
            d = (a.mean(0) - b.mean(0)) / pooled
            better = d > best
            best = np.where(better, d, best)
            names = [(factor, value) if better[u] else names[u] for u in range(x.shape[1])]
    return names
