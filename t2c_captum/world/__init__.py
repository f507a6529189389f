"""The concept world: synthetic images with known factors, a tiny CLIP and trained backbones.

Everything needed to test the library's capabilities for *meaning* offline: a deterministic image
generator with captions and fixed splits, ground-truth task sets (shift pairs, retrieval queries,
caption checks), and small committed models (``load_world_model``).
"""

from __future__ import annotations

from t2c_captum.world.dataset import WorldDataset
from t2c_captum.world.generator import (
    COLOUR_RGB,
    DEFAULT_SPLIT_SIZES,
    FACTORS,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    SPLITS,
    SYNONYMS,
    Sample,
    make_sample,
    make_split,
    max_count,
    render,
)
from t2c_captum.world.models import (
    AutoEncoder,
    ShapeCNN,
    TinyCLIP,
    WorldViT,
    clip_tokenize,
    world_transform,
)
from t2c_captum.world.tasks import (
    RETRIEVAL_QUERIES,
    SHIFT_TASKS,
    RetrievalQuery,
    ShiftTask,
    answer_set,
    caption_check,
    factor_words,
    null_pair,
    parse_query,
    shift_pair,
)
from t2c_captum.world.weights import (
    REGENERATE_COMMAND,
    WORLD_MODELS,
    load_world_model,
    world_model_config,
)
from t2c_captum.world.zeroshot import FACTOR_TEMPLATES, class_prompts, zero_shot_weights

__all__ = [
    "COLOUR_RGB",
    "DEFAULT_SPLIT_SIZES",
    "FACTORS",
    "FACTOR_TEMPLATES",
    "HELD_OUT_PAIRS",
    "IMAGE_SIZE",
    "REGENERATE_COMMAND",
    "RETRIEVAL_QUERIES",
    "SHIFT_TASKS",
    "SPLITS",
    "SYNONYMS",
    "WORLD_MODELS",
    "AutoEncoder",
    "RetrievalQuery",
    "Sample",
    "ShapeCNN",
    "ShiftTask",
    "TinyCLIP",
    "WorldDataset",
    "WorldViT",
    "answer_set",
    "caption_check",
    "class_prompts",
    "clip_tokenize",
    "factor_words",
    "load_world_model",
    "make_sample",
    "make_split",
    "max_count",
    "null_pair",
    "parse_query",
    "render",
    "shift_pair",
    "world_model_config",
    "world_transform",
    "zero_shot_weights",
]
