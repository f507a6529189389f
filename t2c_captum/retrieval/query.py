"""The query language: the tree of concept terms (``Concept``, ``And``, ``Or``, ``Not``) and its string
syntax (a recursive-descent parser whose errors point at the position with a caret)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from .._exceptions import DataError, QuerySyntaxError
from .thresholds import Threshold, ThresholdKind, cosine

__all__ = [
    "And",
    "C",
    "Concept",
    "Not",
    "Or",
    "Query",
    "QuerySyntaxError",
    "as_query",
    "parse_query",
    "parse_threshold",
]

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
