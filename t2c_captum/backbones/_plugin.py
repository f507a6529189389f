"""Built-in backbone families, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .adapters import timm_backbone, torchvision_backbone


@hookimpl
def register_backbones(register: Register) -> None:
    register("timm", timm_backbone, description="any timm model: 'timm:NAME' or 'hf-hub:ORG/REPO'")
    register(
        "torchvision",
        torchvision_backbone,
        description="any torchvision classification model: 'torchvision:NAME'",
    )
