from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, DimensionMismatchError, ZeroShotClassifier, fit_aligner
from t2c_captum.aligners import LinearAligner
from t2c_captum.testing import FakeBackbone, FakeSpace


def test_zero_shot_on_space_embeddings_picks_the_matching_text():
    space = FakeSpace(dim=6)
    names = ["apple", "zebra", "quartz"]
    clf = ZeroShotClassifier(space, names, ["{}"])
    text = space.encode_text(names)
    result = clf.predict(text, k=2)
    assert result.indices[:, 0].tolist() == [0, 1, 2]
    assert result.names()[0][0] == "apple"
    assert clf.accuracy(text, [0, 1, 2]) == 1.0
    torch.testing.assert_close(result.probs.sum(1) <= 1.0 + 1e-6, torch.ones(3, dtype=torch.bool))


def test_zero_shot_with_explicit_prompts_and_errors():
    space = FakeSpace(dim=6)
    clf = ZeroShotClassifier(space, ["a", "b"], prompts={"a": ["x", "y"], "b": ["z"]})
    assert clf.text_weights_.shape == (2, 6)
    with pytest.raises(DataError, match="no prompts"):
        ZeroShotClassifier(space, ["a", "c"], prompts={"a": ["x"]})
    with pytest.raises(DimensionMismatchError, match="aligner"):
        clf.logits(torch.randn(2, 9))
    with pytest.raises(DataError):
        ZeroShotClassifier(space, [])


def test_zero_shot_through_an_aligner_is_differentiable():
    space, backbone = FakeSpace(dim=6), FakeBackbone(dim=10)
    X = torch.randn(300, 10)
    aligner = LinearAligner().fit(X, X @ torch.randn(10, 6))
    clf = ZeroShotClassifier(space, ["a", "b"], aligner=aligner)
    x = X[:2].clone().requires_grad_(True)
    clf(x)[:, 0].sum().backward()
    assert x.grad is not None and backbone is not None


class SpaceOverBackbone(FakeSpace):
    """A space whose image embeddings are an exact linear function of a backbone's features."""

    def __init__(self, backbone):
        super().__init__(dim=6)
        self.backbone = backbone
        self.map = torch.nn.Linear(backbone.feature_dim, 6)

    def encode_image(self, images):
        return self.map(self.backbone(images))


def test_fit_aligner_end_to_end_reports_held_out_and_eval(labelled_images, tmp_path):
    backbone = FakeBackbone(dim=10, n_classes=3)
    backbone.class_names = ["cat", "dog", "fox"]
    space = SpaceOverBackbone(FakeBackbone(dim=10, n_classes=3))
    aligner, report = fit_aligner(
        backbone,
        space,
        labelled_images,
        eval_data=labelled_images,
        progress=False,
        cache_dir=str(tmp_path / "cache"),
    )
    held, full = report.evaluations
    assert held.split == "holdout" and full.split == "eval" and full.metrics.n == 24
    assert held.metrics.n == 24 - report.n_train
    assert {"aligned_top1", "space_top1", "own_head_top1", "aligned_top5"} <= set(full.zero_shot)
    # the space is an exact linear function of the backbone's features: the aligner recovers it
    assert full.metrics.r2 > 0.99 and full.metrics.mean_cosine > 0.99
    assert aligner.source_["id"] == "fake" and aligner.target_["embed_dim"] == 6
    assert report.as_dict()["evaluations"][1]["n"] == 24


def test_cross_model_alignment_reports_aligned_accuracy(labelled_images):
    # same seed: the target's 8 features are the source's first 8, so the map is exactly linear and
    # the aligned features must classify (through the target's head) as the target's own do
    source = FakeBackbone(dim=10, seed=2, name="a")
    target = FakeBackbone(dim=8, n_classes=3, seed=2, name="b")
    target.class_names = ["cat", "dog", "fox"]
    _, report = fit_aligner(source, target, labelled_images, eval_data=labelled_images, progress=False)
    z = report.evaluations[1].zero_shot
    assert report.evaluations[1].metrics.r2 > 0.99
    assert z["aligned_top1"] == pytest.approx(z["space_top1"], abs=1 / 24 + 1e-9)
