"""Synthetic feature stores for the scale benchmarks (no models, no images, no downloads), and the
benchmarks' timing helper."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2c_captum.features import FeatureStore


def cpu_description() -> str:
    """The CPU's model, the extensions that decide float32 and bf16 speed, and the kernels torch
    picked (figures are named with this line: float32 results and speeds differ across CPUs)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    present = " ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted)
    return f"CPU {model} [{present}], torch kernels {torch.backends.cpu.get_cpu_capability()}"


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """The best wall time of ``repeat`` calls of ``fn``, and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_store(
    path: str | os.PathLike[str], n: int, d: int = 2048, D: int = 512, shard: int = 4096, seed: int = 0
) -> FeatureStore:
    """A store of ``n`` rows: ``source`` [n, d] with a power-law spectrum, ``target`` = a noisy linear
    map of it [n, D]; written shard by shard, so making it needs memory for one shard only."""
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.arange(1, d + 1, dtype=torch.float32) ** -0.8
    spectrum *= (d / (spectrum**2).sum()) ** 0.5
    W = torch.randn(d, D, generator=gen) / d**0.5
    n_shards = (n + shard - 1) // shard
    store = FeatureStore.create(
        path,
        key=f"synthetic-{n}-{d}-{D}-{seed}",
        encoders={"source": {"id": "synthetic", "dim": d}, "target": {"id": "synthetic-space", "dim": D}},
        dataset={"name": "synthetic", "fingerprint": f"synthetic-{n}-{seed}", "n": n, "class_names": None},
        shard_size=shard,
        n_shards=n_shards,
    )
    for s in range(n_shards):
        rows = min(shard, n - s * shard)
        x = torch.randn(rows, d, generator=gen) * spectrum + 0.5
        y = x @ W
        y += 0.3 * torch.randn(rows, D, generator=gen) * float(y.std())
        idx = torch.arange(s * shard, s * shard + rows)
        store.write_shard(
            s, {"source": x, "target": y, "labels": torch.full((rows,), -1), "indices": idx}, []
        )
    return store


def rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def write_clustered_store(
    path: str | os.PathLike[str],
    n: int,
    dim: int = 512,
    n_clusters: int = 1000,
    spread: float = 1.0,
    shard: int = 65536,
    seed: int = 0,
) -> tuple[FeatureStore, np.ndarray]:
    """A store of ``n`` unit vectors (``source``: space embeddings) around ``n_clusters`` random
    centres; returns the store and the centres (useful as concept embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_shards = (n + shard - 1) // shard
    store = FeatureStore.create(
        path,
        key=f"clustered-{n}-{dim}-{seed}",
        encoders={"source": {"id": "synthetic-space", "dim": dim}},
        dataset={"name": "clustered", "fingerprint": f"clustered-{n}-{seed}", "n": n, "class_names": None},
        shard_size=shard,
        n_shards=n_shards,
    )
    for s in range(n_shards):
        rows = min(shard, n - s * shard)
        which = rng.integers(0, n_clusters, rows)
        block = centres[which] + spread * rng.standard_normal((rows, dim), dtype=np.float32) / dim**0.5
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        idx = torch.arange(s * shard, s * shard + rows)
        store.write_shard(
            s, {"source": torch.from_numpy(block), "labels": torch.from_numpy(which), "indices": idx}, []
        )
    return store, centres
