"""Text-constrained retrieval: the images whose concept scores satisfy a boolean query of concepts.

A query combines concepts with AND (``&``), OR (``|``) and NOT (``~``), each concept with an optional
threshold, in Python (``C("red") & ~C("striped background")``) or as a string
(``'"red" & "circle">z1 & ~"striped background"'``, see :func:`parse_query`). Every concept term
gives each image a *margin*: how far its score lies above the term's cut-off, in units of the
standard deviation of that score over the searched collection. AND takes the minimum of its parts'
margins, OR the maximum, NOT the negation (Gödel fuzzy logic); an image satisfies the query when
its margin is positive, and results are ranked by margin.

Thresholds: ``z`` (z-score of the cosine over the collection), ``q`` (a quantile of it), a plain
number (an absolute cosine) and ``c`` (*contrast*: the concept's cosine minus the best cosine
among its alternatives, the other concepts of its group in the bank: ``"red"`` against the other
colours). ``"red">c0`` holds when red beats every other colour, which is what zero-shot
classification asks; a cosine to "red" alone is also high for orange and pink objects. By default
a :class:`Retriever` scores concepts that have alternatives in its bank by contrast > 0 and the
others by z > 0.
"""

from __future__ import annotations

# Defaults, ThresholdKind and as_query, public names of the former single module outside __all__,
# stay importable from here.
from .margins import Defaults as Defaults
from .margins import evaluate_query
from .query import And, C, Concept, Not, Or, Query, QuerySyntaxError, parse_query, parse_threshold
from .query import as_query as as_query
from .result import RetrievalResult
from .retriever import Retriever
from .thresholds import DEFAULT_THRESHOLD, Threshold, contrast, cosine, quantile, zscore
from .thresholds import ThresholdKind as ThresholdKind

__all__ = [
    "DEFAULT_THRESHOLD",
    "And",
    "C",
    "Concept",
    "Not",
    "Or",
    "Query",
    "QuerySyntaxError",
    "RetrievalResult",
    "Retriever",
    "Threshold",
    "contrast",
    "cosine",
    "evaluate_query",
    "parse_query",
    "parse_threshold",
    "quantile",
    "zscore",
]
