"""The old home of end-to-end alignment, kept for one release: use :mod:`t2c_captum.alignment`
(``fit_aligner``, ``evaluate_store``, reports), :mod:`t2c_captum.aligners.fit` (``fit_from_store``)
and :mod:`t2c_captum.aligners.loading` (``load_target``)."""

from __future__ import annotations

from .aligners.fit import fit_from_store
from .aligners.loading import load_target
from .alignment import EvalReport, FitReport, LabelTask, evaluate_store, fit_aligner

__all__ = [
    "EvalReport",
    "FitReport",
    "LabelTask",
    "evaluate_store",
    "fit_aligner",
    "fit_from_store",
    "load_target",
]
