"""Feature extraction and the on-disk feature store."""

from __future__ import annotations

from .extract import default_cache_dir, extract_features
from .options import BACKENDS, ExtractOptions
from .store import FORMAT_VERSION, FeatureStore, store_key

__all__ = [
    "BACKENDS",
    "ExtractOptions",
    "FORMAT_VERSION",
    "FeatureStore",
    "default_cache_dir",
    "extract_features",
    "store_key",
]
