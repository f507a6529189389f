"""Recorded model identities: one comparison, one list of compared fields per artifact kind.

An artifact (aligner, concept bottleneck, concept bank, decoder, feature store, vector index) records
the identity of the models it was made with (``Backbone.identity`` / ``Space.identity``); loading it
for other models lists every field that differs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["COMPARED", "artifact_stem", "identity_differences", "recorded_id"]

#: The identity fields compared when each kind of artifact is used with a model (``None``: every
#: field either side records).
COMPARED: dict[str, tuple[str, ...] | None] = {
    "aligner": ("id", "layer", "preprocess", "feature_dim", "embed_dim", "dim", "weights"),
    "cbm": ("id", "layer", "preprocess", "feature_dim", "embed_dim", "dim"),
    "decoder": ("id", "preprocess", "embed_dim", "dim", "weights"),
    "store": ("id", "layer", "preprocess", "dim"),
    "bank": ("id",),
    "index": None,
}


def identity_differences(
    kind: str,
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    prefix: str = "",
    names: tuple[str, str] = ("saved", "given"),
) -> list[str]:
    """``"PREFIXfield: saved X, given Y"`` for each field of ``COMPARED[kind]`` the two identities
    disagree on (fields only one side records are skipped, except for kinds that compare every field).
    ``names`` label the two sides in the message."""
    fields = COMPARED[kind]
    if fields is None:
        keys: list[str] = sorted(set(saved) | set(given))
    else:
        keys = [k for k in fields if k in saved and k in given]
    first, second = names
    return [
        f"{prefix}{k}: {first} {saved.get(k)!r}, {second} {given.get(k)!r}"
        for k in keys
        if saved.get(k) != given.get(k)
    ]


def recorded_id(model_id: Any) -> dict[str, str]:
    """The identity of an artifact that records only a model's id (a concept bank's ``space_id``):
    ``{"id": model_id}``, or ``{}`` when none is recorded (so that nothing is compared)."""
    return {"id": str(model_id)} if model_id else {}


def artifact_stem(path: str | os.PathLike[str], default_name: str) -> Path:
    """The ``NAME`` of an artifact's ``NAME.json`` + ``NAME.safetensors`` pair: a folder holds
    ``default_name``; a path given with either suffix drops it."""
    p = Path(path)
    if p.is_dir():
        return p / default_name
    return p.with_suffix("") if p.suffix in {".json", ".safetensors"} else p
