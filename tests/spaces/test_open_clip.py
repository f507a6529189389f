from __future__ import annotations

import open_clip
import pytest
import torch
from PIL import Image

from t2c_captum import CheckpointFormatError, UnknownNameError, load_space
from t2c_captum.spaces import format_prompts, imagenet_class_names, imagenet_templates
from t2c_captum.testing import TINY_CLIP, register_tiny_clip_config, tiny_open_clip_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    return tiny_open_clip_checkpoint(tmp_path / "tiny.safetensors", seed=7)


def test_local_checkpoint_loads_like_a_user_would(checkpoint):
    space = load_space(f"open_clip:{TINY_CLIP}", checkpoint=str(checkpoint))
    torch.manual_seed(7)
    reference = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    x = space.preprocess(Image.new("RGB", (50, 40), (0, 128, 255))).unsqueeze(0)
    assert x.shape == (1, 3, 32, 32)
    torch.testing.assert_close(space.encode_image(x), reference.encode_image(x))
    tokens = open_clip.get_tokenizer(TINY_CLIP)(["a red circle"])
    torch.testing.assert_close(space.encode_text(["a red circle"]), reference.encode_text(tokens))
    assert space.embed_dim == 16
    assert space.identity["id"].startswith(f"open_clip:{TINY_CLIP}@")


def test_pretrained_path_and_at_syntax_are_the_same_code(checkpoint):
    a = load_space(f"{TINY_CLIP}@{checkpoint}")
    b = load_space(f"open_clip:{TINY_CLIP}", pretrained=str(checkpoint))
    texts = ["a dog", "a cat"]
    torch.testing.assert_close(a.encode_text(texts), b.encode_text(texts))


def test_templates_and_class_names_come_from_open_clip():
    register_tiny_clip_config()
    assert len(imagenet_templates()) == len(open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES)
    assert imagenet_templates(simple=True)[0].count("{}") == 1
    assert imagenet_class_names() == list(open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES)
    assert format_prompts(["a photo of a {}.", "art:"], "dog") == ["a photo of a dog.", "art: dog"]


def test_encode_prompts_is_normalised_template_mean(checkpoint):
    space = load_space(f"open_clip:{TINY_CLIP}", checkpoint=str(checkpoint))
    out = space.encode_prompts(["dog", "cat"], ["a {}", "a photo of a {}"])
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    manual = space.encode_text(["a dog", "a photo of a dog"], normalize=True).mean(0)
    torch.testing.assert_close(out[0], manual / manual.norm())


def test_bad_space_inputs(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean"):
        load_space("open_clip:ViT-B-61")
    with pytest.raises(UnknownNameError, match="space"):
        load_space("not-a-space")
    register_tiny_clip_config()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointFormatError):
        load_space(f"open_clip:{TINY_CLIP}", checkpoint=str(bad))
    with pytest.raises(CheckpointFormatError, match="does not exist"):
        load_space(f"open_clip:{TINY_CLIP}", checkpoint=str(tmp_path / "nope.pt"))
