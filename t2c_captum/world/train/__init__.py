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

# The former single module's other public names stay importable from here, outside __all__.
from .calibration import CALIBRATION_DOC as CALIBRATION_DOC
from .calibration import NOTES_MARKER, write_calibration
from .calibration import calibration_markdown as calibration_markdown
from .captions import PARTIAL_BG_LINKS as PARTIAL_BG_LINKS
from .captions import PARTIAL_INCLUDE as PARTIAL_INCLUDE
from .captions import PARTIAL_LEADS as PARTIAL_LEADS
from .captions import PARTIAL_SINGLE_WEIGHTS as PARTIAL_SINGLE_WEIGHTS
from .captions import PartialCaptions, caption_mentions
from .captions import caption_vocabulary as caption_vocabulary
from .data import batches as batches
from .data import factor_keys as factor_keys
from .data import factor_values, normalise, random_shift, render_array
from .data import hard_negative_batches as hard_negative_batches
from .data import labels_of as labels_of
from .evaluate import PROBE_FACTORS as PROBE_FACTORS
from .evaluate import calibrate as calibrate
from .evaluate import embed as embed
from .evaluate import head_accuracy as head_accuracy
from .evaluate import probe_accuracy as probe_accuracy
from .evaluate import zero_shot_accuracy as zero_shot_accuracy
from .fitters import multi_positive_loss
from .fitters import saturation_weights as saturation_weights
from .fitters import train_ae as train_ae
from .fitters import train_clip as train_clip
from .fitters import train_cnn as train_cnn
from .fitters import train_vit as train_vit
from .loop import cosine_lr as cosine_lr
from .loop import run_steps as run_steps
from .run import CHAINED as CHAINED
from .run import main, train_world
from .run import save_model as save_model
from .settings import TrainSettings

__all__ = [
    "NOTES_MARKER",
    "PartialCaptions",
    "TrainSettings",
    "caption_mentions",
    "factor_values",
    "main",
    "multi_positive_loss",
    "normalise",
    "random_shift",
    "render_array",
    "train_world",
    "write_calibration",
]
