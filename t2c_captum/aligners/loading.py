"""Loading what an aligner maps onto: a space, or (cross-model alignment) another backbone."""

from __future__ import annotations

from typing import Any

from .._exceptions import UnknownNameError
from ..backbones import Backbone, load_backbone
from ..spaces import Space, load_space

__all__ = ["load_target"]


def load_target(spec: str | Space | Backbone, **options: Any) -> Space | Backbone:
    """A space, or (for cross-model alignment) a backbone: ``"backbone:NAME"`` or any name that is
    not a space."""
    if isinstance(spec, (Space, Backbone)):
        return spec
    if spec.startswith("backbone:"):
        return load_backbone(spec.removeprefix("backbone:"), **options)
    try:
        return load_space(spec, **options)
    except UnknownNameError as space_error:
        try:
            return load_backbone(spec, **options)
        except UnknownNameError:
            raise space_error from None
