"""Distribution shift in concepts: which concepts two datasets differ in, with the false discovery rate
controlled.

Every image of two datasets ``a`` (e.g. training data) and ``b`` (e.g. deployment data) is scored
against a bank of concepts (cosine of its aligned features with each concept's text embedding). For
each concept, Welch's t-test compares the mean score of ``b`` with that of ``a``; the effect size is
Glass's delta (the mean difference in standard deviations of ``a``; or Hedges' g, pooled); p-values are
corrected with Benjamini-Hochberg over every test of the report. Only per-concept counts, means and
variances are kept, so stores larger than memory stream shard by shard.

Examples::

    >>> bank = ConceptBank.from_vocabulary(space, "world")
    >>> report = diagnose_shift("world:val", "world:test", bank, aligner, backbone)
    >>> report.top(3)
    >>> report.to_csv("shift.csv"); report.plot("shift.png")
"""

from __future__ import annotations

import csv
import json
import math
import os
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._exceptions import DataError, DimensionMismatchError, IncompatibleArtifactError, UnknownNameError
from .concepts.bank import ConceptBank, check_concepts

__all__ = [
    "ConceptMoments", "ShiftReport", "ShiftRow", "diagnose_shift", "report_from_moments", "shift_report",
]

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
_ENCODER_FIELDS = ("id", "layer", "preprocess", "dim")
_UNLABELLED = -1


# --------------------------------------------------------------------------- streaming statistics


class ConceptMoments:
    """Count, mean and sum of squared deviations of ``K`` concept scores, per group, from chunks.

    Chunks are merged with Chan et al.'s pairwise update (float64), so the result does not depend on
    how the data was split into shards.

    Args:
        n_concepts (int): ``K``, the number of score columns.
    """

    def __init__(self, n_concepts: int) -> None:
        self.n_concepts = int(n_concepts)
        self._groups: dict[Any, tuple[int, np.ndarray, np.ndarray]] = {}

    def update(self, scores: Any, groups: Sequence[Any] | np.ndarray | None = None) -> None:
        """Add a chunk of scores ``[n, K]``, optionally with the group (class) of each row."""
        s = _as_matrix(scores, "scores")
        if s.shape[1] != self.n_concepts:
            raise DimensionMismatchError(
                f"scores have {s.shape[1]} columns but there are {self.n_concepts} concepts"
            )
        if groups is None:
            self._add(None, s)
            return
        keys = np.asarray(groups)
        if keys.shape != (s.shape[0],):
            raise DimensionMismatchError(f"{keys.size} labels for {s.shape[0]} rows of scores")
        for key in np.unique(keys):
            self._add(key.item(), s[keys == key])

    def _add(self, key: Any, s: np.ndarray) -> None:
        n = s.shape[0]
        if n == 0:
            return
        mean = s.mean(axis=0)
        deviations = s - mean
        m2 = np.einsum("ij,ij->j", deviations, deviations)  # no second [n, K] temporary
        if key in self._groups:
            n0, mean0, m20 = self._groups[key]
            total = n0 + n
            delta = mean - mean0
            mean = mean0 + delta * (n / total)
            m2 = m20 + m2 + delta**2 * (n0 * n / total)
            n = total
        self._groups[key] = (n, mean, m2)

    @property
    def groups(self) -> list[Any]:
        """The groups seen (``[None]`` when rows had no groups)."""
        return list(self._groups)

    def stats(self, group: Any = None) -> tuple[int, np.ndarray, np.ndarray]:
        """``(n, means [K], unbiased variances [K])`` of one group (variances NaN when ``n < 2``)."""
        if group not in self._groups:
            return 0, np.full(self.n_concepts, np.nan), np.full(self.n_concepts, np.nan)
        n, mean, m2 = self._groups[group]
        var = m2 / (n - 1) if n > 1 else np.full(self.n_concepts, np.nan)
        return n, mean, var

    @property
    def n(self) -> int:
        """Rows seen, over all groups."""
        return sum(v[0] for v in self._groups.values())


def _as_matrix(x: Any, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{what} must be a matrix [N, K], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} hold NaN or Inf values; check the features they were computed from")
    return arr


# --------------------------------------------------------------------------- report


@dataclass
class ShiftRow:
    """One test: does ``concept`` (within ``class_name``, if set) score differently in ``b`` than in ``a``?

    Attributes:
        concept: the concept text.
        class_name: the class the test is restricted to (``None``: all images).
        mean_a / mean_b: mean concept score (cosine) in each dataset; ``diff = mean_b - mean_a``.
        t / p: Welch's t statistic (positive: higher in ``b``) and its two-sided p-value (for a
            by-class summary row: the fixed-effect z statistic and its p-value).
        q: Benjamini-Hochberg adjusted p-value.
        effect: the standardised difference: Glass's delta (``diff`` over the standard deviation of
            ``a``) or Hedges' g (over the pooled one), small-sample corrected; see the report's ``info``.
        n_a / n_b: images tested in each dataset.
        tested: ``False`` when too few images (see the report's warnings); then t, p, q, effect are NaN.
    """

    concept: str
    class_name: str | None
    mean_a: float
    mean_b: float
    diff: float
    t: float
    p: float
    q: float
    effect: float
    n_a: int
    n_b: int
    tested: bool = True

    @property
    def direction(self) -> str:
        """``"up"`` if the concept is more present in ``b`` than in ``a``, ``"down"`` if less."""
        return "up" if self.diff > 0 else "down" if self.diff < 0 else "none"

    def is_significant(self, q: float) -> bool:
        """Whether the adjusted p-value is below ``q``."""
        return bool(self.tested and self.q < q)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (NaN becomes ``None``), with ``class`` and ``direction``."""
        out = {k: _plain(v) for k, v in asdict(self).items()}
        out["class"] = out.pop("class_name")
        out["direction"] = self.direction
        return out

    @property
    def label(self) -> str:
        """``concept`` or ``concept | class``."""
        return self.concept if self.class_name is None else f"{self.concept} | {self.class_name}"


def _plain(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


_CSV_FIELDS = ["rank", "concept", "class", "direction", "mean_a", "mean_b", "diff", "t", "p", "q",
               "effect", "n_a", "n_b", "tested"]


@dataclass
class ShiftReport:
    """Ranked per-concept shift tests between dataset ``a`` and dataset ``b``.

    Attributes:
        rows: the tests, ranked (see :data:`RANKING`): significant ones by |effect|, then by p.
        alpha: the q level used for ranking and :meth:`significant`.
        by_class: whether the tests are within classes.
        summary: with ``by_class``, one row per concept combining its classes (inverse-variance
            fixed-effect mean of the per-class effects, z-test, BH over concepts), ranked the same way.
        warnings: groups not tested (too few images), classes in only one dataset, and the like.
        info: names and sizes of the datasets and what the statistics are.
    """

    rows: list[ShiftRow]
    alpha: float = 0.05
    by_class: bool = False
    summary: list[ShiftRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 10, *, direction: str | None = None, summary: bool = False) -> list[ShiftRow]:
        """The ``k`` best-ranked rows.

        Args:
            k (int, optional): how many. Default: ``10``
            direction (str, optional): only ``"up"`` (more in ``b``) or ``"down"`` rows. Default: both
            summary (bool, optional): rank the by-class summary instead. Default: ``False``
        """
        return self._select(direction, summary)[:k]

    def significant(
        self, q: float | None = None, *, direction: str | None = None, summary: bool = False
    ) -> list[ShiftRow]:
        """Rows whose adjusted p-value is below ``q`` (default: :attr:`alpha`), in rank order."""
        level = self.alpha if q is None else q
        return [r for r in self._select(direction, summary) if r.is_significant(level)]

    def _select(self, direction: str | None, summary: bool) -> list[ShiftRow]:
        if direction not in (None, "up", "down"):
            raise DataError(f"direction must be 'up', 'down' or None, not {direction!r}")
        rows = self.summary if summary else self.rows
        return [r for r in rows if direction is None or r.direction == direction]

    def row(self, concept: str, class_name: str | None = None) -> ShiftRow:
        """The row of ``concept`` (in ``class_name``); an unknown concept raises with close matches."""
        for r in self.rows:
            if r.concept == concept and r.class_name == class_name:
                return r
        known = sorted({r.concept for r in self.rows})
        if concept not in known:
            raise UnknownNameError("concept", concept, known, hint="It was not among the tested concepts.")
        classes = sorted({str(r.class_name) for r in self.rows if r.concept == concept})
        raise UnknownNameError("class", str(class_name), classes, hint=f"No test of {concept!r} in it.")

    def rank(self, concept: str, class_name: str | None = None) -> int:
        """1-based rank of ``concept`` (in ``class_name``) among :attr:`rows`."""
        return self.rows.index(self.row(concept, class_name)) + 1

    def as_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values (NaN as ``None``)."""
        return {
            "alpha": self.alpha,
            "by_class": self.by_class,
            "info": self.info,
            "warnings": list(self.warnings),
            "rows": [dict(rank=i + 1, **r.as_dict()) for i, r in enumerate(self.rows)],
            "summary": [dict(rank=i + 1, **r.as_dict()) for i, r in enumerate(self.summary)],
        }

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` if given."""
        text = json.dumps(self.as_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def to_csv(self, path: str | os.PathLike[str], *, summary: bool = False) -> Path:
        """Write the ranked rows (or the by-class summary) as CSV; returns the path."""
        out = Path(path)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
            writer.writeheader()
            for i, r in enumerate(self.summary if summary else self.rows):
                values = dict(rank=i + 1, **r.as_dict())
                writer.writerow({k: "" if v is None else v for k, v in values.items()})
        return out

    def plot(self, path: str | os.PathLike[str] | None = None, k: int = 15, *, summary: bool = False) -> Any:
        """Horizontal bars of the effect sizes of the ``k`` best-ranked rows.

        Bars are coloured by direction; ``*``, ``**``, ``***`` mark q below 0.05, 0.01, 0.001.

        Args:
            path (str, optional): also save the figure there (format from the extension).
            k (int, optional): rows shown. Default: ``15``
            summary (bool, optional): plot the by-class summary instead. Default: ``False``

        Returns:
            matplotlib.figure.Figure: the figure (no pyplot state is touched).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DataError("plotting needs matplotlib: pip install matplotlib") from exc
        rows = [r for r in self.top(k, summary=summary) if r.tested][::-1]
        fig = Figure(figsize=(7.0, 0.35 * max(len(rows), 3) + 1.2), layout="constrained")
        ax = fig.add_subplot()
        effects = [r.effect for r in rows]
        ax.barh(range(len(rows)), effects,
                color=["tab:red" if e > 0 else "tab:blue" for e in effects])
        ax.set_yticks(range(len(rows)), [r.label for r in rows])
        for i, r in enumerate(rows):
            stars = "***" if r.q < 1e-3 else "**" if r.q < 1e-2 else "*" if r.q < 0.05 else ""
            ax.annotate(stars, (r.effect, i), xytext=(3 if r.effect >= 0 else -3, 0),
                        textcoords="offset points", va="center", ha="left" if r.effect >= 0 else "right")
        ax.axvline(0.0, color="black", linewidth=0.8)
        name = "Hedges' g" if self.info.get("effect_size") == "hedges" else "Glass's delta"
        ax.set_xlabel(f"effect size ({name}): > 0 more in b, < 0 less in b")
        names = textwrap.fill(f"{self.info.get('name_a', 'a')} → {self.info.get('name_b', 'b')}", 80)
        ax.set_title(f"{names}\n* q < .05, ** q < .01, *** q < .001", fontsize=9)
        ax.margins(x=0.15)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def __repr__(self) -> str:
        shown = ", ".join(f"{r.label} ({r.effect:+.2f}, q={r.q:.2g})" for r in self.significant()[:3])
        return (f"ShiftReport({len(self.rows)} tests, {len(self.significant())} with q<{self.alpha:g}"
                f"{': ' + shown if shown else ''})")


# --------------------------------------------------------------------------- statistics


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


def _class_name(key: Any, class_names: Sequence[str] | None) -> str:
    if class_names is not None and isinstance(key, (int, np.integer)) and 0 <= key < len(class_names):
        return str(class_names[int(key)])
    return str(key)


def _check_options(alpha: float, min_samples: int, effect: str = "glass") -> None:
    if effect not in EFFECTS:
        raise UnknownNameError("effect size", effect, EFFECTS)
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    if int(min_samples) < 2:
        raise DataError(f"min_samples must be at least 2 (a variance needs two images), got {min_samples!r}")


def report_from_moments(
    moments_a: ConceptMoments,
    moments_b: ConceptMoments,
    concepts: Sequence[str],
    *,
    by_class: bool = False,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
    info: Mapping[str, Any] | None = None,
) -> ShiftReport:
    """A :class:`ShiftReport` from per-group moments of both datasets (what the other entry points use).

    Args:
        moments_a / moments_b (ConceptMoments): statistics of each dataset (grouped by class when
            ``by_class``).
        concepts (list of str): the ``K`` concept names.
        by_class (bool, optional): test within every class present in both datasets. Default: ``False``
        class_names (list of str, optional): names of integer class labels. Default: ``None``
        alpha (float, optional): q level for ranking and :meth:`ShiftReport.significant`. Default: ``0.05``
        min_samples (int, optional): groups with fewer images in either dataset are not tested (a
            warning says so). Default: ``10``
        effect (str, optional): ``"glass"`` (Glass's delta) or ``"hedges"`` (Hedges' g). Default: glass
        info (dict, optional): extra entries for the report's ``info``.

    Returns:
        ShiftReport: the ranked tests.
    """
    names = check_concepts(concepts)
    _check_options(alpha, min_samples, effect)
    for which, m in (("a", moments_a), ("b", moments_b)):
        if m.n == 0:
            raise DataError(f"dataset {which} has no images; give a non-empty dataset (or feature store)")
        if m.n_concepts != len(names):
            raise DimensionMismatchError(
                f"dataset {which} has scores for {m.n_concepts} concepts but {len(names)} concepts are named"
            )
    notes: list[str] = []
    if by_class:
        groups_a, groups_b = set(moments_a.groups) - {None}, set(moments_b.groups) - {None}
        for which, only in (("a", groups_a - groups_b), ("b", groups_b - groups_a)):
            if only:
                shown = ", ".join(sorted(_class_name(k, class_names) for k in only))
                notes.append(f"classes only in dataset {which} (not tested): {shown}")
        groups = sorted(groups_a & groups_b, key=lambda k: (str(type(k)), k))
        if not groups:
            raise DataError("the two datasets share no class; test without by_class, or check the labels")
    else:
        groups = [None]
    rows: list[ShiftRow] = []
    for key in groups:
        sa, sb = moments_a.stats(key), moments_b.stats(key)
        enough = min(sa[0], sb[0]) >= min_samples
        if not enough:
            where = "" if key is None else f"class {_class_name(key, class_names)!r}: "
            notes.append(f"{where}too few images for a test ({sa[0]} in a, {sb[0]} in b; min_samples="
                         f"{min_samples}); its rows are reported untested")
        label = None if key is None else _class_name(key, class_names)
        new = _tests(names, label, sa, sb, enough, effect)
        constant = [r.concept for r in new if enough and not r.tested]
        if constant:
            where = "" if key is None else f"class {label!r}: "
            notes.append(f"{where}scores constant in both datasets, not tested: {', '.join(constant[:8])}")
        rows += new
    _adjust(rows)
    summary: list[ShiftRow] = []
    if by_class:
        summary = _combine(names, rows, effect)
        _adjust(summary)
        summary = _ranked(summary, alpha)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    details = {
        "n_a": moments_a.n,
        "n_b": moments_b.n,
        "concepts": len(names),
        "test": "Welch's t-test (unequal variances), two-sided; t > 0: higher in b",
        "effect_size": effect,
        "effect": EFFECTS[effect],
        "correction": "Benjamini-Hochberg over all tested rows",
        "ranking": RANKING,
        "min_samples": int(min_samples),
    }
    details.update(info or {})
    return ShiftReport(_ranked(rows, alpha), alpha, by_class, summary, notes, details)


def _labels_for(labels: Any, n: int, which: str) -> np.ndarray:
    if labels is None:
        raise DataError(f"by_class needs labels for dataset {which} (labels_{which}=...)")
    arr = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    if arr.shape != (n,):
        raise DimensionMismatchError(f"{arr.size} labels for the {n} rows of dataset {which}")
    return arr


def shift_report(
    scores_a: Any,
    scores_b: Any,
    concepts: ConceptBank | Sequence[str],
    *,
    labels_a: Any = None,
    labels_b: Any = None,
    by_class: bool = False,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
) -> ShiftReport:
    """Test every concept for a shift between two score matrices.

    Args:
        scores_a (Tensor or array): concept scores ``[N_a, K]`` of dataset ``a`` (the reference).
        scores_b (Tensor or array): concept scores ``[N_b, K]`` of dataset ``b``.
        concepts (ConceptBank or list of str): the ``K`` concepts, in column order.
        labels_a / labels_b (array, optional): class of every row (ints or strings); needed for
            ``by_class``. Default: ``None``
        by_class (bool, optional): test within every class present in both datasets, so that a change
            of class mix is not mistaken for a shift; BH runs over all (class, concept) tests and
            :attr:`ShiftReport.summary` combines each concept's classes. Default: ``False``
        class_names (list of str, optional): names of integer labels. Default: ``None``
        alpha (float, optional): q level for ranking and significance. Default: ``0.05``
        min_samples (int, optional): groups with fewer rows in either dataset are reported untested,
            with a warning. Default: ``10``
        effect (str, optional): ``"glass"``: Glass's delta, the mean difference in standard
            deviations of ``a`` (the reference's spread is the unit; a shift changes the spread of
            ``b``, which a pooled SD would mix in); ``"hedges"``: Hedges' g (pooled SD). Default: glass

    Returns:
        ShiftReport: ranked rows with means, Welch's t, p, BH q and the effect size.
    """
    names = concepts.concepts if isinstance(concepts, ConceptBank) else check_concepts(concepts)
    a, b = _as_matrix(scores_a, "scores_a"), _as_matrix(scores_b, "scores_b")
    for which, s in (("a", a), ("b", b)):
        if s.shape[0] == 0:
            raise DataError(f"scores_{which} has no rows; give scores of at least {min_samples} images")
        if s.shape[1] != len(names):
            raise DimensionMismatchError(
                f"scores_{which} has {s.shape[1]} columns but {len(names)} concepts are named"
            )
    moments = ConceptMoments(len(names)), ConceptMoments(len(names))
    moments[0].update(a, _labels_for(labels_a, a.shape[0], "a") if by_class else None)
    moments[1].update(b, _labels_for(labels_b, b.shape[0], "b") if by_class else None)
    return report_from_moments(*moments, names, by_class=by_class, class_names=class_names, alpha=alpha,
                               min_samples=min_samples, effect=effect)


# --------------------------------------------------------------------------- images and feature stores


def _encoder_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in _ENCODER_FIELDS if k in a and k in b and a[k] != b[k]]


def _pick_key(store: Any, key: str | None, aligner: Any) -> str:
    if key is not None:
        return key
    return "target" if aligner is None and "target" in store.encoder_names else "source"


def _check_stores(stores: tuple[Any, Any], key: str, bank: ConceptBank, aligner: Any) -> None:
    ids = [dict(s.manifest["encoders"][s._check(key)]) for s in stores]
    problems = _encoder_diff(*ids)
    if problems:
        raise IncompatibleArtifactError(
            f"the two datasets' {key!r} features come from different encoders ({'; '.join(problems)}); "
            "extract both with the same backbone (and layer and preprocessing)"
        )
    if aligner is not None:
        problems = _encoder_diff(dict(getattr(aligner, "source_", None) or {}), ids[0])
        if problems:
            raise IncompatibleArtifactError(
                f"the aligner was fitted on another backbone than the stores' {key!r} features "
                f"({'; '.join(problems)}); use the aligner fitted for this backbone"
            )
    elif bank.space_id and ids[0].get("id") and ids[0]["id"] != bank.space_id:
        raise DimensionMismatchError(
            f"without an aligner the features must be the space's own image embeddings, but the stores' "
            f"{key!r} features come from {ids[0]['id']!r} and the concept bank from {bank.space_id!r}; "
            "pass aligner= (and its backbone), or a bank built with that space"
        )


def _store_class_names(stores: tuple[Any, Any], by_class: bool) -> list[str] | None:
    names = [s.class_names for s in stores]
    if by_class and names[0] and names[1] and list(names[0]) != list(names[1]):
        raise DataError(
            "the two datasets name their classes differently "
            f"({names[0][:5]}... vs {names[1][:5]}...); by-class tests need the same label set"
        )
    return list(names[0] or names[1] or []) or None


def _encoder_for(aligner: Any, backbone: Any) -> Any:
    if backbone is not None:
        if aligner is not None:
            from .aligners import check_compatible

            check_compatible(aligner, backbone)
        return backbone
    source = dict(getattr(aligner, "source_", None) or {})
    if aligner is None or not source.get("id"):
        raise DataError(
            "to score images give the encoder: backbone= (the backbone the aligner maps from), or, "
            "without an aligner, the space itself as backbone=; or pass feature stores"
        )
    from .backbones import load_backbone

    layer = source.get("layer")
    return load_backbone(source["id"], layer=None if layer in (None, "penultimate") else layer)


def _moments_of(store: Any, key: str, bank: ConceptBank, aligner: Any, by_class: bool) -> ConceptMoments:
    from .concepts.scores import concept_scores

    moments = ConceptMoments(len(bank))
    unlabelled = 0
    for shard in store.iter_shards([key]):
        if not shard["indices"].numel():
            continue
        scores = concept_scores(shard[key], bank, aligner)
        if by_class:
            labels = shard["labels"].numpy()
            keep = labels != _UNLABELLED
            unlabelled += int((~keep).sum())
            moments.update(scores[torch.from_numpy(keep)], labels[keep])
        else:
            moments.update(scores)
    if by_class and moments.n == 0 and unlabelled:
        raise DataError(f"{store!r} has no labels; test without by_class (--by-class), or label the images")
    return moments


def diagnose_shift(
    data_a: Any,
    data_b: Any,
    bank: ConceptBank,
    aligner: Any = None,
    backbone: Any = None,
    *,
    concepts: Sequence[str] | None = None,
    by_class: bool = False,
    key: str | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> ShiftReport:
    """Find the concepts two image datasets (or feature stores) differ in.

    Images are encoded once into feature stores (cached); scores stream shard by shard into per-concept
    counts, means and variances, so the datasets never need to fit in memory.

    Args:
        data_a: the reference dataset: a :class:`~t2c_captum.features.FeatureStore`, or anything
            :func:`~t2c_captum.data.open_source` accepts (folder, CSV, ``world:SPLIT``, a Dataset).
        data_b: the dataset compared with it (same kinds).
        bank (ConceptBank): the concepts, embedded in the aligner's target space.
        aligner (Aligner, optional): maps the backbone's features into the bank's space; ``None``
            scores the space's own image embeddings. Default: ``None``
        backbone (Backbone, optional): the encoder for images (the aligner's backbone; without an
            aligner, the space). Default: loaded from the aligner's record
        concepts (list of str, optional): test only these concepts of the bank. Default: all
        by_class (bool, optional): test within each class present in both datasets. Default: ``False``
        key (str, optional): which features of a store to read. Default: ``source`` (``target`` for
            stores that have it when there is no aligner)
        alpha (float, optional): q level for ranking and significance. Default: ``0.05``
        min_samples (int, optional): groups with fewer images are reported untested. Default: ``10``
        effect (str, optional): ``"glass"`` (Glass's delta) or ``"hedges"`` (Hedges' g); see
            :func:`shift_report`. Default: ``"glass"``
        batch_size / device / progress: feature extraction settings.

    Returns:
        ShiftReport: ranked tests; ``info`` names the datasets.
    """
    from .features import FeatureStore, extract_features

    if not isinstance(bank, ConceptBank):
        raise DataError(
            f"bank must be a ConceptBank (ConceptBank.build(space, concepts)), not {type(bank).__name__}"
        )
    if concepts is not None:
        bank = bank.subset(concepts)
    _check_options(alpha, min_samples, effect)
    encoder: list[Any] = []  # loaded once, only for data that is not a store yet

    def store_of(data: Any) -> Any:
        if isinstance(data, FeatureStore):
            return data
        if not encoder:
            encoder.append(_encoder_for(aligner, backbone))
        return extract_features(data, {"source": encoder[0]}, batch_size=batch_size, device=device,
                                progress=progress)

    stores = (store_of(data_a), store_of(data_b))
    feature_key = _pick_key(stores[0], key, aligner)
    _check_stores(stores, feature_key, bank, aligner)
    class_names = _store_class_names(stores, by_class)
    moments = [_moments_of(s, feature_key, bank, aligner, by_class) for s in stores]
    info = {"name_a": _name(data_a, stores[0]), "name_b": _name(data_b, stores[1]), "space": bank.space_id,
            "encoder": stores[0].manifest["encoders"][feature_key].get("id")}
    return report_from_moments(moments[0], moments[1], bank.concepts, by_class=by_class,
                               class_names=class_names, alpha=alpha, min_samples=min_samples, effect=effect,
                               info=info)


def _name(data: Any, store: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return str(store.manifest["dataset"].get("name") or getattr(data, "name", "data"))

