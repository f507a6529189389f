"""Decode each image once and feed it to several encoders, each with its own preprocessing."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .._exceptions import DataError
from .sources import ImageSource

__all__ = ["Batch", "DecodeOnce", "iter_batches"]

Preprocess = Callable[[Any], torch.Tensor]


class DecodeOnce(Dataset):
    """``item i -> (one tensor per preprocess, label, i)``; an unreadable image gives ``None``.

    Args:
        source (ImageSource): the images.
        preprocesses (list of callables): one transform per encoder, applied to the same decoded image.
        strict (bool, optional): raise on the first unreadable image instead of skipping it.
            Default: ``False``
    """

    def __init__(self, source: ImageSource, preprocesses: Sequence[Preprocess], strict: bool = False):
        self.source = source
        self.preprocesses = list(preprocesses)
        self.strict = strict

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], int, int] | tuple[None, int, int]:
        try:
            image, label = self.source.load(index)
        except Exception as exc:
            if self.strict:
                raise DataError(
                    f"cannot read image {self.source.describe(index)}: {exc}. Remove or fix it, or "
                    "run without strict to skip unreadable images."
                ) from exc
            return None, -1, index
        return [p(image) for p in self.preprocesses], label, index


@dataclass
class Batch:
    """Preprocessed inputs (one tensor per encoder), labels, dataset indices and skipped indices."""

    inputs: list[torch.Tensor]
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[int] = field(default_factory=list)


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
) -> Iterator[Batch]:
    """Yield decoded, preprocessed batches for the given index batches, in order.

    Decoding runs in ``num_workers`` worker processes so it overlaps model compute.
    """
    if not batches:
        return
    loader = DataLoader(
        DecodeOnce(source, preprocesses, strict=strict),
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
