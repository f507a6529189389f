"""Concept-to-text: decode embeddings of a space, aligned backbone features and directions into captions.

Decoders are registered through the ``register_decoders`` hook (built-in: ``world-decoder``); load one
with :func:`load_decoder` by registered name, by the path of a saved :class:`PrefixDecoder`, or as
``clipcap:PATH`` for a ClipCap checkpoint.
"""

from __future__ import annotations

from ..aligners.directions import align_directions
from .base import CaptionDecoder, check_embeddings, check_space, identity_differences, project_onto
from .captioning import (
    DIRECTION_KINDS,
    caption_direction,
    caption_embeddings,
    caption_features,
    caption_images,
    shift_direction,
)
from .clipcap import ClipCapDecoder, load_clipcap
from .generation import STRATEGIES, Generated, GenerationOptions, generate
from .loading import list_decoders, load_decoder
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

