"""Ray Data backend on a local Ray instance: same store and same fit as in-process, faults, CLI."""

from __future__ import annotations

import sys

import pytest
import torch

ray = pytest.importorskip("ray", reason="the Ray backend needs ray[data] (pip install 't2c_captum[ray]')")

from t2c_captum import DataError, FeatureStore, extract_features  # noqa: E402
from t2c_captum.aligners import LinearAligner  # noqa: E402
from t2c_captum.aligners.fit import fit_from_store  # noqa: E402
from t2c_captum.aligners.streaming import FitStatistics  # noqa: E402
from t2c_captum.features.ray_backend import RayClusterError, connect, extract_features_ray  # noqa: E402
from t2c_captum.testing import (  # noqa: E402
    FakeBackbone,
    FakePairPlugin,
    FakeSpace,
    float32_tolerance,
    make_images,
)

pytestmark = pytest.mark.slow


class FailingBackbone(FakeBackbone):
    """Kills its worker process once while ``die`` exists (removing it); raises while ``fail`` exists."""

    def __init__(self, folder, dim=5):
        super().__init__(dim=dim)
        self.folder = str(folder)
        self._feature_dim = dim

    def forward(self, x):
        import os

        die, fail = os.path.join(self.folder, "die"), os.path.join(self.folder, "fail")
        if os.path.exists(die):
            os.remove(die)
            os._exit(1)  # the worker process dies mid-shard
        if os.path.exists(fail):
            raise RuntimeError("simulated worker failure")
        return super().forward(x)


@pytest.fixture(scope="module")
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    connect(None, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-images")
    make_images(root / "tree", n=40, classes=["cat", "dog"])
    return root / "tree"


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def test_ray_store_and_fit_equal_the_in_process_ones(local_ray, images, tmp_path):
    encoders = {"source": FakeBackbone(dim=5), "target": FakeSpace(dim=4)}
    store, stats = extract_features_ray(
        images,
        encoders,
        store=tmp_path / "ray",
        shard_size=8,
        batch_size=4,
        ray_workers=2,
        summary=FitStatistics(),
        progress=False,
    )
    local = extract_features(images, encoders, store=tmp_path / "local", shard_size=8, progress=False)
    assert store.complete and store.manifest["key"] == local.manifest["key"]
    a, b = store.load(), local.load()
    assert a["indices"].tolist() == list(range(40))
    # batches of 4 on Ray, 64 in-process: equal to the float32 bound of a 192-term dot product
    proj = encoders["source"].proj  # pixels in [0, 1]: Σ|x·w| is at most a row's L1 norm
    magnitude = float(proj.weight.abs().sum(1).max() + proj.bias.abs().max())
    torch.testing.assert_close(a["source"], b["source"], **float32_tolerance(192, magnitude))
    aligner = LinearAligner().add_stats(*FitStatistics.combine(stats))
    aligner.solve()
    reference = fit_from_store(local, LinearAligner())
    assert aligner.fit_stats_["n_train"] + aligner.fit_stats_["n_holdout"] == 40
    assert _relative(aligner.weight_, reference.weight_) < 1e-5
    assert _relative(aligner.transform(b["source"]), reference.transform(b["source"])) < 1e-5
    assert aligner.fit_stats_["alpha"] == reference.fit_stats_["alpha"]


def test_dead_and_failing_workers_lose_and_duplicate_nothing_and_reruns_resume(local_ray, images, tmp_path):
    encoders = {"source": FailingBackbone(tmp_path), "target": FakeSpace(dim=4)}
    store_dir = tmp_path / "store"
    (tmp_path / "die").write_text("")
    first, _ = extract_features_ray(
        images, encoders, store=store_dir, shard_size=8, ray_workers=1, progress=False
    )
    assert not (tmp_path / "die").exists()  # a worker process did die, and Ray redid its shard
    assert first.complete and first.load()["indices"].tolist() == list(range(40))
    mtimes = {s: first.shard_file(s).stat().st_mtime_ns for s in range(5)}
    for s in (2, 4):  # as if the driver had stopped after three shards
        first.manifest["shards"].pop(str(s))
    from t2c_captum._io import atomic_write_json

    atomic_write_json(store_dir / "manifest.json", first.manifest)
    (tmp_path / "fail").write_text("")
    with pytest.raises(DataError, match="rerun the same command to resume"):
        extract_features_ray(images, encoders, store=store_dir, shard_size=8, ray_workers=1, progress=False)
    assert not FeatureStore(store_dir).complete
    (tmp_path / "fail").unlink()
    store, stats = extract_features_ray(
        images,
        encoders,
        store=store_dir,
        shard_size=8,
        ray_workers=2,
        summary=FitStatistics(),
        progress=False,
    )
    assert store.complete
    assert {s: store.shard_file(s).stat().st_mtime_ns for s in (0, 1, 3)} == {s: mtimes[s] for s in (0, 1, 3)}
    assert store.load()["indices"].tolist() == list(range(40))  # nothing duplicated or lost
    train, held = FitStatistics.combine(stats)
    assert len(stats) == 5 and train.n + held.n == 40  # the resumed shards' summaries come from the store


def test_ray_workers_decode_reduced_as_the_in_process_extraction_does(local_ray, tmp_path):
    from t2c_captum.backbones import load_backbone
    from t2c_captum.testing import make_world_jpegs

    photos = tmp_path / "photos"
    make_world_jpegs(photos, 12, size=512)
    encoders = {"source": load_backbone("world-cnn")}
    options = dict(shard_size=8, batch_size=4, progress=False, reduced_decode=2.0)
    store, _ = extract_features_ray(photos, encoders, store=tmp_path / "ray", ray_workers=2, **options)
    local = extract_features(photos, encoders, store=tmp_path / "local", **options)
    full = extract_features(photos, encoders, store=tmp_path / "full", shard_size=8, progress=False)
    assert store.manifest["key"] == local.manifest["key"] != full.manifest["key"]
    torch.testing.assert_close(store.load()["source"], local.load()["source"])
    assert not torch.equal(store.load()["source"], full.load()["source"])  # the workers did reduce


def test_an_unreachable_cluster_is_a_clear_error_and_creates_no_store(tmp_path, images):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayClusterError, match="cannot reach the Ray cluster.*No feature store"):
        extract_features_ray(
            images,
            {"source": FakeBackbone(dim=5)},
            store=tmp_path / "s",
            ray_address=f"127.0.0.1:{port}",
            progress=False,
        )
    assert not (tmp_path / "s").exists()


# num_workers: the old name of ray_workers, deprecated and still refused below 1
@pytest.mark.filterwarnings(r"ignore:extract_features_ray\(num_workers=:DeprecationWarning")
@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("shard_size", -4), ("num_workers", 0)])
def test_sizes_the_workers_cannot_use_are_refused_before_ray_starts(tmp_path, images, option, value):
    with pytest.raises(DataError, match=f"{option} must be at least"):
        extract_features_ray(images, {"source": FakeBackbone(dim=5)}, store=tmp_path / "s",
                             ray_address="127.0.0.1:1", progress=False, **{option: value})
    assert not (tmp_path / "s").exists()


def test_cli_fit_on_tar_shards_switches_to_ray_with_one_flag(local_ray, tmp_path):
    import json

    from typer.testing import CliRunner

    from t2c_captum.aligners import load_aligner
    from t2c_captum.cli import app
    from t2c_captum.plugins import temporary_plugin

    from .test_inputs_and_faults import write_tar_shards

    tars = write_tar_shards(tmp_path / "tars", n_shards=3, per_shard=8)  # webdataset-style input
    runner = CliRunner()
    with temporary_plugin(FakePairPlugin("fake-ray-bb", "fake-ray-space"), "fakes-ray"):
        # both fakes are linear in the same pixels (held-out R² = 1 for any small alpha), so the
        # alpha search would pick among ties; a fixed alpha makes the two fits comparable
        args = ["fit", "fake-ray-bb", "fake-ray-space", "--data", str(tars), "--json", "--alpha", "0.1"]
        local = runner.invoke(
            app, [*args, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "l")]
        )
        assert local.exit_code == 0, local.output
        on_ray = runner.invoke(
            app,
            [
                *args,
                "--out",
                str(tmp_path / "ray"),
                "--cache-dir",
                str(tmp_path / "r"),
                "--backend",
                "ray",
                "--ray-workers",
                "2",
            ],
        )
        assert on_ray.exit_code == 0, on_ray.output
        a, b = load_aligner(str(tmp_path / "ray")), load_aligner(str(tmp_path / "local"))
        assert _relative(a.weight_, b.weight_) < 1e-5
        assert json.loads(on_ray.output)["n_train"] == json.loads(local.output)["n_train"]


def test_cli_concepts_and_shift_switch_to_ray_with_the_same_flag(local_ray, images, tmp_path):
    import json

    from typer.testing import CliRunner

    from t2c_captum.cli import app
    from t2c_captum.plugins import temporary_plugin

    runner = CliRunner()
    with temporary_plugin(FakePairPlugin("fake-ray-bb", "fake-ray-space"), "fakes-ray-concepts"):
        fitted = runner.invoke(app, ["fit", "fake-ray-bb", "fake-ray-space", "--data", str(images),
                                     "--out", str(tmp_path / "al"), "--json"])
        assert fitted.exit_code == 0, fitted.output
        for command in (["concepts", "--data", str(images)],
                        ["shift", "--source", str(images / "cat"), "--target", str(images / "dog")]):
            args = [command[0], str(tmp_path / "al"), *command[1:], "-c", "red,blue,green", "--json"]
            local = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / command[0] / "l")])
            assert local.exit_code == 0, local.output
            on_ray = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / command[0] / "r"),
                                         "--backend", "ray", "--ray-workers", "2"])
            assert on_ray.exit_code == 0, on_ray.output
            stores = list((tmp_path / command[0] / "r").iterdir())
            assert len(stores) == (1 if command[0] == "concepts" else 2)
            assert _same_json(json.loads(on_ray.output), json.loads(local.output)), on_ray.output


def _same_json(a, b, tol=1e-5):
    """Equal JSON documents, numbers within ``tol`` (float rounding differs between processes)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or abs(a - b) <= tol * max(1.0, abs(b))  # NaN (untested) on both
    return a == b
