"""The default aligner: exact ridge regression from streamed sufficient statistics.

Batches update sums (``Σx``, ``Σy``, ``ΣxxT``, ``ΣxyT``, ``Σy²``) separately for the fitting rows and the
held-out rows, so memory depends on the dimensions, never on the number of images. Sums are kept in
float64 around a shift (near the first batch's mean); on the CPU each batch's products are computed
in float32 on centred data (``ΣxxT`` by ``syrk``, half a matrix product), which is twice as fast as
float64 and loses nothing measurable.

The ridge strength is chosen on the held-out rows *from their statistics alone*: for a candidate
strength the held-out squared error is ``Syy - 2 tr(AᵀSxy) + tr(AᵀSxxA)``, so no second pass over the
data is needed. One symmetric eigendecomposition of the standardised ``Sxx`` serves every candidate
(each then costs O(d²)); candidates are searched coarse-to-fine on a log scale. Rank-deficient
features (collinear or constant columns) fit for any strength, ``alpha=0`` included: directions
without variance get the minimum-norm solution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._exceptions import ConfigurationError, DataError
from .base import Aligner

__all__ = ["LinearAligner", "SufficientStats"]

COARSE_ALPHAS = tuple(10.0**e for e in range(-6, 3))


class SufficientStats:
    """Running sums of ``x``, ``y``, ``x xᵀ``, ``x yᵀ`` and per-dimension ``y²``, around a shift.

    Batches are centred on the shift and multiplied in chunks of :data:`CHUNK_ROWS` rows, in float32
    on the CPU (float64 on a GPU); their products are summed in that precision for up to
    :data:`FLUSH_ROWS` rows (as one float32 matrix product of that many rows would sum them) and then
    added to the float64 totals, which is also done whenever a total is read.

    Args:
        d (int): feature size. D (int): target size.
        device (torch.device, optional): where the sums live. Default: CPU
    """

    def __init__(self, d: int, D: int, device: torch.device | None = None) -> None:
        kw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self.n = 0
        self.shift_x = torch.zeros(d, **kw)
        self.shift_y = torch.zeros(D, **kw)
        self._sx = torch.zeros(d, **kw)
        self._sy = torch.zeros(D, **kw)
        self._sxx = torch.zeros(d, d, **kw)
        self._sxy = torch.zeros(d, D, **kw)
        self._syy = torch.zeros(D, **kw)
        self._pending: _Products | None = None

    def _totals(self) -> SufficientStats:
        if self._pending is not None and self._pending.n:
            self._pending.flush_into(self, restart=False)
        self._pending = None  # its sums and buffers go too: the totals are being used
        return self

    # the float64 totals (reading one adds the pending products first)
    sx = property(lambda self: self._totals()._sx, lambda self, v: _set(self, "_sx", v))
    sy = property(lambda self: self._totals()._sy, lambda self, v: _set(self, "_sy", v))
    sxx = property(lambda self: self._totals()._sxx, lambda self, v: _set(self, "_sxx", v))
    sxy = property(lambda self: self._totals()._sxy, lambda self, v: _set(self, "_sxy", v))
    syy = property(lambda self: self._totals()._syy, lambda self, v: _set(self, "_syy", v))

    def update(self, X: torch.Tensor, Y: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Add a batch: the rows of ``X [n, d]`` and ``Y [n, D]`` (only those where the boolean
        ``rows`` is true, when given). The kept rows are multiplied :data:`CHUNK_ROWS` at a time, so a
        mask keeping a tenth of the rows still makes full-sized products."""
        device = self._sx.device
        X, Y = X.to(device), Y.to(device)
        kept = None if rows is None else rows.to(device).nonzero().squeeze(1)
        total = X.shape[0] if kept is None else kept.shape[0]
        if self._pending is None:
            self._pending = _Products(X.shape[1], Y.shape[1], _products_dtype(device), device)
        pending = self._pending
        shifts = (self.shift_x.to(pending.dtype), self.shift_y.to(pending.dtype)) if self.n else None
        capacity = min(CHUNK_ROWS, X.shape[0])  # the most rows a chunk of this batch can keep
        for start in range(0, total, CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS) if kept is None else kept[start : start + CHUNK_ROWS]
            xc = pending.picked(X, part, 0, capacity, None if shifts is None else shifts[0])
            yc = pending.picked(Y, part, 1, capacity, None if shifts is None else shifts[1])
            if shifts is None:
                # the first rows' mean is the shift (any shift is exact: the sums track it; one near
                # the mean keeps float32 products accurate), taken from the gathered rows (no copy)
                # and kept exactly as the rows are centred on it
                shifts = (xc.mean(0), yc.mean(0))
                self.shift_x, self.shift_y = shifts[0].double(), shifts[1].double()
                xc.sub_(shifts[0])
                yc.sub_(shifts[1])
            self.n += pending.add(xc, yc)
            if pending.n >= FLUSH_ROWS:
                pending.flush_into(self)

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
        # Sxx - sx dxᵀ - dx sxᵀ + n dx dxᵀ and Sxy - sx dyᵀ - dx syᵀ + n dx dyᵀ, as rank-1 updates
        half = self.sx - n / 2 * dx
        # one copy each, updated in place (a fresh [d, d] float64 matrix costs page faults)
        sxx = self.sxx.clone().addr_(half, dx, alpha=-1).addr_(dx, half, alpha=-1)
        sxy = self.sxy.clone().addr_(self.sx - n * dx, dy, alpha=-1).addr_(dx, self.sy, alpha=-1)
        syy = self.syy.sum() - 2 * (self.sy @ dy) + n * (dy @ dy)
        return sxx, sxy, syy

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Add another accumulator's sums (e.g. from another worker), whatever its shift."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.shift_x, self.shift_y = other.shift_x.clone(), other.shift_y.clone()
        self._totals()
        dx, dy = other.shift_x - self.shift_x, other.shift_y - self.shift_y
        n, outer = other.n, torch.outer
        self._sxx += other.sxx + outer(other.sx, dx) + outer(dx, other.sx) + n * outer(dx, dx)
        self._sxy += other.sxy + outer(other.sx, dy) + outer(dx, other.sy) + n * outer(dx, dy)
        self._syy += other.syy + 2 * dy * other.sy + n * dy * dy
        self._sx += other.sx + n * dx
        self._sy += other.sy + n * dy
        self.n += n
        return self


def _set(stats: SufficientStats, name: str, value: torch.Tensor) -> None:
    stats._totals()
    setattr(stats, name, value)


def _products_dtype(device: torch.device) -> torch.dtype:
    """The precision of the statistics' products on ``device``: float32 on the CPU (twice as fast,
    accurate after the shift), float64 on a GPU (cheap there, and global TF32 matmul settings
    cannot reach the statistics)."""
    return torch.float64 if device.type == "cuda" else torch.float32


#: rows per product in :meth:`SufficientStats.update`: centred copies stay small whatever the batch
CHUNK_ROWS = 16384
#: rows whose products are summed in float32 before they are added to the float64 totals
FLUSH_ROWS = 65536
#: features from which the alpha search decomposes the correlation matrix in float32 on the CPU
FLOAT32_SPECTRUM_DIM = 512


class _Products:
    """Sums of centred chunks in the chunks' precision, and the buffers the chunks are centred in
    (sized for a whole chunk and kept from chunk to chunk: a fresh allocation costs page faults
    worth a tenth of the products).

    ``Σ x xᵀ`` of float32 CPU chunks is NumPy's ``a.T @ a`` of the centred buffer, which NumPy hands
    to its BLAS's ``syrk`` (one triangle, mirrored: half the products of a general matrix multiply).
    ``python benchmarks/bench_aligners.py --parts`` times it beside SciPy's ``ssyrk`` and torch's
    ``X.T @ X``: on an AMD EPYC with AVX2, 1.3 s for both ``syrk``s and 2.4 s for torch's ``gemm``
    at 45,000 × 2,048."""

    def __init__(self, d: int, D: int, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device
        self.syrk = device.type == "cpu" and dtype == torch.float32
        # x, y and y² of the current chunk
        self._buffers: list[torch.Tensor | None] = [None, None, None]
        self._zero(d, D)

    def _zero(self, d: int, D: int) -> None:
        kw: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        self.n = 0
        self.x, self.y, self.yy = torch.zeros(d, **kw), torch.zeros(D, **kw), torch.zeros(D, **kw)
        self.xy = torch.zeros(d, D, **kw)
        self.xx = torch.zeros(d, d, **kw)

    def add(self, xc: torch.Tensor, yc: torch.Tensor) -> int:
        """Add the products of centred rows (``xc``, ``yc`` in this object's buffers, from
        :meth:`picked`); returns how many rows were added."""
        rows = xc.shape[0]
        if rows:
            self.n += rows
            self.x += xc.sum(0)
            self.y += yc.sum(0)
            y_buffer = self._buffers[1]  # y² is kept in a buffer as large as y's
            square = self._buffer(2, rows, yc.shape[1], rows if y_buffer is None else y_buffer.shape[0])
            self.yy += torch.mul(yc, yc, out=square).sum(0)
            self.xy.addmm_(xc.T, yc)
            if self.syrk:
                a = xc.numpy()
                self.xx += torch.from_numpy(a.T @ a)  # NumPy sees a.T @ a and calls syrk
            else:
                self.xx.addmm_(xc.T, xc)
        return rows

    def _buffer(self, slot: int, rows: int, width: int, capacity: int) -> torch.Tensor:
        """This slot's kept buffer, its first ``rows`` rows (grown to ``capacity`` rows when smaller)."""
        buffer = self._buffers[slot]
        if buffer is None or buffer.shape[0] < rows or buffer.shape[1] != width:
            buffer = torch.empty(max(rows, capacity, 1), width, dtype=self.dtype, device=self.device)
            self._buffers[slot] = buffer
        return buffer[:rows]

    def picked(
        self, t: torch.Tensor, part: slice | torch.Tensor, slot: int, capacity: int,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The rows ``part`` (a slice or row indices) of ``t``, minus ``shift`` when given, in this
        slot's buffer (kept from chunk to chunk and sized for ``capacity`` rows, the batch's largest
        chunk, so that chunks keeping a few more rows do not allocate again)."""
        rows = len(range(t.shape[0])[part]) if isinstance(part, slice) else part.shape[0]
        out = self._buffer(slot, rows, t.shape[1], capacity)
        if isinstance(part, slice):
            if shift is not None:
                return torch.sub(t[part].to(self.dtype), shift, out=out)
            return out.copy_(t[part])
        if t.dtype != self.dtype:  # convert only the picked rows, never the whole batch
            out.copy_(t.index_select(0, part))
        else:
            torch.index_select(t, 0, part, out=out)
        return out if shift is None else out.sub_(shift)

    def flush_into(self, stats: SufficientStats, restart: bool = True) -> None:
        """Add the sums to ``stats``' float64 totals (in place: no float64 copy); start again from
        zero sums when ``restart`` (else they are about to be dropped: no fresh zeros)."""
        stats._sx.add_(self.x)
        stats._sy.add_(self.y)
        stats._sxy.add_(self.xy)
        stats._syy.add_(self.yy)
        stats._sxx.add_(self.xx)
        if restart:
            self._zero(*self.xy.shape)


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
        self.n, self.syy = n, syy
        self.corr = sxx.div_(outer).div_(n)
        self.corr_xy = sxy.div_(self.scale[:, None]).div_(n)
        self.held = None
        if held.n >= 2:
            hxx, hxy, hyy = held.centered(self.mx, self.my)
            held_var = hyy - held.n * ((held.mean_y - self.my) ** 2).sum()
            self.held = (hxx.div_(outer), hxy.div_(self.scale[:, None]), hyy, held_var)
        self._spectra: dict[torch.dtype, _Spectrum] = {}

    def solve(self, alpha: float) -> torch.Tensor:
        """Standardised coefficients ``[d, D]`` for one strength: a Cholesky solve, or the spectrum's
        (minimum-norm on directions without variance) where the system is not positive definite
        beyond rounding: where a pivot is not positive, or is at the statistics' rounding level
        relative to its column's variance (a column that earlier columns give up to rounding)."""
        system = self.corr.clone()
        system.diagonal().add_(alpha)
        eps = torch.finfo(_products_dtype(system.device)).eps
        factor, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0 and not _at_rounding_level(factor.diagonal(), system.diagonal(), eps):
            return torch.cholesky_solve(self.corr_xy, factor)
        return self.spectrum(torch.float64).coef(alpha)

    def spectrum(self, dtype: torch.dtype | None = None) -> _Spectrum:
        """The eigendecomposition of the problem, in ``dtype`` (computed once per dtype). Default:
        float32 on the CPU from :data:`FLOAT32_SPECTRUM_DIM` features up, where the statistics'
        products are float32 too (the decomposition is twice as fast, 0.5 s instead of 1 s at 2,048,
        and its rounding no larger than theirs); float64 for fewer features (milliseconds either
        way) and on GPUs."""
        if dtype is None:
            large = self.corr.shape[0] >= FLOAT32_SPECTRUM_DIM
            dtype = torch.float32 if self.corr.device.type == "cpu" and large else torch.float64
        if dtype not in self._spectra:
            self._spectra[dtype] = _Spectrum(self, dtype)
        return self._spectra[dtype]

    def held_r2(self, coef: torch.Tensor) -> float:
        """The held-out rows' R² of ``coef``, from their statistics (NaN without held-out rows)."""
        if self.held is None:
            return float("nan")
        hxx, hxy, hyy, held_var = self.held
        sse = hyy - 2 * (coef * hxy).sum() + (coef * (hxx @ coef)).sum()
        return 1.0 - float(sse) / float(held_var)

    def train_r2(self, coef: torch.Tensor, alpha: float) -> float:
        """The fitting rows' R² of the solution for ``alpha``, in O(d·D): the solve's equations
        ``(corr + αI) coef = corr_xy`` give ``coefᵀ corr coef = coefᵀ corr_xy - α |coef|²`` (on the
        spectrum's minimum-norm solution too), so no ``[d, d] @ [d, D]`` product is needed."""
        explained = float((coef * self.corr_xy).sum()) + alpha * float((coef * coef).sum())
        return self.n * explained / float(self.syy)


#: a Cholesky pivot this many products' epsilons of its column's variance (or less) is rounding:
#: exactly collinear float32 columns leave pivots of about one epsilon
PIVOT_ROUNDING = 16


def _at_rounding_level(pivots: torch.Tensor, variance: torch.Tensor, eps: float) -> bool:
    """Whether some Cholesky pivot ``l_ii`` has ``l_ii² <= PIVOT_ROUNDING · eps · system_ii``."""
    return bool((pivots.double() ** 2 <= PIVOT_ROUNDING * eps * variance.double()).any())


def _rounding_level(lam: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float64) -> float:
    """The eigenvalue size below which ``corr``'s spectrum is rounding noise: three times the most
    negative eigenvalue (a Gram matrix has none; rounding makes them, about as large as the noise on
    the positive side), and at least the precision of the products (float32 on the CPU) or of the
    decomposition (``dtype``), whichever is coarser, times the largest."""
    products_eps = max(torch.finfo(_products_dtype(device)).eps, torch.finfo(dtype).eps)
    largest = float(lam.max().clamp_min(0))
    return max(3 * float((-lam.min()).clamp_min(0)), products_eps * largest, 1e-300)


class _Spectrum:
    """``corr = V diag(λ) Vᵀ`` with the targets and the held-out statistics rotated once, so that any
    strength's coefficients cost one ``[d, d] @ [d, D]`` product and its held-out error O(d²), with
    no further solve.

    With ``g = 1 / (λ + α)`` and ``R = Vᵀ corr_xy``, the coefficients are ``V (g ∘ R)``; the
    held-out error is ``hyy - 2 g·a + gᵀ B g`` with ``a = rowsum(R ∘ Vᵀhxy)`` and
    ``B = (Vᵀ hxx V) ∘ (R Rᵀ)``. Directions whose ``λ + α`` is at rounding level (collinear or
    constant features with a strength below that level) get ``g = 0``: the minimum-norm solution, as
    ``lstsq`` gives.
    """

    def __init__(self, problem: _Problem, dtype: torch.dtype = torch.float64) -> None:
        lam, self.V = torch.linalg.eigh(problem.corr.to(dtype))
        lam = lam.double()
        self.lam = lam.clamp_min(0)
        self.floor = _rounding_level(lam, problem.corr.device, dtype)
        self.R = self.V.T @ problem.corr_xy.to(dtype)
        self.held: tuple[torch.Tensor, torch.Tensor, float, float] | None = None
        if problem.held is not None:
            hxx, hxy, hyy, held_var = problem.held
            lin = (self.R * (self.V.T @ hxy.to(dtype))).sum(1).double()
            quad = ((self.V.T @ hxx.to(dtype) @ self.V) * (self.R @ self.R.T)).double()
            self.held = (lin, quad, float(hyy), float(held_var))

    def gains(self, alpha: float) -> torch.Tensor:
        total = self.lam + alpha
        usable = total > self.floor
        return torch.where(usable, 1.0 / torch.where(usable, total, torch.ones_like(total)), 0.0)

    def coef(self, alpha: float) -> torch.Tensor:
        return (self.V @ (self.gains(alpha).to(self.V.dtype)[:, None] * self.R)).double()

    def held_r2(self, alpha: float) -> float:
        if self.held is None:
            return float("nan")
        lin, quad, hyy, held_var = self.held
        g = self.gains(alpha)
        return 1.0 - float(hyy - 2 * (g @ lin) + g @ quad @ g) / held_var


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
            raise ConfigurationError("alpha must be >= 0")
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
        return (int(s.shift_x.shape[0]), int(s.shift_y.shape[0])) if s is not None else None

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> LinearAligner:
        """Add one batch to the statistics (the solution is recomputed lazily)."""
        X, Y, held = self._split(X, Y, indices)
        if self.train_stats_ is None or self.holdout_stats_ is None:
            dev = torch.device(self.device) if self.device else None
            self.train_stats_ = SufficientStats(X.shape[1], Y.shape[1], dev)
            self.holdout_stats_ = SufficientStats(X.shape[1], Y.shape[1], dev)
        self.train_stats_.update(X, Y, ~held)
        self.holdout_stats_.update(X, Y, held)
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
            "train_r2": problem.train_r2(coef, alpha),
        }
        self._stale = False

    def _search(self, problem: _Problem) -> tuple[float, torch.Tensor, list[tuple[float, float]]]:
        """The strength with the best held-out R² (ties: the larger), its coefficients, and every
        strength tried with its R². One strength is solved directly; a search scores every
        candidate from one eigendecomposition."""
        if self.alpha is not None or problem.held is None:
            # a fixed strength; with too few held-out rows to choose, a mild default
            alpha = self.alpha if self.alpha is not None else 1e-3
            coef = problem.solve(alpha)
            return alpha, coef, [(alpha, problem.held_r2(coef))]
        spectrum = problem.spectrum()
        tried: dict[float, float] = {}

        def score(alpha: float) -> None:
            if alpha not in tried:
                tried[alpha] = spectrum.held_r2(alpha)

        def best() -> float:  # NaN (no held-out variance) ranks last
            return max(tried, key=lambda a: (tried[a] if tried[a] == tried[a] else float("-inf"), a))

        for a in self.alphas or COARSE_ALPHAS:
            score(a)
        if self.alphas is None:
            for step in (0.5, 0.25):
                centre = best()
                score(centre * 10**step)
                score(centre * 10**-step)
        chosen = best()
        # strengths are scored in the spectrum's precision; the chosen one is solved in float64: by
        # Cholesky where every direction is usable at that strength, else on the float64 spectrum
        # (minimum-norm on directions at rounding level)
        if bool((spectrum.lam + chosen > spectrum.floor).all()):
            coef = problem.solve(chosen)
        else:
            coef = problem.spectrum(torch.float64).coef(chosen)
        return chosen, coef, sorted(tried.items())
