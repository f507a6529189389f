from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature stores of each test go to a fresh folder, never to the user's cache."""
    monkeypatch.setenv("T2C_CACHE", str(tmp_path_factory.mktemp("t2c_cache")))


@pytest.fixture
def labelled_images(tmp_path):
    from t2c_captum.testing import make_images

    make_images(tmp_path / "tree", n=24, classes=["cat", "dog", "fox"])
    return tmp_path / "tree"
