"""A t2c_captum plugin: an orthogonal-Procrustes aligner kind and a basic-colour vocabulary."""

from __future__ import annotations

from typing import Any

import torch

from t2c_captum import DataError, hookimpl
from t2c_captum.aligners import Aligner, SufficientStats

__all__ = ["BASIC_COLOURS", "ProcrustesAligner"]

#: Berlin & Kay's eleven basic colour terms.
BASIC_COLOURS = [
    "black",
    "white",
    "red",
    "green",
    "yellow",
    "blue",
    "brown",
    "purple",
    "pink",
    "orange",
    "grey",
]


class ProcrustesAligner(Aligner):
    """Orthogonal Procrustes between centred spaces, with one global scale.

    Finds ``R`` with orthonormal columns (``d >= D``) or rows (``d < D``) minimising
    ``‖(X - x̄) s R - (Y - ȳ)‖``, from the SVD of the cross-covariance; statistics are streamed.

    Args:
        validation_fraction (float, optional): share of rows held out. Default: ``0.1``
    """

    kind = "procrustes"

    def __init__(self, validation_fraction: float = 0.1) -> None:
        super().__init__(validation_fraction=validation_fraction)
        self.stats_: SufficientStats | None = None

    def _pending_dims(self) -> tuple[int, int] | None:
        s = self.stats_
        return (int(s.sx.shape[0]), int(s.sy.shape[0])) if s is not None else None

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> ProcrustesAligner:
        X, Y, held = self._split(X, Y, indices)
        if self.stats_ is None:
            self.stats_ = SufficientStats(X.shape[1], Y.shape[1])
        self.stats_.update(X[~held], Y[~held])
        self._stale = True
        return self

    def _solve(self) -> None:
        stats = self.stats_
        if stats is None or stats.n < 2:
            raise DataError("the Procrustes aligner needs at least 2 training rows")
        mx, my = stats.mean_x, stats.mean_y
        sxx, sxy, _ = stats.centered(mx, my)
        u, s, vh = torch.linalg.svd(sxy, full_matrices=False)
        rotation = u @ vh  # [d, D]
        scale = s.sum() / (rotation * (sxx @ rotation)).sum().clamp_min(1e-12)
        weight = (scale * rotation).T
        self.weight_ = weight.float().contiguous()
        self.bias_ = (my - weight @ mx).float()
        self.x_mean_ = mx.float()
        self.x_scale_ = torch.ones_like(mx).float()
        self.fit_stats_ = {"n_train": int(stats.n), "scale": float(scale)}
        self._stale = False


@hookimpl
def register_aligners(register):
    register("procrustes", ProcrustesAligner, description="orthogonal Procrustes + global scale")


@hookimpl
def register_concept_vocabularies(register):
    register(
        "basic-colours", lambda: list(BASIC_COLOURS), description="Berlin & Kay's eleven basic colour terms"
    )
