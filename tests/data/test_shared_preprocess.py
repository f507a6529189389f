"""Encoders with the same preprocessing share one run of it per image, and get the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from t2c_captum.data import DecodeOnce, from_dataset
from t2c_captum.data.loader import _collate, same_preprocess, shared_preprocessing


def _world_like(mean: float = 0.5, *extra: object) -> transforms.Compose:
    return transforms.Compose([transforms.Resize(16), transforms.CenterCrop(16), *extra,
                               transforms.ToTensor(), transforms.Normalize([mean] * 3, [0.25] * 3)])


def test_equal_deterministic_steps_are_the_same_preprocessing_and_anything_doubtful_is_not():
    from t2c_captum.aligners.loading import load_target
    from t2c_captum.backbones import load_backbone

    cnn, clip = load_backbone("world-cnn").preprocess, load_target("world-clip").preprocess
    assert cnn is not clip and same_preprocess(cnn, clip)
    assert same_preprocess(_world_like(), _world_like())
    assert not same_preprocess(_world_like(), _world_like(0.4))  # another normalisation
    assert not same_preprocess(_world_like(), transforms.Compose(_world_like().transforms[1:]))
    # steps whose repr does not show what they do are equal only as the same object
    turn = transforms.Lambda(lambda x: x.rotate(90))
    assert not same_preprocess(_world_like(0.5, transforms.Lambda(lambda x: x)),
                               _world_like(0.5, transforms.Lambda(lambda x: x.rotate(90))))
    assert same_preprocess(_world_like(0.5, turn), _world_like(0.5, turn))
    nested = [transforms.Compose([transforms.Lambda(lambda x: x)]),
              transforms.Compose([transforms.Lambda(lambda x: x.rotate(90))])]
    assert not same_preprocess(_world_like(0.5, nested[0]), _world_like(0.5, nested[1]))
    # random steps would give each encoder its own draw: never shared
    assert not same_preprocess(_world_like(0.5, transforms.RandomHorizontalFlip()),
                               _world_like(0.5, transforms.RandomHorizontalFlip()))
    assert not same_preprocess(lambda image: torch.zeros(3), lambda image: torch.zeros(3))
    assert shared_preprocessing([_world_like(), _world_like(0.4), _world_like(), _world_like(0.4)]) == [
        0, 1, 0, 1]


class _Counted:
    """A step the loader cannot see into; counts its calls (the same object in both pipelines)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: Image.Image) -> Image.Image:
        self.calls += 1
        return image


@pytest.mark.parametrize("shared", [True, False])
def test_a_shared_preprocessing_runs_once_per_image_and_each_encoder_gets_its_own_batch(shared):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(5)]
    source = from_dataset(images)
    counted = _Counted()
    other = _world_like(0.5, counted) if shared else _world_like(0.4, counted)
    dataset = DecodeOnce(source, [_world_like(0.5, counted), other])
    counted.calls = 0  # (judging them the same ran both once on a probe image)
    items = [dataset[i] for i in range(5)]
    assert counted.calls == (5 if shared else 10)
    batch = _collate(items)
    first, second = batch.inputs
    assert torch.equal(first, torch.stack([_world_like()(im) for im in images]))
    assert torch.equal(second, first) == shared
    assert first.data_ptr() != second.data_ptr()  # a model that writes into its input harms no other


def test_extraction_sharing_a_preprocessing_gives_the_same_features(tmp_path, labelled_images, monkeypatch):
    from t2c_captum import extract_features
    from t2c_captum.aligners.loading import load_target
    from t2c_captum.backbones import load_backbone
    from t2c_captum.data import loader

    encoders = {"source": load_backbone("world-cnn"), "target": load_target("world-clip")}
    opts = dict(batch_size=8, shard_size=16, progress=False, device="cpu")
    plans = []
    real = loader.shared_preprocessing
    monkeypatch.setattr(loader, "shared_preprocessing", lambda ps: plans.append(real(ps)) or plans[-1])
    shared = extract_features(labelled_images, encoders, store=tmp_path / "a", num_workers=1, **opts).load()
    assert plans == [[0, 0]]
    monkeypatch.setattr(loader, "shared_preprocessing", lambda ps: list(range(len(ps))))
    apart = extract_features(labelled_images, encoders, store=tmp_path / "b", **opts).load()
    for key in ("source", "target", "indices"):
        assert torch.equal(shared[key], apart[key])
