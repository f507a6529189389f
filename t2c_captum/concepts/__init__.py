"""Concept vocabularies: named lists of concept texts, registered through the plugin hook."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .._exceptions import DataError
from .bank import ConceptBank, Vocabulary, check_concepts
from .scores import ConceptSummary, concept_scores, iter_store_scores, summarize_scores, top_concepts

__all__ = [
    "ConceptBank",
    "ConceptSummary",
    "Vocabulary",
    "check_concepts",
    "concept_scores",
    "iter_store_scores",
    "load_vocabulary",
    "read_vocabulary_file",
    "resolve_vocabulary",
    "summarize_scores",
    "top_concepts",
]


def read_vocabulary_file(path: str | os.PathLike[str]) -> list[str]:
    """Concepts from a ``.txt`` (one per line), ``.json`` (a list of strings) or ``.csv`` (first
    column, or the ``concept`` column) file; blank lines and ``#`` comments are ignored."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"vocabulary file {str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(c, str) for c in data):
            raise DataError(f"{str(file)!r} must hold a JSON list of strings")
        concepts = data
    elif file.suffix == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r]
        col = 0
        if rows and "concept" in [c.strip().lower() for c in rows[0]]:
            col = [c.strip().lower() for c in rows[0]].index("concept")
            rows = rows[1:]
        concepts = [r[col] for r in rows]
    else:
        concepts = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    out = list(dict.fromkeys(c.strip() for c in concepts if c.strip()))
    if not out:
        raise DataError(f"vocabulary file {str(file)!r} holds no concepts")
    return out


def resolve_vocabulary(name: str) -> Vocabulary:
    """A registered vocabulary by name, or a vocabulary file by path, with its prompts if any.

    A registered loader returns a list of concept strings, or a mapping concept → prompts.
    """
    from ..plugins import get_registries

    registry = get_registries().vocabularies
    if name not in registry and Path(name).is_file():
        return Vocabulary(read_vocabulary_file(name), name=str(name))
    loaded = registry.get(name)()
    if isinstance(loaded, dict):
        concepts = check_concepts(list(loaded), f"vocabulary {name!r}")
        return Vocabulary(concepts, {c: list(loaded[c]) for c in concepts}, name=name)
    return Vocabulary(check_concepts(list(loaded), f"vocabulary {name!r}"), name=name)


def load_vocabulary(name: str) -> list[str]:
    """The concepts of a registered vocabulary by name, or of a vocabulary file by path."""
    return resolve_vocabulary(name).concepts
