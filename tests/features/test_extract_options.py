"""One set of extraction settings for every command that extracts features."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from t2c_captum import ConfigurationError, DataError, SettingsError
from t2c_captum.cli import app
from t2c_captum.features import ExtractOptions, FeatureStore, extract_features
from t2c_captum.plugins import temporary_plugin
from t2c_captum.testing import FakeBackbone, FakePairPlugin

runner = CliRunner()

EXTRACTION_FLAGS = {
    "--batch-size", "--workers", "--device", "--precision", "--channels-last", "--compile",
    "--reduced-decode", "--strict", "--cache-dir", "--backend", "--ray-address", "--ray-workers",
}
EXTRACTING_COMMANDS = [
    ("fit",), ("eval",), ("concepts",), ("shift",), ("retrieve",), ("cbm", "fit"), ("cbm", "eval"),
    ("report",), ("cbm", "explain"), ("caption",),
]


@pytest.fixture
def aligner(labelled_images, tmp_path):
    """A saved aligner of the fake pair (the plugin stays registered for the test)."""
    with temporary_plugin(FakePairPlugin("fake-opt-bb", "fake-opt-space"), "fakes-options"):
        out = tmp_path / "al"
        fitted = runner.invoke(app, ["fit", "fake-opt-bb", "fake-opt-space", "--data", str(labelled_images),
                                     "--out", str(out), "--json"])
        assert fitted.exit_code == 0, fitted.output
        yield str(out)


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # a group's subcommands
    return command


@pytest.mark.parametrize("path", EXTRACTING_COMMANDS, ids=" ".join)
def test_every_extracting_command_takes_the_same_extraction_flags(path):
    command = _command(path)
    flags = {opt for p in command.params for opt in p.opts}
    assert flags >= EXTRACTION_FLAGS, sorted(EXTRACTION_FLAGS - flags)
    assert "extraction" not in {p.name for p in command.params}
    shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "Feature extraction" in shown.output, shown.output


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"backend": "spark"}, r"backend must be 'local' or 'ray' \(t2c: --backend\)"),
        ({"precision": "half"}, r"precision must be one of .* \(t2c: --precision\)"),
        ({"ray_workers": 0}, r"ray_workers .* at least 1 \(t2c: --ray-workers\)"),
        ({"ray_workers": True}, "ray_workers"),
        ({"ray_address": "10.0.0.1:6379"}, r"backend is local: add backend='ray' \(t2c: --backend ray\)"),
        ({"batch_size": 0}, r"batch_size must be at least 1, got 0 \(t2c: --batch-size\)"),
        ({"num_workers": -1}, r"num_workers must be at least 0, got -1 \(t2c: --workers\)"),
        ({"reduced_decode": 0.5}, "reduced_decode must be a number of at least 1"),
        ({"reduced_decode": float("nan")}, "reduced_decode"),
    ],
)
def test_settings_an_extraction_cannot_use_are_refused_when_made(settings, match):
    with pytest.raises(DataError, match=match):
        ExtractOptions(**settings)
    good = ExtractOptions(batch_size=8, backend="ray", ray_address="10.0.0.1:6379", ray_workers=3)
    with pytest.raises(DataError, match="batch_size"):
        good.with_(batch_size=0)
    assert good.with_(batch_size=16).as_dict()["batch_size"] == 16


@pytest.mark.parametrize("settings", [{"precision": "half"}, {"backend": "spark"}, {"batch_size": 0}])
def test_a_bad_setting_is_one_settings_error_whichever_function_takes_it(labelled_images, tmp_path, settings):
    caught = []
    for make in (lambda: ExtractOptions(**settings),
                 lambda: extract_features(labelled_images, {"source": FakeBackbone(dim=4)},
                                          cache_dir=str(tmp_path / "stores"), progress=False, **settings)):
        with pytest.raises(SettingsError) as info:
            make()
        caught.append(info.value)
    for error in caught:  # catchable as before (DataError) and as documented (ConfigurationError)
        assert isinstance(error, ConfigurationError) and isinstance(error, DataError)
        assert isinstance(error, ValueError)
    assert str(caught[0]) == str(caught[1])
    assert not (tmp_path / "stores").exists()  # refused before any store is created


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "batch_size must be at least 1, got 0 (t2c: --batch-size)"),
        (["--ray-address", "10.0.0.1:6379"], "add backend='ray' (t2c: --backend ray)"),
        (["--reduced-decode", "0.5"], "reduced_decode must be a number of at least 1"),
        (["--backend", "spark"], "'spark' is not one of 'local', 'ray'"),
        (["--precision", "half"], "'half' is not one of"),
    ],
)
def test_a_bad_flag_stops_every_command_before_anything_loads(tmp_path, args, message):
    missing = str(tmp_path / "no-such-aligner")  # never reached: the flags are checked first
    for path, rest in ((("concepts",), [missing, "-d", "world:test"]),
                       (("shift",), [missing, "-a", "world:test", "-b", "world:val"]),
                       (("cbm", "eval"), [missing, "-d", "world:test"]),
                       (("cbm", "explain"), [missing, "world:test"]),
                       (("caption",), [missing, "--data", "world:test"])):
        result = runner.invoke(app, [*path, *rest, *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
    assert not list(tmp_path.iterdir())


def test_flags_reach_the_extraction_and_a_second_command_reuses_the_store(aligner, labelled_images, tmp_path):
    cache = tmp_path / "stores"
    data = ["--data", str(labelled_images)]
    flags = ["--cache-dir", str(cache), "--precision", "fp32", "--batch-size", "5", "--no-channels-last"]
    shown = runner.invoke(app, ["concepts", aligner, *data, "-c", "red,blue,green", "--json", *flags])
    assert shown.exit_code == 0, shown.output
    (store_dir,) = cache.iterdir()
    assert store_dir.name.startswith("features-")
    store = FeatureStore(store_dir)
    assert store.manifest["precision"] == "fp32" and store.manifest["dataset"]["n"] == 24
    assert set(store.manifest["encoders"]) == {"source"}
    mtime = store_dir.joinpath("manifest.json").stat().st_mtime_ns
    found = runner.invoke(app, ["retrieve", aligner, '"red"', *data, "-k", "3", "--json", *flags])
    assert found.exit_code == 0, found.output
    assert list(cache.iterdir()) == [store_dir]  # the same images, encoder and settings: reused
    assert store_dir.joinpath("manifest.json").stat().st_mtime_ns == mtime
    evaluated = runner.invoke(app, ["eval", aligner, *data, "--json", *flags])
    assert evaluated.exit_code == 0, evaluated.output
    assert len([p for p in cache.iterdir() if p.name.startswith("eval-")]) == 1
    assert json.loads(evaluated.output)["n"] == 24


def test_reduced_decode_and_strict_reach_the_shift_command(aligner, tmp_path):
    from t2c_captum.testing import make_world_jpegs

    for name, split in (("a", "val"), ("b", "test")):
        make_world_jpegs(tmp_path / name, n=12, size=1024, split=split)
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    cache = tmp_path / "stores"
    args = ["shift", aligner, "-a", str(tmp_path / "a"), "-b", str(tmp_path / "b"), "-c", "red,blue",
            "--min-samples", "2", "--json", "--cache-dir", str(cache), "--reduced-decode", "2"]
    with pytest.warns(UserWarning, match="has no effect"):  # the fake backbone has no Resize
        strict = runner.invoke(app, [*args, "--strict"])
        assert strict.exit_code == 2 and "broken.jpg" in strict.output, strict.output
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifests = [FeatureStore(p).manifest for p in cache.iterdir()]
    assert {m["reduced_decode"] for m in manifests} == {2.0}
    assert sorted(m["dataset"]["n"] for m in manifests) == [12, 13]
    assert json.loads(result.output)["info"]["name_b"] == str(tmp_path / "b")


class _Counting(FakeBackbone):
    """Counts the images it sees (no probing forward pass)."""

    def __init__(self):
        super().__init__(dim=5)
        self.seen = 0
        self._feature_dim = 5

    def forward(self, x):
        self.seen += x.shape[0]
        return super().forward(x)


def test_extract_features_takes_one_options_object_or_the_settings_one_by_one(labelled_images, tmp_path):
    bb = _Counting()
    flat = extract_features(labelled_images, {"source": bb}, store=tmp_path / "s", shard_size=10,
                            batch_size=5, precision="fp32", device="cpu", progress=False)
    assert bb.seen == 24
    options = ExtractOptions(batch_size=7, precision="fp32", device="cpu", progress=False)
    again = extract_features(labelled_images, {"source": bb}, options, store=tmp_path / "s", shard_size=10)
    # the same store key however the settings came (the batch size is not part of it): nothing redone
    assert again.manifest["key"] == flat.manifest["key"] and bb.seen == 24
    # fields one by one go over the options: another precision is another store
    half = extract_features(labelled_images, {"source": bb}, options, store=tmp_path / "s", shard_size=10,
                            precision="bf16")
    assert half.precision == "bf16" and half.manifest["key"] != flat.manifest["key"] and bb.seen == 48
    assert options.precision == "fp32"  # the options object is not changed


def test_extract_features_refuses_unknown_settings_and_the_ray_backend(labelled_images, tmp_path):
    from t2c_captum import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"unknown extraction setting\(s\) 'batchsize'.*batch_size"):
        extract_features(labelled_images, {"source": FakeBackbone()}, store=tmp_path / "s", batchsize=4)
    with pytest.raises(ConfigurationError, match=r"backend is 'ray'.*options.extract"):
        extract_features(labelled_images, {"source": FakeBackbone()}, ExtractOptions(backend="ray"),
                         store=tmp_path / "s")
    with pytest.raises(DataError, match="batch_size must be at least 1"):
        extract_features(labelled_images, {"source": FakeBackbone()}, ExtractOptions(), batch_size=0)
    assert not (tmp_path / "s").exists()


def test_extract_features_puts_the_store_in_the_options_cache_dir(labelled_images, tmp_path):
    options = ExtractOptions(cache_dir=str(tmp_path / "stores"), device="cpu", progress=False)
    direct = extract_features(labelled_images, {"source": FakeBackbone()}, options)
    assert direct.path.parent == tmp_path / "stores" and direct.path.name.startswith("features-")
    assert options.extract(labelled_images, {"source": FakeBackbone()}).path == direct.path


def test_the_ray_function_takes_the_options_and_refuses_a_setting_given_twice(tmp_path, labelled_images):
    from t2c_captum import ConfigurationError
    from t2c_captum.features.ray_backend import extract_features_ray

    encoders = {"source": FakeBackbone()}
    # refused before Ray starts (the address is never dialled) and before a store exists
    twice = "give ray_workers once: as num_workers= or as ray_workers="
    with pytest.raises(ConfigurationError, match=twice), \
            pytest.warns(DeprecationWarning, match="num_workers=.*deprecated.*ray_workers="):
        extract_features_ray(labelled_images, encoders, store=tmp_path / "s", num_workers=2, ray_workers=3)
    with pytest.raises(ConfigurationError, match="give ray_address once: as address= or as ray_address="), \
            pytest.warns(DeprecationWarning, match="address=.*deprecated.*ray_address="):
        extract_features_ray(labelled_images, encoders, store=tmp_path / "s", address="127.0.0.1:1",
                             ray_address="127.0.0.1:2")
    with pytest.raises(ConfigurationError, match="unknown extraction setting"):
        extract_features_ray(labelled_images, encoders, ExtractOptions(), store=tmp_path / "s", shards=2)
    with pytest.raises(DataError, match="batch_size must be at least 1"):
        extract_features_ray(labelled_images, encoders, ExtractOptions(batch_size=8), batch_size=0,
                             ray_address="127.0.0.1:1", store=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_the_ray_function_s_old_names_still_reach_the_ray_settings(monkeypatch, tmp_path, labelled_images):
    from t2c_captum.features import ray_backend

    dialled = []

    class Unreachable(Exception):
        pass

    def connect(address, num_cpus=None):  # stops the run before Ray starts, with what it would dial
        dialled.append(address)
        raise Unreachable

    monkeypatch.setattr(ray_backend, "connect", connect)
    encoders = {"source": FakeBackbone()}
    with pytest.warns(DeprecationWarning, match=r"extract_features_ray\(address=...\) is deprecated"), \
            pytest.raises(Unreachable):
        ray_backend.extract_features_ray(labelled_images, encoders, address="10.0.0.1:6379")
    # the same value under both names is one setting, not a conflict
    with pytest.warns(DeprecationWarning, match="num_workers"), pytest.raises(Unreachable):
        ray_backend.extract_features_ray(labelled_images, encoders, num_workers=3, ray_workers=3,
                                         ray_address="10.0.0.2:6379")
    assert dialled == ["10.0.0.1:6379", "10.0.0.2:6379"]
    with pytest.warns(DeprecationWarning), pytest.raises(DataError, match="num_workers must be at least 1"):
        ray_backend.extract_features_ray(labelled_images, encoders, num_workers=0)
    assert not (tmp_path / "s").exists()


def test_settings_of_the_base_class_become_options():
    from t2c_captum.features.settings import ExtractSettings

    base = ExtractSettings(batch_size=3, progress=False)
    options = ExtractOptions.from_settings(base, precision="fp32")
    assert type(options) is ExtractOptions and hasattr(options, "extract")
    assert options.as_dict() == {**ExtractOptions().as_dict(), "batch_size": 3, "progress": False,
                                 "precision": "fp32"}


# ------------------------------------------- task functions: extraction= plus the old keywords


class _Reached(Exception):
    """Raised by the spy once the extraction settings are recorded."""


@pytest.fixture
def seen(monkeypatch):
    """The options every ``ExtractOptions.extract`` call gets (the call then stops with _Reached)."""
    calls: list[ExtractOptions] = []

    def spy(self, data, encoders, **kwargs):
        calls.append(self)
        raise _Reached

    monkeypatch.setattr(ExtractOptions, "extract", spy)
    return calls


def _diagnose(images, **kwargs):
    from t2c_captum.concepts import ConceptBank
    from t2c_captum.shift import diagnose_shift
    from t2c_captum.testing import FakeSpace

    space = FakeSpace(dim=8)
    bank = ConceptBank.build(space, ["x", "y", "z"], cache=False)
    with pytest.raises(_Reached):
        diagnose_shift(str(images), str(images), bank, None, space, **kwargs)


def _caption(images, **kwargs):
    from t2c_captum.decoders import caption_images

    with pytest.raises(_Reached):
        caption_images(object(), str(images), FakeBackbone(dim=6), object(), **kwargs)


@pytest.mark.parametrize("call", [_diagnose, _caption], ids=["diagnose_shift", "caption_images"])
def test_task_functions_take_extraction_options_and_the_old_keywords_over_them(call, seen, labelled_images):
    call(labelled_images)  # nothing given: as before (batches of 64, auto device, no progress bars)
    assert (seen[-1].batch_size, seen[-1].device, seen[-1].progress) == (64, "auto", False)
    call(labelled_images, extraction=ExtractOptions(batch_size=7, precision="fp32", progress=False))
    assert (seen[-1].batch_size, seen[-1].precision, seen[-1].progress) == (7, "fp32", False)
    call(labelled_images, extraction=ExtractOptions(batch_size=7, precision="fp32"), batch_size=5,
         device="cpu", progress=False)  # the keywords apply over extraction=, as fit_aligner's settings do
    assert (seen[-1].batch_size, seen[-1].device, seen[-1].precision, seen[-1].progress) == (
        5, "cpu", "fp32", False)
    call(labelled_images, batch_size=3, progress=True)
    assert (seen[-1].batch_size, seen[-1].progress) == (3, True)


def test_task_functions_check_the_settings_before_reading_anything(seen):
    from t2c_captum.decoders import caption_images
    from t2c_captum.shift import diagnose_shift

    with pytest.raises(SettingsError, match="batch_size must be at least 1"):
        diagnose_shift("no-such-folder", "no-such-folder", None, batch_size=0)
    with pytest.raises(SettingsError, match="batch_size must be at least 1"):
        caption_images(object(), "no-such-folder", extraction=ExtractOptions(precision="fp32"), batch_size=0)
    assert not seen


def test_the_cbm_explain_and_decoder_caption_flags_reach_the_extraction(monkeypatch, seen):
    import t2c_captum.commands.cbm as cbm_commands
    import t2c_captum.decoders as decoders
    import t2c_captum.spaces as spaces

    got: list[ExtractOptions] = []

    def features(data, backbone, extraction):
        got.append(extraction)
        raise _Reached

    monkeypatch.setattr(cbm_commands, "_load_cbm", lambda *args: (object(), object()))
    monkeypatch.setattr(cbm_commands, "backbone_features", features)
    result = runner.invoke(app, ["cbm", "explain", "some-cbm", "world:test:shape:2", "--batch-size", "7",
                                 "--device", "cpu", "--precision", "fp32"])
    assert isinstance(result.exception, _Reached), result.output
    assert (got[-1].batch_size, got[-1].device, got[-1].precision, got[-1].progress) == (
        7, "cpu", "fp32", False)  # no progress bars, as before

    class Decoder:
        space_identity = {"id": "some-space"}

    def caption_images(decoder, images, backbone=None, aligner=None, *, space=None, extraction=None, **kw):
        got.append(extraction)
        return ["a caption"] * len(images)

    monkeypatch.setattr(decoders, "load_decoder", lambda name, **kw: Decoder())
    monkeypatch.setattr(decoders, "caption_images", caption_images)
    monkeypatch.setattr(spaces, "load_space", lambda name: object())
    result = runner.invoke(app, ["caption", "some-decoder", "--data", "world:test:shape:2",
                                 "--batch-size", "7", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 2
    assert (got[-1].batch_size, got[-1].device, got[-1].progress) == (7, "cpu", False)
