"""Concept-to-text: decode embeddings of a space, aligned backbone features and directions into captions.

Decoders are registered through the ``register_decoders`` hook (built-in: ``world-decoder``); load one
with :func:`load_decoder` by registered name, by the path of a saved :class:`PrefixDecoder`, or as
``clipcap:PATH`` for a ClipCap checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._exceptions import UnknownNameError
from .base import CaptionDecoder, check_embeddings, check_space, identity_differences, project_onto
from .captioning import (
    DIRECTION_KINDS,
    align_directions,
    caption_direction,
    caption_embeddings,
    caption_features,
    caption_images,
    shift_direction,
)
from .clipcap import ClipCapDecoder, load_clipcap
from .generation import STRATEGIES, Generated, GenerationOptions, generate
from .prefix import PrefixDecoder, PrefixDecoderConfig, load_prefix_decoder
from .tokenizer import CompactVocabulary, TextTokenizer, load_caption_corpus, read_corpus
from .train import TrainSettings, corpus_digest, train_prefix_decoder

__all__ = [
    "DIRECTION_KINDS",
    "STRATEGIES",
    "CaptionDecoder",
    "ClipCapDecoder",
    "CompactVocabulary",
    "Generated",
    "GenerationOptions",
    "PrefixDecoder",
    "PrefixDecoderConfig",
    "TextTokenizer",
    "TrainSettings",
    "align_directions",
    "caption_direction",
    "caption_embeddings",
    "caption_features",
    "caption_images",
    "check_embeddings",
    "check_space",
    "corpus_digest",
    "generate",
    "identity_differences",
    "list_decoders",
    "load_caption_corpus",
    "load_clipcap",
    "load_decoder",
    "load_prefix_decoder",
    "project_onto",
    "read_corpus",
    "shift_direction",
    "train_prefix_decoder",
]


def list_decoders(pattern: str = "*") -> list[str]:
    """Names of the registered decoders matching a glob ``pattern``."""
    from ..plugins import get_registries

    return get_registries().decoders.names(pattern)


def load_decoder(spec: str | os.PathLike[str] | Any, **options: Any) -> Any:
    """A caption decoder from a registered name (``"world-decoder"``), a saved :class:`PrefixDecoder`
    (``NAME``, ``NAME.json`` or a folder with ``decoder.json``), or ``clipcap:PATH`` (options go to
    :func:`load_clipcap`: ``gpt=``, ``tokenizer=``, ``space=``...)."""
    if isinstance(spec, CaptionDecoder) and not isinstance(spec, (str, os.PathLike)):
        return spec
    from ..plugins import get_registries

    text = os.fspath(spec)
    registry = get_registries().decoders
    if text in registry:
        return registry.get(text)(**options)
    if text.startswith("clipcap:"):
        return load_clipcap(text.removeprefix("clipcap:"), **options)
    path = Path(text)
    if path.is_dir() or path.with_suffix(".json").is_file() or path.suffix == ".json":
        return load_prefix_decoder(path, space=options.get("space"))
    raise UnknownNameError(
        "decoder",
        text,
        registry,
        "Give a registered name, the path of a saved decoder (NAME.json), or clipcap:PATH.",
    )
