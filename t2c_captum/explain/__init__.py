"""The Captum bridge: concept maps over pixels, named layer attributions, text CAVs for TCAV and
neuron naming, all through a fitted aligner and a concept bank."""

from __future__ import annotations

from .naming import (
    NamedUnits,
    align_directions,
    explain_predictions,
    feature_attributions,
    name_attributions,
    name_difference,
    name_directions,
    name_units,
)
from .probe import (
    PIXEL_METHODS,
    ConceptMaps,
    ConceptProbe,
    attribute_concept,
    inplace_modules,
    without_inplace,
)
from .tcav import (
    FeatureHeadModel,
    TextTCAVResult,
    cav_similarity,
    image_tcav,
    mean_difference_cavs,
    tcav_scores,
    text_cav,
    text_positives,
    text_tcav,
)

__all__ = [
    "PIXEL_METHODS",
    "ConceptMaps",
    "ConceptProbe",
    "FeatureHeadModel",
    "NamedUnits",
    "TextTCAVResult",
    "align_directions",
    "attribute_concept",
    "cav_similarity",
    "explain_predictions",
    "feature_attributions",
    "image_tcav",
    "inplace_modules",
    "mean_difference_cavs",
    "name_attributions",
    "name_difference",
    "name_directions",
    "name_units",
    "tcav_scores",
    "text_cav",
    "text_positives",
    "text_tcav",
    "without_inplace",
]
