from __future__ import annotations

import json

import torch

from t2c_captum.world import load_world_model
from t2c_captum.world.train import TrainSettings, random_shift, train_world


def test_quick_training_writes_loadable_models(tmp_path):
    cal = train_world(tmp_path / "w", TrainSettings.quick(), tmp_path / "cal.md", command="quick")
    for name in ("world-clip", "world-cnn", "world-ae", "world-vit"):
        assert (tmp_path / "w" / f"{name}.safetensors").is_file()
        config = json.loads((tmp_path / "w" / f"{name}.json").read_text())
        assert config["seed"] == 0 and "hparams" in config and "calibration" in config
        model = load_world_model(name, tmp_path / "w")
        assert not model.training
    assert "shape" in cal["world-clip"]["zero_shot_test"]
    assert set(cal["world-vit"]["heads_test"]) == set(cal["world-vit"]["probe_test"])
    assert "zero-shot" in (tmp_path / "cal.md").read_text()


def test_random_shift_keeps_shape_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def test_caption_mentions_and_partial_captions_name_only_true_factors():
    from t2c_captum.world.generator import FACTORS, make_sample
    from t2c_captum.world.train import PartialCaptions, caption_mentions, factor_values

    s = make_sample(seed=1, shape="circle", colour="red", pattern="striped", size="small",
                    background="striped", position="left", count=2)
    named = caption_mentions(s, "two crimson discs, on a striped background")
    # the striped background must not count as a striped object; size, position, pattern are open
    assert [FACTORS[f][i] if i >= 0 else None for f, i in zip(FACTORS, named, strict=True)] == [
        "circle", "red", None, None, "striped", None, "two"]
    values = factor_values([s])
    ids, m = PartialCaptions(seed=0).batch(values.repeat(200, axis=0))
    assert ids.shape[0] == 200 and ids[:, 0].eq(49406).all()
    assert ((m == -1) | (m == torch.from_numpy(values))).all() and (m >= 0).any(1).all()


def test_multi_positive_loss_is_clip_loss_with_identity_positives():
    from torch.nn import functional as F

    from t2c_captum.world.train import multi_positive_loss

    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    target = torch.arange(6)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    assert torch.allclose(multi_positive_loss(logits, torch.eye(6, dtype=torch.bool)), clip)
    # a text without any matching image is only a negative (no NaN)
    extra = torch.cat([logits, torch.randn(6, 1)], 1)
    pos = torch.cat([torch.eye(6, dtype=torch.bool), torch.zeros(6, 1, dtype=torch.bool)], 1)
    assert torch.isfinite(multi_positive_loss(extra, pos))


def test_vit_only_retrains_the_vit_alone_and_matches_a_full_run(tmp_path):
    out = tmp_path / "w"
    train_world(out, TrainSettings.quick(), None, command="quick")
    untouched = {n: (out / f"{n}.safetensors").read_bytes() for n in ("world-clip", "world-cnn", "world-ae")}
    vit_full = (out / "world-vit.safetensors").read_bytes()
    (out / "world-vit.safetensors").unlink()
    cal = train_world(
        out, TrainSettings.quick(), tmp_path / "cal.md", command="quick --vit-only", vit_only=True
    )
    assert {n: (out / f"{n}.safetensors").read_bytes() for n in untouched} == untouched
    assert (out / "world-vit.safetensors").read_bytes() == vit_full  # its own seed: same as in the full run
    assert json.loads((out / "world-vit.json").read_text())["command"] == "quick --vit-only"
    assert set(cal) == {"world-clip", "world-cnn", "world-ae", "world-vit"}


def test_vit_only_without_the_other_models_says_what_to_do(tmp_path, capsys):
    import pytest

    from t2c_captum.world.train import main

    with pytest.raises(SystemExit):
        main(["--quick", "--vit-only", "--out", str(tmp_path / "empty")])
    assert "--vit-only needs the other world models" in capsys.readouterr().err


def test_calibration_rewrite_keeps_the_hand_written_notes(tmp_path):
    from t2c_captum.world.train import NOTES_MARKER, write_calibration

    doc = tmp_path / "cal.md"
    write_calibration(doc, "# tables v1\n")
    assert doc.read_text().startswith("# tables v1\n") and NOTES_MARKER in doc.read_text()
    doc.write_text(doc.read_text() + "## History\nrun 1 notes\n")
    write_calibration(doc, "# tables v2\n")
    text = doc.read_text()
    assert text.startswith("# tables v2\n") and "v1" not in text
    assert text.endswith("## History\nrun 1 notes\n")
