"""Concept vocabularies: named lists of concept texts, registered through the plugin hook."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .._exceptions import DataError

__all__ = ["load_vocabulary", "read_vocabulary_file"]


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


def load_vocabulary(name: str) -> list[str]:
    """A registered vocabulary by name, or a vocabulary file by path."""
    from ..plugins import get_registries

    registry = get_registries().vocabularies
    if name not in registry and Path(name).is_file():
        return read_vocabulary_file(name)
    return list(registry.get(name)())
