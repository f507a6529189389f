"""The shift report: :class:`ShiftRow` (one test) and :class:`ShiftReport` (ranked rows, their
selection, and rendering as JSON, CSV and a bar plot)."""

from __future__ import annotations

import csv
import json
import math
import os
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import DataError, UnknownNameError


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
