"""Loading a backbone by name: a registered name, a family prefix (``timm:``, ``torchvision:``), an
``hf-hub:`` id (timm), or a bare timm or torchvision architecture name."""

from __future__ import annotations

from typing import Any

from .._exceptions import UnknownNameError
from ..registry import build_part, find_factory
from .base import Backbone

__all__ = ["load_backbone"]


def load_backbone(spec: str | Backbone, **options: Any) -> Backbone:
    """A backbone from a name; options (``pretrained``, ``checkpoint``, ``layer``...) go to its factory.

    Examples::

        >>> load_backbone("world-cnn")
        >>> load_backbone("timm:resnet18", checkpoint="resnet18.safetensors")
        >>> load_backbone("torchvision:resnet50", layer="layer3")
    """
    if isinstance(spec, Backbone):
        return spec
    from ..plugins import get_registries

    registry = get_registries().backbones
    options = {k: v for k, v in options.items() if v is not None}
    found = find_factory(registry, spec, hub_family="timm")
    if found is None:
        import timm
        import torchvision

        tv_models = torchvision.models.list_models(module=torchvision.models)
        if timm.is_model(spec.split(".")[0]):
            found = registry.get("timm"), {"model": spec}
        elif spec in tv_models:
            found = registry.get("torchvision"), {"model": spec}
        else:
            known = list(registry) + [f"timm:{m}" for m in timm.list_models()] + tv_models
            raise UnknownNameError(
                "backbone", spec, known, "Use 'timm:NAME', 'torchvision:NAME' or 'hf-hub:ORG/REPO'."
            )
    factory, extra = found
    return build_part(factory, spec, {**extra, **options}, Backbone, "backbone")
