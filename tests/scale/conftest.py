from __future__ import annotations

import pytest
import torch

from t2c_captum.features import FeatureStore


def write_store(path, n=600, d=12, D=8, shard=128, seed=0, key="k"):
    """A small synthetic store: ``source`` [n, d], ``target`` = noisy linear map [n, D]."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, D, generator=gen)
    n_shards = (n + shard - 1) // shard
    store = FeatureStore.create(
        path,
        key=f"{key}-{n}-{seed}",
        encoders={"source": {"id": "bb", "dim": d}, "target": {"id": "sp", "dim": D}},
        dataset={"name": "synthetic", "fingerprint": f"f{n}{seed}", "n": n, "class_names": None},
        shard_size=shard,
        n_shards=n_shards,
    )
    for s in range(n_shards):
        rows = min(shard, n - s * shard)
        x = torch.randn(rows, d, generator=gen) + 0.3
        y = x @ W + 0.1 * torch.randn(rows, D, generator=gen)
        idx = torch.arange(s * shard, s * shard + rows)
        store.write_shard(s, {"source": x, "target": y, "labels": idx % 3, "indices": idx}, [])
    return store


@pytest.fixture
def synthetic_store(tmp_path):
    return write_store(tmp_path / "store")
