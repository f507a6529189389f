from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from t2c_captum import hookimpl
from t2c_captum.cli import app
from t2c_captum.plugins import temporary_plugin
from t2c_captum.testing import FakeBackbone, FakeSpace

runner = CliRunner()


class FakesPlugin:
    @hookimpl
    def register_backbones(self, register):
        def make(**_):
            bb = FakeBackbone(dim=10, n_classes=3, name="fake-bb")
            bb.class_names = ["cat", "dog", "fox"]
            return bb

        register("fake-bb", make, description="a fake backbone")

    @hookimpl
    def register_spaces(self, register):
        register("fake-space", lambda **_: FakeSpace(dim=6, name="fake-space"))


@pytest.fixture
def fakes():
    with temporary_plugin(FakesPlugin(), "fakes"):
        yield


def test_help_is_there_for_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("fit", "eval", "classify", "plugins", "demo"):
        assert cmd in result.output
        sub = runner.invoke(app, [cmd, "--help"])
        assert sub.exit_code == 0, sub.output


def test_plugins_lists_parts_and_who_gave_them(fakes):
    result = runner.invoke(app, ["plugins", "--json"])
    parts = {(p["kind"], p["name"]): p["plugin"] for p in json.loads(result.output)}
    assert parts[("backbones", "fake-bb")] == "fakes"
    assert parts[("aligners", "linear")] == "t2c_captum (built-in)"
    assert "fake-bb" in runner.invoke(app, ["plugins"]).output


def test_fit_eval_classify(fakes, labelled_images, tmp_path):
    out = tmp_path / "al"
    result = runner.invoke(
        app, ["fit", "fake-bb", "fake-space", "--data", str(labelled_images), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["evaluations"][0]["split"] == "holdout" and (tmp_path / "al.json").is_file()

    result = runner.invoke(app, ["eval", str(out), "--data", str(labelled_images), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n"] == 24

    img = next(labelled_images.glob("cat/*.png"))
    result = runner.invoke(
        app, ["classify", str(out), str(img), "--classes", "cat,dog,fox", "-k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 1 and len(rows[0]["top"]) == 2

    human = runner.invoke(
        app,
        ["fit", "fake-bb", "fake-space", "--data", str(labelled_images), "--out", str(out), "--kind", "sgd"],
    )
    assert human.exit_code == 0 and "alignment quality" in human.output


def test_bad_inputs_exit_with_a_clear_message(fakes, tmp_path):
    result = runner.invoke(app, ["fit", "fake-bbb", "fake-space", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "Did you mean 'fake-bb'" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["fit", "fake-bb", "fake-space", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no images" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "nothing"), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "no aligner metadata" in result.output
    result = runner.invoke(app, ["classify", str(tmp_path / "x"), "a.png"])
    assert result.exit_code == 2 and "--classes" in result.output
    for flag, value in (("--precision", "half"), ("--backend", "spark")):
        result = runner.invoke(app, ["fit", "fake-bb", "fake-space", "--data", str(tmp_path), flag, value])
        assert result.exit_code == 2 and f"{value!r} is not one of" in result.output
