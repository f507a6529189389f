"""Fitting while features stream (no second pass), summed statistics, and extraction options."""

from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, extract_features
from t2c_captum.aligners import LinearAligner
from t2c_captum.aligners.fit import fit_from_store
from t2c_captum.aligners.linear import SufficientStats
from t2c_captum.aligners.streaming import shard_stats
from t2c_captum.alignment import fit_aligner
from t2c_captum.features import FeatureStore
from t2c_captum.testing import FakeBackbone, FakeSpace


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_summed_shard_statistics_fit_equals_the_streamed_partial_fit(synthetic_store):
    reference = fit_from_store(synthetic_store, LinearAligner())
    summed = LinearAligner()
    for shard in reversed(list(synthetic_store.iter_shards(["source", "target"]))):  # any order
        summed.add_stats(*shard_stats(shard, ("source", "target"), summed.validation_fraction))
    summed.solve()
    assert summed.fit_stats_["n_train"] == reference.fit_stats_["n_train"]
    x = synthetic_store.load(["source"])["source"]
    assert _rel(summed.weight_, reference.weight_) < 1e-5
    assert _rel(summed.transform(x), reference.transform(x)) < 1e-5  # (the tiny bias alone cancels)
    with pytest.raises(DataError, match="cannot be added"):
        summed.add_stats(SufficientStats(3, 2), SufficientStats(3, 2))


def test_fit_aligner_fits_while_extracting_and_never_rereads_the_store(
    labelled_images, tmp_path, monkeypatch
):
    bb, space = FakeBackbone(dim=5), FakeSpace(dim=4)
    reads = []
    original = FeatureStore.iter_shards

    def counting(self, names=None):
        reads.append(names)
        yield from original(self, names)

    monkeypatch.setattr(FeatureStore, "iter_shards", counting)
    aligner, report = fit_aligner(bb, space, labelled_images, cache_dir=str(tmp_path / "c"), progress=False)
    monkeypatch.setattr(FeatureStore, "iter_shards", original)
    assert len(reads) == 1  # only the held-out evaluation reads the store; the fit did not
    store = FeatureStore(report.store)
    reference = fit_from_store(store, LinearAligner())
    assert _rel(aligner.weight_, reference.weight_) < 1e-5
    # a second run reuses the finished store: statistics come back from its shards
    again, _ = fit_aligner(bb, space, labelled_images, cache_dir=str(tmp_path / "c"), progress=False)
    assert _rel(again.weight_, reference.weight_) < 1e-5
    placed, _ = fit_aligner(bb, space, labelled_images, cache_dir=str(tmp_path / "d"), progress=False,
                            aligner_params={"device": "cpu"})  # shard statistics computed there
    assert placed.train_stats_.sx.device.type == "cpu"
    assert _rel(placed.weight_, reference.weight_) < 1e-5
    sgd, _ = fit_aligner(
        bb,
        space,
        labelled_images,
        kind="sgd",
        cache_dir=str(tmp_path / "c"),
        progress=False,
        aligner_params={"epochs": 1},
    )
    assert sgd.is_fitted
    with pytest.raises(DataError, match="backend must be"):
        fit_aligner(bb, space, labelled_images, backend="spark", progress=False)


def test_on_shard_sees_every_new_shard_and_channels_last_changes_nothing(labelled_images, tmp_path):
    import timm

    seen = []
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()

    class Conv(FakeBackbone):
        def __init__(self):
            super().__init__(dim=512)
            self.net = model
            self._feature_dim = 512

        def forward(self, x):
            return self.net(x)

    plain = extract_features(
        labelled_images,
        {"source": Conv()},
        store=tmp_path / "a",
        shard_size=10,
        progress=False,
        on_shard=lambda s, t: seen.append((s, t["indices"].numel())),
    )
    assert sorted(seen) == [(0, 10), (1, 10), (2, 4)]
    cl = extract_features(
        labelled_images,
        {"source": Conv()},
        store=tmp_path / "b",
        shard_size=10,
        progress=False,
        channels_last=True,
        precision="fp32",
    )
    torch.testing.assert_close(cl.load()["source"], plain.load()["source"], rtol=1e-4, atol=1e-4)


def test_shard_statistics_are_multiplied_out_on_the_gpu_the_features_come_from():
    import torch

    from t2c_captum.aligners.fit import _stats_device

    assert _stats_device(None, "cuda") is None
    assert _stats_device(LinearAligner(), "cpu") is None  # the CPU
    assert _stats_device(LinearAligner(), "cuda") == torch.device("cuda")
    assert _stats_device(LinearAligner(device="cpu"), "cuda") == torch.device("cpu")  # asked for


def test_ray_workers_device_is_decided_on_the_driver():
    from t2c_captum.features.ray_backend import worker_device

    assert worker_device(None) == "cpu" and worker_device("auto") == "cpu"  # a driver's GPU is not theirs
    assert worker_device(None, gpus_per_worker=1) == "cuda" and worker_device("cuda:1") == "cuda:1"
