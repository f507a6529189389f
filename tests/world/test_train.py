from __future__ import annotations

import json

import torch

from t2c_captum.world import load_world_model
from t2c_captum.world.train import TrainSettings, random_shift, train_world


def test_quick_training_writes_loadable_models(tmp_path):
    cal = train_world(tmp_path / "w", TrainSettings.quick(), tmp_path / "cal.md", command="quick")
    for name in ("world-clip", "world-cnn", "world-ae"):
        assert (tmp_path / "w" / f"{name}.safetensors").is_file()
        config = json.loads((tmp_path / "w" / f"{name}.json").read_text())
        assert config["seed"] == 0 and "hparams" in config and "calibration" in config
        model = load_world_model(name, tmp_path / "w")
        assert not model.training
    assert "shape" in cal["world-clip"]["zero_shot_test"]
    assert "zero-shot" in (tmp_path / "cal.md").read_text()


def test_random_shift_keeps_shape_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)
