"""Ground-truth task sets of the concept world: shift pairs, retrieval queries, caption checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from t2c_captum._exceptions import WorldError
from t2c_captum.world.dataset import WorldDataset
from t2c_captum.world.generator import (
    FACTORS,
    SYNONYMS,
    Sample,
    _draw_factors,
    _invalid,
    _with_captions,
    check_factor,
    check_value,
)

__all__ = [
    "RETRIEVAL_QUERIES",
    "SHIFT_TASKS",
    "RetrievalQuery",
    "ShiftTask",
    "answer_set",
    "caption_check",
    "concept_term",
    "factor_words",
    "null_pair",
    "parse_query",
    "shift_pair",
]

_SHIFT_SEED = 9001
Condition = tuple[str, str]


# --------------------------------------------------------------------------- shift pairs


def _shift_samples(n: int, seed: int, side: int, forced: dict, forced_count: int) -> list[Sample]:
    order = np.random.default_rng([_SHIFT_SEED, seed, side, 99]).permutation(n)
    forced_rows = set(order[:forced_count].tolist())
    out = []
    for i in range(n):
        rng = np.random.default_rng([_SHIFT_SEED, seed, side, i])
        values = _draw_factors(rng, forced if i in forced_rows else {}, held_out=False)
        out.append(_with_captions(Sample(**values, seed=int(rng.integers(2**31 - 1))), rng))
    return out


def shift_pair(
    factor: str,
    value: str,
    strength: float,
    n: int = 1000,
    seed: int = 0,
    label_factor: str | None = None,
) -> tuple[WorldDataset, WorldDataset]:
    """Source and target datasets where the target over-represents ``factor == value``.

    Args:
        factor: the shifted factor.
        value: the over-represented value (canonical word).
        strength: fraction (0-1) of target images forced to have ``value``; the rest are drawn
            like the source (train distribution, no held-out pairs).
        n: images per side.
        seed: seed of the pair (different seeds give independent pairs).
        label_factor: labels of both datasets (default: ``factor``).

    Returns:
        ``(source, target)`` :class:`WorldDataset` objects.
    """
    value = check_value(factor, value)
    if not 0.0 <= strength <= 1.0:
        raise WorldError(f"strength must be between 0 and 1, got {strength!r}.")
    label = label_factor or factor
    source = _shift_samples(n, seed, 0, {}, 0)
    target = _shift_samples(n, seed, 1, {factor: value}, int(round(strength * n)))
    name = f"shift:{factor}={value}@{strength:g}"
    return (WorldDataset(f"{name}:source", factor=label, samples=source),
            WorldDataset(f"{name}:target", factor=label, samples=target))


def null_pair(
    n: int = 1000, seed: int = 0, label_factor: str | None = "shape"
) -> tuple[WorldDataset, WorldDataset]:
    """Two datasets from the same distribution, differing only by seed (no shift)."""
    return (WorldDataset(f"null:{seed}:a", factor=label_factor,
                         samples=_shift_samples(n, seed, 0, {}, 0)),
            WorldDataset(f"null:{seed}:b", factor=label_factor,
                         samples=_shift_samples(n, seed, 2, {}, 0)))


@dataclass(frozen=True)
class ShiftTask:
    """A named standard shift: the target over-represents ``factor == value`` by ``strength``."""

    name: str
    factor: str
    value: str
    strength: float

    def make(self, n: int = 1000, seed: int = 0) -> tuple[WorldDataset, WorldDataset]:
        """Build the ``(source, target)`` pair."""
        return shift_pair(self.factor, self.value, self.strength, n=n, seed=seed)


SHIFT_TASKS: tuple[ShiftTask, ...] = tuple(
    ShiftTask(f"{factor}={value}@{strength:g}", factor, value, strength)
    for factor, value in (("colour", "red"), ("shape", "star"), ("pattern", "striped"),
                          ("background", "noisy"))
    for strength in (0.25, 0.5, 0.9)
)


# --------------------------------------------------------------------------- retrieval


def concept_term(factor: str, value: str) -> str:
    """The concept text of ``factor == value`` ("red", "striped background", "on the left")."""
    if factor == "background":
        return f"{value} background"
    if factor == "position":
        return str(SYNONYMS["position"][value][0])
    return value


def _condition(term: str) -> Condition:
    """Map a query term ('red', 'striped background', 'on the left') to (factor, value)."""
    term = term.strip().lower()
    if term.endswith(" background"):
        return "background", check_value("background", term[: -len(" background")].strip())
    for factor in ("shape", "colour", "pattern", "size", "count"):
        if term in FACTORS[factor]:
            return factor, term
    for value, phrases in SYNONYMS["position"].items():
        if term in phrases:
            return "position", value
    known = [concept_term(f, v) for f in FACTORS for v in FACTORS[f]]
    raise _invalid("query term", term, known)


@dataclass(frozen=True)
class RetrievalQuery:
    """Images must satisfy every ``all`` condition and no ``none`` condition."""

    all: tuple[Condition, ...]
    none: tuple[Condition, ...] = ()

    @property
    def text(self) -> str:
        """The query in the syntax ``"red" & "circle" & ~"striped background"``."""
        terms = [f'"{concept_term(*c)}"' for c in self.all]
        terms += [f'~"{concept_term(*c)}"' for c in self.none]
        return " & ".join(terms)

    def matches(self, sample: Sample) -> bool:
        """Whether one sample is in the answer set."""
        facts = sample.factors
        return all(facts[f] == v for f, v in self.all) and not any(
            facts[f] == v for f, v in self.none
        )


def parse_query(text: str) -> RetrievalQuery:
    """Parse ``"red" & "circle" & ~"striped background"`` into a :class:`RetrievalQuery`."""
    parts = [p.strip() for p in text.split("&")]
    positive: list[Condition] = []
    negative: list[Condition] = []
    for part in parts:
        match = re.fullmatch(r'(~?)\s*"([^"]+)"', part)
        if not match:
            raise WorldError(
                f"cannot parse query part {part!r} of {text!r}; write quoted terms joined by "
                '"&", negated with "~", e.g. "red" & "circle" & ~"striped background".'
            )
        (negative if match.group(1) else positive).append(_condition(match.group(2)))
    if not positive:
        raise WorldError(f"query {text!r} needs at least one positive (un-negated) term.")
    return RetrievalQuery(tuple(positive), tuple(negative))


def answer_set(
    query: RetrievalQuery | str, dataset: WorldDataset | Sequence[Sample]
) -> set[int]:
    """Indices of the samples of ``dataset`` that satisfy ``query`` (object or query string)."""
    if isinstance(query, str):
        query = parse_query(query)
    samples = dataset.samples if isinstance(dataset, WorldDataset) else dataset
    return {i for i, sample in enumerate(samples) if query.matches(sample)}


RETRIEVAL_QUERIES: tuple[RetrievalQuery, ...] = tuple(
    parse_query(text)
    for text in (
        '"red" & "circle" & ~"striped background"',
        '"blue" & "striped"',
        '"star" & "noisy background"',
        '"yellow" & ~"square"',
        '"green" & "checkered" & "large"',
        '"triangle" & "dark background" & ~"small"',
        '"pink" & "hexagon" & "dotted"',
        '"orange" & "cross" & ~"light background"',
    )
)


# --------------------------------------------------------------------------- captions


def caption_check(sample: Sample) -> dict[str, list[str]]:
    """Words a correct caption of ``sample`` must contain one of, for shape and colour.

    Returns:
        ``{"shape": [...], "colour": [...]}``: canonical words and synonyms (shapes in singular
        and plural).
    """
    shapes = [form for pair in SYNONYMS["shape"][sample.shape] for form in pair]
    return {"shape": shapes, "colour": list(SYNONYMS["colour"][sample.colour])}


def factor_words(factor: str, value: str) -> list[str]:
    """Every word or phrase the captions use for ``factor == value``."""
    value = check_value(check_factor(factor), value)
    words = SYNONYMS[factor][value]
    return [w for item in words for w in (item if isinstance(item, tuple) else (item,))]
