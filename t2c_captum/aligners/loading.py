"""Loading what an aligner maps onto: a space, or (cross-model alignment) another backbone."""

from __future__ import annotations

from typing import Any

from .._exceptions import UnknownNameError
from ..backbones import Backbone, load_backbone
from ..spaces import Space, load_space
from .base import Aligner

__all__ = ["load_target", "make_aligner", "recorded_backbone"]


def make_aligner(kind: str = "linear", **params: Any) -> Aligner:
    """An unfitted aligner of a registered kind (``"linear"``, ``"sgd"``, or a plugin's)."""
    from ..plugins import get_registries

    return get_registries().aligners.get(kind)(**params)


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


def recorded_backbone(aligner: Aligner, backbone: str | None, checkpoint: str | None) -> Backbone:
    """The backbone an aligner records (or ``backbone`` instead, with its local ``checkpoint``), at the
    layer it was fitted on."""
    layer = aligner.source_.get("layer")
    return load_backbone(
        backbone or aligner.source_.get("id", ""),
        checkpoint=checkpoint,
        layer=None if layer in (None, "penultimate") else layer,
    )
