from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from t2c_captum._exceptions import WorldError
from t2c_captum.world import (
    FACTORS,
    REGENERATE_COMMAND,
    WORLD_MODELS,
    AutoEncoder,
    ShapeCNN,
    TinyCLIP,
    WorldViT,
    class_prompts,
    load_world_model,
    make_split,
    render,
    world_model_config,
    world_transform,
)
from t2c_captum.world.train import normalise, render_array
from t2c_captum.world.weights import DEFAULT_WEIGHTS_DIR


@pytest.fixture(scope="module")
def clip() -> TinyCLIP:
    return load_world_model("world-clip")


def test_committed_models_load():
    for name in WORLD_MODELS:
        if name == "world-vit" and not VIT_COMMITTED:
            continue
        model = load_world_model(name)
        assert not model.training
        assert "calibration" in world_model_config(name)
    assert isinstance(load_world_model("world-cnn"), ShapeCNN)
    assert isinstance(load_world_model("world-ae"), AutoEncoder)
    if VIT_COMMITTED:
        assert isinstance(load_world_model("world-vit"), WorldViT)


def test_tiny_clip_ranks_the_right_colour_first(clip):
    samples = make_split("test", 24)
    images = torch.stack([world_transform()(render(s)) for s in samples])
    colours = FACTORS["colour"]
    right = [f"a photo of a {s.colour} {s.shape}" for s in samples]
    wrong = [f"a photo of a {colours[(colours.index(s.colour) + 3) % 7]} {s.shape}"
             for s in samples]
    with torch.no_grad():
        img = F.normalize(clip.encode_image(images), dim=-1)
        sim_right = (img * F.normalize(clip.encode_text(right), dim=-1)).sum(-1)
        sim_wrong = (img * F.normalize(clip.encode_text(wrong), dim=-1)).sum(-1)
    assert (sim_right > sim_wrong).float().mean() >= 0.9


def test_shape_cnn_head_predicts_shapes():
    cnn = load_world_model("world-cnn")
    samples = make_split("test", 32)
    with torch.no_grad():
        pred = cnn(normalise(render_array(samples))).argmax(1).numpy()
    truth = np.array([FACTORS["shape"].index(s.shape) for s in samples])
    assert (pred == truth).mean() >= 0.9
    assert cnn.features(torch.zeros(2, 3, 64, 64)).shape == (2, 128)
    assert not any(getattr(m, "inplace", False) for m in cnn.modules())


#: world-vit is trained by the training script; its weights are not committed yet.
VIT_COMMITTED = (DEFAULT_WEIGHTS_DIR / "world-vit.safetensors").is_file()
needs_vit = pytest.mark.skipif(not VIT_COMMITTED, reason="world-vit weights not committed yet")


@needs_vit
def test_world_vit_heads_predict_every_factor():
    vit = load_world_model("world-vit")
    samples = make_split("test", 48)
    with torch.no_grad():
        logits = vit.factor_logits(normalise(render_array(samples)))
        assert torch.equal(logits["shape"], vit(normalise(render_array(samples[:48]))))
    for factor in ("shape", "colour", "pattern", "background"):
        truth = np.array([FACTORS[factor].index(s.value(factor)) for s in samples])
        assert (logits[factor].argmax(1).numpy() == truth).mean() >= 0.85, factor
    assert vit.features(torch.zeros(2, 3, 64, 64)).shape == (2, vit.hparams["width"])
    assert not any(getattr(m, "inplace", False) for m in vit.modules())


@needs_vit
def test_world_vit_backbone_exposes_head_and_layers():
    from t2c_captum.backbones import load_backbone

    bb = load_backbone("world-vit")
    assert bb.head is not None and len(bb.class_names) == len(FACTORS["shape"])
    x = torch.zeros(2, 3, 64, 64)
    for layer in ("patch_embed", "blocks.3"):
        inner = load_backbone("world-vit", layer=layer)
        assert inner(x).shape == (2, load_world_model("world-vit").hparams["width"])


def test_world_transform_matches_training_normalisation():
    image = render(make_split("val", 1)[0])
    a = world_transform()(image)
    b = normalise(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])[0]
    assert torch.allclose(a, b, atol=1e-5)
    big = image.resize((224, 224))
    assert world_transform()(big).shape == (3, 64, 64)


def test_text_encoder_maps_unseen_tokens_to_unk(clip):
    emb = clip.encode_text(["a zebra quokka", "a red circle"])
    assert emb.shape == (2, clip.hparams["embed_dim"]) and torch.isfinite(emb).all()
    assert all(p for ps in class_prompts("background").values() for p in ps)


def test_unknown_world_model_name():
    with pytest.raises(WorldError, match="'world-clip'"):
        load_world_model("world-clp")


def _copy_weights(tmp_path, name):
    for ext in ("json", "safetensors"):
        shutil.copy(DEFAULT_WEIGHTS_DIR / f"{name}.{ext}", tmp_path / f"{name}.{ext}")


def test_missing_weights_file(tmp_path):
    with pytest.raises(WorldError, match=REGENERATE_COMMAND):
        load_world_model("world-cnn", tmp_path)
    _copy_weights(tmp_path, "world-cnn")
    (tmp_path / "world-cnn.safetensors").unlink()
    with pytest.raises(WorldError, match="missing.*" + REGENERATE_COMMAND):
        load_world_model("world-cnn", tmp_path)


def test_corrupt_weights_file(tmp_path):
    _copy_weights(tmp_path, "world-cnn")
    (tmp_path / "world-cnn.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(WorldError, match="(?s)not valid safetensors.*" + REGENERATE_COMMAND):
        load_world_model("world-cnn", tmp_path)


def test_weights_with_wrong_keys_or_shapes(tmp_path):
    from safetensors.torch import save_file

    _copy_weights(tmp_path, "world-cnn")
    save_file({"head.weight": torch.zeros(3, 3)}, str(tmp_path / "world-cnn.safetensors"))
    with pytest.raises(WorldError, match="(?s)do not match.*" + REGENERATE_COMMAND):
        load_world_model("world-cnn", tmp_path)


def test_corrupt_config(tmp_path):
    _copy_weights(tmp_path, "world-ae")
    (tmp_path / "world-ae.json").write_text("{not json")
    with pytest.raises(WorldError, match="(?s)corrupted.*" + REGENERATE_COMMAND):
        load_world_model("world-ae", tmp_path)
