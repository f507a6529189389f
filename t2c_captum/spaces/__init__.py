"""Text-image spaces: CLIP-like models whose image and text embeddings share one space.

Load one with :func:`load_space`: a registered name (``"world-clip"``), ``"open_clip:ARCH@TAG"``, an
``hf-hub:`` id, or a bare open_clip architecture name.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import T2CError, UnknownNameError
from .base import Space, format_prompts
from .open_clip_space import (
    OpenClipSpace,
    imagenet_class_names,
    imagenet_templates,
    open_clip_space,
)

__all__ = [
    "OpenClipSpace",
    "Space",
    "format_prompts",
    "imagenet_class_names",
    "imagenet_templates",
    "load_space",
    "open_clip_space",
]


def load_space(spec: str | Space, **options: Any) -> Space:
    """A space from a name; options (``pretrained``, ``checkpoint``, ``device``) go to its factory."""
    if isinstance(spec, Space):
        return spec
    from ..plugins import get_registries

    registry = get_registries().spaces
    options = {k: v for k, v in options.items() if v is not None}
    if spec in registry:
        return _build(registry.get(spec), spec, options)
    family, sep, model = spec.partition(":")
    if spec.startswith("hf-hub:"):
        family, model = "open_clip", spec
    if sep and family in registry:
        return _build(registry.get(family), spec, {"model": model, **options})
    import open_clip

    if spec.partition("@")[0] in open_clip.list_models():
        return _build(registry.get("open_clip"), spec, {"model": spec, **options})
    known = list(registry) + [f"open_clip:{m}" for m in open_clip.list_models()]
    raise UnknownNameError("space", spec, known, "Use 'open_clip:ARCH@TAG' or 'hf-hub:ORG/REPO'.")


def _build(factory: Any, spec: str, options: dict[str, Any]) -> Space:
    try:
        space = factory(**options)
    except TypeError as exc:
        raise T2CError(f"space {spec!r} does not accept options {sorted(options)}: {exc}") from exc
    if not isinstance(space, Space):
        raise T2CError(f"space factory for {spec!r} returned {type(space).__name__}, not a Space")
    return space
