"""Text-image spaces: CLIP-like models whose image and text embeddings share one space.

Load one with :func:`load_space`: a registered name (``"world-clip"``), ``"open_clip:ARCH@TAG"``, an
``hf-hub:`` id, or a bare open_clip architecture name.
"""

from __future__ import annotations

from .base import Space, format_prompts
from .loading import load_space
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

