"""The statistics of a shift report: Welch's t-tests and effect sizes from moments, Benjamini-Hochberg
q-values, the ranking of rows, the fixed-effect by-class summary, and the checks of their options."""

from __future__ import annotations

import math

import numpy as np

from .._exceptions import DataError, UnknownNameError
from .report import ShiftRow

#: how rows are ordered (also recorded in every report's ``info``)
RANKING = (
    "significant rows (q < alpha) first, by |effect| (largest first); then the others by p; "
    "untested rows last"
)
#: effect sizes: name -> description (recorded in every report's ``info``)
EFFECTS = {
    "glass": "Glass's delta: (mean_b - mean_a) / SD of a, times 1 - 3 / (4 (n_a - 1) - 1)",
    "hedges": "Hedges' g: (mean_b - mean_a) / pooled SD, times 1 - 3 / (4 (n_a + n_b) - 9)",
}

_Stats = tuple[int, np.ndarray, np.ndarray]


def _tests(
    concepts: list[str], group: str | None, a: _Stats, b: _Stats, tested: bool, effect: str
) -> list[ShiftRow]:
    from scipy.stats import ttest_ind_from_stats

    (n_a, m_a, v_a), (n_b, m_b, v_b) = a, b
    nan = np.full(len(concepts), np.nan)
    t = p = g = nan
    if tested:
        with np.errstate(divide="ignore", invalid="ignore"):
            res = ttest_ind_from_stats(m_b, np.sqrt(v_b), n_b, m_a, np.sqrt(v_a), n_a, equal_var=False)
            pooled = np.sqrt(((n_a - 1) * v_a + (n_b - 1) * v_b) / (n_a + n_b - 2))
            if effect == "glass":
                g = (m_b - m_a) / np.sqrt(v_a) * (1.0 - 3.0 / (4.0 * (n_a - 1) - 1.0))
            else:
                g = (m_b - m_a) / pooled * (1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0))
        t, p = np.asarray(res.statistic, float), np.asarray(res.pvalue, float)
        constant = ~(pooled > 1e-9 * (1.0 + np.abs(m_a) + np.abs(m_b)))  # rounding noise only (or NaN)
        t, p, g = (np.where(constant, np.nan, x) for x in (t, p, g))
    return [
        ShiftRow(c, group, float(m_a[i]), float(m_b[i]), float(m_b[i] - m_a[i]), float(t[i]), float(p[i]),
                 math.nan, float(g[i]), int(n_a), int(n_b), bool(tested and math.isfinite(p[i])))
        for i, c in enumerate(concepts)
    ]


def _adjust(rows: list[ShiftRow]) -> None:
    """Benjamini-Hochberg q-values over the tested rows, in place."""
    from scipy.stats import false_discovery_control

    tested = [r for r in rows if r.tested]
    if tested:
        qs = false_discovery_control([r.p for r in tested], method="bh")
        for r, q in zip(tested, qs, strict=True):
            r.q = float(q)


def _ranked(rows: list[ShiftRow], alpha: float) -> list[ShiftRow]:
    def key(r: ShiftRow) -> tuple[int, float, float]:
        size = 0.0 if math.isnan(r.effect) else abs(r.effect)  # inf: a constant reference, b moved
        if not r.tested:
            return (2, 0.0, 0.0)
        if r.q < alpha:
            return (0, -size, r.q)
        return (1, r.p, -size)

    return sorted(rows, key=key)


def _combine(concepts: list[str], rows: list[ShiftRow], effect: str) -> list[ShiftRow]:
    """Per concept: inverse-variance fixed-effect mean of the effects over its tested classes, z-test."""
    from scipy.stats import norm

    out = []
    for c in concepts:
        mine = [r for r in rows if r.concept == c and r.tested and math.isfinite(r.effect)]
        n_a, n_b = sum(r.n_a for r in mine), sum(r.n_b for r in mine)
        if not mine:
            nan = math.nan
            out.append(ShiftRow(c, None, nan, nan, nan, nan, nan, nan, nan, n_a, n_b, tested=False))
            continue
        # large-sample variances of Hedges' g and Glass's delta (Hedges & Olkin 1985)
        var = np.array([(r.n_a + r.n_b) / (r.n_a * r.n_b)
                        + r.effect**2 / (2 * ((r.n_a - 1) if effect == "glass" else (r.n_a + r.n_b)))
                        for r in mine])
        w = 1.0 / var
        g = float((w * [r.effect for r in mine]).sum() / w.sum())
        z = g * math.sqrt(w.sum())
        mean_a = sum(r.mean_a * r.n_a for r in mine) / n_a
        mean_b = sum(r.mean_b * r.n_b for r in mine) / n_b
        out.append(ShiftRow(c, None, mean_a, mean_b, mean_b - mean_a, z, float(2 * norm.sf(abs(z))),
                            math.nan, g, n_a, n_b))
    return out


def _check_options(alpha: float, min_samples: int, effect: str = "glass") -> None:
    if effect not in EFFECTS:
        raise UnknownNameError("effect size", effect, EFFECTS)
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    if int(min_samples) < 2:
        raise DataError(f"min_samples must be at least 2 (a variance needs two images), got {min_samples!r}")

