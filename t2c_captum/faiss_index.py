"""Deprecated alias: the FAISS indexes moved to :mod:`t2c_captum.retrieval.faiss_index`.

Import from ``t2c_captum.retrieval.faiss_index`` instead; this module re-exports its names for one
release and will then be removed.
"""

from __future__ import annotations

from .retrieval.faiss_index import FORMAT_VERSION as FORMAT_VERSION
from .retrieval.faiss_index import INDEX_KINDS, FaissIndex, index_identity, require_faiss

__all__ = ["INDEX_KINDS", "FaissIndex", "index_identity", "require_faiss"]
