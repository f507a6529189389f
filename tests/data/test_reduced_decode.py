"""Reduced JPEG decoding: large JPEGs decoded at 1/2-1/8 scale, never below what the models resize
to, with pixels close to a full decode's and a store of their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from typer.testing import CliRunner

from t2c_captum import DataError
from t2c_captum.cli import app
from t2c_captum.data import DecodeOnce, decode_size, draft_size, from_folder
from t2c_captum.data.loader import check_reduced_decode
from t2c_captum.features import FeatureStore, store_key
from t2c_captum.testing import make_world_jpegs


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like image: smooth gradients, a few hard-edged shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 220], -1) + 20
    for _ in range(6):
        x0, y0 = rng.integers(0, width - width // 4), rng.integers(0, height - height // 4)
        rgb[y0 : y0 + height // 5, x0 : x0 + width // 5] = rng.integers(0, 256, 3)
    rgb += rng.normal(0, 5, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


class _Encoder:
    def __init__(self, preprocess) -> None:
        self.preprocess = preprocess


def _preprocess(size: int = 32) -> transforms.Compose:
    return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])


def test_the_decode_size_is_what_the_first_resize_scales_to_and_unknown_without_one():
    import open_clip
    import timm.data

    assert decode_size(_preprocess(224)) == (224, 224)
    assert decode_size(transforms.Compose([transforms.Resize([96])])) == (96, 96)
    assert decode_size(transforms.Compose([transforms.Resize((100, 200))])) == (200, 100)  # (w, h)
    # the real libraries' eval preprocessing starts with such a Resize
    assert decode_size(timm.data.create_transform(input_size=224, crop_pct=0.875)) == (256, 256)
    assert decode_size(open_clip.image_transform(224, is_train=False)) == (224, 224)
    # anything else: no reduction (a crop first, a callable, an empty Compose)
    assert decode_size(transforms.Compose([transforms.CenterCrop(64), transforms.Resize(32)])) is None
    assert decode_size(lambda image: torch.zeros(3)) is None
    assert decode_size(transforms.Compose([])) is None

    both = [_preprocess(224), transforms.Compose([transforms.Resize((100, 300))])]
    assert draft_size(both, 2.0) == (600, 448)  # the larger of each side, times the gap
    assert draft_size(both, None) is None
    assert draft_size([*both, lambda image: image], 2.0) is None  # one encoder needs the full image


def test_a_large_jpeg_is_decoded_smaller_but_never_below_the_draft_size(tmp_path):
    _photo(1600, 1200).save(tmp_path / "big.jpg", quality=90)
    _photo(1600, 1200).save(tmp_path / "big.png")
    source = from_folder(tmp_path)
    jpeg, png = (source.items.index(str(tmp_path / name)) for name in ("big.jpg", "big.png"))
    assert source.load(jpeg, (300, 300))[0].size == (400, 300)  # 1/4 scale: 1/8 would be too small
    assert source.load(jpeg, (1000, 1000))[0].size == (1600, 1200)  # no reduction keeps 1,000
    assert source.load(jpeg)[0].size == (1600, 1200)
    assert source.load(png, (300, 300))[0].size == (1600, 1200)  # only JPEGs have reduced scales


def test_reduced_decoding_stays_within_a_few_grey_levels_and_small_images_are_untouched(tmp_path):
    _photo(1280, 960).save(tmp_path / "large.jpg", quality=90)
    _photo(90, 70, seed=1).save(tmp_path / "small.jpg", quality=90)
    source = from_folder(tmp_path)
    pre = [_preprocess(224)]
    full, reduced = DecodeOnce(source, pre), DecodeOnce(source, pre, reduced_decode=2.0)
    assert full.draft is None and reduced.draft == (448, 448)
    for index in range(len(source)):
        a, b = full[index][0][0] * 255, reduced[index][0][0] * 255
        if "small" in source.describe(index):
            assert torch.equal(a, b)  # too small to decode at a reduced scale
        else:
            psnr = 10 * torch.log10(255**2 / ((a - b) ** 2).mean())
            assert psnr > 45 and (a - b).abs().max() <= 12, (float(psnr), float((a - b).abs().max()))


@pytest.mark.parametrize("gap", [0.5, 0, float("nan"), float("inf"), True, "2"])
def test_a_gap_that_would_upsample_or_is_no_number_is_refused(gap):
    with pytest.raises(DataError, match="reduced_decode must be a number of at least 1"):
        check_reduced_decode(gap, {"model": _Encoder(_preprocess())})


def test_a_preprocessing_without_a_leading_resize_is_warned_about():
    with pytest.warns(UserWarning, match="of custom does not start with a torchvision Resize"):
        check_reduced_decode(2.0, {"plain": _Encoder(_preprocess()), "custom": _Encoder(lambda image: image)})


def test_full_decode_stores_keep_their_keys_and_reduced_ones_get_their_own():
    encoders = {"source": {"id": "a"}, "target": {"id": "b"}}
    plain = store_key(encoders, "fp", 4096)
    assert store_key(encoders, "fp", 4096, "fp32", None) == plain
    reduced = {store_key(encoders, "fp", 4096, "fp32", gap) for gap in (2.0, 3)}
    assert len({plain, *reduced}) == 3


def test_t2c_fit_decodes_reduced_into_its_own_store_with_near_identical_features(tmp_path):
    make_world_jpegs(tmp_path / "photos", 24, size=1024)
    runner = CliRunner()
    stores = {}
    fit = ["fit", "world-cnn", "world-clip", "--data", str(tmp_path / "photos")]
    for name, extra in (("full", []), ("reduced", ["--reduced-decode", "2"])):
        where = ["--out", str(tmp_path / name), "--cache-dir", str(tmp_path / f"cache-{name}")]
        result = runner.invoke(app, [*fit, *where, "--json", *extra])
        assert result.exit_code == 0, result.output
        stores[name] = FeatureStore(json.loads(result.output)["store"])
    assert stores["reduced"].manifest["reduced_decode"] == 2.0
    assert stores["full"].manifest["reduced_decode"] is None
    assert stores["full"].manifest["key"] != stores["reduced"].manifest["key"]
    full, reduced = (stores[k].load(["source", "target"]) for k in ("full", "reduced"))
    assert not torch.equal(full["source"], reduced["source"])  # the reduced decode did happen
    for name in ("source", "target"):
        cosine = torch.nn.functional.cosine_similarity(full[name], reduced[name])
        assert cosine.mean() > 0.99 and cosine.min() > 0.95, (name, cosine)

    result = runner.invoke(app, [*fit, "--cache-dir", str(tmp_path / "cache-bad"), "--reduced-decode", "0.5"])
    assert result.exit_code == 2 and "reduced_decode must be a number of at least 1" in result.output
    assert not (tmp_path / "cache-bad").exists()  # refused before any store was made
