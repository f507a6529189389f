"""The concept world's models, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl


@hookimpl
def register_backbones(register: Register) -> None:
    from .adapters import WORLD_BACKBONES, world_backbone_factory

    for name, description in WORLD_BACKBONES.items():
        register(name, world_backbone_factory(name), description=description)


@hookimpl
def register_spaces(register: Register) -> None:
    from .adapters import world_clip_space

    register("world-clip", world_clip_space, description="the concept world's tiny CLIP (offline)")


@hookimpl
def register_concept_vocabularies(register: Register) -> None:
    from .adapters import world_vocabulary

    register("world", world_vocabulary, description="every factor word of the concept world")


@hookimpl
def register_decoders(register: Register) -> None:
    from .decoder import world_decoder

    register(
        "world-decoder",
        world_decoder,
        description="caption decoder for world-clip, trained on the world's captions (cached on first use)",
    )


@hookimpl
def register_sources(register: Register) -> None:
    from .adapters import open_world_spec

    register(
        "world",
        open_world_spec,
        description="world:SPLIT[:FACTOR[:N]]: a concept-world split (labels from FACTOR, default shape)",
    )


@hookimpl
def register_caption_corpora(register: Register) -> None:
    from .decoder import world_corpus

    register(
        "world",
        lambda n_samples=None, **_: world_corpus() if n_samples is None else world_corpus(n_samples),
        description="the captions of the concept world's training images (n_samples of them: 2,400)",
    )
