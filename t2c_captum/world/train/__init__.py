"""Train the world's tiny CLIP, ShapeCNN, AutoEncoder and ViT, save them and write their calibration.

Usage::

    python -m t2c_captum.world.train [--quick] [--vit-only] [--out DIR] [--calibration FILE]

The full run takes about 22 minutes on 2 CPU cores; ``--quick`` takes seconds (smoke test).

One concern per module, imported one way (each only from those before it): ``settings``
(``TrainSettings``), ``data`` (image tensors, augmentation, batches, factor labels), ``loop`` (the
optimisation loop), ``captions`` (caption mentions, partial captions, the CLIP vocabulary),
``fitters`` (one training procedure per model and its loss), ``evaluate`` (calibration figures),
``calibration`` (the calibration document) and ``run`` (``train_world``, ``main``, saving).
"""

from __future__ import annotations

from .calibration import CALIBRATION_DOC, NOTES_MARKER, calibration_markdown, write_calibration
from .captions import (
    PARTIAL_BG_LINKS,
    PARTIAL_INCLUDE,
    PARTIAL_LEADS,
    PARTIAL_SINGLE_WEIGHTS,
    PartialCaptions,
    caption_mentions,
    caption_vocabulary,
)
from .data import (
    batches,
    factor_keys,
    factor_values,
    hard_negative_batches,
    labels_of,
    normalise,
    random_shift,
    render_array,
)
from .evaluate import PROBE_FACTORS, calibrate, embed, head_accuracy, probe_accuracy, zero_shot_accuracy
from .fitters import multi_positive_loss, saturation_weights, train_ae, train_clip, train_cnn, train_vit
from .loop import cosine_lr, run_steps
from .run import CHAINED, main, save_model, train_world
from .settings import TrainSettings

__all__ = [
    "CALIBRATION_DOC",
    "CHAINED",
    "NOTES_MARKER",
    "PARTIAL_BG_LINKS",
    "PARTIAL_INCLUDE",
    "PARTIAL_LEADS",
    "PARTIAL_SINGLE_WEIGHTS",
    "PROBE_FACTORS",
    "PartialCaptions",
    "TrainSettings",
    "batches",
    "calibrate",
    "calibration_markdown",
    "caption_mentions",
    "caption_vocabulary",
    "cosine_lr",
    "embed",
    "factor_keys",
    "factor_values",
    "hard_negative_batches",
    "head_accuracy",
    "labels_of",
    "main",
    "multi_positive_loss",
    "normalise",
    "probe_accuracy",
    "random_shift",
    "render_array",
    "run_steps",
    "saturation_weights",
    "save_model",
    "train_ae",
    "train_clip",
    "train_cnn",
    "train_vit",
    "train_world",
    "write_calibration",
    "zero_shot_accuracy",
]
