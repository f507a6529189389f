"""Optional FAISS indexes over a feature store, for retrieval and concept search over large collections.

``pip install t2c_captum[faiss]`` (``faiss-cpu``). The exact chunked search of
:class:`~t2c_captum.retrieval.Retriever` stays the default; an index only makes searches of large
stores faster.

An index holds a store's aligned, L2-normalised features (or, without an aligner, its space
embeddings), keyed by dataset index, either exactly (``"flat"``: inner product over every row) or
approximately (``"ivf"``: ``nlist`` k-means cells, ``nprobe`` of them visited per search). Next to
the vectors it keeps what a query's thresholds need about the *whole* collection:

* the mean ``μ`` and covariance ``Σ`` of the normalised vectors, so each concept's score mean and
  standard deviation over all N images is exact (a score is linear in the vector: ``μ·w`` and
  ``√(wᵀΣw)``, also for scores centred on the bank's mean concept);
* a uniform sample of rows (``sample_size``, default 100,000), from which quantile thresholds are
  estimated (exact when the store has no more rows than the sample).

Indexes are saved beside the store (``STORE/index/KIND-HASH.faiss`` + ``.json``) with an identity
(store key, feature name, the encoder, the aligner's identity and a hash of its weights, the space);
opening one for other features raises :class:`~t2c_captum.IncompatibleArtifactError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError, IncompatibleArtifactError
from .._identity import identity_differences
from .._io import atomic_write_json, read_json

__all__ = ["INDEX_KINDS", "FaissIndex", "index_identity", "require_faiss"]

INDEX_KINDS = ("flat", "ivf")
FORMAT_VERSION = 1


def require_faiss() -> Any:
    """The ``faiss`` module, or a :class:`DataError` saying how to install it."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            "the FAISS index backend needs faiss: pip install 't2c_captum[faiss]' (or faiss-cpu); "
            "without it, use the default exact search (no index)"
        ) from exc
    return faiss


def _weights_hash(aligner: Any) -> str:
    digest = hashlib.sha256()
    for name in ("weight_", "bias_"):
        t = getattr(aligner, name, None)
        if t is not None:
            digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def index_identity(store: Any, aligner: Any = None, key: str = "source") -> dict[str, Any]:
    """What an index over ``store`` (read through ``aligner``) depends on."""
    encoder = store.manifest["encoders"][store.check(key)]
    if aligner is not None:
        aligned: dict[str, Any] | None = {
            "kind": getattr(aligner, "kind", type(aligner).__name__),
            "source": dict(getattr(aligner, "source_", {}) or {}),
            "weights": _weights_hash(aligner),
        }
        space = dict(getattr(aligner, "target_", {}) or {}).get("id")
    else:
        aligned, space = None, encoder.get("id")
    return {
        "store_key": store.manifest["key"],
        "n": len(store),
        "key": key,
        "encoder": encoder,
        "aligner": aligned,
        "space": space,
    }


def _hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _vectors(store: Any, aligner: Any, key: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(dataset indices int64, normalised float32 vectors)`` per shard."""
    device = getattr(getattr(aligner, "weight_", None), "device", torch.device("cpu"))
    for shard in store.iter_shards([key]):
        if not shard["indices"].numel():
            continue
        x = shard[key]
        with torch.no_grad():
            z = aligner(x.to(device)).float().cpu() if aligner is not None else x.float()
        z = torch.nn.functional.normalize(z, dim=-1)
        yield shard["indices"].numpy().astype(np.int64), np.ascontiguousarray(z.numpy(), dtype=np.float32)


class _Sample:
    """A uniform random sample of at most ``size`` rows of a stream (keys: random priorities)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.rng = size, np.random.default_rng(seed)
        self.rows: np.ndarray | None = None
        self.keys = np.empty(0)

    def add(self, rows: np.ndarray) -> None:
        keys = self.rng.random(rows.shape[0])
        all_rows = rows if self.rows is None else np.concatenate([self.rows, rows])
        all_keys = np.concatenate([self.keys, keys])
        if all_keys.shape[0] > self.size:
            keep = np.argpartition(all_keys, self.size)[: self.size]
            all_rows, all_keys = all_rows[keep], all_keys[keep]
        self.rows, self.keys = all_rows, all_keys


class FaissIndex:
    """A FAISS index over one store's (aligned, normalised) features, with collection statistics.

    Build with :meth:`build`, reopen with :meth:`open` (which checks that it was built for the same
    features). Search through :meth:`Retriever.search(..., index=...)
    <t2c_captum.retrieval.Retriever.search>`, or directly with :meth:`search`.
    """

    def __init__(
        self,
        index: Any,
        info: dict[str, Any],
        mean: np.ndarray,
        cov: np.ndarray,
        sample: np.ndarray,
        path: Path | None = None,
    ) -> None:
        self.index, self.info = index, info
        self.mean, self.cov, self.sample = mean, cov, sample
        self.path = path

    # -- building ----------------------------------------------------------------------------
    @staticmethod
    def default_path(store: Any, kind: str, aligner: Any = None, key: str = "source") -> Path:
        """``STORE/index/KIND-HASH.faiss``: one file per (kind, features) pair."""
        return Path(store.path) / "index" / f"{kind}-{_hash(index_identity(store, aligner, key))}.faiss"

    @classmethod
    def build(
        cls,
        store: Any,
        aligner: Any = None,
        *,
        kind: str = "flat",
        key: str = "source",
        nlist: int | None = None,
        nprobe: int | None = None,
        sample_size: int = 100_000,
        path: str | os.PathLike[str] | None = None,
        save: bool = True,
    ) -> FaissIndex:
        """Stream ``store`` once (twice for IVF: a training sample, then the vectors) into an index.

        Args:
            store (FeatureStore): the features.
            aligner (Aligner, optional): maps them into the space; ``None`` for space embeddings.
            kind (str, optional): ``"flat"`` (exact) or ``"ivf"``. Default: ``"flat"``
            key (str, optional): which features of the store. Default: ``"source"``
            nlist (int, optional): IVF cells. Default: ``√N`` (at most N/39)
            nprobe (int, optional): IVF cells visited per search. Default: ``max(1, nlist // 8)``
            sample_size (int, optional): rows kept for quantile thresholds. Default: ``100000``
            path (str, optional): where to save. Default: :meth:`default_path`
            save (bool, optional): write the index to disk. Default: ``True``
        """
        faiss = require_faiss()
        if kind not in INDEX_KINDS:
            raise DataError(f"index kind must be one of {INDEX_KINDS}, not {kind!r}")
        if not store.complete:
            raise DataError(f"{store!r} is not complete; finish extracting it before indexing")
        identity = index_identity(store, aligner, key)
        n = identity["n"]
        if n == 0:
            raise DataError(f"{store!r} has no rows to index")
        want = 0  # k-means rows (IVF)
        if kind == "ivf":
            nlist = int(nlist or max(1, min(int(math.sqrt(n)), n // 39 or 1)))
            if nlist > n:
                raise DataError(f"nlist={nlist} is more than the {n} rows; use nlist <= {n}")
            want = min(n, 64 * nlist)  # k-means needs ~39+ rows per cell; more only costs time
        sample = _Sample(max(sample_size, 1))
        # k-means rows, sampled in the same pass when the statistics' sample is too small for them
        train_sample = _Sample(want, seed=1) if want > sample.size else None
        total: np.ndarray | None = None
        outer: np.ndarray | None = None
        dim = 0
        flat = None
        if kind == "flat":
            flat = faiss.IndexIDMap2(faiss.IndexFlatIP(_dim(store, aligner, key)))
        for ids, z in _vectors(store, aligner, key):
            dim = z.shape[1]
            z64 = z.astype(np.float64)
            total = z64.sum(0) if total is None else total + z64.sum(0)
            outer = z64.T @ z64 if outer is None else outer + z64.T @ z64
            sample.add(z)
            if train_sample is not None:
                train_sample.add(z)
            if flat is not None:
                flat.add_with_ids(z, ids)
        assert total is not None and outer is not None and sample.rows is not None
        mean = total / n
        cov = outer / n - np.outer(mean, mean)
        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "identity": identity,
            "dim": dim,
        }
        if kind == "flat":
            index = flat
        else:
            assert nlist is not None
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            train = (train_sample or sample).rows
            assert train is not None
            index.train(np.ascontiguousarray(train[:want], dtype=np.float32))
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            for ids, z in _vectors(store, aligner, key):
                index.add_with_ids(z, ids)
            index.nprobe = int(nprobe or max(1, nlist // 8))
            info.update(nlist=nlist, nprobe=int(index.nprobe))
        out = cls(index, info, mean, cov, sample.rows.astype(np.float32))
        if save:
            out.save(path or cls.default_path(store, kind, aligner, key))
        return out

    # -- saving and opening -------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``PATH`` (the FAISS index), ``PATH.npz`` (statistics) and ``PATH.json`` (identity)."""
        faiss = require_faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        stats_tmp = path.with_name(path.name + ".stats.tmp.npz")
        np.savez(stats_tmp, mean=self.mean, cov=self.cov, sample=self.sample)
        os.replace(stats_tmp, path.with_suffix(".npz"))
        os.replace(tmp, path)
        atomic_write_json(path.with_suffix(".json"), self.info)  # written last: marks it complete
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaissIndex:
        """Read an index written by :meth:`save` (no identity check; see :meth:`open`)."""
        faiss = require_faiss()
        path = Path(path)
        meta = path.with_suffix(".json")
        if not (path.is_file() and meta.is_file() and path.with_suffix(".npz").is_file()):
            raise DataError(f"no complete FAISS index at {str(path)!r}; build it with FaissIndex.build")
        info = read_json(meta)
        stats = np.load(path.with_suffix(".npz"), allow_pickle=False)
        index = faiss.read_index(str(path))
        if "nprobe" in info:
            index.nprobe = int(info["nprobe"])
        return cls(index, info, stats["mean"], stats["cov"], stats["sample"], path)

    @classmethod
    def open(
        cls,
        store: Any,
        aligner: Any = None,
        *,
        kind: str = "flat",
        key: str = "source",
        path: str | os.PathLike[str] | None = None,
        build: bool = True,
        **options: Any,
    ) -> FaissIndex:
        """The index of ``store`` for ``aligner``: loaded when saved (and checked), else built."""
        target = Path(path) if path is not None else cls.default_path(store, kind, aligner, key)
        if target.with_suffix(".json").is_file():
            index = cls.load(target)
            index.check(store, aligner, key)
            if options.get("nprobe") and hasattr(index.index, "nprobe"):
                index.index.nprobe = int(options["nprobe"])
            return index
        if not build:
            raise DataError(f"no FAISS index at {str(target)!r}; build it with FaissIndex.build")
        return cls.build(store, aligner, kind=kind, key=key, path=target, **options)

    def check(self, store: Any, aligner: Any = None, key: str = "source") -> None:
        """Raise :class:`IncompatibleArtifactError` unless the index was built for these features."""
        want = index_identity(store, aligner, key)
        diff = identity_differences(
            "index", self.info.get("identity", {}), want, names=("index has", "features have")
        )
        if diff:
            raise IncompatibleArtifactError(
                f"the FAISS index {str(self.path)!r} was built for other features ({'; '.join(diff)}). "
                "Rebuild it for these features with FaissIndex.build(store, aligner) or search without "
                "an index."
            )

    # -- searching ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    def search(self, vectors: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner products and dataset indices ``[q, k]`` of the best rows for each query vector
        (missing results, when fewer than ``k`` are found, have index -1)."""
        q = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.index.d))
        return self.index.search(q, int(min(k, len(self))))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored normalised vectors of these dataset indices ``[n, dim]``."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not ids.size:
            return np.zeros((0, self.index.d), dtype=np.float32)
        return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)

    def moments(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and standard deviation over the whole collection of the scores ``x·w`` (columns
        of ``w [dim, m]``)."""
        w = np.asarray(w, dtype=np.float64)
        mean = self.mean @ w
        var = np.einsum("im,ij,jm->m", w, self.cov, w)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def __repr__(self) -> str:
        extra = f", nlist={self.info['nlist']}, nprobe={self.index.nprobe}" if self.kind == "ivf" else ""
        return f"FaissIndex({self.kind}, n={len(self)}, dim={self.index.d}{extra})"


def _dim(store: Any, aligner: Any, key: str) -> int:
    if aligner is not None:
        return int(aligner.weight_.shape[0])
    return int(store.dim(key))
