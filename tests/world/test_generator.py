from __future__ import annotations

import re

import numpy as np
import pytest

from t2c_captum._exceptions import WorldError
from t2c_captum.world import (
    FACTORS,
    HELD_OUT_PAIRS,
    SPLITS,
    Sample,
    WorldDataset,
    make_sample,
    make_split,
    max_count,
    render,
)
from t2c_captum.world.generator import _OBJECT_PIXELS, _object_origins


def test_same_seed_gives_identical_pixels():
    sample = make_split("test", 3)[2]
    again = make_split("test", 10)[2]
    assert sample == again
    assert np.array_equal(np.asarray(render(sample)), np.asarray(render(again)))
    image = render(sample)
    assert image.size == (64, 64) and image.mode == "RGB"


def test_different_seeds_give_different_pixels():
    a = make_sample(seed=1, shape="star", colour="red", background="noisy")
    b = make_sample(seed=2, shape="star", colour="red", background="noisy")
    assert not np.array_equal(np.asarray(render(a)), np.asarray(render(b)))


def test_splits_cover_every_factor_value():
    samples = make_split("val", 2000)
    for factor, values in FACTORS.items():
        seen = {s.value(factor) for s in samples}
        assert seen == set(values), factor


def test_held_out_pairs_absent_from_train_and_only_in_compositional():
    train_pairs = {(s.shape, s.colour) for s in make_split("train")}
    assert not train_pairs & set(HELD_OUT_PAIRS)
    for split in ("val", "test"):
        assert not {(s.shape, s.colour) for s in make_split(split)} & set(HELD_OUT_PAIRS)
    comp = {(s.shape, s.colour) for s in make_split("compositional")}
    assert comp == set(HELD_OUT_PAIRS)


def test_held_out_pairs_absent_from_train_captions():
    for sample in make_split("train", 3000):
        for caption in sample.captions:
            for shape, colour in HELD_OUT_PAIRS:
                assert not (shape in caption and f" {colour} " in f" {caption} "), caption


def test_objects_fit_and_do_not_overlap():
    for sample in make_split("val", 400):
        side = _OBJECT_PIXELS[sample.size]
        boxes = _object_origins(sample, np.random.default_rng(sample.seed))
        assert len(boxes) == sample.count
        for y, x in boxes:
            assert min(y, x) >= 0 and max(y, x) + side <= 64
        for (y1, _), (y2, _) in zip(boxes, boxes[1:], strict=False):
            assert y2 >= y1 + side  # stacked vertically without overlap


def test_impossible_count_raises():
    assert max_count("large") == 2 and max_count("small") == 3
    with pytest.raises(WorldError, match="do not fit"):
        make_sample(seed=0, size="large", count=3)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: make_split("trian"), "'train'"),
        (lambda: make_sample(seed=0, colour="redd"), "'red'"),
        (lambda: make_sample(seed=0, shapes="circle"), "'shape'"),
        (lambda: WorldDataset("test", 5, factor="color"), "'colour'"),
    ],
)
def test_unknown_names_suggest_valid_ones(call, expected):
    with pytest.raises(WorldError, match=expected) as info:
        call()
    assert "Valid" in str(info.value)


def test_sample_validates_values():
    with pytest.raises(WorldError):
        Sample("circle", "red", "solid", "small", "light", "left", 4, seed=0)


def test_captions_are_paraphrased_and_name_the_colour():
    samples = make_split("train", 500)
    captions = [c for s in samples for c in s.captions]
    assert len(set(captions)) > 0.9 * len(captions)
    assert any("backdrop" in c for c in captions) and any("polka" in c for c in captions)
    from t2c_captum.world import caption_check

    for sample in samples:
        words = caption_check(sample)["colour"]
        assert all(any(w in re.findall(r"[a-z-]+", c) for w in words) for c in sample.captions)


def test_dataset_items_and_labels():
    ds = WorldDataset("test", n=20, factor="colour")
    image, label = ds[3]
    assert image.size == (64, 64)
    assert ds.class_names[label] == ds.factors[3]["colour"]
    assert ds.labels("shape").shape == (20,)
    assert len(ds.captions(0)) >= 3
    unlabelled = WorldDataset("test", n=4, factor=None)
    assert unlabelled[0][1] == -1 and (unlabelled.labels() == -1).all()


def test_split_names():
    assert set(SPLITS) == {"train", "val", "test", "compositional"}
    assert len(make_split("compositional", 7)) == 7
