"""A vocabulary: concept texts, with optional prompts per concept and a group per concept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._exceptions import DataError

__all__ = ["Vocabulary", "check_concepts", "check_groups"]


@dataclass
class Vocabulary:
    """Concept texts, optionally with the prompts that describe each concept best.

    Args:
        concepts: the concept names, unique.
        prompts: concept → full prompts (e.g. the concept world's per-factor wording); ``None``
            means "fill the concept into templates".
        name: where the vocabulary came from.
        groups: concept → the name of its group of mutually exclusive alternatives (``"red"`` →
            ``"colour"``, so the other colours are its alternatives); ``None`` (or a concept left
            out) means unknown. Contrast scoring in :class:`~t2c_captum.retrieval.Retriever` asks a
            concept to beat its alternatives. Metadata only: groups do not change the embeddings.
    """

    concepts: list[str]
    prompts: dict[str, list[str]] | None = None
    name: str = "user"
    groups: dict[str, str] | None = None


def check_concepts(concepts: Sequence[str], what: str = "concept list") -> list[str]:
    """Stripped concept texts; empty lists, blank entries and duplicates are errors."""
    if isinstance(concepts, str):
        raise DataError(f"the {what} must be a list of strings, not one string ({concepts!r})")
    texts = [c.strip() if isinstance(c, str) else c for c in concepts]
    if not texts:
        raise DataError(f"the {what} is empty; give at least one concept")
    bad = [c for c in texts if not isinstance(c, str) or not c]
    if bad:
        raise DataError(f"the {what} holds {len(bad)} blank or non-string entries, e.g. {bad[0]!r}")
    dupes = [c for c, n in Counter(texts).items() if n > 1]
    if dupes:
        raise DataError(
            f"the {what} repeats {len(dupes)} concept(s): {', '.join(map(repr, dupes[:8]))}; "
            "remove the duplicates (list(dict.fromkeys(concepts)) keeps the first of each)"
        )
    return texts


def check_groups(groups: Mapping[str, str] | None, concepts: Sequence[str]) -> dict[str, str]:
    """``groups`` (concept → group name) checked against ``concepts``: every key must be one of
    them and every group a non-empty string. ``None`` gives ``{}``."""
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise DataError(f"groups must map concept → group name, not {type(groups).__name__}")
    known = set(concepts)
    unknown = [c for c in groups if c not in known]
    if unknown:
        raise DataError(
            f"groups name {len(unknown)} concept(s) that are not in the concepts: "
            f"{', '.join(map(repr, unknown[:8]))}; give groups only for the vocabulary's own concepts"
        )
    bad = {c: g for c, g in groups.items() if not isinstance(g, str) or not g.strip()}
    if bad:
        concept, group = next(iter(bad.items()))
        raise DataError(
            f"the group of a concept must be a non-empty string, got {group!r} for {concept!r}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    return {c: groups[c].strip() for c in concepts if c in groups}
