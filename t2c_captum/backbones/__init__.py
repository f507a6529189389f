"""Backbones: frozen vision models seen as ``images -> features``.

Load one by name with :func:`load_backbone`: a registered name (``"world-cnn"``), a family prefix
(``"timm:resnet50"``, ``"torchvision:resnet18"``), an ``hf-hub:`` id (timm), or a bare timm or
torchvision architecture name. Wrap any ``nn.Module`` with :func:`module_backbone`.
"""

from __future__ import annotations

from .adapters import (
    TimmBackbone,
    load_weights,
    module_backbone,
    timm_backbone,
    torchvision_backbone,
)
from .base import Backbone, ModuleBackbone, last_linear_name, pool_features
from .loading import load_backbone

__all__ = [
    "Backbone",
    "ModuleBackbone",
    "TimmBackbone",
    "last_linear_name",
    "load_backbone",
    "load_weights",
    "module_backbone",
    "pool_features",
    "timm_backbone",
    "torchvision_backbone",
]

