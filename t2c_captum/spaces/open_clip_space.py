"""open_clip models as text-image spaces."""

from __future__ import annotations

import os
from typing import Any

import torch

from .._exceptions import CheckpointFormatError, ConfigurationError, UnknownNameError
from .base import Space

__all__ = ["OpenClipSpace", "imagenet_class_names", "imagenet_templates", "open_clip_space"]


def imagenet_templates(simple: bool = False) -> list[str]:
    """open_clip's ImageNet prompt templates as ``{}`` format strings (80, or the 2 simple ones)."""
    from open_clip import zero_shot_metadata as meta

    source = meta.SIMPLE_IMAGENET_TEMPLATES if simple else meta.OPENAI_IMAGENET_TEMPLATES
    return [t("{}") for t in source]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names that open_clip ships."""
    from open_clip import zero_shot_metadata as meta

    return list(meta.IMAGENET_CLASSNAMES)


class OpenClipSpace(Space):
    """An open_clip model: its image and text towers, tokenizer and evaluation preprocessing."""

    def __init__(self, model: Any, tokenizer: Any, preprocess: Any, name: str) -> None:
        embed_dim = _embed_dim(model)
        size = model.visual.image_size
        size = size if isinstance(size, int) else size[0]
        super().__init__(
            name, preprocess, embed_dim, templates=imagenet_templates(), input_size=(3, size, size)
        )
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def train(self, mode: bool = True) -> OpenClipSpace:
        super().train(mode)
        self.model.eval()
        return self


def _embed_dim(model: Any) -> int:
    proj = getattr(model, "text_projection", None)
    if isinstance(proj, torch.Tensor):
        return int(proj.shape[-1])
    out = getattr(model.visual, "output_dim", None)
    if out is None:
        raise ConfigurationError(
            "cannot tell the embedding size of this open_clip model (no text_projection, no "
            "visual.output_dim); pick another one from open_clip.list_models()"
        )
    return int(out)


def open_clip_space(
    model: str,
    *,
    pretrained: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | None = None,
    **model_kwargs: Any,
) -> OpenClipSpace:
    """An open_clip model by name with a pretrained tag, an ``hf-hub:`` id, or a local checkpoint.

    ``model`` may carry the tag after ``@``: ``"ViT-B-16@openai"``. A local file (``pretrained`` or
    ``checkpoint`` pointing at a path) is loaded by open_clip with ``weights_only=True``.

    Examples::

        >>> open_clip_space("ViT-B-16@openai")             # online
        >>> open_clip_space("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
        >>> open_clip_space("ViT-B-32", checkpoint="clip.safetensors")
    """
    import open_clip

    arch, _, tag = model.partition("@")
    source = checkpoint or pretrained or tag or None
    if not arch.startswith("hf-hub:") and arch not in open_clip.list_models():
        raise UnknownNameError(
            "open_clip model", arch, open_clip.list_models(), "See open_clip.list_models()."
        )
    is_file = source is not None and os.path.exists(str(source))
    if checkpoint is not None and not is_file:
        raise CheckpointFormatError(f"checkpoint {str(checkpoint)!r} does not exist")
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(source) if source else None, device=device or "cpu", **model_kwargs
        )
    except RuntimeError as exc:
        if is_file:
            raise CheckpointFormatError(
                f"could not load {str(source)!r} into open_clip {arch!r}: {exc}"
            ) from exc
        raise CheckpointFormatError(
            f"could not create open_clip {model!r}: {exc}. Offline? Pass checkpoint=PATH to a local "
            "weights file."
        ) from exc
    except Exception as exc:
        if is_file:
            raise CheckpointFormatError(
                f"{str(source)!r} is not a loadable open_clip checkpoint "
                f"({type(exc).__name__}: {exc}). Use a safetensors or tensors-only .pt file."
            ) from exc
        raise CheckpointFormatError(
            f"could not get open_clip {model!r} weights ({type(exc).__name__}: {exc}). Offline? "
            "Pass checkpoint=PATH to a local weights file."
        ) from exc
    tokenizer = open_clip.get_tokenizer(arch)
    label = f"open_clip:{arch}" + (f"@{os.path.basename(str(source))}" if source else "")
    return OpenClipSpace(net, tokenizer, preprocess, label)
