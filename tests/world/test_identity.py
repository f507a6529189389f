"""World models' identities follow their weights, so caches and aligners notice a retrain."""

from __future__ import annotations

import shutil

import pytest

from t2c_captum import IncompatibleArtifactError, load_backbone, load_space
from t2c_captum.aligners.io import check_compatible
from t2c_captum.world.weights import DEFAULT_WEIGHTS_DIR, weights_digest


def test_identity_carries_a_digest_of_the_weights(tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(DEFAULT_WEIGHTS_DIR, copy)
    same = load_backbone("world-cnn", weights_dir=str(copy))
    assert same.identity == load_backbone("world-cnn").identity
    data = bytearray((copy / "world-cnn.safetensors").read_bytes())
    data[-2] ^= 0xFF  # flip bits of the last weight: still a valid file, other weights
    (copy / "world-cnn.safetensors").write_bytes(bytes(data))
    assert weights_digest("world-cnn", copy) != weights_digest("world-cnn")
    retrained = load_backbone("world-cnn", weights_dir=str(copy))
    assert retrained.identity["weights"] != same.identity["weights"]
    assert load_space("world-clip").identity["weights"] == weights_digest("world-clip")


def test_an_aligner_fitted_on_other_weights_is_refused(tmp_path):
    import torch

    from t2c_captum import LinearAligner

    backbone, space = load_backbone("world-ae"), load_space("world-clip")
    aligner = LinearAligner().fit(torch.randn(64, 128), torch.randn(64, 128))
    aligner.source_, aligner.target_ = dict(backbone.identity), dict(space.identity)
    check_compatible(aligner, backbone, space)
    aligner.source_["weights"] = "0" * 16
    with pytest.raises(IncompatibleArtifactError, match="weights"):
        check_compatible(aligner, backbone, space)
