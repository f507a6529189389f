from __future__ import annotations

import pytest
import torch

from t2c_captum import DataError, FeatureStore, extract_features
from t2c_captum.testing import FakeBackbone, FakeSpace, float32_tolerance, make_images


class CountingBackbone(FakeBackbone):
    """Counts images it sees; can be told to fail after some calls."""

    def __init__(self, fail_after=None):
        super().__init__(dim=5)
        self.seen = 0
        self.fail_after = fail_after
        self._feature_dim = 5  # skip the probing forward pass, so `seen` counts real images

    def forward(self, x):
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen += x.shape[0]
        return super().forward(x)


def test_extract_once_then_reuse(tmp_path, labelled_images):
    bb, space = CountingBackbone(), FakeSpace()
    store = extract_features(
        labelled_images,
        {"source": bb, "target": space},
        store=tmp_path / "s",
        batch_size=5,
        shard_size=10,
        progress=False,
    )
    assert len(store) == 24 and store.complete and bb.seen == 24
    data = store.load()
    assert data["source"].shape == (24, 5) and data["target"].shape == (24, 6)
    assert data["indices"].tolist() == list(range(24))
    assert store.class_names == ["cat", "dog", "fox"]
    again = extract_features(
        labelled_images,
        {"source": bb, "target": space},
        store=tmp_path / "s",
        batch_size=5,
        shard_size=10,
        progress=False,
    )
    assert bb.seen == 24 and torch.equal(again.load()["source"], data["source"])


def test_each_image_decoded_once_for_both_encoders(tmp_path, labelled_images, monkeypatch):
    from t2c_captum.data import sources

    calls = []
    original = sources._to_pil
    monkeypatch.setattr(sources, "_to_pil", lambda obj, *rest: calls.append(obj) or original(obj, *rest))
    extract_features(
        labelled_images,
        {"source": FakeBackbone(), "target": FakeSpace()},
        store=tmp_path / "s",
        progress=False,
    )
    assert len(calls) == 24


def test_interrupted_run_resumes_without_redoing_finished_shards(tmp_path, labelled_images):
    crashing = CountingBackbone(fail_after=10)
    with pytest.raises(RuntimeError, match="simulated"):
        extract_features(
            labelled_images,
            {"source": crashing, "target": FakeSpace()},
            store=tmp_path / "s",
            batch_size=5,
            shard_size=10,
            progress=False,
        )
    partial = FeatureStore(tmp_path / "s")
    assert len(partial) == 10 and not partial.complete
    resumed = CountingBackbone()
    store = extract_features(
        labelled_images,
        {"source": resumed, "target": FakeSpace()},
        store=tmp_path / "s",
        batch_size=5,
        shard_size=10,
        progress=False,
    )
    assert resumed.seen == 14 and len(store) == 24 and store.complete


def test_changed_preprocessing_or_model_gets_a_new_store(labelled_images):
    a = extract_features(
        labelled_images, {"source": FakeBackbone(dim=5), "target": FakeSpace()}, progress=False
    )
    b = extract_features(
        labelled_images, {"source": FakeBackbone(dim=7), "target": FakeSpace()}, progress=False
    )
    assert a.path != b.path and b.dim("source") == 7


def test_nan_features_stop_with_a_clear_error_and_keep_finished_shards(tmp_path, labelled_images):
    class NaNAfter(FakeBackbone):
        calls = 0

        def forward(self, x):
            NaNAfter.calls += 1
            out = super().forward(x)
            return out * float("nan") if NaNAfter.calls > 2 else out

    backbone = NaNAfter(dim=5)
    backbone._feature_dim = 5  # no probing forward pass: calls count batches
    with pytest.raises(DataError, match="NaN/Inf"):
        extract_features(
            labelled_images,
            {"source": backbone, "target": FakeSpace()},
            store=tmp_path / "s",
            batch_size=5,
            shard_size=10,
            progress=False,
        )
    assert len(FeatureStore(tmp_path / "s")) == 10


def test_unreadable_images_are_counted_in_the_store(tmp_path):
    make_images(tmp_path / "imgs", n=6)
    (tmp_path / "imgs" / "zzz.png").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        store = extract_features(
            tmp_path / "imgs",
            {"source": FakeBackbone(), "target": FakeSpace()},
            store=tmp_path / "s",
            progress=False,
        )
    assert len(store) == 6 and store.skipped == [6]


def test_not_a_store(tmp_path):
    with pytest.raises(DataError, match="not a feature store"):
        FeatureStore(tmp_path)


def test_worker_processes_give_the_same_features(tmp_path, labelled_images):
    encoders = {"source": FakeBackbone(dim=5), "target": FakeSpace()}
    serial = extract_features(labelled_images, encoders, store=tmp_path / "a", progress=False).load()
    parallel = extract_features(
        labelled_images, encoders, store=tmp_path / "b", num_workers=2, batch_size=4, progress=False
    ).load()
    # other batch sizes (64 in-process, 4 with workers): float32 kernels may sum in another order, so
    # the features agree to the float32 bound of their 192-term dot products, not bit for bit
    assert torch.equal(serial["indices"], parallel["indices"])
    for name, layer in (("source", encoders["source"].proj), ("target", encoders["target"].image_proj)):
        magnitude = float(layer.weight.abs().sum(1).max() + layer.bias.abs().max())  # pixels in [0, 1]
        torch.testing.assert_close(parallel[name], serial[name], **float32_tolerance(192, magnitude))


def test_precision_is_part_of_the_store_key_and_recorded(tmp_path, labelled_images):
    from t2c_captum._device import resolve_precision
    from t2c_captum.features import store_key

    bb, space = CountingBackbone(), FakeSpace()
    encoders = {"source": bb, "target": space}
    opts = dict(batch_size=8, shard_size=10, progress=False, device="cpu")
    full = extract_features(labelled_images, encoders, store=tmp_path / "s", precision="auto", **opts)
    assert full.precision == "fp32" and bb.seen == 24  # auto on the CPU is fp32
    ids = full.manifest["encoders"]
    assert full.manifest["key"] == store_key(ids, full.manifest["dataset"]["fingerprint"], 10)  # as before
    half = extract_features(labelled_images, encoders, store=tmp_path / "s", precision="bf16", **opts)
    assert half.precision == "bf16" and half.manifest["key"] != full.manifest["key"]
    assert bb.seen == 48 and half.complete  # bf16 features are not reused for an fp32 request...
    again = extract_features(labelled_images, encoders, store=tmp_path / "s", precision="fp32", **opts)
    assert bb.seen == 72 and again.precision == "fp32"  # ...nor the other way round
    assert resolve_precision("cpu") == "fp32" and resolve_precision("cpu", "fp16") == "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("cpu", "half")


def test_channels_last_is_on_by_default_on_cuda_and_cpu_only():
    from torch import nn

    from t2c_captum.features.extract import _is_channels_last, default_channels_last, prepare_models

    assert [default_channels_last(torch.device(d)) for d in ("cuda", "cpu", "mps", "xpu")] == [
        True, True, False, False]
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    assert _is_channels_last(prepare_models({"m": conv}, torch.device("cpu"))["m"])  # auto: on
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    assert not _is_channels_last(prepare_models({"m": plain}, torch.device("cpu"), channels_last=False)["m"])


def test_decoding_workers_default_to_none_on_the_cpu_and_most_cores_on_cuda(monkeypatch):
    import os

    from t2c_captum.features.extract import default_workers

    assert default_workers(torch.device("cpu")) == 0 and default_workers(torch.device("mps")) == 0
    for cores, expected in ((1, 1), (2, 1), (6, 5), (64, 16)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert default_workers(torch.device("cuda")) == expected


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("num_workers", -1, "num_workers must be at least 0, got -1"),
     ("batch_size", 0, "batch_size must be at least 1, got 0"),
     ("shard_size", 0, "shard_size must be at least 1, got 0")],
)
def test_sizes_an_extraction_cannot_use_are_refused_before_a_store_exists(
    tmp_path, labelled_images, option, value, message
):
    with pytest.raises(DataError, match=message):
        extract_features(labelled_images, {"source": FakeBackbone()}, store=tmp_path / "s",
                         progress=False, **{option: value})
    assert not (tmp_path / "s").exists()


class _ViewNet(torch.nn.Module):
    """A conv net written the old way: ``.view`` after the convolutions (fails on channels-last)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(self.conv(x))
        return self.fc(x.view(x.shape[0], -1))


def test_a_net_that_cannot_run_channels_last_falls_back_to_contiguous_with_a_warning(
    tmp_path, labelled_images
):
    from t2c_captum.backbones import module_backbone
    from t2c_captum.features.extract import _is_channels_last

    torch.manual_seed(0)
    net = _ViewNet()
    bb = module_backbone(net, layer="fc", input_size=(3, 16, 16))
    with pytest.warns(UserWarning, match="fails in channels-last memory format"):
        auto = extract_features(labelled_images, {"source": bb}, store=tmp_path / "a", progress=False,
                                device="cpu")
    assert not _is_channels_last(net)
    plain = extract_features(labelled_images, {"source": bb}, store=tmp_path / "b", progress=False,
                             device="cpu", channels_last=False)
    torch.testing.assert_close(auto.load()["source"], plain.load()["source"])


def test_other_errors_of_a_channels_last_forward_are_not_swallowed():
    from t2c_captum.features.extract import _call

    net = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="channels"):  # wrong channel count: the real error
        _call("m", net, torch.randn(1, 5, 8, 8).contiguous(memory_format=torch.channels_last))


def test_a_leading_1x1_convolution_does_not_hide_the_memory_format():
    from torch import nn

    from t2c_captum.features.extract import _is_channels_last

    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3))  # 1x1 weights read the same either way
    assert not _is_channels_last(net)
    assert _is_channels_last(net.to(memory_format=torch.channels_last))


def test_encoders_get_their_memory_format_back_after_an_extraction(tmp_path, labelled_images):
    from torch import nn

    from t2c_captum.backbones import module_backbone
    from t2c_captum.features.extract import _is_channels_last

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    bb = module_backbone(net, layer="2", input_size=(3, 16, 16))
    extract_features(labelled_images, {"source": bb}, store=tmp_path / "s", channels_last=True,
                     progress=False, device="cpu")
    assert not _is_channels_last(bb)  # as the caller gave it (a GPU run also moves it back)
