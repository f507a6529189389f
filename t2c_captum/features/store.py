"""The feature store: features written once as safetensors shards plus a JSON manifest.

Layout of one store (a directory)::

    manifest.json            format, key, encoders' identities, dataset fingerprint, shards done
    shard-00000.safetensors  one tensor per encoder ([n, d]), plus "labels" and "indices"

A store is keyed by the encoders' identities (model, layer, preprocessing) and the dataset
fingerprint; shards are written atomically, so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from .._exceptions import DataError
from .._io import atomic_write_json, atomic_write_tensors, read_json

__all__ = ["FORMAT_VERSION", "FeatureStore", "store_key"]

FORMAT_VERSION = 1


def store_key(
    encoders: dict[str, dict[str, Any]],
    fingerprint: str,
    shard_size: int,
    precision: str = "fp32",
    reduced_decode: float | None = None,
) -> str:
    """A short hash of what determines a store's contents: the encoders, the images, the shard
    size, the forwards' precision (``"fp32"``, ``"bf16"`` or ``"fp16"``: features computed in
    bf16 are not the fp32 ones, so they get their own store) and a reduced JPEG decode (its
    pixels differ slightly from a full decode's)."""
    content: dict[str, Any] = {"encoders": encoders, "dataset": fingerprint, "shard_size": shard_size}
    if precision != "fp32":  # fp32 stores keep the keys they had before precision was keyed
        content["precision"] = precision
    if reduced_decode is not None:  # likewise for full decodes
        content["reduced_decode"] = float(reduced_decode)
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: A shard summary: a shard's tensors (features by name, ``indices``, ``labels``) → a dict of arrays.
ShardSummary = Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]


class FeatureStore:
    """Read access to (and shard bookkeeping for) one extracted store.

    Args:
        path (str): the store directory (holding ``manifest.json``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise DataError(f"{str(self.path)!r} is not a feature store (no manifest.json)")
        self.manifest: dict[str, Any] = read_json(manifest)

    # -- creation and bookkeeping -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        key: str,
        encoders: dict[str, dict[str, Any]],
        dataset: dict[str, Any],
        shard_size: int,
        n_shards: int,
        precision: str = "fp32",
        reduced_decode: float | None = None,
    ) -> FeatureStore:
        """Open the store at ``path`` if it has the same key, else start a new one there."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if manifest_path.is_file():
            existing = read_json(manifest_path)
            if existing.get("key") == key:
                return cls(path)
        manifest = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "encoders": encoders,
            "dataset": dataset,
            "shard_size": shard_size,
            "n_shards": n_shards,
            "precision": precision,
            "reduced_decode": reduced_decode,
            "shards": {},
            "skipped": [],
        }
        atomic_write_json(manifest_path, manifest)
        return cls(path)

    def shard_file(self, shard: int) -> Path:
        return self.path / f"shard-{shard:05d}.safetensors"

    def is_done(self, shard: int) -> bool:
        """Whether ``shard`` was completely written."""
        return str(shard) in self.manifest["shards"] and self.shard_file(shard).is_file()

    def write_shard(self, shard: int, tensors: dict[str, torch.Tensor], skipped: Sequence[int]) -> None:
        """Write one shard atomically, then record it in the manifest."""
        self.write_shard_file(shard, tensors)
        self.record_shard(shard, int(tensors["indices"].shape[0]), skipped)

    def write_shard_file(self, shard: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write one shard's file atomically, without touching the manifest (for workers that are
        not the manifest's single writer; see :meth:`record_shard`)."""
        atomic_write_tensors(self.shard_file(shard), tensors)

    def record_shard(self, shard: int, n: int, skipped: Sequence[int]) -> None:
        """Mark a written shard as done in the manifest (atomically)."""
        self.manifest["shards"][str(shard)] = {"n": int(n), "skipped": len(skipped)}
        self.manifest["skipped"] = sorted(set(self.manifest["skipped"]) | {int(i) for i in skipped})
        atomic_write_json(self.path / "manifest.json", self.manifest)

    def verify(self, strict: bool = False) -> list[int]:
        """Check that every shard marked done can be opened; returns the corrupt ones.

        A corrupt shard (truncated, overwritten, unreadable) is un-marked and recorded in the
        manifest's ``"corrupt"`` list, so the next extraction redoes it; with ``strict`` it is an
        error instead (nothing is changed).
        """
        bad = []
        for shard in range(self.manifest["n_shards"]):
            if str(shard) not in self.manifest["shards"]:
                continue
            try:
                with safe_open(str(self.shard_file(shard)), framework="pt") as fh:
                    fh.keys()
            except Exception:
                bad.append(shard)
        if bad and strict:
            raise DataError(
                f"feature store {str(self.path)!r} has corrupt shard(s) {bad}; delete those files "
                "(or run without strict, which records and redoes them)"
            )
        if bad:
            for shard in bad:
                self.manifest["shards"].pop(str(shard), None)
            self.manifest["corrupt"] = sorted(set(self.manifest.get("corrupt", [])) | set(bad))
            atomic_write_json(self.path / "manifest.json", self.manifest)
        return bad

    # -- reading ------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return all(self.is_done(s) for s in range(self.manifest["n_shards"]))

    @property
    def encoder_names(self) -> list[str]:
        return list(self.manifest["encoders"])

    @property
    def precision(self) -> str:
        """The precision the forwards ran in (``"fp32"``, ``"bf16"`` or ``"fp16"``)."""
        return str(self.manifest.get("precision", "fp32"))  # stores from before it was recorded

    @property
    def class_names(self) -> list[str] | None:
        return self.manifest["dataset"].get("class_names")

    def dim(self, name: str) -> int:
        return int(self.manifest["encoders"][self.check(name)]["dim"])

    def __len__(self) -> int:
        return sum(int(s["n"]) for s in self.manifest["shards"].values())

    @property
    def skipped(self) -> list[int]:
        return list(self.manifest["skipped"])

    def check(self, name: str) -> str:
        """``name``, when the store holds features of that name (else a :class:`DataError` listing
        what it holds)."""
        if name not in self.manifest["encoders"]:
            raise DataError(
                f"feature store {str(self.path)!r} has no {name!r} features; it has {self.encoder_names}"
            )
        return name

    _check = check  # the old private name, for one release

    def iter_shards(self, names: Sequence[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield each done shard as a dict of tensors (only ``names``, plus labels and indices)."""
        for _, tensors in self.numbered_shards(names):
            yield tensors

    def numbered_shards(
        self, names: Sequence[str] | None = None
    ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """``(shard number, tensors)`` of each done shard, as :meth:`iter_shards` yields them."""
        wanted = [self.check(n) for n in (names or self.encoder_names)] + ["labels", "indices"]
        for shard in range(self.manifest["n_shards"]):
            if not self.is_done(shard):
                continue
            try:
                with safe_open(str(self.shard_file(shard)), framework="pt") as fh:
                    tensors = {k: fh.get_tensor(k) for k in wanted}
            except Exception as exc:
                raise DataError(
                    f"shard {shard} of feature store {str(self.path)!r} is corrupt ({exc}); extract "
                    "again (the shard is redone) or delete the store"
                ) from exc
            yield shard, tensors

    def load(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Everything (or ``names``) concatenated in memory; for stores that fit in RAM."""
        parts: dict[str, list[torch.Tensor]] = {}
        for shard in self.iter_shards(names):
            for k, v in shard.items():
                parts.setdefault(k, []).append(v)
        if not parts:
            raise DataError(f"feature store {str(self.path)!r} has no finished shards yet")
        return {k: torch.cat(v) for k, v in parts.items()}

    @property
    def labels(self) -> np.ndarray:
        return self.load([])["labels"].numpy()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, n={len(self)}, encoders={self.encoder_names})"
