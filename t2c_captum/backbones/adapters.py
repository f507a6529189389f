"""Backbones from timm, torchvision and plain modules, each with its library's own preprocessing."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .._exceptions import CheckpointFormatError, UnknownNameError
from .._io import load_state_dict_file
from .base import Backbone, ModuleBackbone, Preprocess

__all__ = ["TimmBackbone", "load_weights", "module_backbone", "timm_backbone", "torchvision_backbone"]


def load_weights(model: nn.Module, checkpoint: str | os.PathLike[str], name: str) -> None:
    """Load a local checkpoint into ``model`` strictly, explaining any key or shape mismatch."""
    state = load_state_dict_file(checkpoint)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong_shape:
            parts.append(f"shape mismatches {wrong_shape[:3]}")
        raise CheckpointFormatError(
            f"checkpoint {str(checkpoint)!r} does not fit {name}: {'; '.join(parts)}. Check the "
            "architecture name, and pass num_classes= if the classifier head differs."
        )
    model.load_state_dict(state)


class TimmBackbone(Backbone):
    """A timm model whose default features are timm's own pre-logits representation."""

    model: Any

    def __init__(self, model: Any, name: str, preprocess: Preprocess, **kwargs: Any) -> None:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if not isinstance(head, nn.Module) or not any(True for _ in head.parameters()):
            head = None
        super().__init__(name, preprocess, head=head, **kwargs)
        self.model = model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logits features ``forward_head(forward_features(x), pre_logits=True)``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)

    def train(self, mode: bool = True) -> TimmBackbone:
        super().train(mode)
        self.model.eval()
        return self


def _timm_preprocess(model: nn.Module) -> tuple[Preprocess, tuple[int, int, int]]:
    import timm.data

    config = timm.data.resolve_model_data_config(model)
    return timm.data.create_transform(**config, is_training=False), tuple(config["input_size"])


def timm_backbone(
    model: str,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    layer: str | None = None,
    pool: str = "avg",
    num_classes: int | None = None,
    **model_kwargs: Any,
) -> Backbone:
    """A timm model by name or ``hf-hub:`` id.

    Args:
        model (str): a timm architecture (``"resnet50"``, ``"vit_base_patch16_224.augreg_in21k"``) or
            ``"hf-hub:org/repo"``.
        pretrained (bool, optional): download timm's pretrained weights (needs internet).
            Default: ``False``
        checkpoint (str, optional): a local ``.safetensors`` or tensors-only ``.pth`` file to load
            instead. Default: ``None``
        layer (str, optional): take features from this module (forward hook, pooled) instead of
            timm's pre-logits. Default: ``None``
        pool (str, optional): pooling for ``layer`` outputs. Default: ``"avg"``
        num_classes (int, optional): head size, when a checkpoint's head differs from the default.
    """
    import timm

    if model.startswith("hf-hub:"):
        pretrained = checkpoint is None
    elif not timm.is_model(model.split(".")[0]):
        raise UnknownNameError("timm model", model, timm.list_models(), "See timm.list_models().")
    if num_classes is not None:
        model_kwargs["num_classes"] = num_classes
    try:
        net = timm.create_model(model, pretrained=pretrained and checkpoint is None, **model_kwargs)
    except (OSError, RuntimeError) as exc:
        raise CheckpointFormatError(
            f"could not create timm model {model!r} with pretrained weights ({exc}). Offline? "
            "Pass checkpoint=PATH to a local weights file instead."
        ) from exc
    if checkpoint is not None:
        load_weights(net, checkpoint, f"timm model {model!r}")
    preprocess, input_size = _timm_preprocess(net)
    name = f"timm:{model}"
    if layer is not None:
        return ModuleBackbone(net, name, preprocess, layer=layer, pool=pool, input_size=input_size)
    return TimmBackbone(net, name, preprocess, input_size=input_size)


def torchvision_backbone(
    model: str,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    layer: str | None = None,
    pool: str = "avg",
    **model_kwargs: Any,
) -> Backbone:
    """A torchvision classification model; preprocessing from its weights' transforms.

    Args:
        model (str): a name from ``torchvision.models.list_models()``, e.g. ``"resnet50"``.
        pretrained (bool, optional): the default pretrained weights (needs internet). Default: ``False``
        weights (str, optional): a weights enum member, e.g. ``"IMAGENET1K_V2"``. Default: ``None``
        checkpoint (str, optional): a local weights file to load instead. Default: ``None``
        layer (str, optional): a module name; default is the input of the last linear layer.
        pool (str, optional): pooling for spatial or token outputs. Default: ``"avg"``
    """
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if model not in known:
        raise UnknownNameError("torchvision model", model, known)
    weights_enum = torchvision.models.get_model_weights(model)
    chosen = None
    if checkpoint is None and (pretrained or weights):
        chosen = weights_enum[weights] if weights else weights_enum.DEFAULT
    net = torchvision.models.get_model(model, weights=chosen, **model_kwargs)
    if checkpoint is not None:
        load_weights(net, checkpoint, f"torchvision model {model!r}")
    reference = chosen or weights_enum.DEFAULT
    preprocess = reference.transforms()  # builds the transform only; downloads nothing
    size = getattr(preprocess, "crop_size", [224])
    class_names = list(reference.meta.get("categories") or []) or None
    return ModuleBackbone(
        net,
        f"torchvision:{model}",
        preprocess,
        layer=layer,
        pool=pool,
        class_names=class_names if layer is None else None,
        input_size=(3, int(size[0]), int(size[0])),
    )


def module_backbone(
    model: nn.Module,
    *,
    layer: str | None = None,
    preprocess: Preprocess | None = None,
    name: str | None = None,
    pool: str = "avg",
    input_size: tuple[int, int, int] = (3, 224, 224),
    class_names: list[str] | None = None,
) -> Backbone:
    """Any ``nn.Module`` plus a layer name.

    Without ``preprocess``, timm's default ImageNet evaluation transform for ``input_size`` is used.
    """
    if preprocess is None:
        import timm.data

        preprocess = timm.data.create_transform(input_size=input_size, is_training=False)
    return ModuleBackbone(
        model,
        name or f"module:{type(model).__name__}",
        preprocess,
        layer=layer,
        pool=pool,
        input_size=input_size,
        class_names=class_names,
    )
