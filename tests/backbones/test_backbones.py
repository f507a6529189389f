from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from t2c_captum import CheckpointFormatError, T2CError, UnknownNameError, load_backbone
from t2c_captum.backbones import ModuleBackbone, module_backbone, pool_features


def _image(size=40):
    return Image.new("RGB", (size, size), (200, 30, 30))


def test_timm_by_name_uses_timm_preprocessing_and_pre_logits():
    bb = load_backbone("timm:test_resnet")
    config = timm.data.resolve_model_data_config(bb.model)
    assert bb.input_size == tuple(config["input_size"])
    x = bb.preprocess(_image()).unsqueeze(0)
    assert x.shape == (1, *config["input_size"])
    feats = bb(x)
    expected = bb.model.forward_head(bb.model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(feats, expected)
    assert bb.feature_dim == feats.shape[1]
    torch.testing.assert_close(bb.classify(feats), bb.model(x))
    assert bb.identity["id"] == "timm:test_resnet"


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_local_checkpoint_round_trip(tmp_path, suffix):
    torch.manual_seed(3)
    source = timm.create_model("test_vit", num_classes=4)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    bb = load_backbone("test_vit", checkpoint=str(path), num_classes=4)
    x = torch.randn(2, *bb.input_size)
    torch.testing.assert_close(bb.classify(bb(x)), source.eval()(x))


def test_pickled_objects_are_not_loaded(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": nn.Linear(2, 2)}, path)  # a pickled module, not a state dict
    with pytest.raises(CheckpointFormatError, match="unpickled"):
        load_backbone("timm:test_resnet", checkpoint=str(path))


def test_checkpoint_for_another_architecture_names_the_keys(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointFormatError, match="missing keys"):
        load_backbone("timm:test_resnet", checkpoint=str(path))


def test_timm_layer_hook_pools_spatial_maps():
    bb = load_backbone("timm:test_resnet", layer="layer2")
    x = torch.randn(2, *bb.input_size)
    maps = bb.model.layer2(bb.model.layer1(bb.model.maxpool(bb.model.act1(bb.model.bn1(bb.model.conv1(x))))))
    torch.testing.assert_close(bb(x), maps.mean(dim=(2, 3)))
    assert bb.identity["layer"] == "layer2"


def test_torchvision_penultimate_and_head():
    bb = load_backbone("torchvision:resnet18")
    assert bb.class_names is not None and len(bb.class_names) == 1000
    assert "ImageClassification" in bb.identity["preprocess"]
    x = torch.randn(1, *bb.input_size)
    feats = bb(x)
    assert feats.shape == (1, 512)
    torch.testing.assert_close(bb.classify(feats), bb.model(x), atol=1e-4, rtol=1e-4)
    assert (bb.hooked_layer, bb.captures_input) == ("fc", True)  # the head's input


def test_any_module_with_a_layer_name():
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 7, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 3, 16, 16))
    bb = module_backbone(net, layer="2", input_size=(3, 16, 16))
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(bb(x), net[2](net[1](net[0](x))).mean(dim=(2, 3)))
    assert bb.feature_dim == 7
    assert (bb.hooked_layer, bb.captures_input) == ("2", False)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        module_backbone(net, layer="22")


def test_pool_features_shapes():
    assert pool_features(torch.randn(2, 4, 3, 3)).shape == (2, 4)
    tokens = torch.randn(2, 5, 4)
    torch.testing.assert_close(pool_features(tokens, "cls"), tokens[:, 0])
    with pytest.raises(ValueError):
        pool_features(tokens, "median")


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean.*resnet18"):
        load_backbone("resnet81")
    with pytest.raises(UnknownNameError, match="timm"):
        load_backbone("timm:resnett50")


def test_offline_pretrained_download_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T2CError, match="checkpoint"):
        load_backbone("timm:test_resnet", pretrained=True)


def test_module_backbone_stays_in_eval_mode():
    bb = ModuleBackbone(torchvision.models.resnet18(), "r18", lambda im: im)
    bb.train()
    assert not bb.model.training
