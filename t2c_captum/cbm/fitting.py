"""Fitting a concept bottleneck: the L1/elastic-net logistic path, the choice of its sparsity, the dense
probe beside it, temperature scaling and standardisation (scikit-learn and scipy, imported when used)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._exceptions import DataError
from .reports import PathPoint

__all__ = [
    "DEFAULT_CS",
    "PROBE_CS",
    "accuracy",
    "choose",
    "fit_path",
    "fit_probe",
    "logistic",
    "moments",
    "softmax_form",
    "standardise",
    "temperature",
]

DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 1, 13))
PROBE_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))


def logistic(C: float, l1_ratio: float, **options: Any) -> Any:
    """A LogisticRegression with an elastic-net mix, across scikit-learn's ``penalty`` deprecation."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) < (1, 8):
        penalty = "l2" if l1_ratio == 0 else "l1" if l1_ratio == 1 else "elasticnet"
        options["penalty"] = penalty
        if penalty == "elasticnet":
            options["l1_ratio"] = l1_ratio
    else:
        options["l1_ratio"] = l1_ratio
    return LogisticRegression(C=C, **options)


def softmax_form(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fitted model's float64 weights ``[C, K]`` and intercepts ``[C]``; binary scikit-learn models
    have one row, split into two with the same softmax."""
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    if coef.shape[0] == 1:
        return np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale``."""
    return (x - mean) / scale


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and spreads of ``x`` (spreads below 1e-8 become 1)."""
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


def temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The scale of ``logits`` that minimises the validation log-loss (temperature scaling)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(log_scale: float) -> float:
        return float(-log_softmax(np.exp(log_scale) * logits, axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 5.0), method="bounded").x))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose largest logit is their label."""
    return float((logits.argmax(1) == y).mean())


def fit_path(
    a_tr: np.ndarray,
    ytr: np.ndarray,
    a_v: np.ndarray,
    yv: np.ndarray,
    *,
    Cs: Sequence[float],
    l1_ratio: float,
    max_iter: int,
    tol: float,
    random_state: int,
) -> tuple[list[PathPoint], list[tuple[np.ndarray, np.ndarray]]]:
    """The regularisation path over ``Cs`` (saga, multinomial, warm starts) on standardised concept
    activations: one :class:`PathPoint` and one ``(coef [C, K], intercept [C])`` per ``C``."""
    from sklearn.exceptions import ConvergenceWarning

    model = logistic(
        Cs[0],
        l1_ratio,
        solver="saga",
        warm_start=True,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
    )
    path: list[PathPoint] = []
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    for C in Cs:  # strong → weak regularisation, each fit warm-started from the last
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(a_tr, ytr)
        coef, intercept = softmax_form(model)
        per_class = (coef != 0).sum(1)
        acc = accuracy(a_v @ coef.T + intercept, yv)
        converged = bool(np.max(model.n_iter_) < max_iter)
        path.append(PathPoint(C, acc, int((model.coef_ != 0).sum()), int(per_class.max()), converged))
        fits.append((coef.copy(), intercept.copy()))
    return path, fits


def choose(path: list[PathPoint], tolerance: float, max_nonzero_per_class: int | None) -> int:
    """The sparsest point within ``tolerance`` of the best validation accuracy (ties: smaller C)."""
    allowed = [
        i
        for i, p in enumerate(path)
        if max_nonzero_per_class is None or p.max_nnz_per_class <= max_nonzero_per_class
    ]
    if not allowed:
        fewest = min(p.max_nnz_per_class for p in path)
        raise DataError(
            f"no model on the path uses at most {max_nonzero_per_class} concepts per class (the "
            f"sparsest uses {fewest}); add smaller Cs or raise max_nonzero_per_class"
        )
    best = max(path[i].val_accuracy for i in allowed)
    good = [i for i in allowed if path[i].val_accuracy >= best - tolerance - 1e-12]
    return min(good, key=lambda i: (path[i].nnz, path[i].C))


def fit_probe(
    xtr: np.ndarray, ytr: np.ndarray, xv: np.ndarray, yv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray, np.ndarray]:
    """The dense L2 probe on standardised features, ``C`` chosen on validation accuracy:
    ``(x_mean, x_scale, val_accuracy, C, coef, intercept)``."""
    from sklearn.exceptions import ConvergenceWarning

    x_mean, x_scale = moments(xtr)
    ftr = standardise(xtr, x_mean, x_scale)
    fv = standardise(xv, x_mean, x_scale)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for C in PROBE_CS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = logistic(C, 0.0, max_iter=1000).fit(ftr, ytr)
        coef, intercept = softmax_form(model)
        acc = accuracy(fv @ coef.T + intercept, yv)
        if best is None or acc > best[0]:
            best = (acc, C, coef, intercept)
    assert best is not None
    return (x_mean, x_scale, *best)
