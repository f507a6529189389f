from __future__ import annotations

import shutil

import pytest
import torch

from t2c_captum import LinearAligner, T2CError, load_aligner


def test_hf_hub_ids_go_through_the_local_loading_code(tmp_path, monkeypatch):
    X = torch.randn(200, 8)
    aligner = LinearAligner().fit(X, X @ torch.randn(8, 4))
    aligner.save(tmp_path / "repo" / "probe")
    fetched = []

    def fake_download(repo_id, filename):
        fetched.append((repo_id, filename))
        target = tmp_path / "cache" / filename
        target.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "repo" / filename, target)
        return str(target)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = load_aligner("hf-hub:org/repo/probe")
    assert fetched == [("org/repo", "probe.json"), ("org/repo", "probe.safetensors")]
    assert torch.equal(loaded.transform(X), aligner.transform(X))


def test_hf_hub_offline_error_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T2CError, match="local path"):
        load_aligner("hf-hub:nobody/nothing")
