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

from .diagnose import diagnose_shift, report_from_moments, shift_report
from .moments import ConceptMoments
from .report import ShiftReport, ShiftRow
from .statistics import EFFECTS as EFFECTS
from .statistics import RANKING as RANKING

__all__ = [
    "ConceptMoments", "ShiftReport", "ShiftRow", "diagnose_shift", "report_from_moments", "shift_report",
]
