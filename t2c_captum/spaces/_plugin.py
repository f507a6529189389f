"""Built-in space families, registered through the same hook as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl
from .open_clip_space import open_clip_space


@hookimpl
def register_spaces(register: Register) -> None:
    register(
        "open_clip",
        open_clip_space,
        description="any open_clip model: 'open_clip:ARCH@TAG', 'hf-hub:ORG/REPO' or a checkpoint",
    )
