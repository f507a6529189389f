"""The default aligner: exact ridge regression from streamed sufficient statistics.

Batches update sums (``Σx``, ``Σy``, ``ΣxxT``, ``ΣxyT``, ``Σy²``) separately for the fitting rows and the
held-out rows, so memory depends on the dimensions, never on the number of images. Sums are kept in
float64 around a shift (the first batch's mean), and each batch's products are computed in float32 on
centred data, which is twice as fast as float64 and loses nothing measurable.

The ridge strength is chosen on the held-out rows *from their statistics alone*: for a candidate
strength the held-out squared error is ``Syy - 2 tr(AᵀSxy) + tr(AᵀSxxA)``, so no second pass over the
data is needed. Candidates are searched coarse-to-fine on a log scale (a Cholesky solve each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._exceptions import DataError
from .base import Aligner

__all__ = ["LinearAligner", "SufficientStats"]

COARSE_ALPHAS = tuple(10.0**e for e in range(-6, 3))


class SufficientStats:
    """Running sums of ``x``, ``y``, ``x xᵀ``, ``x yᵀ`` and per-dimension ``y²``, around a shift.

    Args:
        d (int): feature size. D (int): target size.
        device (torch.device, optional): where the sums live. Default: CPU
    """

    def __init__(self, d: int, D: int, device: torch.device | None = None) -> None:
        kw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self.n = 0
        self.shift_x = torch.zeros(d, **kw)
        self.shift_y = torch.zeros(D, **kw)
        self.sx = torch.zeros(d, **kw)
        self.sy = torch.zeros(D, **kw)
        self.sxx = torch.zeros(d, d, **kw)
        self.sxy = torch.zeros(d, D, **kw)
        self.syy = torch.zeros(D, **kw)

    def update(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        """Add a batch (rows of ``X [n, d]`` and ``Y [n, D]``)."""
        if not X.shape[0]:
            return
        X, Y = X.to(self.sx.device), Y.to(self.sx.device)
        if self.n == 0:
            self.shift_x = X.double().mean(0)
            self.shift_y = Y.double().mean(0)
        # float32 products on the CPU (twice as fast, accurate after the shift); float64 on a GPU,
        # where it costs little and global TF32 matmul settings cannot reach the statistics
        dtype = torch.float64 if X.device.type == "cuda" else torch.float32
        xc = X.to(dtype) - self.shift_x.to(dtype)
        yc = Y.to(dtype) - self.shift_y.to(dtype)
        self.n += X.shape[0]
        self.sx += xc.sum(0, dtype=torch.float64)
        self.sy += yc.sum(0, dtype=torch.float64)
        self.sxx += (xc.T @ xc).double()
        self.sxy += (xc.T @ yc).double()
        self.syy += (yc.double() ** 2).sum(0)

    @property
    def mean_x(self) -> torch.Tensor:
        return self.shift_x + self.sx / max(self.n, 1)

    @property
    def mean_y(self) -> torch.Tensor:
        return self.shift_y + self.sy / max(self.n, 1)

    def centered(self, mx: torch.Tensor, my: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Second moments around the given means (in original units): ``Sxx``, ``Sxy`` and total ``Syy``."""
        n = self.n
        dx, dy = mx - self.shift_x, my - self.shift_y
        sxx = self.sxx - torch.outer(self.sx, dx) - torch.outer(dx, self.sx) + n * torch.outer(dx, dx)
        sxy = self.sxy - torch.outer(self.sx, dy) - torch.outer(dx, self.sy) + n * torch.outer(dx, dy)
        syy = self.syy.sum() - 2 * (self.sy @ dy) + n * (dy @ dy)
        return sxx, sxy, syy

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Add another accumulator's sums (e.g. from another worker), whatever its shift."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.shift_x, self.shift_y = other.shift_x.clone(), other.shift_y.clone()
        dx, dy = other.shift_x - self.shift_x, other.shift_y - self.shift_y
        n, outer = other.n, torch.outer
        self.sxx += other.sxx + outer(other.sx, dx) + outer(dx, other.sx) + n * outer(dx, dx)
        self.sxy += other.sxy + outer(other.sx, dy) + outer(dx, other.sy) + n * outer(dx, dy)
        self.syy += other.syy + 2 * dy * other.sy + n * dy * dy
        self.sx += other.sx + n * dx
        self.sy += other.sy + n * dy
        self.n += n
        return self


def _to(stats: SufficientStats, device: torch.device) -> SufficientStats:
    if stats.sx.device == device:
        return stats
    out = SufficientStats(0, 0)
    out.n = stats.n
    for name in ("shift_x", "shift_y", "sx", "sy", "sxx", "sxy", "syy"):
        setattr(out, name, getattr(stats, name).to(device))
    return out


class _Problem:
    """The standardised ridge problem of the training rows, and the held-out error of any solution."""

    def __init__(self, train: SufficientStats, held: SufficientStats) -> None:
        n = train.n
        self.mx, self.my = train.mean_x, train.mean_y
        sxx, sxy, syy = train.centered(self.mx, self.my)
        var = (sxx.diagonal() / n).clamp_min(0)
        ok = var > 1e-12 * var.max().clamp_min(1e-30)
        self.scale = torch.where(ok, var.sqrt(), torch.ones_like(var))
        outer = torch.outer(self.scale, self.scale)
        self.corr = sxx / n / outer
        self.corr_xy = sxy / n / self.scale[:, None]
        self.train = (sxx / outer, sxy / self.scale[:, None], syy)
        self.held = None
        if held.n >= 2:
            hxx, hxy, hyy = held.centered(self.mx, self.my)
            held_var = hyy - held.n * ((held.mean_y - self.my) ** 2).sum()
            self.held = (hxx / outer, hxy / self.scale[:, None], hyy, held_var)
        self.eye = torch.eye(self.corr.shape[0], dtype=self.corr.dtype, device=self.corr.device)

    def solve(self, alpha: float) -> torch.Tensor | None:
        """Standardised coefficients ``[d, D]``, or ``None`` if the system is not positive definite."""
        chol, info = torch.linalg.cholesky_ex(self.corr + alpha * self.eye)
        if int(info) != 0:
            return None
        return torch.cholesky_solve(self.corr_xy, chol)

    @staticmethod
    def _sse(coef: torch.Tensor, sxx: torch.Tensor, sxy: torch.Tensor, syy: torch.Tensor) -> float:
        return float(syy - 2 * (coef * sxy).sum() + (coef * (sxx @ coef)).sum())

    def held_r2(self, coef: torch.Tensor) -> float:
        if self.held is None:
            return float("nan")
        hxx, hxy, hyy, held_var = self.held
        return 1.0 - self._sse(coef, hxx, hxy, hyy) / float(held_var)

    def train_r2(self, coef: torch.Tensor) -> float:
        sxx, sxy, syy = self.train
        return 1.0 - self._sse(coef, sxx, sxy, syy) / float(syy)


class LinearAligner(Aligner):
    """Closed-form ridge aligner, fitted batch by batch from sufficient statistics.

    Features are standardised per dimension (from the statistics) before the ridge penalty, so one
    strength suits every backbone; the standardisation is folded into ``weight_``/``bias_`` and kept in
    ``x_mean_``/``x_scale_``. The penalty ``alpha`` is relative to the standardised features'
    variance (1 per dimension).

    Args:
        alpha (float, optional): a fixed ridge strength; ``None`` chooses it on the held-out rows.
            Default: ``None``
        alphas (sequence of float, optional): candidates to try; ``None`` searches 1e-6…1e2
            coarse-to-fine (13 solves). Default: ``None``
        validation_fraction (float, optional): share of rows held out. Default: ``0.1``
        device (str, optional): where statistics and solves live (``"cuda"`` for big dims); the
            fitted map is kept on the CPU either way. Default: CPU

    Examples::

        >>> aligner = LinearAligner().fit(backbone_features, clip_embeddings)
        >>> aligned = aligner.transform(new_features)
    """

    kind = "linear"

    def __init__(
        self,
        alpha: float | None = None,
        alphas: Sequence[float] | None = None,
        validation_fraction: float = 0.1,
        device: str | None = None,
    ) -> None:
        super().__init__(validation_fraction=validation_fraction)
        if alpha is not None and alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha
        self.alphas = tuple(float(a) for a in alphas) if alphas is not None else None
        self.device = device
        self.train_stats_: SufficientStats | None = None
        self.holdout_stats_: SufficientStats | None = None

    def get_params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "alphas": self.alphas,
            "validation_fraction": self.validation_fraction,
            "device": self.device,
        }

    def _pending_dims(self) -> tuple[int, int] | None:
        s = self.train_stats_
        return (int(s.sx.shape[0]), int(s.sy.shape[0])) if s is not None else None

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> LinearAligner:
        """Add one batch to the statistics (the solution is recomputed lazily)."""
        X, Y, held = self._split(X, Y, indices)
        if self.train_stats_ is None or self.holdout_stats_ is None:
            dev = torch.device(self.device) if self.device else None
            self.train_stats_ = SufficientStats(X.shape[1], Y.shape[1], dev)
            self.holdout_stats_ = SufficientStats(X.shape[1], Y.shape[1], dev)
        self.train_stats_.update(X[~held], Y[~held])
        self.holdout_stats_.update(X[held], Y[held])
        self._stale = True
        return self

    def add_stats(self, train: SufficientStats, holdout: SufficientStats) -> LinearAligner:
        """Add statistics accumulated elsewhere (another worker, another process, per shard):
        the fit of the summed statistics equals the fit of all their rows at once."""
        if self.train_stats_ is None or self.holdout_stats_ is None:
            d, D = int(train.sx.shape[0]), int(train.sy.shape[0])
            dev = torch.device(self.device) if self.device else None
            self.train_stats_, self.holdout_stats_ = SufficientStats(d, D, dev), SufficientStats(d, D, dev)
        if tuple(train.sxy.shape) != tuple(self.train_stats_.sxy.shape):
            raise DataError(
                f"statistics of {tuple(train.sxy.shape)} features cannot be added to an aligner "
                f"accumulating {tuple(self.train_stats_.sxy.shape)}"
            )
        dev = self.train_stats_.sx.device
        self.train_stats_.merge(_to(train, dev))
        self.holdout_stats_.merge(_to(holdout, dev))
        self._rows_seen += int(train.n + holdout.n)
        self._stale = True
        return self

    def _solve(self) -> None:
        train, held = self.train_stats_, self.holdout_stats_
        if train is None or held is None or train.n < 2:
            raise DataError("not enough rows to fit an aligner (need at least 2 outside the held-out split)")
        problem = _Problem(train, held)
        alpha, coef, path = self._search(problem)
        weight = (coef / problem.scale[:, None]).T  # [D, d] in raw feature units
        bias = problem.my - weight @ problem.mx
        # the fitted map lives on the CPU like every other result (``device`` is where statistics
        # and solves run); ``aligner.to("cuda")`` moves it for GPU transforms
        self.weight_ = weight.float().cpu().contiguous()
        self.bias_ = bias.float().cpu()
        self.x_mean_ = problem.mx.float().cpu()
        self.x_scale_ = problem.scale.float().cpu()
        self.fit_stats_ = {
            "n_train": int(train.n),
            "n_holdout": int(held.n),
            "alpha": float(alpha),
            "alpha_path": path,
            "holdout_r2_from_stats": problem.held_r2(coef),
            "train_r2": problem.train_r2(coef),
        }
        self._stale = False

    def _search(self, problem: _Problem) -> tuple[float, torch.Tensor, list[tuple[float, float]]]:
        tried: dict[float, tuple[float, torch.Tensor | None]] = {}

        def score(alpha: float) -> float:
            if alpha not in tried:
                coef = problem.solve(alpha)
                r2 = problem.held_r2(coef) if coef is not None else float("-inf")
                tried[alpha] = (r2, coef)
            return tried[alpha][0]

        def best() -> float:
            usable = [a for a, (r2, c) in tried.items() if c is not None]
            if not usable:
                raise DataError("the ridge system is singular for every alpha tried; check the features")
            return max(usable, key=lambda a: (tried[a][0] if tried[a][0] == tried[a][0] else -1e300, a))

        if self.alpha is not None:
            candidates: Sequence[float] = (self.alpha,)
        elif problem.held is None:
            candidates = (1e-3,)  # too few held-out rows to choose: a mild default
        else:
            candidates = self.alphas or COARSE_ALPHAS
        for a in candidates:
            score(a)
        if self.alpha is None and self.alphas is None and problem.held is not None:
            for step in (0.5, 0.25):
                centre = best()
                score(centre * 10**step)
                score(centre * 10**-step)
        chosen = best()
        coef = tried[chosen][1]
        assert coef is not None
        path = sorted((a, r2) for a, (r2, _) in tried.items())
        return chosen, coef, path
