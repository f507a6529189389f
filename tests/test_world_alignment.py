"""Meaning tests on the concept world: alignment figures measured on a smaller sample.

The tiny CLIP's own shape zero-shot accuracy is the bottleneck of the text side (see
docs/world-calibration.md), so the supervised backbone is judged against the smaller of its own head
and the CLIP, as ../shared/acceptance-notes.md prescribes.
"""

from __future__ import annotations

import pytest

from t2c_captum.demo import run_demo


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return run_demo(n_train=4000, n_test=1000, out=tmp_path_factory.mktemp("demo"), progress=False)


def _row(summary, backbone, factor, split="test"):
    return next(
        r
        for r in summary["evaluations"]
        if r["backbone"] == backbone and r["task"] == factor and r["split"] == split
    )


def test_supervised_backbone_reaches_the_bound_set_by_its_head_and_the_clip(summary):
    row = _row(summary, "world-cnn", "shape")
    assert row["own_head_top1"] >= 0.95
    assert row["aligned_top1"] >= min(row["own_head_top1"], row["space_top1"]) - 0.05


def test_label_free_autoencoder_names_colours_within_10_points_of_the_clip(summary):
    # it never saw a label (chance is 1/7), yet through the aligner it nearly matches the CLIP
    for split in ("test", "compositional"):
        row = _row(summary, "world-ae", "colour", split)
        assert row["aligned_top1"] >= row["space_top1"] - 0.10


def test_aligned_features_carry_what_the_backbone_knows_and_not_more(summary):
    # the shape-supervised CNN's features name shapes better than colours, the autoencoder's the reverse
    cnn_shape, cnn_colour = (_row(summary, "world-cnn", f)["aligned_top1"] for f in ("shape", "colour"))
    ae_shape, ae_colour = (_row(summary, "world-ae", f)["aligned_top1"] for f in ("shape", "colour"))
    assert cnn_shape > ae_shape + 0.15
    assert ae_colour > cnn_colour + 0.15


def test_alignment_quality_is_reported_on_held_out_images(summary):
    for fit in summary["fits"]:
        assert 0.3 < fit["holdout_r2"] <= 1 and 0.5 < fit["holdout_mean_cosine"] <= 1
        assert fit["n_train"] < 4000  # the held-out rows were not used
    assert len(summary["acceptance"]) == 4


def test_backbone_supervised_on_every_factor_names_them_all_through_the_aligner(summary):
    # world-vit learnt every factor, so its aligned features answer every question about as well as the CLIP
    for factor in ("shape", "colour", "pattern", "background"):
        row = _row(summary, "world-vit", factor)
        assert row["aligned_top1"] >= row["space_top1"] - 0.05, factor
