"""Aligners: fitted maps from a backbone's features into a CLIP space (or another backbone)."""

from __future__ import annotations

from .base import Aligner, AlignmentMetrics, holdout_mask, r2_score
from .directions import align_directions
from .imported import ImportedAligner, import_aligner
from .io import check_compatible, load_aligner, save_aligner
from .linear import LinearAligner, SufficientStats
from .loading import load_target, make_aligner, recorded_backbone
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
    "align_directions",
    "check_compatible",
    "holdout_mask",
    "import_aligner",
    "load_aligner",
    "load_target",
    "make_aligner",
    "r2_score",
    "recorded_backbone",
    "save_aligner",
]

