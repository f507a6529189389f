"""Loading a space by name: a registered name, ``open_clip:ARCH@TAG``, an ``hf-hub:`` id, or a bare
open_clip architecture name."""

from __future__ import annotations

from typing import Any

from .._exceptions import UnknownNameError
from ..registry import build_part, find_factory
from .base import Space

__all__ = ["load_space"]


def load_space(spec: str | Space, **options: Any) -> Space:
    """A space from a name; options (``pretrained``, ``checkpoint``, ``device``) go to its factory."""
    if isinstance(spec, Space):
        return spec
    from ..plugins import get_registries

    registry = get_registries().spaces
    options = {k: v for k, v in options.items() if v is not None}
    found = find_factory(registry, spec, hub_family="open_clip")
    if found is None:
        import open_clip

        if spec.partition("@")[0] not in open_clip.list_models():
            known = list(registry) + [f"open_clip:{m}" for m in open_clip.list_models()]
            raise UnknownNameError("space", spec, known, "Use 'open_clip:ARCH@TAG' or 'hf-hub:ORG/REPO'.")
        found = registry.get("open_clip"), {"model": spec}
    factory, extra = found
    return build_part(factory, spec, {**extra, **options}, Space, "space")
