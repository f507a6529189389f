"""`precision="auto"` on the CPU: bf16 where the CPU multiplies bf16 natively, fp32 elsewhere; and
bf16 features fit as well as fp32 ones (the condition for choosing it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2c_captum import LinearAligner, _device, extract_features, load_backbone, load_space
from t2c_captum._device import resolve_precision
from t2c_captum.world.adapters import world_source


@pytest.mark.parametrize(
    ("flags", "override", "expected"),
    [
        (frozenset({"avx512_bf16"}), None, "bf16"),
        (frozenset({"avx512_bf16", "amx_bf16"}), None, "bf16"),
        (frozenset(), None, "fp32"),
        (frozenset({"avx512_bf16"}), "0", "fp32"),
        (frozenset(), "1", "bf16"),
    ],
)
def test_auto_on_the_cpu_follows_native_bf16_and_the_override(monkeypatch, flags, override, expected):
    monkeypatch.setattr(_device, "cpu_bf16_flags", lambda: flags)
    if override is None:
        monkeypatch.delenv("T2C_CPU_BF16", raising=False)
    else:
        monkeypatch.setenv("T2C_CPU_BF16", override)
    assert resolve_precision("cpu") == expected
    assert resolve_precision("cpu", "fp32") == "fp32"  # an explicit precision is kept
    assert resolve_precision("mps") == "fp32"


def test_cpu_flags_are_read_from_cpuinfo():
    flags = _device.cpu_bf16_flags()
    assert flags <= set(_device.BF16_CPU_FLAGS)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert ("avx512_bf16" in flags) == (" avx512_bf16" in text)


@pytest.mark.slow
def test_bf16_features_fit_within_0_005_r2_of_fp32(tmp_path):
    """The concept world's pair through the pipeline in both precisions: bf16 features get their own
    store and their aligner's held-out R² is within 0.005 of the fp32 one (measured: 0.0002)."""
    encoders = {"source": load_backbone("world-cnn"), "target": load_space("world-clip")}
    source = world_source("train", n=1200, factor="shape")
    r2 = {}
    for precision in ("fp32", "bf16"):
        store = extract_features(source, encoders, store=tmp_path / precision, precision=precision,
                                 device="cpu", progress=False)
        assert store.precision == precision
        data = store.load()
        aligner = LinearAligner().fit(data["source"], data["target"], data["indices"])
        held = aligner.holdout(data["indices"])
        r2[precision] = aligner.evaluate(data["source"][held], data["target"][held]).r2
    assert r2["fp32"] > 0.3
    assert abs(r2["bf16"] - r2["fp32"]) < 0.005
