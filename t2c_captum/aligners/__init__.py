"""Aligners: fitted maps from a backbone's features into a CLIP space (or another backbone)."""

from __future__ import annotations

from typing import Any

from .base import Aligner, AlignmentMetrics, holdout_mask, r2_score
from .imported import ImportedAligner, import_aligner
from .io import check_compatible, load_aligner, save_aligner
from .linear import LinearAligner, SufficientStats
from .sgd import SGDAligner
from .streaming import FitStatistics

__all__ = [
    "Aligner",
    "AlignmentMetrics",
    "FitStatistics",
    "ImportedAligner",
    "LinearAligner",
    "SGDAligner",
    "SufficientStats",
    "check_compatible",
    "holdout_mask",
    "import_aligner",
    "load_aligner",
    "make_aligner",
    "r2_score",
    "save_aligner",
]


def make_aligner(kind: str = "linear", **params: Any) -> Aligner:
    """An unfitted aligner of a registered kind (``"linear"``, ``"sgd"``, or a plugin's)."""
    from ..plugins import get_registries

    return get_registries().aligners.get(kind)(**params)
