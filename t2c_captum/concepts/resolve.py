"""Vocabularies by name or file: registered loaders and ``.txt``/``.json``/``.csv`` files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .._exceptions import DataError
from .vocabulary import Vocabulary, check_concepts, check_groups

__all__ = [
    "default_vocabulary",
    "load_vocabulary",
    "read_vocabulary_file",
    "resolve_vocabulary",
]


def read_vocabulary_file(path: str | os.PathLike[str]) -> list[str]:
    """Concepts from a ``.txt`` (one per line), ``.json`` (a list of strings, or an object with
    ``"groups"``) or ``.csv`` (first column, or the ``concept`` column) file; blank lines and ``#``
    comments are ignored. :func:`resolve_vocabulary` also reads the groups (see there)."""
    return _read_file(path)[0]


def _read_file(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, str] | None]:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"vocabulary file {str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    pairs: list[tuple[str, str | None]]
    if file.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("groups"), dict) and set(data) == {"groups"}:
            groups = data["groups"]
            if not all(isinstance(g, str) and isinstance(v, list) for g, v in groups.items()) or not all(
                isinstance(c, str) for v in groups.values() for c in v
            ):
                raise DataError(
                    f'{str(file)!r}: "groups" must map each group name to a list of concept strings'
                )
            pairs = [(c, g) for g, members in groups.items() for c in members]
        elif isinstance(data, list) and all(isinstance(c, str) for c in data):
            pairs = [(c, None) for c in data]
        else:
            raise DataError(
                f"{str(file)!r} must hold a JSON list of strings, or "
                '{"groups": {"colour": ["red", "blue"], "shape": ["circle", "star"]}}'
            )
    elif file.suffix == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r]
        col, group_col = 0, None
        header = [c.strip().lower() for c in rows[0]] if rows else []
        if "concept" in header:
            col = header.index("concept")
            group_col = header.index("group") if "group" in header else None
            rows = rows[1:]
        pairs = [
            (r[col], r[group_col].strip() or None if group_col is not None and group_col < len(r) else None)
            for r in rows
        ]
    else:
        pairs = [(line, None) for line in text.splitlines() if not line.lstrip().startswith("#")]
    concepts: dict[str, None] = {}
    groups_of: dict[str, str] = {}
    for raw, group in pairs:
        concept = raw.strip()
        if not concept:
            continue
        concepts.setdefault(concept)
        if group is not None and groups_of.setdefault(concept, group) != group:
            raise DataError(
                f"{str(file)!r} puts {concept!r} in two groups, {groups_of[concept]!r} and "
                f"{group!r}; a concept belongs to one group"
            )
    if not concepts:
        raise DataError(f"vocabulary file {str(file)!r} holds no concepts")
    return list(concepts), groups_of or None


def resolve_vocabulary(name: str) -> Vocabulary:
    """A registered vocabulary by name, or a vocabulary file by path, with its prompts and groups.

    A registered loader returns a list of concept strings, a mapping concept → prompts, or a
    :class:`Vocabulary` (which may carry ``groups``: concept → group name). A file gives groups as
    a JSON object ``{"groups": {"colour": ["red", "blue"], "shape": ["circle", "star"]}}`` or a CSV
    with ``concept`` and ``group`` columns; plain lists and ``.txt`` files have none.
    """
    from ..plugins import get_registries

    registry = get_registries().vocabularies
    if name not in registry and Path(name).is_file():
        concepts, groups = _read_file(name)
        return Vocabulary(concepts, name=str(name), groups=groups)
    loaded = registry.get(name)()
    if isinstance(loaded, Vocabulary):
        concepts = check_concepts(list(loaded.concepts), f"vocabulary {name!r}")
        return Vocabulary(
            concepts,
            loaded.prompts,
            name=loaded.name if loaded.name != "user" else name,
            groups=check_groups(loaded.groups, concepts) or None,
        )
    if isinstance(loaded, dict):
        concepts = check_concepts(list(loaded), f"vocabulary {name!r}")
        return Vocabulary(concepts, {c: list(loaded[c]) for c in concepts}, name=name)
    return Vocabulary(check_concepts(list(loaded), f"vocabulary {name!r}"), name=name)


def default_vocabulary(target: object) -> str:
    """The name of the vocabulary that names concepts in ``target`` when none is given: a space's
    ``default_vocabulary`` (``"world"`` for the concept world's tiny CLIP), else ``"visual"``."""
    return str(getattr(target, "default_vocabulary", "visual"))


def load_vocabulary(name: str) -> list[str]:
    """The concepts of a registered vocabulary by name, or of a vocabulary file by path."""
    return resolve_vocabulary(name).concepts
