from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `precision="auto"` runs CPU forwards in bf16 on CPUs with native bf16 (AVX512-BF16, AMX): the suite
# pins fp32 so its features are the same on every CPU (tests/features/test_precision.py covers the
# choice and bf16 itself)
os.environ.setdefault("T2C_CPU_BF16", "0")
# two threads, as on the project's machines; OMP_NUM_THREADS (e.g. 1) wins where it is set
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))
# T2C_FLUSH_DENORMAL=1 runs the suite with denormals flushed to zero (scripts/cpu_matrix.py does)
if os.environ.get("T2C_FLUSH_DENORMAL") == "1" and not torch.set_flush_denormal(True):
    raise RuntimeError("T2C_FLUSH_DENORMAL=1, but this CPU cannot flush denormals (no SSE3)")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature stores of each test go to a fresh folder, never to the user's cache."""
    monkeypatch.setenv("T2C_CACHE", str(tmp_path_factory.mktemp("t2c_cache")))


@pytest.fixture
def labelled_images(tmp_path):
    from t2c_captum.testing import make_images

    make_images(tmp_path / "tree", n=24, classes=["cat", "dog", "fox"])
    return tmp_path / "tree"


@pytest.fixture(scope="session")
def world_aligned(tmp_path_factory):
    """``get(backbone="world-cnn", n_train=3000, layer=None) -> (backbone, space, aligner)``, fitted
    once per session."""
    from t2c_captum.world.adapters import fit_world_aligner

    fitted: dict = {}

    def get(backbone: str = "world-cnn", n_train: int = 3000, layer: str | None = None):
        key = (backbone, n_train, layer)
        if key not in fitted:
            store = tmp_path_factory.mktemp("world-align") / f"{backbone}-{n_train}-{layer}"
            fitted[key] = fit_world_aligner(backbone, n_train, store_dir=str(store), layer=layer)
        return fitted[key]

    return get
