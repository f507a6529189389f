"""End-to-end tests of the plugin as a third party would run them: installed, found by entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from t2c_captum import load_aligner, load_vocabulary, make_aligner
from t2c_captum.plugins import get_registries
from t2c_captum.testing import check_aligner


def test_found_through_the_entry_point():
    entry = get_registries().aligners.entry("procrustes")
    assert entry.plugin == "procrustes"
    assert load_vocabulary("basic-colours")[:3] == ["black", "white", "red"]


def test_listed_by_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "t2c_captum.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parts = {(p["kind"], p["name"]): p["plugin"] for p in json.loads(out)}
    assert parts[("aligners", "procrustes")] == "procrustes"


def test_meets_the_aligner_contract():
    check_aligner(make_aligner("procrustes"), d=16, D=8, orthogonal=True)


def test_recovers_a_rotation_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    X = torch.randn(2000, 10, generator=g)
    Y = 3 * X @ q + 1
    aligner = make_aligner("procrustes").fit(X, Y)
    torch.testing.assert_close(aligner.transform(X), Y, atol=1e-3, rtol=1e-3)
    aligner.save(tmp_path / "p")
    loaded = load_aligner(tmp_path / "p")
    assert type(loaded).__name__ == "ProcrustesAligner"
    assert torch.equal(loaded.transform(X), aligner.transform(X))
