"""t2c_captum: give any frozen vision model a vocabulary.

A linear map fitted from a backbone's features into a CLIP space makes CLIP's text embeddings directly
comparable with that backbone's features (Moayeri et al., "Text-To-Concept (and Back) via Cross-Model
Alignment", ICML 2023). This package fits such maps, classifies zero-shot through them, and exposes
every part through pluggy hooks.
"""

from __future__ import annotations

from ._exceptions import (
    CheckpointFormatError,
    ConfigurationError,
    DataError,
    DimensionMismatchError,
    DuplicateNameError,
    IncompatibleArtifactError,
    NotFittedError,
    PluginError,
    QuerySyntaxError,
    RayClusterError,
    SettingsError,
    T2CError,
    UnknownNameError,
    WorldError,
)
from ._version import __version__
from .aligners import (
    Aligner,
    AlignmentMetrics,
    ImportedAligner,
    LinearAligner,
    SGDAligner,
    import_aligner,
    load_aligner,
    make_aligner,
)
from .aligners.loading import load_target
from .alignment import EvalReport, FitReport, evaluate_store, fit_aligner
from .backbones import Backbone, ModuleBackbone, load_backbone, module_backbone
from .cbm import CBMReport, ConceptBottleneck
from .concepts import (
    ConceptBank,
    concept_scores,
    contrast_scores,
    load_vocabulary,
    summarize_scores,
    top_concepts,
)
from .data import ImageSource, open_source
from .decoders import (
    CaptionDecoder,
    PrefixDecoder,
    caption_direction,
    caption_features,
    caption_images,
    load_decoder,
    train_prefix_decoder,
)
from .features import ExtractOptions, FeatureStore, extract_features
from .hookspecs import hookimpl
from .plugins import get_plugin_manager, get_registries
from .probes import Probe, ProbeScores, attach, load_probe
from .retrieval import RetrievalResult, Retriever, parse_query
from .shift import ShiftReport, diagnose_shift, shift_report
from .spaces import Space, load_space
from .zeroshot import ZeroShotClassifier

__all__ = [
    "Aligner",
    "AlignmentMetrics",
    "Backbone",
    "CBMReport",
    "CaptionDecoder",
    "ConceptBank",
    "ConceptBottleneck",
    "CheckpointFormatError",
    "ConfigurationError",
    "DataError",
    "DimensionMismatchError",
    "DuplicateNameError",
    "EvalReport",
    "ExtractOptions",
    "FeatureStore",
    "FitReport",
    "ImageSource",
    "ImportedAligner",
    "IncompatibleArtifactError",
    "LinearAligner",
    "ModuleBackbone",
    "NotFittedError",
    "PrefixDecoder",
    "PluginError",
    "Probe",
    "ProbeScores",
    "QuerySyntaxError",
    "RayClusterError",
    "RetrievalResult",
    "Retriever",
    "SGDAligner",
    "SettingsError",
    "ShiftReport",
    "Space",
    "T2CError",
    "UnknownNameError",
    "WorldError",
    "ZeroShotClassifier",
    "__version__",
    "attach",
    "caption_direction",
    "caption_features",
    "caption_images",
    "concept_scores",
    "contrast_scores",
    "diagnose_shift",
    "evaluate_store",
    "extract_features",
    "fit_aligner",
    "get_plugin_manager",
    "get_registries",
    "hookimpl",
    "import_aligner",
    "load_aligner",
    "load_backbone",
    "load_decoder",
    "load_probe",
    "load_space",
    "load_target",
    "load_vocabulary",
    "make_aligner",
    "module_backbone",
    "open_source",
    "parse_query",
    "shift_report",
    "summarize_scores",
    "top_concepts",
    "train_prefix_decoder",
]
