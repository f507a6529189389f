"""Concept probes as named parts: registered once, loaded by name anywhere a path works, and
attached to any model in one call (issue 20)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from t2c_captum import (
    Aligner,
    DuplicateNameError,
    IncompatibleArtifactError,
    PluginError,
    Probe,
    T2CError,
    attach,
    hookimpl,
    load_aligner,
    load_backbone,
    load_probe,
)
from t2c_captum._exceptions import CheckpointFormatError
from t2c_captum.cli import app
from t2c_captum.data import open_source
from t2c_captum.plugins import temporary_plugin
from t2c_captum.world import FACTORS

runner = CliRunner()
SHAPES = list(FACTORS["shape"])
TEST_DATA = "world:test:shape:60"


class ProbePlugin:
    """A third party's plugin: one fitted probe, loaded from its artifact."""

    def __init__(self, path, name="cnn-probe"):
        self.path, self.name = path, name

    @hookimpl
    def register_probes(self, register):
        register(self.name, lambda: Aligner.load(self.path), description="world-cnn read in world-clip")


@pytest.fixture(scope="module")
def saved_probe(tmp_path_factory, world_aligned):
    _, _, aligner = world_aligned("world-cnn")
    path = tmp_path_factory.mktemp("probe") / "cnn"
    aligner.save(path)
    return path


@pytest.fixture
def registered(saved_probe):
    with temporary_plugin(ProbePlugin(saved_probe), "acme-probes"):
        yield "cnn-probe"


def _labels(spec):
    source = open_source(spec)
    return torch.tensor([source[i][1] for i in range(len(source))])


def test_a_registered_name_loads_one_probe_with_backbone_layer_space_and_vocabulary(registered):
    probe = load_probe(registered)
    assert isinstance(probe, Probe)
    assert probe.backbone.name == "world-cnn" and probe.layer == "penultimate"
    assert probe.space.name == "world-clip" and probe.vocabulary == "world"
    assert "cnn-probe" in repr(probe)


def test_the_verbs_read_the_concept_world_correctly(registered):
    probe = load_probe(registered)
    labels = _labels(TEST_DATA)
    predicted = probe.classify(TEST_DATA, SHAPES).indices[:, 0]
    assert (predicted == labels).float().mean() > 0.9  # world-cnn names shapes through its aligner
    scores = probe.scores(TEST_DATA, SHAPES)
    assert scores.values.shape == (60, 6) and scores.concepts == SHAPES
    assert (scores.values.argmax(1) == labels).float().mean() > 0.9
    assert scores.top(2)[0][0][0] in SHAPES
    grouped = probe.scores(TEST_DATA, contrast=True)  # the world vocabulary, margins within groups
    shape_columns = [grouped.concepts.index(s) for s in SHAPES]
    assert (grouped.values[:, shape_columns].argmax(1) == labels).float().mean() > 0.9
    units = probe.name_units([0, 1], k=2)
    assert len(units.by_aligner) == 2 and len(units.by_aligner[0]) == 2


def test_explain_gives_captum_maps_of_a_concept(registered):
    probe = load_probe(registered)
    maps = probe.explain(TEST_DATA, concept="star", method="saliency", limit=3)
    assert maps.maps.shape == (3, 64, 64) and bool((maps.maps >= 0).all())
    outside = probe.explain(TEST_DATA, concept="a small blue thing", method="saliency", limit=2)
    assert outside.concept == "a small blue thing"


def test_images_as_tensors_and_as_a_source_give_the_same_features(registered):
    probe = load_probe(registered)
    source = open_source("world:test:shape:5")
    pixels = torch.stack([probe.backbone.preprocess(source[i][0]) for i in range(5)])
    torch.testing.assert_close(probe.features(pixels), probe.features("world:test:shape:5"))
    torch.testing.assert_close(probe.features([source[i][0] for i in range(5)]), probe.features(pixels))
    with pytest.raises(T2CError, match=r"\[N, 3, H, W\]"):
        probe.features(pixels[0])


def test_the_probe_extracts_with_its_options_and_a_call_may_override_them(registered, tmp_path):
    from t2c_captum import ExtractOptions, SettingsError

    own = ExtractOptions(cache_dir=str(tmp_path / "probe"), progress=False)
    probe = load_probe(registered, extraction=own)
    assert probe.extraction.cache_dir == str(tmp_path / "probe")
    plain = load_probe(registered).features("world:test:shape:6")
    torch.testing.assert_close(probe.features("world:test:shape:6"), plain)
    assert len(list((tmp_path / "probe").glob("features-*"))) == 1  # the probe's store folder
    per_call = ExtractOptions(cache_dir=str(tmp_path / "call"), progress=False)
    torch.testing.assert_close(probe.features("world:test:shape:6", extraction=per_call, batch_size=4), plain)
    assert len(list((tmp_path / "call").glob("features-*"))) == 1
    probe.scores("world:test:shape:7")  # the verbs go through the probe's options too
    assert len(list((tmp_path / "probe").glob("features-*"))) == 2
    with pytest.raises(SettingsError, match="batch_size"):
        probe.features("world:test:shape:6", batch_size=0)


def test_caption_without_a_decoder_says_how_to_give_one(registered):
    with pytest.raises(T2CError, match="decoder="):
        load_probe(registered).caption(TEST_DATA)


def test_the_probe_name_works_in_every_command_and_in_load_aligner(registered, saved_probe):
    assert torch.equal(load_aligner(registered).weight_, load_aligner(saved_probe).weight_)
    out = runner.invoke(app, ["concepts", registered, "--data", "world:test:shape:50", "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.output)["images"]) == 10
    by_name = runner.invoke(app, ["eval", registered, "--data", "world:test:shape:50", "--json"])
    by_path = runner.invoke(app, ["eval", str(saved_probe), "--data", "world:test:shape:50", "--json"])
    assert by_name.exit_code == 0, by_name.output
    assert json.loads(by_name.output) == json.loads(by_path.output)


def test_t2c_plugins_lists_each_probe_with_what_it_was_fitted_for(registered):
    out = runner.invoke(app, ["plugins", "--json"])
    assert out.exit_code == 0, out.output
    row = next(r for r in json.loads(out.output) if r["kind"] == "probes" and r["name"] == registered)
    assert (row["plugin"], row["backbone"], row["layer"], row["space"]) == (
        "acme-probes", "world-cnn", "penultimate", "world-clip"
    )
    assert "(fitted:" in runner.invoke(app, ["plugins"]).output  # the table says so too


def test_an_unknown_name_suggests_the_probe(registered):
    with pytest.raises(CheckpointFormatError, match="Did you mean the probe 'cnn-probe'"):
        load_probe("cnn-prob")
    out = runner.invoke(app, ["concepts", "cnn-prob", "--data", TEST_DATA])
    assert out.exit_code == 2 and "cnn-probe" in out.output


def test_a_probe_used_with_another_backbone_lists_the_fields_that_differ(registered):
    with pytest.raises(IncompatibleArtifactError, match=r"backbone\.id: saved 'world-cnn', given 'world-ae'"):
        load_probe(registered, backbone="world-ae")


def test_a_loader_that_raises_names_the_plugin(tmp_path):
    class Broken:
        @hookimpl
        def register_probes(self, register):
            register("broken-probe", lambda: Aligner.load(tmp_path / "gone"))

    with temporary_plugin(Broken(), "broken-plugin"):
        with pytest.raises(PluginError, match=r"'broken-probe' from plugin 'broken-plugin' failed to load"):
            load_probe("broken-probe")
        out = runner.invoke(app, ["plugins", "--json"])
        assert out.exit_code == 0
        row = next(r for r in json.loads(out.output) if r["name"] == "broken-probe")
        assert "failed to load" in row["error"]


def test_one_probe_name_from_two_plugins_names_both(saved_probe):
    with (
        pytest.raises(DuplicateNameError, match=r"'cnn-probe'.*'first'.*'second'"),
        temporary_plugin(ProbePlugin(saved_probe), "first"),
        temporary_plugin(ProbePlugin(saved_probe), "second"),
    ):
        load_probe("cnn-probe")


def test_a_loader_may_return_a_probe_with_its_own_vocabulary(saved_probe):
    class WithVocabulary:
        @hookimpl
        def register_probes(self, register):
            register("shape-probe", lambda: load_probe(saved_probe, vocabulary=SHAPES))

    with temporary_plugin(WithVocabulary(), "shapes"):
        probe = load_probe("shape-probe")
        assert probe.vocabulary == SHAPES and probe.bank().concepts == SHAPES
        out = runner.invoke(app, ["concepts", "shape-probe", "--data", "world:test:shape:20", "--json"])
        assert out.exit_code == 0, out.output
        assert {c for image in json.loads(out.output)["images"] for c, _ in image["top"]} <= set(SHAPES)


def test_attach_fits_a_probe_for_any_module_in_one_call():
    world_cnn = load_backbone("world-cnn")
    probe = attach(world_cnn.model, layer="activation", space="world-clip", data="world:train:shape:1500",
                   preprocess=world_cnn.preprocess, input_size=(3, 64, 64), name="my-cnn")
    assert probe.backbone.name == "my-cnn" and probe.layer == "activation"
    predicted = probe.classify(TEST_DATA, SHAPES).indices[:, 0]
    assert (predicted == _labels(TEST_DATA)).float().mean() > 0.8
    again = attach(world_cnn.model, layer="activation", space="world-clip", aligner=probe.aligner,
                   preprocess=world_cnn.preprocess, input_size=(3, 64, 64), name="my-cnn")
    assert again.aligner is probe.aligner
    with pytest.raises(T2CError, match="data="):
        attach(world_cnn.model, layer="activation", space="world-clip")


def test_an_hf_hub_id_loads_a_probe_through_the_local_loading_code(saved_probe, monkeypatch, tmp_path):
    import shutil

    import huggingface_hub

    fetched = []

    def fake_download(repo_id, filename):
        fetched.append((repo_id, filename))
        target = tmp_path / filename
        shutil.copy(saved_probe.with_name(filename), target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    probe = load_probe("hf-hub:acme/world-probes/cnn")
    assert fetched == [("acme/world-probes", "cnn.json"), ("acme/world-probes", "cnn.safetensors")]
    assert (probe.backbone.name, probe.space.identity["id"]) == ("world-cnn", "world-clip")
    local = load_probe(saved_probe)
    images = open_source("world:test:shape:8")
    torch.testing.assert_close(probe.scores(images, SHAPES).values, local.scores(images, SHAPES).values)
