"""Importing the paper's published aligners: a ``torch.save``'d ``{"W": [D, d], "b": [D]}``."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from t2c_captum import load_aligner, load_backbone, load_space
from t2c_captum._exceptions import (
    CheckpointFormatError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    T2CError,
)
from t2c_captum.aligners import ImportedAligner, import_aligner
from t2c_captum.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def pair():
    return load_backbone("torchvision:resnet18"), load_space("world-clip")


def _paper_file(path, d=512, D=128, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    tensors = {"W": torch.randn(D, d, generator=g) / d**0.5, "b": torch.randn(D, generator=g), **extra}
    torch.save(tensors, path)
    return tensors


def test_cli_imports_the_paper_file_and_the_aligner_gives_x_W_T_plus_b_exactly(tmp_path, pair):
    saved = _paper_file(tmp_path / "r18_to_clip.pth")
    result = runner.invoke(app, [
        "import-aligner", str(tmp_path / "r18_to_clip.pth"), "--backbone", "torchvision:resnet18",
        "--space", "world-clip", "--out", str(tmp_path / "r18"), "--json",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dims"] == [512, 128]
    backbone, space = pair
    aligner = load_aligner(tmp_path / "r18", backbone=backbone, space=space)  # identities checked
    assert isinstance(aligner, ImportedAligner) and aligner.kind == "imported"
    assert torch.equal(aligner.weight_, saved["W"]) and torch.equal(aligner.bias_, saved["b"])
    x = torch.randn(7, 512)
    expected = torch.nn.functional.linear(x, saved["W"], saved["b"])  # x @ W.T + b, one kernel
    assert torch.equal(aligner.transform(x), expected)
    torch.testing.assert_close(aligner.transform(x), x @ saved["W"].T + saved["b"])
    assert aligner.source_["id"] == backbone.identity["id"] and aligner.target_ == dict(space.identity)


def test_an_nn_linear_state_dict_in_safetensors_imports_too(tmp_path, pair):
    linear = torch.nn.Linear(512, 128)
    save_file(linear.state_dict(), str(tmp_path / "linear.safetensors"))
    aligner = import_aligner(tmp_path / "linear.safetensors", *pair)
    x = torch.randn(3, 512)
    torch.testing.assert_close(aligner.transform(x), linear(x).detach(), rtol=0, atol=0)


class _Payload:
    """Unpickling this would run code: it would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_file_holding_anything_but_tensors_is_refused_and_nothing_is_unpickled(tmp_path, pair):
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"W": _Payload(marker), "b": torch.zeros(128)}, f, protocol=2)
    with pytest.raises(CheckpointFormatError, match="Nothing is unpickled"):
        import_aligner(tmp_path / "evil.pth", *pair)
    assert not marker.exists()
    torch.save({"W": torch.zeros(128, 512), "b": 0.5}, tmp_path / "scalar.pth")  # weights_only allows a float
    with pytest.raises(CheckpointFormatError, match="state dict of tensors"):
        import_aligner(tmp_path / "scalar.pth", *pair)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (
            {"W": torch.zeros(128, 512), "b": torch.zeros(128), "scale": torch.ones(1)},
            r"not expected \['scale'\]",
        ),
        ({"W": torch.zeros(128, 512)}, r"missing \['b'\]"),
        ({"weight": torch.zeros(128, 512), "b": torch.zeros(128)}, r"holds keys \['b', 'weight'\]"),
        ({"W": torch.zeros(128, 512), "b": torch.zeros(64)}, r"'b' is \[64\]"),
        ({"W": torch.zeros(512), "b": torch.zeros(128)}, r"'W' is \[512\]"),
        ({"W": torch.zeros(128, 512, dtype=torch.int64), "b": torch.zeros(128)}, "not a floating-point"),
        ({"W": torch.full((128, 512), float("nan")), "b": torch.zeros(128)}, "NaN"),
    ],
    ids=["extra-key", "missing-key", "mixed-names", "bias-shape", "weight-1d", "integer", "nan"],
)
def test_wrong_keys_shapes_and_values_are_refused_by_name(tmp_path, pair, tensors, message):
    torch.save(tensors, tmp_path / "bad.pth")
    with pytest.raises(CheckpointFormatError, match=message):
        import_aligner(tmp_path / "bad.pth", *pair)


def test_a_map_of_the_wrong_size_for_the_named_models_says_which(tmp_path, pair):
    _paper_file(tmp_path / "r50.pth", d=2048, D=512)
    with pytest.raises(DimensionMismatchError, match=r"takes 2048-d features but .*512-d.*is 128-d"):
        import_aligner(tmp_path / "r50.pth", *pair)
    result = runner.invoke(app, [
        "import-aligner", str(tmp_path / "r50.pth"), "--backbone", "torchvision:resnet18",
        "--space", "world-clip", "--out", str(tmp_path / "r50"),
    ])
    assert result.exit_code == 2 and "2048-d" in result.output
    assert not (tmp_path / "r50.json").exists()


def test_an_imported_aligner_used_with_another_backbone_lists_the_fields(tmp_path, pair):
    _paper_file(tmp_path / "m.pth")
    import_aligner(tmp_path / "m.pth", *pair).save(tmp_path / "m")
    with pytest.raises(IncompatibleArtifactError, match=r"backbone\.id: saved 'torchvision:resnet18'"):
        load_aligner(tmp_path / "m", backbone=load_backbone("world-cnn"))


def test_an_imported_aligner_cannot_be_refitted(tmp_path, pair):
    _paper_file(tmp_path / "m.pth")
    aligner = import_aligner(tmp_path / "m.pth", *pair)
    with pytest.raises(T2CError, match="cannot be refitted"):
        aligner.fit(torch.randn(10, 512), torch.randn(10, 128))


def test_a_world_aligner_exported_as_the_paper_file_evaluates_the_same(tmp_path, world_aligned):
    """Meaning survives the round trip: the commands read an imported map as they read a fitted one."""
    _, _, fitted = world_aligned("world-cnn")
    fitted.save(tmp_path / "fitted")
    torch.save({"W": fitted.weight_.clone(), "b": fitted.bias_.clone()}, tmp_path / "paper.pth")
    result = runner.invoke(app, [
        "import-aligner", str(tmp_path / "paper.pth"), "--backbone", "world-cnn", "--space", "world-clip",
        "--out", str(tmp_path / "imported"),
    ])
    assert result.exit_code == 0, result.output
    reports = []
    for name in ("fitted", "imported"):
        out = runner.invoke(app, ["eval", str(tmp_path / name), "--data", "world:test:shape:200", "--json"])
        assert out.exit_code == 0, out.output
        reports.append(json.loads(out.output))
    fitted_report, imported_report = reports
    assert fitted_report["aligned_top1"] > 0.9  # world-cnn names shapes through its aligner
    assert imported_report == fitted_report
