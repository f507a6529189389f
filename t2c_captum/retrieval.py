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

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import torch

from ._exceptions import DataError
from .concepts.bank import ConceptBank, Vocabulary

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

ThresholdKind = Literal["z", "quantile", "cosine", "contrast"]

_PREFIX: dict[str, str] = {"z": "z", "quantile": "q", "cosine": "", "contrast": "c"}


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Threshold:
    """Where a concept starts to count as present.

    Args:
        kind: ``"z"`` (z-score of the concept's score over the searched collection), ``"quantile"``
            (a quantile of those scores, in [0, 1]), ``"cosine"`` (an absolute cosine) or
            ``"contrast"`` (the concept's cosine minus the largest cosine among its alternatives,
            the other concepts of its group: a cosine difference).
        value: the cut-off in that unit.
    """

    kind: ThresholdKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX:
            raise DataError(
                f"threshold kind must be 'z', 'quantile', 'cosine' or 'contrast', not {self.kind!r}"
            )
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise DataError(f"a {self.kind} threshold needs a finite number, got {self.value!r}")
        if self.kind == "quantile" and not 0.0 <= self.value <= 1.0:
            raise DataError(f"a quantile threshold must lie in [0, 1], got {self.value!r} (e.g. q0.9)")
        if self.kind == "cosine" and not -1.0 <= self.value <= 1.0:
            raise DataError(f"a cosine threshold must lie in [-1, 1], got {self.value!r}")

    def __str__(self) -> str:
        return f"{_PREFIX[self.kind]}{self.value:g}"


def zscore(value: float) -> Threshold:
    """Present when the score is ``value`` standard deviations above the collection's mean."""
    return Threshold("z", float(value))


def quantile(value: float) -> Threshold:
    """Present when the score is above the collection's ``value`` quantile (e.g. 0.9: the top 10%)."""
    return Threshold("quantile", float(value))


def cosine(value: float) -> Threshold:
    """Present when the (uncentred) cosine between image and concept is above ``value``."""
    return Threshold("cosine", float(value))


def contrast(value: float) -> Threshold:
    """Present when the concept's cosine beats the best of its alternatives (the other concepts of
    its group in the bank) by more than ``value`` (a cosine difference; 0: it wins its group)."""
    return Threshold("contrast", float(value))


#: Threshold of concepts written without one where no bank says which are alternatives (e.g.
#: :func:`evaluate_query`): above the collection's average score (z > 0). A :class:`Retriever`
#: uses ``contrast(0)`` instead for concepts that have alternatives in its bank.
DEFAULT_THRESHOLD = zscore(0.0)


# --------------------------------------------------------------------------- the query tree


class Query:
    """Base of the query nodes; ``&``, ``|`` and ``~`` combine them (strings become concepts)."""

    def __and__(self, other: Query | str) -> And:
        return And(_flatten(And, (self, _as_query(other))))

    def __rand__(self, other: Query | str) -> And:
        return And(_flatten(And, (_as_query(other), self)))

    def __or__(self, other: Query | str) -> Or:
        return Or(_flatten(Or, (self, _as_query(other))))

    def __ror__(self, other: Query | str) -> Or:
        return Or(_flatten(Or, (_as_query(other), self)))

    def __invert__(self) -> Query:
        return Not(self)

    def concepts(self) -> list[str]:
        """The concept texts of the query, unique, in order of appearance."""
        return list(dict.fromkeys(c.text for c in self.terms()))

    def terms(self) -> Iterator[Concept]:
        """Every concept node (with its threshold), depth first."""
        raise NotImplementedError

    def _margins(self, term: Mapping[Concept, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def _as_query(value: Query | str) -> Query:
    if isinstance(value, Query):
        return value
    if isinstance(value, str):
        return Concept(value)
    if isinstance(value, Threshold):
        raise DataError(
            "& and | bind tighter than >: write (C('red') > zscore(1)) & C('blue') with parentheses, "
            "or C('red', zscore(1)) & C('blue')"
        )
    raise DataError(f"queries combine concepts (Concept or str), not {type(value).__name__}")


def _flatten(kind: type[And] | type[Or], items: Sequence[Query]) -> tuple[Query, ...]:
    out: list[Query] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return tuple(out)


@dataclass(frozen=True)
class Concept(Query):
    """One concept term: ``text`` is present above ``threshold`` (default: the retriever's default).

    ``C("red") > zscore(1.5)`` (or ``> 0.3`` for a cosine) returns the concept with that threshold;
    put it in parentheses inside ``&`` / ``|`` (Python binds them tighter than ``>``), or write
    ``C("red", zscore(1.5))``.
    """

    text: str
    threshold: Threshold | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise DataError(f"a concept needs a non-empty text, got {self.text!r}")
        object.__setattr__(self, "text", self.text.strip())
        if self.threshold is not None and not isinstance(self.threshold, Threshold):
            raise DataError(
                "threshold must be zscore(..), quantile(..), cosine(..) or contrast(..), "
                f"not {self.threshold!r}"
            )

    def __gt__(self, threshold: Threshold | float) -> Concept:
        value = threshold if isinstance(threshold, Threshold) else cosine(float(threshold))
        return Concept(self.text, value)

    def terms(self) -> Iterator[Concept]:
        yield self

    def _margins(self, term: Mapping[Concept, np.ndarray]) -> np.ndarray:
        return term[self]

    def __str__(self) -> str:
        quoted = '"' + self.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return quoted + (f">{self.threshold}" if self.threshold is not None else "")


#: Short alias of :class:`Concept` for writing queries: ``C("red") & ~C("striped")``.
C = Concept


def _check_items(items: Any, name: str) -> tuple[Query, ...]:
    items = tuple(_as_query(i) for i in items)
    if not items:
        raise DataError(f"{name} needs at least one part")
    return items


@dataclass(frozen=True)
class And(Query):
    """All parts hold: the minimum of their margins."""

    items: tuple[Query, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items(self.items, "And"))

    def terms(self) -> Iterator[Concept]:
        for item in self.items:
            yield from item.terms()

    def _margins(self, term: Mapping[Concept, np.ndarray]) -> np.ndarray:
        return np.minimum.reduce([item._margins(term) for item in self.items])

    def __str__(self) -> str:
        return " & ".join(f"({i})" if isinstance(i, Or) else str(i) for i in self.items)


@dataclass(frozen=True)
class Or(Query):
    """Any part holds: the maximum of their margins."""

    items: tuple[Query, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items(self.items, "Or"))

    def terms(self) -> Iterator[Concept]:
        for item in self.items:
            yield from item.terms()

    def _margins(self, term: Mapping[Concept, np.ndarray]) -> np.ndarray:
        return np.maximum.reduce([item._margins(term) for item in self.items])

    def __str__(self) -> str:
        return " | ".join(str(i) for i in self.items)


@dataclass(frozen=True)
class Not(Query):
    """The part does not hold: its margin negated."""

    item: Query

    def __post_init__(self) -> None:
        object.__setattr__(self, "item", _as_query(self.item))

    def terms(self) -> Iterator[Concept]:
        yield from self.item.terms()

    def _margins(self, term: Mapping[Concept, np.ndarray]) -> np.ndarray:
        return -self.item._margins(term)

    def __str__(self) -> str:
        inner = str(self.item)
        return f"~({inner})" if isinstance(self.item, (And, Or)) else f"~{inner}"


# --------------------------------------------------------------------------- the string syntax


class QuerySyntaxError(DataError):
    """A query string that does not parse; the message points at the position with a caret."""

    def __init__(self, query: str, position: int, expected: str, what: str = "query") -> None:
        found = repr(query[position]) if position < len(query) else f"the end of the {what}"
        msg = (
            f"cannot parse the {what}: expected {expected} at position {position}, found {found}\n"
            f"    {query}\n    {' ' * position}^\n"
            'Write quoted concepts joined by & (and), | (or), ~ (not) and parentheses, each with an '
            'optional threshold: "red">z1.5 (z-score), "red">q0.9 (quantile), "red">0.3 (cosine), '
            '"red">c0 (contrast: beats the other concepts of its group); '
            'e.g. "red" & ("circle" | "star") & ~"striped background".'
        )
        super().__init__(msg)
        self.query, self.position, self.expected = query, position, expected


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][\w-]*")
_TERM_START = "a quoted concept (\"red\"), a bare word, '~' or '('"


class _Parser:
    """Recursive descent over the characters: or := and ('|' and)*; and := not ('&' not)*;
    not := '~' not | atom; atom := '(' or ')' | concept ['>' threshold]."""

    def __init__(self, text: str, what: str = "query") -> None:
        self.text, self.pos, self.what = text, 0, what

    def parse(self) -> Query:
        query = self._or()
        if self._peek() is not None:
            self._fail("'&', '|' or the end of the query")
        return query

    def _fail(self, expected: str, position: int | None = None) -> NoReturn:
        raise QuerySyntaxError(self.text, self.pos if position is None else position, expected, self.what)

    def _peek(self) -> str | None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else None

    def _or(self) -> Query:
        items = [self._and()]
        while self._peek() == "|":
            self.pos += 1
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(_flatten(Or, items))

    def _and(self) -> Query:
        items = [self._not()]
        while self._peek() == "&":
            self.pos += 1
            items.append(self._not())
        return items[0] if len(items) == 1 else And(_flatten(And, items))

    def _not(self) -> Query:
        if self._peek() == "~":
            self.pos += 1
            return Not(self._not())
        return self._atom()

    def _atom(self) -> Query:
        char = self._peek()
        if char == "(":
            start = self.pos
            self.pos += 1
            inner = self._or()
            if self._peek() != ")":
                self._fail(f"')' to close the '(' at position {start}")
            self.pos += 1
            return inner
        if char in ('"', "'"):
            text = self._quoted(char)
        elif char is not None and (match := _WORD.match(self.text, self.pos)):
            text = match.group()
            self.pos = match.end()
        else:
            self._fail(_TERM_START)
        return Concept(text, self._threshold())

    def _quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            chars.append(self.text[self.pos])
            self.pos += 1
        if self.pos >= len(self.text):
            self._fail(f"a closing {quote} for the concept opened at position {start}")
        self.pos += 1
        if not "".join(chars).strip():
            self._fail("a non-empty concept between the quotes", start)
        return "".join(chars)

    def _threshold(self) -> Threshold | None:
        if self._peek() != ">":
            return None
        self.pos += 1
        return self.threshold_body()

    def threshold_body(self) -> Threshold:
        self._peek()
        start = self.pos
        kind: ThresholdKind = "cosine"
        kinds: dict[str, ThresholdKind] = {"z": "z", "q": "quantile", "c": "contrast"}
        if self.pos < len(self.text) and self.text[self.pos].lower() in kinds:
            kind = kinds[self.text[self.pos].lower()]
            self.pos += 1
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            self._fail(
                "a threshold: z1.5 (z-score), q0.9 (quantile), 0.3 (cosine) or c0 (contrast)", start
            )
        self.pos = match.end()
        try:
            return Threshold(kind, float(match.group()))
        except DataError as exc:
            self._fail(f"a valid threshold ({exc})", start)


def parse_query(text: str) -> Query:
    """Parse the query syntax into a :class:`Query`.

    Concepts are quoted (``"striped background"``; a single word may go bare: ``red``); ``~`` is NOT,
    ``&`` AND, ``|`` OR, in that order of precedence, with parentheses to group. A concept may end
    with a threshold: ``"red">z1.5`` (z-score over the searched images), ``"red">q0.9``
    (quantile), ``"red">0.3`` (cosine) or ``"red">c0.02`` (contrast: red's cosine beats the best of
    its alternatives, the other concepts of its group, by more than 0.02). Without one it uses the
    retriever's default (contrast > 0 for concepts with alternatives in its bank, else z > 0) or
    :data:`DEFAULT_THRESHOLD` (z > 0) in :func:`evaluate_query`.

    Args:
        text (str): e.g. ``'"red" & ("circle" | "star") & ~"striped background">q0.8'``.

    Returns:
        Query: the parsed tree (``str(query)`` writes it back in this syntax).

    Raises:
        QuerySyntaxError: with the position of the problem and a caret under it.
    """
    if not isinstance(text, str):
        raise DataError(f"a query string is needed, got {type(text).__name__}")
    return _Parser(text).parse()


def parse_threshold(text: str) -> Threshold:
    """Parse a threshold as written after ``>`` in a query: ``z1.5``, ``q0.9``, ``0.3`` (cosine) or
    ``c0`` (contrast)."""
    parser = _Parser(str(text), "threshold")
    threshold = parser.threshold_body()
    if parser._peek() is not None:
        parser._fail("the end of the threshold")
    return threshold


def as_query(query: Query | str) -> Query:
    """``query`` itself, or the parse of a query string."""
    return query if isinstance(query, Query) else parse_query(query)


# --------------------------------------------------------------------------- evaluation


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


def _positive_terms(q: Query, negated: bool = False) -> Iterator[Concept]:
    """The concept terms not under an odd number of NOTs."""
    if isinstance(q, Concept):
        if not negated:
            yield q
    elif isinstance(q, Not):
        yield from _positive_terms(q.item, not negated)
    elif isinstance(q, (And, Or)):
        for item in q.items:
            yield from _positive_terms(item, negated)


def _covered(q: Query) -> bool:
    """Whether every image satisfying ``q`` must exceed some positive concept's cut-off (so an
    index's candidates for those concepts can hold all the answers)."""
    if isinstance(q, Concept):
        return True
    if isinstance(q, And):
        return any(_covered(i) for i in q.items)
    if isinstance(q, Or):
        return all(_covered(i) for i in q.items)
    return False  # NOT: its images are those far from a concept, which no index lists


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


# --------------------------------------------------------------------------- the retriever


@dataclass
class RetrievalResult:
    """The ranked results of one search.

    Attributes:
        query: the query searched.
        indices: ``[k]`` dataset indices of the results, best first.
        margins: ``[k]`` their margins (> 0: the image satisfies the query).
        scores: concept → ``[k]`` cosines of the results with that concept (uncentred).
        n_matching: images of the whole collection that satisfy the query.
        n_searched: images searched.
    """

    query: Query
    indices: torch.Tensor
    margins: torch.Tensor
    scores: dict[str, torch.Tensor]
    n_matching: int
    n_searched: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def matching(self) -> torch.Tensor:
        """``[k]`` booleans: which results satisfy the query."""
        return self.margins > 0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per result: rank, index, margin, matches, per-concept cosine."""
        return [
            {
                "rank": r + 1,
                "index": int(self.indices[r]),
                "margin": float(self.margins[r]),
                "matches": bool(self.margins[r] > 0),
                "scores": {c: float(s[r]) for c, s in self.scores.items()},
            }
            for r in range(len(self))
        ]

    def grid(
        self, source: Any, path: str | os.PathLike[str], *, cols: int = 4, tile: float = 2.0
    ) -> Path:
        """Save the results as an image grid (PNG by default) titled with rank, index and margin.

        Args:
            source: the images searched: an :class:`~t2c_captum.data.ImageSource`, a Dataset or
                anything :func:`~t2c_captum.data.open_source` takes (same order as the features).
            path: the file to write (format from the suffix).
            cols (int, optional): images per row. Default: ``4``
            tile (float, optional): inches per image. Default: ``2.0``

        Returns:
            Path: ``path``.
        """
        from matplotlib.figure import Figure

        from .data import open_source

        if len(self) == 0:
            raise DataError("the search returned no images, so there is no grid to draw")
        if cols < 1:
            raise DataError(f"cols must be at least 1, got {cols}")
        images = open_source(source)
        n_cols = min(cols, len(self))
        n_rows = math.ceil(len(self) / n_cols)
        fig = Figure(figsize=(tile * n_cols, (tile + 0.25) * n_rows + 0.4), layout="constrained")
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for row in self.rows():
            index = row["index"]
            if index >= len(images):
                raise DataError(
                    f"result index {index} is outside the {len(images)} images given to grid(); "
                    "pass the same images that were searched"
                )
            ax = axes.flat[row["rank"] - 1]
            ax.imshow(images.load(index)[0])
            ax.set_title(f"#{row['rank']} [{index}] {row['margin']:+.2f}", fontsize=8,
                         color="black" if row["matches"] else "firebrick")
        fig.suptitle(str(self.query), fontsize=9)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
        return out


def _ranked(
    q: Query,
    ids: np.ndarray,
    margins: np.ndarray,
    raw: np.ndarray,
    k: int,
    matching_only: bool,
    n_searched: int,
    info: dict[str, Any],
) -> RetrievalResult:
    """The ``k`` rows with the largest margins (ties by dataset index), as a result; ``raw`` holds
    the rows' cosines with the query's concepts, in ``q.concepts()`` order."""
    order = np.lexsort((ids, -margins))[:k]
    if matching_only:
        order = order[margins[order] > 0]
    return RetrievalResult(
        query=q,
        indices=torch.from_numpy(ids[order].copy()),
        margins=torch.from_numpy(margins[order].astype(np.float32)),
        scores={c: torch.from_numpy(raw[order, j].astype(np.float32)) for j, c in enumerate(q.concepts())},
        n_matching=int((margins > 0).sum()),
        n_searched=n_searched,
        info=info,
    )


class Retriever:
    """Search images for a query of concepts, on aligned backbone features or space embeddings.

    Args:
        bank_or_space: a :class:`~t2c_captum.concepts.ConceptBank` (every query concept must be in
            it; an unknown one raises :class:`~t2c_captum.UnknownNameError` with close matches), or a
            Space: then each search embeds the query's own concept texts with the space's templates.
        aligner (Aligner, optional): maps backbone features into the space; ``None`` for features
            that already are space embeddings. Default: ``None``
        default_threshold (Threshold, optional): for concepts written without one; a threshold
            given here applies to every such concept. ``None`` chooses per concept: ``contrast(0)``
            (the concept beats the other concepts of its group, see
            :meth:`~t2c_captum.concepts.ConceptBank.alternatives`) where the bank knows alternatives
            of it, ``zscore(0)`` elsewhere (which ``info["defaults"]`` of a result records).
            Contrast raised mean precision@10 on the concept world's known-answer queries from
            0.79 to 1.00 for the tiny CLIP's own embeddings (docs/retrieval.md). Default: ``None``
        centre (bool, optional): subtract each image's mean cosine over all the bank's concepts
            before z and quantile thresholds (removes what an image shares with every text, which
            raised precision@10 on the concept world by 0.01–0.10; contrast and cosine thresholds
            use uncentred cosines, and centring would cancel in a contrast anyway). ``None``:
            centre when the bank holds at least 8 concepts (never for a bank made of the query's own
            2–3 texts, whose mean would be the query itself). Default: ``None``
        key (str, optional): the features' name in a feature store. Default: ``"source"``
        batch_size (int, optional): rows scored at once for in-memory features. Default: ``8192``

    Examples::

        >>> retriever = Retriever(ConceptBank.from_vocabulary(space, "world"), aligner)
        >>> result = retriever.search('"red" & ~"striped background"', store, k=16)
        >>> result.grid(source, "red.png")
    """

    def __init__(
        self,
        bank_or_space: Any,
        aligner: Any = None,
        *,
        default_threshold: Threshold | None = None,
        centre: bool | None = None,
        key: str = "source",
        batch_size: int = 8192,
    ) -> None:
        if default_threshold is not None and not isinstance(default_threshold, Threshold):
            raise DataError(
                "default_threshold must be None (automatic), zscore(..), quantile(..), cosine(..) "
                f"or contrast(..), not {default_threshold!r}"
            )
        is_bank = isinstance(bank_or_space, ConceptBank)
        if not is_bank and not hasattr(bank_or_space, "encode_prompt_sets"):
            raise DataError(
                f"Retriever needs a ConceptBank or a Space, not {type(bank_or_space).__name__}"
            )
        self.bank = bank_or_space if is_bank else None
        self.space = None if is_bank else bank_or_space
        self.aligner = aligner
        self.default_threshold = default_threshold
        self.centre = centre
        self.key = key
        self.batch_size = batch_size

    def bank_for(self, query: Query | str) -> ConceptBank:
        """The bank a search of ``query`` scores with (checks that it knows every concept, and the
        alternatives of every concept with a contrast threshold)."""
        q = as_query(query)
        if self.bank is not None:
            self.bank.indices(q.concepts())
            bank = self.bank
        else:
            bank = ConceptBank.build(self.space, Vocabulary(q.concepts(), name="query"))
        self.thresholds(q, bank)
        return bank

    def thresholds(self, query: Query | str, bank: ConceptBank | None = None) -> dict[str, Threshold]:
        """The default threshold of each of the query's concepts (used where a term gives none).

        Raises:
            DataError: a contrast threshold (written or default) on a concept without alternatives.
        """
        q = as_query(query)
        bank = bank if bank is not None else self.bank_for(q)
        defaults: dict[str, Threshold] = {}
        for text in q.concepts():
            if self.default_threshold is not None:
                defaults[text] = self.default_threshold
            else:
                defaults[text] = contrast(0.0) if bank.alternatives(text) else zscore(0.0)
        for t in q.terms():
            if (t.threshold or defaults[t.text]).kind == "contrast" and not bank.alternatives(t.text):
                group = bank.groups.get(t.text)
                why = (f"it is the only concept of group {group!r} in the bank" if group is not None
                       else "the bank has no group for it" + ("" if bank.groups else
                                                              " (the bank has no groups at all)"))
                raise DataError(
                    f"a contrast threshold on {t.text!r} needs its alternatives (other concepts of "
                    f"its group in the bank), but {why}. Give the vocabulary groups "
                    "(Vocabulary(..., groups={concept: group}), a JSON {\"groups\": {...}} file or a "
                    "CSV 'group' column) with other concepts of its group, or use a z, q or cosine "
                    f'threshold: "{t.text}">z0'
                )
        return defaults

    def _info(self, bank: ConceptBank, centre: bool, defaults: Mapping[str, Threshold]) -> dict[str, Any]:
        auto = "auto: contrast>c0 where the concept has alternatives in the bank, else z>0"
        return {
            "centred": centre,
            "default_threshold": auto if self.default_threshold is None else str(self.default_threshold),
            "defaults": {c: str(t) for c, t in defaults.items()},
            "bank": len(bank),
            "space_id": bank.space_id,
        }

    def search(
        self,
        query: Query | str,
        data: Any,
        k: int = 10,
        *,
        matching_only: bool = False,
        index: Any = None,
        candidates: int | None = None,
    ) -> RetrievalResult:
        """The ``k`` images with the largest margins.

        Args:
            query: a :class:`Query` or a query string (:func:`parse_query`).
            data: a :class:`~t2c_captum.features.FeatureStore` (or its directory), read shard by
                shard, or in-memory features ``[N, d]`` (indices are then ``0..N-1``).
            k (int, optional): results wanted. Default: ``10``
            matching_only (bool, optional): drop results whose margin is not positive. Default: ``False``
            index (FaissIndex, optional): a :class:`~t2c_captum.faiss_index.FaissIndex` built for
                ``data`` and this retriever's aligner: candidates come from the index (see
                :meth:`_search_index` for what stays exact). Default: ``None`` (exact chunked search)
            candidates (int, optional): rows fetched from the index per positive concept.
                Default: ``max(50·k, 2000)``

        Returns:
            RetrievalResult: the ranked results.
        """
        q = as_query(query)
        if not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        bank = self.bank_for(q)
        defaults = self.thresholds(q, bank)
        concepts = q.concepts()
        centre = self.centre if self.centre is not None else len(bank) >= 8
        if index is not None:
            if _covered(q):
                return self._search_index(q, data, k, bank, centre, index, matching_only, candidates,
                                          defaults)
            fallback = "exact (the query has a branch without a positive concept)"
        else:
            fallback = None
        contrasted = _contrasted(q, defaults)
        rival_cols = [bank.indices(bank.alternatives(c)) for c in contrasted]
        indices, raw, mean, rival = self._collect(data, bank, bank.indices(concepts), rival_cols)
        scores = raw - mean[:, None] if centre else raw
        margins = evaluate_query(
            q,
            {c: scores[:, j] for j, c in enumerate(concepts)},
            raw={c: raw[:, j] for j, c in enumerate(concepts)},
            rivals={c: rival[:, j] for j, c in enumerate(contrasted)},
            default_threshold=defaults,
        )
        return _ranked(
            q, indices, margins, raw, k, matching_only, n_searched=int(margins.shape[0]),
            info={**self._info(bank, centre, defaults), **({"index": fallback} if fallback else {})},
        )

    def _search_index(
        self,
        q: Query,
        data: Any,
        k: int,
        bank: ConceptBank,
        centre: bool,
        index: Any,
        matching_only: bool,
        candidates: int | None,
        defaults: Mapping[str, Threshold],
    ) -> RetrievalResult:
        """Search with a FAISS index: candidates from the index, margins computed exactly on them.

        For every positive (not negated) concept of the query the index returns the ``candidates``
        rows with the largest score in the direction that concept's threshold uses (its embedding,
        or its embedding minus the bank's mean concept when z/quantile scores are centred; its raw
        embedding for contrast and cosine thresholds). On the union of those rows every term's
        score is then computed exactly from the stored vectors, NOT terms and thresholds included
        (a contrast from the vectors' cosines with the concept and with each of its alternatives).
        What stays exact: every score, the z-score cut-offs and standard deviations (from the
        collection's mean and covariance, kept with the index), cosine and contrast cut-offs,
        AND/OR/NOT, the ranking among candidates. What may differ from the exact search: an image
        that is not among the candidates of any positive concept is not returned (IVF adds its own
        approximation to candidate lists); quantile cut-offs and the standard deviation of a
        contrast (which takes a maximum over the alternatives, so no mean and covariance give it)
        are estimated from the index's row sample (exact when the store has no more rows than the
        sample; ``info["estimated_from_sample"]`` says so); ``n_matching`` counts matching
        candidates only (a lower bound, flagged in ``info``).
        """
        from .features import FeatureStore

        if isinstance(data, (str, os.PathLike)):
            data = FeatureStore(data)
        if not isinstance(data, FeatureStore):
            raise DataError("searching with an index needs the FeatureStore it was built from")
        index.check(data, self.aligner, self.key)
        concepts = q.concepts()
        emb = bank.embeddings.double().numpy()
        cols = bank.indices(concepts)
        raw_w = emb[cols].T  # [dim, c]
        mean_w = emb.mean(0)
        cen_w = raw_w - mean_w[:, None] if centre else raw_w
        n_cand = int(candidates or max(50 * k, 2000))
        positive = list(dict.fromkeys(t.text for t in _positive_terms(q)))
        by_term: dict[str, np.ndarray] = {}
        for text in positive:
            j = concepts.index(text)
            term_kinds = {(t.threshold or defaults[text]).kind for t in q.terms() if t.text == text}
            for kind in term_kinds:
                by_term[f"{text}:{kind}"] = (raw_w if kind in ("cosine", "contrast") else cen_w)[:, j]
        directions = np.stack(list(by_term.values())).astype(np.float32)
        _, found = index.search(directions, n_cand)
        ids = np.unique(found[found >= 0])
        vectors = index.reconstruct(ids).astype(np.float64)
        raw = vectors @ raw_w
        scores = vectors @ cen_w
        stats = {}
        cen_mean, cen_std = index.moments(cen_w)
        raw_mean, raw_std = index.moments(raw_w)
        kinds = {(t.threshold or defaults[t.text]).kind for t in q.terms()}
        sample = np.asarray(index.sample, dtype=np.float64)
        sampled = sample @ cen_w if "quantile" in kinds else None
        contrasted = _contrasted(q, defaults)
        rivals: dict[str, np.ndarray] = {}
        contrast_std: dict[str, float] = {}
        for c in contrasted:
            alt_w = emb[bank.indices(bank.alternatives(c))].T  # [dim, a]
            rivals[c] = (vectors @ alt_w).max(1)
            diff = sample @ emb[bank.index(c)] - (sample @ alt_w).max(1)
            contrast_std[c] = float(diff.std()) if diff.size else 0.0
        for j, c in enumerate(concepts):
            stats[c] = {"mean": cen_mean[j], "std": cen_std[j], "raw_std": raw_std[j],
                        "raw_mean": raw_mean[j], "sample": None if sampled is None else sampled[:, j],
                        "contrast_std": contrast_std.get(c, 1.0)}
        margins = _margins_from_stats(q, scores, raw, concepts, stats, defaults, rivals)
        estimated = [w for w, used in (("quantile cut-offs", "quantile" in kinds),
                                       ("contrast standard deviations", bool(contrasted))) if used]
        return _ranked(
            q, ids, margins, raw, k, matching_only, n_searched=len(index),
            info={**self._info(bank, centre, defaults), "index": index.kind,
                  "candidates": int(ids.shape[0]), "n_matching_is_lower_bound": True,
                  **({"estimated_from_sample": f"{', '.join(estimated)} (from the index's sample "
                                               f"of {sample.shape[0]} rows)"} if estimated else {})},
        )

    def _rows_and_chunks(
        self, data: Any, bank: ConceptBank
    ) -> tuple[int, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        """The number of rows ``data`` holds, and its ``(indices, scores [n, K])`` chunks."""
        from .concepts.scores import concept_scores, iter_store_scores
        from .features import FeatureStore

        if isinstance(data, (str, os.PathLike)):
            data = FeatureStore(data)
        if isinstance(data, FeatureStore):
            return len(data), iter_store_scores(data, bank, self.aligner, key=self.key)
        from .aligners.base import as_tensor_2d

        features = as_tensor_2d(data, "features")

        def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, features.shape[0], self.batch_size):
                chunk = features[start : start + self.batch_size]
                rows = torch.arange(start, start + chunk.shape[0])
                yield rows, concept_scores(chunk, bank, self.aligner, batch_size=self.batch_size)

        return features.shape[0], chunks()

    def _collect(
        self, data: Any, bank: ConceptBank, columns: list[int], rival_columns: Sequence[list[int]] = ()
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One pass over the data keeping only the query's columns, each row's mean score and, per
        entry of ``rival_columns``, each row's largest score over those columns (a contrast
        concept's alternatives): memory O(N × query concepts).

        The outputs are allocated once, before the pass: small arrays appended chunk by chunk
        between the chunks' large temporaries fragment the heap so badly that 200,000 rows of
        2048-d features held 1.3 GB (``benchmarks/stream_memory.py``)."""
        n, chunks = self._rows_and_chunks(data, bank)
        out = _RowBuffers(n, len(columns), len(rival_columns))
        for rows, scores in chunks:
            block = out.take(rows.shape[0])
            block[0][:] = rows.numpy()
            block[1][:] = scores[:, columns].numpy()
            block[2][:] = scores.mean(1, dtype=torch.float64).numpy()
            for j, alts in enumerate(rival_columns):
                block[3][:, j] = scores[:, alts].amax(1).numpy()
        if not out.filled:
            raise DataError("there are no images to search (empty features or an unfinished feature store)")
        return out.result()


class _RowBuffers:
    """Preallocated per-row outputs of a search pass (indices, query columns, mean, rivals), grown
    only if the data turns out to hold more rows than announced (a store still being written)."""

    def __init__(self, n: int, n_columns: int, n_rivals: int) -> None:
        self.arrays = [np.empty(n, np.int64), np.empty((n, n_columns)), np.empty(n),
                       np.empty((n, n_rivals))]
        self.filled = 0

    def take(self, rows: int) -> list[np.ndarray]:
        """Views of the next ``rows`` rows of every array."""
        end = self.filled + rows
        if end > len(self.arrays[0]):
            grown = max(end, 2 * len(self.arrays[0]))
            self.arrays = [np.resize(a, (grown, *a.shape[1:])) for a in self.arrays]
        views = [a[self.filled : end] for a in self.arrays]
        self.filled = end
        return views

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        idx, raw, mean, rival = (a[: self.filled] for a in self.arrays)
        return idx, raw, mean, rival


def _contrasted(q: Query, defaults: Mapping[str, Threshold]) -> list[str]:
    """The query's concepts with at least one contrast term, in query order."""
    used = {t.text for t in q.terms() if (t.threshold or defaults[t.text]).kind == "contrast"}
    return [c for c in q.concepts() if c in used]
