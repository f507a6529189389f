"""Decode each image once and feed it to several encoders, each with its own preprocessing."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .._exceptions import DataError, SettingsError
from .sources import Draft, ImageSource

__all__ = [
    "Batch",
    "DecodeOnce",
    "SplitPreprocess",
    "check_reduced_decode",
    "decode_size",
    "draft_size",
    "iter_batches",
    "same_preprocess",
    "shared_preprocessing",
    "split_preprocess",
]

Preprocess = Callable[[Any], torch.Tensor]

_TO_TENSOR = {"ToTensor", "MaybeToTensor"}  # torchvision's, timm's and open_clip's


class _PilToUint8:
    """PIL image → ``uint8`` ``[C, H, W]`` tensor (what ``ToTensor`` reads, before its division)."""

    def __call__(self, image: Any) -> torch.Tensor:
        if not isinstance(image, Image.Image) or image.mode not in ("RGB", "L"):
            raise DataError(
                f"split preprocessing expected an RGB or L PIL image before ToTensor, got "
                f"{type(image).__name__}; give the encoder a preprocess that ends on PIL images"
            )
        array = np.array(image, dtype=np.uint8)  # one copy; batching makes it contiguous
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array).permute(2, 0, 1)


@dataclass
class SplitPreprocess:
    """A ``Compose(..., ToTensor(), Normalize(mean, std))`` preprocessing cut in two.

    ``on_cpu`` runs in the decoding workers and stops at ``uint8`` pixels (a quarter of the bytes to
    move between processes and to the device, and no float work on the CPU); :meth:`finish` turns
    a batch of them into the normalised floats on the models' device, with the same float32
    operations as ``ToTensor`` + ``Normalize``, so the result is identical.
    """

    on_cpu: Preprocess
    mean: torch.Tensor
    std: torch.Tensor

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, C, H, W]`` → normalised ``float32`` on ``x``'s device."""
        mean = self.mean.to(x.device).view(-1, 1, 1)
        std = self.std.to(x.device).view(-1, 1, 1)
        # a 0-dim tensor on x's device, not the number 255: CUDA divides by a CPU scalar as a
        # multiplication by its reciprocal, which is off by one bit for about half the values
        scale = torch.full((), 255.0, device=x.device)
        return x.to(torch.float32).div(scale).sub_(mean).div_(std)


def _probe_image() -> Image.Image:
    """A noisy RGB image of an odd size, to check that two ways of preprocessing agree."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))


def split_preprocess(preprocess: Any) -> SplitPreprocess | None:
    """Cut ``preprocess`` into CPU (to ``uint8``) and device (normalisation) parts, or ``None``.

    Only a torchvision ``Compose`` ending in ``ToTensor`` (or timm's/open_clip's ``MaybeToTensor``)
    and ``Normalize`` is cut, and only if both halves together give exactly the whole on a probe
    image; anything else keeps running whole in the workers.
    """
    from torchvision import transforms

    steps = list(getattr(preprocess, "transforms", []))
    if (
        not isinstance(preprocess, transforms.Compose)
        or len(steps) < 2
        or type(steps[-2]).__name__ not in _TO_TENSOR
        or not isinstance(steps[-1], transforms.Normalize)
    ):
        return None
    norm = steps[-1]
    split = SplitPreprocess(
        on_cpu=transforms.Compose([*steps[:-2], _PilToUint8()]),
        mean=torch.as_tensor(norm.mean, dtype=torch.float32),
        std=torch.as_tensor(norm.std, dtype=torch.float32),
    )
    probe = _probe_image()
    try:
        same = torch.equal(split.finish(split.on_cpu(probe)[None])[0], preprocess(probe))
    except Exception:  # any surprise: keep the whole preprocessing in the workers
        return None
    return split if same else None


# transforms whose repr shows every parameter that changes their output (torchvision's own, and the
# parameterless tensor conversions); anything else is only "the same" when it is the same object
_NO_PARAMETERS = _TO_TENSOR | {"_PilToUint8"}
_OPAQUE = {"Lambda", "RandomApply", "RandomChoice", "RandomOrder"}


def _same_steps(a: Any, b: Any) -> bool:
    return len(a.transforms) == len(b.transforms) and all(
        _same_step(x, y) for x, y in zip(a.transforms, b.transforms, strict=True)
    )


def _same_step(a: Any, b: Any) -> bool:
    from torchvision import transforms

    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    name = kind.__name__
    if name in _NO_PARAMETERS:
        return True
    if isinstance(a, transforms.Compose):  # its repr would show a nested lambda as "Lambda()"
        return _same_steps(a, b)
    described = kind.__module__.startswith("torchvision.transforms") and name not in _OPAQUE
    return described and not name.startswith("Random") and repr(a) == repr(b)


def same_preprocess(a: Any, b: Any) -> bool:
    """Whether two preprocessings certainly give the same tensor for every image: the same object,
    or torchvision ``Compose`` s of the same deterministic steps with the same parameters (checked on
    a probe image too). Random steps, lambdas and unknown callables are never judged equal."""
    from torchvision import transforms

    if a is b:
        return True
    if not (isinstance(a, transforms.Compose) and isinstance(b, transforms.Compose) and _same_steps(a, b)):
        return False
    probe = _probe_image()
    try:
        return bool(torch.equal(a(probe), b(probe)))
    except Exception:  # any surprise: run both
        return False


def shared_preprocessing(preprocesses: Sequence[Preprocess]) -> list[int]:
    """For each preprocessing, the position of the first one that gives the same tensors (itself
    when none does): encoders with the same preprocessing share one run of it per image."""
    plan: list[int] = []
    for k, p in enumerate(preprocesses):
        plan.append(next((j for j in range(k) if plan[j] == j and same_preprocess(preprocesses[j], p)), k))
    return plan


def decode_size(preprocess: Any) -> Draft | None:
    """The least ``(width, height)`` an image can be decoded at without ``preprocess`` ever
    upsampling it: the size its first step, a torchvision ``Resize``, scales to. ``None`` when the
    preprocessing does not start with a ``Resize`` of a known size (nothing is then reduced)."""
    steps = list(getattr(preprocess, "transforms", None) or [])
    first: Any = steps[0] if steps else None
    kind = type(first)
    if kind.__name__ != "Resize" or not kind.__module__.startswith("torchvision.transforms"):
        return None
    if first.size is None:  # only max_size given
        return None
    size = [first.size] if isinstance(first.size, int) else list(first.size)
    if len(size) == 1:  # the shorter side goes to size: both sides stay at least that
        return (int(size[0]), int(size[0]))
    return (int(size[1]), int(size[0]))  # torchvision's (height, width)


def draft_size(preprocesses: Sequence[Any], gap: float | None) -> Draft | None:
    """The ``(width, height)`` a JPEG may be decoded down to for all of ``preprocesses``: ``gap``
    times the largest size their first resizes scale to; ``None`` (a full decode) when ``gap`` is
    ``None`` or one of them does not start with a ``Resize``."""
    known = [s for s in map(decode_size, preprocesses) if s is not None]
    if gap is None or not known or len(known) < len(preprocesses):
        return None
    width, height = max(w for w, _ in known), max(h for _, h in known)
    return (math.ceil(width * gap), math.ceil(height * gap))


def check_reduced_decode(gap: float | None, encoders: Mapping[str, Any]) -> None:
    """Refuse a ``reduced_decode`` below 1 (it would make the resize upsample); warn when it cannot
    take effect because an encoder's ``preprocess`` does not start with a ``Resize``."""
    if gap is None:
        return
    if isinstance(gap, bool) or not (isinstance(gap, (int, float)) and math.isfinite(gap) and gap >= 1):
        raise SettingsError(
            f"reduced_decode must be a number of at least 1 (how many times the resized size a JPEG "
            f"decoded at reduced scale stays), got {gap!r}; 2 keeps the pixels within a few grey "
            "levels, or leave it unset (t2c: no --reduced-decode) for a full decode"
        )
    plain = [name for name, enc in encoders.items() if decode_size(getattr(enc, "preprocess", None)) is None]
    if plain:
        warnings.warn(
            f"reduced_decode={gap} has no effect: the preprocessing of {', '.join(plain)} does not "
            "start with a torchvision Resize, so images are decoded at full size",
            stacklevel=4,  # the caller of extract_features / extract_features_ray
        )


class DecodeOnce(Dataset):
    """``item i -> (one tensor per preprocess, label, i)``; an unreadable image gives ``None``.

    Each image is decoded once; a preprocessing that several encoders share (:func:`same_preprocess`)
    runs once for them (each still gets its own batch tensor from the collation).

    Args:
        source (ImageSource): the images.
        preprocesses (list of callables): one transform per encoder, applied to the same decoded image.
        strict (bool, optional): raise on the first unreadable image instead of skipping it.
            Default: ``False``
        reduced_decode (float, optional): decode JPEGs at reduced scale (1/2, 1/4 or 1/8, by
            libjpeg's DCT scaling) as long as they stay this many times the size the
            preprocessings' first ``Resize`` scales to (:func:`draft_size`). Default: ``None``
            (full decode)
    """

    def __init__(
        self,
        source: ImageSource,
        preprocesses: Sequence[Preprocess],
        strict: bool = False,
        reduced_decode: float | None = None,
    ):
        self.source = source
        self.preprocesses = list(preprocesses)
        self.strict = strict
        self.plan = shared_preprocessing(self.preprocesses)
        self.draft = draft_size(self.preprocesses, reduced_decode)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int, int] | tuple[None, int, int]:
        try:
            image, label = self.source.load(index, self.draft)
        except Exception as exc:
            if self.strict:
                raise DataError(
                    f"cannot read image {self.source.describe(index)}: {exc}. Remove or fix it, or "
                    "run without strict to skip unreadable images."
                ) from exc
            return None, -1, index
        out: list[torch.Tensor] = []
        for k, first in enumerate(self.plan):
            out.append(self.preprocesses[k](image) if first == k else out[first])
        return out, label, index


@dataclass
class Batch:
    """Preprocessed inputs (one tensor per encoder), labels, dataset indices and skipped indices."""

    inputs: list[torch.Tensor]
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[int] = field(default_factory=list)

    def pin_memory(self) -> Batch:
        """Page-locked copies (``DataLoader(pin_memory=True)`` calls this), so the copies to the
        GPU can run asynchronously."""
        return Batch([x.pin_memory() for x in self.inputs], self.labels.pin_memory(),
                     self.indices.pin_memory(), self.skipped)


def _collate(items: list[Any]) -> Batch:
    good = [it for it in items if it[0] is not None]
    skipped = [it[2] for it in items if it[0] is None]
    if not good:
        return Batch([], torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped)
    n_inputs = len(good[0][0])
    inputs = [torch.stack([it[0][k] for it in good]) for k in range(n_inputs)]
    labels = torch.tensor([it[1] for it in good], dtype=torch.long)
    indices = torch.tensor([it[2] for it in good], dtype=torch.long)
    return Batch(inputs, labels, indices, skipped)


def iter_batches(
    source: ImageSource,
    preprocesses: Sequence[Preprocess],
    batches: Sequence[Sequence[int]],
    *,
    num_workers: int = 0,
    strict: bool = False,
    pin_memory: bool = False,
    reduced_decode: float | None = None,
) -> Iterator[Batch]:
    """Yield decoded, preprocessed batches for the given index batches, in order.

    Decoding runs in ``num_workers`` worker processes so it overlaps model compute;
    ``reduced_decode`` as for :class:`DecodeOnce`.
    """
    if not batches:
        return
    loader = DataLoader(
        DecodeOnce(source, preprocesses, strict=strict, reduced_decode=reduced_decode),
        batch_sampler=[list(b) for b in batches],
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    yield from loader


def warn_skipped(source: ImageSource, skipped: Sequence[int]) -> None:
    """Warn once with the count (and a few names) of unreadable images that were skipped."""
    if skipped:
        shown = ", ".join(source.describe(i) for i in list(skipped)[:3])
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) of {len(source)} ({shown}"
            f"{', ...' if len(skipped) > 3 else ''}); pass strict=True to fail instead",
            stacklevel=3,
        )
