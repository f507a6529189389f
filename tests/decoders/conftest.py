from __future__ import annotations

import pytest

from t2c_captum.testing import FakeSpace

COLOURS = ("red", "blue", "green", "yellow")
SHAPES = ("circle", "square", "star", "cross")
CORPUS = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
TINY = {"n_embd": 32, "n_layer": 1, "n_head": 2, "prefix_length": 2, "max_tokens": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny decoders run fastest on one thread (and far faster than on two when cores are shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fake_space():
    return FakeSpace(dim=16, seed=3, name="fake-space")


@pytest.fixture(scope="session")
def tiny_decoder(fake_space):
    """A tiny prefix decoder trained on 16 captions of the fake space (a few seconds)."""
    from t2c_captum.decoders import train_prefix_decoder

    return train_prefix_decoder(
        fake_space,
        CORPUS,
        config=TINY,
        settings={"steps": 250, "batch_size": 32, "lr": 3e-3, "noise_std": 0.02},
        progress=False,
        threads=1,
    )
