"""Helpers for tests, including plugin authors' tests: tiny seeded models, fake parts, images.

Everything here works offline: models are random-init (seeded) or built from the concept world.
"""

from __future__ import annotations

from .helpers import (
    TINY_CLIP,
    FakeBackbone,
    FakePairPlugin,
    FakeSpace,
    check_aligner,
    float32_tolerance,
    make_images,
    make_world_jpegs,
    register_tiny_clip_config,
    tiny_open_clip_checkpoint,
)

__all__ = [
    "TINY_CLIP",
    "FakeBackbone",
    "FakePairPlugin",
    "FakeSpace",
    "check_aligner",
    "float32_tolerance",
    "make_images",
    "make_world_jpegs",
    "register_tiny_clip_config",
    "tiny_open_clip_checkpoint",
]
