"""Decoding workers stop at uint8 pixels and normalisation finishes on the device: same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from t2c_captum import DataError, extract_features
from t2c_captum.data import split_preprocess
from t2c_captum.testing import FakeBackbone


def _photos(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    sizes = [(500, 375), (333, 500), (64, 64), (97, 41)][:n]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _library_transforms() -> dict[str, object]:
    import open_clip
    import timm.data

    from t2c_captum.world.models import world_transform

    return {
        "timm": timm.data.create_transform(input_size=(3, 224, 224), crop_pct=0.95, interpolation="bicubic"),
        "open_clip": open_clip.image_transform(224, is_train=False),
        "world": world_transform(),
        "torchvision ToTensor": transforms.Compose(
            [transforms.Resize(40), transforms.ToTensor(), transforms.Normalize([0.1, 0.2, 0.3], [2, 3, 4])]
        ),
    }


@pytest.mark.parametrize("name", ["timm", "open_clip", "world", "torchvision ToTensor"])
def test_split_gives_exactly_the_whole_preprocessing(name):
    whole = _library_transforms()[name]
    split = split_preprocess(whole)
    assert split is not None
    for image in _photos():
        pixels = split.on_cpu(image)
        assert pixels.dtype == torch.uint8
        assert torch.equal(split.finish(pixels[None])[0], whole(image))


def test_other_preprocessings_stay_whole():
    from torchvision.models import ResNet18_Weights

    unnormalised = transforms.Compose([transforms.Resize(8), transforms.ToTensor()])
    tensor_first = transforms.Compose(
        [transforms.PILToTensor(), transforms.ConvertImageDtype(torch.float32),
         transforms.Normalize([0.5], [0.5])]
    )
    odd_tail = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x * 2)])
    for preprocess in (unnormalised, tensor_first, odd_tail, ResNet18_Weights.DEFAULT.transforms(),
                       lambda image: torch.zeros(3), FakeBackbone().preprocess):
        assert split_preprocess(preprocess) is None


def test_split_refuses_what_is_not_a_pil_image():
    split = split_preprocess(_library_transforms()["world"])
    with pytest.raises(DataError, match="PIL image"):
        split.on_cpu(torch.zeros(3, 8, 8))


def test_extraction_with_and_without_the_split_is_identical(tmp_path, labelled_images, monkeypatch):
    from t2c_captum.backbones import load_backbone
    from t2c_captum.features import extract

    bb = load_backbone("world-cnn")
    assert split_preprocess(bb.preprocess) is not None
    calls = []
    monkeypatch.setattr(extract, "split_preprocess", lambda p: calls.append(p) or split_preprocess(p))
    opts = dict(batch_size=8, shard_size=16, progress=False, device="cpu")
    whole = extract_features(labelled_images, {"source": bb}, store=tmp_path / "b", **opts).load()
    assert not calls  # on the CPU the workers keep the whole preprocessing
    monkeypatch.setattr(extract, "_NORMALISE_ON_CPU", True)  # as on a GPU: uint8 from the workers
    split = extract_features(labelled_images, {"source": bb}, store=tmp_path / "a", num_workers=1,
                             **opts).load()  # the uint8 half runs in a worker process
    assert len(calls) == 1
    assert torch.equal(split["source"], whole["source"])
    assert torch.equal(split["indices"], whole["indices"])


def test_batches_pin_their_tensors_for_the_dataloader(monkeypatch):
    from torch.utils.data._utils.pin_memory import pin_memory

    from t2c_captum.data import Batch

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned.append(self.shape) or self)
    batch = Batch([torch.zeros(2, 3, 4, 4, dtype=torch.uint8)], torch.zeros(2), torch.arange(2), [7])
    out = pin_memory(batch)  # what DataLoader(pin_memory=True) does with each batch
    assert isinstance(out, Batch) and out.skipped == [7] and len(pinned) == 3
