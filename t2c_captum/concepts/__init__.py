"""Concept vocabularies: named lists of concept texts, registered through the plugin hook."""

from __future__ import annotations

from .bank import ConceptBank
from .resolve import default_vocabulary, load_vocabulary, read_vocabulary_file, resolve_vocabulary
from .scores import (
    ConceptSummary,
    concept_scores,
    contrast_scores,
    iter_store_scores,
    summarize_scores,
    top_concepts,
)
from .vocabulary import Vocabulary, check_concepts

__all__ = [
    "ConceptBank",
    "ConceptSummary",
    "Vocabulary",
    "check_concepts",
    "concept_scores",
    "contrast_scores",
    "default_vocabulary",
    "iter_store_scores",
    "load_vocabulary",
    "read_vocabulary_file",
    "resolve_vocabulary",
    "summarize_scores",
    "top_concepts",
]
