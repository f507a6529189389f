"""A torch dataset over concept-world samples, labelled by one factor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from t2c_captum.world.generator import FACTORS, Sample, check_factor, make_split, render

__all__ = ["WorldDataset"]


class WorldDataset(Dataset):
    """Rendered world images with labels of one factor.

    Args:
        split: a split name (``train``, ``val``, ``test``, ``compositional``); ignored as a
            source when ``samples`` is given (then it is only a label).
        n: number of samples of the split (default: the split's default size).
        factor: factor that gives the labels (``None``: every label is -1).
        samples: explicit samples instead of a named split.
        transform: optional callable applied to each PIL image.

    Items are ``(PIL.Image or transform(image), int label)``.
    """

    def __init__(
        self,
        split: str = "test",
        n: int | None = None,
        factor: str | None = "shape",
        samples: Sequence[Sample] | None = None,
        transform: Callable | None = None,
    ) -> None:
        if factor is not None:
            check_factor(factor)
        self.split = split
        self.factor = factor
        self.samples: list[Sample] = list(samples) if samples is not None else make_split(split, n)
        self.transform = transform

    @property
    def class_names(self) -> list[str]:
        """Canonical words of the label factor (index = label); empty without a factor."""
        return list(FACTORS[self.factor]) if self.factor else []

    @property
    def factors(self) -> list[dict[str, str]]:
        """Per-sample factor dicts (canonical words)."""
        return [s.factors for s in self.samples]

    def captions(self, index: int) -> tuple[str, ...]:
        """Captions of sample ``index``."""
        return self.samples[index].captions

    def labels(self, factor: str | None = None) -> np.ndarray:
        """Class indices of ``factor`` (default: the dataset's label factor) for all samples."""
        factor = factor or self.factor
        if factor is None:
            return np.full(len(self.samples), -1, dtype=np.int64)
        names = FACTORS[check_factor(factor)]
        return np.array([names.index(s.value(factor)) for s in self.samples], dtype=np.int64)

    def image(self, index: int) -> Image.Image:
        """The rendered PIL image of sample ``index`` (no transform)."""
        return render(self.samples[index])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        sample = self.samples[index]
        image = render(sample)
        label = FACTORS[self.factor].index(sample.value(self.factor)) if self.factor else -1
        return (self.transform(image) if self.transform else image), label

    def __repr__(self) -> str:
        return f"WorldDataset(split={self.split!r}, n={len(self)}, factor={self.factor!r})"
