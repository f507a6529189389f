"""The Aligner: a fitted map from a backbone's features into a target space (a CLIP space or another
backbone), shaped like a scikit-learn estimator and usable as a differentiable ``nn.Module``."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._exceptions import ConfigurationError, DataError, DimensionMismatchError, NotFittedError
from .io import load_aligner, save_aligner

__all__ = ["Aligner", "AlignmentMetrics", "holdout_mask", "r2_score"]


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixed 64-bit hash of each integer."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def holdout_mask(indices: torch.Tensor | np.ndarray, fraction: float) -> torch.Tensor:
    """Deterministic held-out split by dataset index: the same rows whatever the batch order.

    Indices are hashed (splitmix64) so the held-out rows show no pattern a dataset's ordering could
    correlate with.
    """
    idx = torch.as_tensor(indices, dtype=torch.int64)
    if fraction <= 0:
        return torch.zeros(idx.shape, dtype=torch.bool)
    hashed = _mix64(idx.cpu().numpy()) >> np.uint64(11)  # top 53 bits: exact in float64
    return torch.from_numpy(hashed.astype(np.float64) / float(2**53) < fraction)


def r2_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """``1 - SSE / SST`` over all entries, SST around each output dimension's mean
    (scikit-learn's ``variance_weighted`` R²)."""
    pred, target = pred.double(), target.double().to(pred.device)  # an aligner's output may be on a GPU
    sse = ((target - pred) ** 2).sum()
    sst = ((target - target.mean(dim=0)) ** 2).sum()
    return float(1.0 - sse / sst) if sst > 0 else float("nan")


@dataclass
class AlignmentMetrics:
    """Quality of an alignment on some images: R², mean cosine and how many images."""

    r2: float
    mean_cosine: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def as_tensor_2d(x: Any, name: str) -> torch.Tensor:
    """A float ``[N, d]`` tensor from arrays/tensors, rejecting NaN/Inf with a clear error."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise DimensionMismatchError(f"{name} must be [N, d], got shape {tuple(t.shape)}")
    t = t.float()
    # one sum is NaN or ±Inf whenever an entry is (finite entries may overflow it: then look closer)
    if not torch.isfinite(t.sum()) and not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t).all(dim=1)).sum())
        raise DataError(f"{name} has NaN/Inf values in {bad} row(s); drop or fix those rows first")
    return t


class Aligner(nn.Module):
    """Base class: a linear map ``z = x @ weight_.T + bias_`` fitted by a subclass.

    Subclasses implement :meth:`partial_fit` and :meth:`_solve`. Fitted attributes end in ``_``.
    ``source_`` and ``target_`` describe what was aligned (backbone and space identities) and are
    checked when an artifact is loaded. Rows whose dataset index falls in the held-out split
    (:func:`holdout_mask` with ``validation_fraction``) are never used to fit the map.

    Args:
        validation_fraction (float, optional): share of rows held out. Default: ``0.1``
    """

    kind: ClassVar[str] = "aligner"
    weight_: torch.Tensor
    bias_: torch.Tensor
    x_mean_: torch.Tensor
    x_scale_: torch.Tensor

    def __init__(self, validation_fraction: float = 0.1) -> None:
        super().__init__()
        if not 0 <= validation_fraction < 1:
            raise ConfigurationError("validation_fraction must be in [0, 1)")
        self.validation_fraction = validation_fraction
        self.register_buffer("weight_", torch.empty(0))
        self.register_buffer("bias_", torch.empty(0))
        self.register_buffer("x_mean_", torch.empty(0))
        self.register_buffer("x_scale_", torch.empty(0))
        self.fit_stats_: dict[str, Any] = {}
        self.source_: dict[str, Any] = {}
        self.target_: dict[str, Any] = {}
        self._rows_seen = 0
        self._stale = False

    # -- estimator interface -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``."""
        return {"validation_fraction": self.validation_fraction}

    def _split(self, X: Any, Y: Any, indices: Any | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        X, Y = as_tensor_2d(X, "X"), as_tensor_2d(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise DimensionMismatchError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        if self.is_fitted or self._rows_seen:
            self._check_dims(X.shape[1], Y.shape[1])
        if indices is None:
            indices = torch.arange(self._rows_seen, self._rows_seen + X.shape[0])
        self._rows_seen += X.shape[0]
        return X, Y, holdout_mask(indices, self.validation_fraction)

    def _check_dims(self, d: int, D: int) -> None:
        dims = self.dims
        if dims and (d, D) != dims:
            raise DimensionMismatchError(
                f"this aligner maps {dims[0]}-d features to {dims[1]}-d targets; got {d}-d and {D}-d"
            )

    @property
    def dims(self) -> tuple[int, int] | None:
        if self.weight_.numel():
            return int(self.weight_.shape[1]), int(self.weight_.shape[0])
        return self._pending_dims()

    def _pending_dims(self) -> tuple[int, int] | None:
        return None

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> Aligner:
        """Update the fit with one batch; ``indices`` (dataset indices) fix the held-out split."""
        raise NotImplementedError

    def _solve(self) -> None:
        raise NotImplementedError

    def reset(self) -> Aligner:
        """Forget everything learned (hyper-parameters stay)."""
        self.__init__(**self.get_params())  # type: ignore[misc]
        return self

    def fit(self, X: Any, Y: Any, indices: Any | None = None) -> Aligner:
        """Fit from scratch on ``X [N, d]`` and ``Y [N, D]``; returns ``self``."""
        self.reset()
        self.partial_fit(X, Y, indices)
        self._solve()
        return self

    @property
    def is_fitted(self) -> bool:
        return bool(self.weight_.numel())

    def solve(self) -> Aligner:
        """Solve from what ``partial_fit``/``add_stats`` accumulated, now rather than at first use;
        returns ``self``. Raises :class:`~t2c_captum.NotFittedError` when nothing was added."""
        self._ensure_solved()
        return self

    def _ensure_solved(self) -> None:
        if self._stale:
            self._solve()
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable map ``[N, d] -> [N, D]`` (gradients flow to ``x``), on ``x``'s device."""
        self._ensure_solved()
        if x.shape[-1] != self.weight_.shape[1]:
            raise DimensionMismatchError(
                f"aligner expects {self.weight_.shape[1]}-d features, got {x.shape[-1]}-d; was it "
                f"fitted for another backbone or layer? (fitted for {self.source_.get('id', '?')})"
            )
        return nn.functional.linear(x, self.weight_.to(x.device, x.dtype), self.bias_.to(x.device, x.dtype))

    @torch.no_grad()
    def transform(self, X: Any) -> torch.Tensor:
        """Aligned features (no gradients)."""
        return self(as_tensor_2d(X, "X").to(self.weight_.device))

    @torch.no_grad()
    def evaluate(self, X: Any, Y: Any) -> AlignmentMetrics:
        """R² and mean cosine between aligned ``X`` and true ``Y``."""
        Y = as_tensor_2d(Y, "Y")
        Z = self.transform(X).cpu()
        cos = nn.functional.cosine_similarity(Z, Y, dim=1).mean()
        return AlignmentMetrics(r2_score(Z, Y), float(cos), int(Y.shape[0]))

    def score(self, X: Any, Y: Any) -> float:
        """R² of the aligned ``X`` against ``Y`` (scikit-learn convention)."""
        return self.evaluate(X, Y).r2

    def holdout(self, indices: Any) -> torch.Tensor:
        """Which of these dataset indices belong to the held-out split."""
        return holdout_mask(indices, self.validation_fraction)

    # -- linear structure (for Captum and text CAVs) -------------------------------------------
    @property
    def linear_part(self) -> torch.Tensor:
        """``weight_`` ``[D, d]``: how a feature-space difference moves in the target space."""
        self._ensure_solved()
        return self.weight_

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``NAME.safetensors`` + ``NAME.json`` (see :mod:`t2c_captum.aligners.io`)."""
        return save_aligner(self, path)

    @classmethod
    def load(cls, path: str, **check: Any) -> Aligner:
        """Load an artifact; ``backbone=``/``space=`` are checked against what it was fitted for."""
        return load_aligner(path, **check)

    def extra_repr(self) -> str:
        dims = self.dims
        shape = f"{dims[0]} -> {dims[1]}" if dims else "unfitted"
        return f"kind={self.kind!r}, {shape}"
