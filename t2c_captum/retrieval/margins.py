"""Margins: how far each image's scores lie above a query's cut-offs, in standard deviations over the
searched collection (AND = min, OR = max, NOT = negation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np

from .._exceptions import DataError
from .query import Concept, Query, as_query
from .thresholds import DEFAULT_THRESHOLD, Threshold

__all__ = ["Defaults", "evaluate_query"]

Defaults = Threshold | Mapping[str, Threshold]


def _default_for(defaults: Defaults, text: str) -> Threshold:
    if isinstance(defaults, Threshold):
        return defaults
    return defaults.get(text, DEFAULT_THRESHOLD)


def _no_rival(text: str) -> NoReturn:
    raise DataError(
        f"the contrast threshold of {text!r} needs the best score among its alternatives (the other "
        f"concepts of its group) per image: pass rivals={{{text!r}: ...}}, or use a z, q or cosine "
        "threshold"
    )


def _term_margin(
    term: Concept, scores: np.ndarray, raw: np.ndarray, rival: np.ndarray | None, default: Threshold
) -> np.ndarray:
    thr = term.threshold or default
    if thr.kind == "contrast":
        if rival is None:
            _no_rival(term.text)
        values = raw - rival
    else:
        values = raw if thr.kind == "cosine" else scores
    std = float(values.std())
    std = std if std > 0 else 1.0
    if thr.kind == "z":
        cut = float(values.mean()) + thr.value * std
    elif thr.kind == "quantile":
        cut = float(np.quantile(values, thr.value))
    else:  # cosine, contrast: absolute cut-offs
        cut = thr.value
    return (values - cut) / std


def evaluate_query(
    query: Query | str,
    scores: Mapping[str, Any],
    *,
    raw: Mapping[str, Any] | None = None,
    rivals: Mapping[str, Any] | None = None,
    default_threshold: Defaults = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Margins ``[N]`` of a query, given each concept's scores over the same ``N`` images.

    Thresholds are resolved over these ``N`` images (the searched collection): a term's margin is
    ``(score − cut-off) / std(score)``; for a contrast term ``(raw − rival − value) / std(raw −
    rival)``; AND = min, OR = max, NOT = −margin. Margin > 0: satisfied.

    Args:
        query: a :class:`Query` or a query string.
        scores: concept text → ``[N]`` scores (z and quantile thresholds apply to them).
        raw: concept text → ``[N]`` uncentred cosines for ``cosine`` and ``contrast`` thresholds.
            Default: ``scores``
        rivals: concept text → ``[N]`` the largest uncentred cosine among the concept's
            alternatives (the other concepts of its group), needed by its ``contrast`` terms.
            Default: ``None`` (a contrast term then raises :class:`~t2c_captum.DataError`)
        default_threshold: threshold of concepts written without one, or concept → threshold
            (concepts not in it: :data:`DEFAULT_THRESHOLD`). Default: z > 0

    Returns:
        ndarray: float64 ``[N]`` margins.
    """
    q = as_query(query)
    raw = scores if raw is None else raw
    missing = [c for c in q.concepts() if c not in scores or c not in raw]
    if missing:
        raise DataError(f"no scores for the query's concepts {missing}; give scores for {q.concepts()}")
    arrays = {c: np.asarray(scores[c], dtype=np.float64).reshape(-1) for c in q.concepts()}
    raws = {c: np.asarray(raw[c], dtype=np.float64).reshape(-1) for c in q.concepts()}
    contrasted = {t.text for t in q.terms()
                  if (t.threshold or _default_for(default_threshold, t.text)).kind == "contrast"}
    for text in contrasted:
        if rivals is None or text not in rivals:
            _no_rival(text)
    riv = {c: np.asarray(rivals[c], dtype=np.float64).reshape(-1)
           for c in contrasted} if rivals is not None else {}
    sizes = {a.shape[0] for a in [*arrays.values(), *raws.values(), *riv.values()]}
    if len(sizes) != 1 or 0 in sizes:
        raise DataError(
            f"every concept needs scores for the same, non-zero number of images; got sizes {sorted(sizes)}"
        )
    term = {
        t: _term_margin(t, arrays[t.text], raws[t.text], riv.get(t.text),
                        _default_for(default_threshold, t.text))
        for t in set(q.terms())
    }
    return q._margins(term)


def _margins_from_stats(
    q: Query,
    scores: np.ndarray,
    raw: np.ndarray,
    concepts: list[str],
    stats: Mapping[str, Mapping[str, Any]],
    default: Defaults,
    rivals: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Like :func:`evaluate_query`, with each concept's collection statistics given (not computed
    from the rows at hand)."""
    term: dict[Concept, np.ndarray] = {}
    for t in set(q.terms()):
        j, st = concepts.index(t.text), stats[t.text]
        thr = t.threshold or _default_for(default, t.text)
        if thr.kind == "contrast":
            if rivals is None or t.text not in rivals:
                _no_rival(t.text)
            std = float(st["contrast_std"]) or 1.0
            term[t] = (raw[:, j] - rivals[t.text] - thr.value) / std
            continue
        if thr.kind == "cosine":
            std = float(st["raw_std"]) or 1.0
            term[t] = (raw[:, j] - thr.value) / std
            continue
        std = float(st["std"]) or 1.0
        if thr.kind == "z":
            cut = float(st["mean"]) + thr.value * std
        else:
            cut = float(np.quantile(st["sample"], thr.value))
        term[t] = (scores[:, j] - cut) / std
    return q._margins(term)
