"""The probe plugin as a third party ships it: installed, found by entry point, its probes used by
name from the command line and from Python."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from t2c_captum import Probe, load_probe
from t2c_captum.data import open_source
from t2c_captum.plugins import get_registries

DATA = "world:test:shape:50"


def _labels(spec):
    source = open_source(spec)
    return torch.tensor([source[i][1] for i in range(len(source))])


def test_found_through_the_entry_point_with_what_each_probe_was_fitted_for():
    assert get_registries().probes.entry("world-cnn-probe").plugin == "world_probes"
    out = subprocess.run(
        [sys.executable, "-m", "t2c_captum.cli", "plugins", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = {r["name"]: r for r in json.loads(out) if r["kind"] == "probes"}
    assert rows["world-cnn-probe"]["backbone"] == "world-cnn"
    assert rows["world-cnn-probe"]["space"] == "world-clip"
    assert rows["world-cnn-shapes"]["plugin"] == "world_probes"


def test_t2c_concepts_takes_the_probe_name():
    out = subprocess.run(
        [sys.executable, "-m", "t2c_captum.cli", "concepts", "world-cnn-shapes", "--data", DATA, "--json",
         "--no-relative"],
        capture_output=True, text=True, check=True,
    ).stdout
    result = json.loads(out)
    assert result["n"] == 50
    source = open_source(DATA)
    shapes = source.class_names
    named = [image["top"][0][0] for image in result["images"]]
    truth = [shapes[source[i][1]] for i in range(len(named))]
    assert sum(a == b for a, b in zip(named, truth, strict=True)) >= 8  # of the 10 images listed


def test_the_python_verbs():
    probe = load_probe("world-cnn-shapes")
    assert isinstance(probe, Probe) and probe.backbone.name == "world-cnn"
    scores = probe.scores(DATA)
    assert scores.concepts == ["circle", "square", "triangle", "star", "cross", "hexagon"]
    assert (scores.values.argmax(1) == _labels(DATA)).float().mean() > 0.9
    predicted = load_probe("world-cnn-probe").classify(DATA, scores.concepts).indices[:, 0]
    assert (predicted == _labels(DATA)).float().mean() > 0.9
    maps = probe.explain(DATA, concept="star", method="saliency", limit=2)
    assert maps.maps.shape == (2, 64, 64)
