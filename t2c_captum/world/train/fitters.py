"""One training procedure per world model (CLIP, ShapeCNN, ViT, AutoEncoder) and their losses."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from t2c_captum.world.generator import FACTORS, Sample
from t2c_captum.world.models import WORLD_MEAN, WORLD_STD, AutoEncoder, ShapeCNN, TinyCLIP, WorldViT

from .captions import PartialCaptions, caption_mentions, caption_vocabulary
from .data import factor_keys, factor_values, hard_negative_batches, normalise, random_shift
from .loop import run_steps
from .settings import TrainSettings


def multi_positive_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Symmetric contrastive loss whose targets are uniform over each row's/column's positives.

    Args:
        logits: image-to-text logits ``[B, T]``.
        positives: bool ``[B, T]``, True where the text describes the image (every image has
            one; texts without any image in the batch only act as negatives).
    """
    pos = positives.float()
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    has = pos.sum(0) > 0
    cols = pos[:, has]
    t2i = -(cols / cols.sum(0, keepdim=True) * F.log_softmax(logits[:, has], dim=0)).sum(0).mean()
    return (i2t + t2i) / 2


def train_clip(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> TinyCLIP:
    """Contrastive training on (image, caption) pairs with caption-aware positives.

    Every image brings one of its captions and ``cfg.partial_per_image`` partial captions that
    name only some factors. A caption is a positive of every batch image that has all the factor
    values it names, so e.g. 'a striped disc' pulls all striped circles of the batch, and no
    image is pushed away from a caption that describes it.
    """
    tokens, vocab = caption_vocabulary(samples)
    model = TinyCLIP(vocab, **cfg.clip_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    values = torch.from_numpy(factor_values(samples))
    mentions = torch.from_numpy(np.stack(
        [np.stack([caption_mentions(s, c) for c in s.captions]) for s in samples]
    ))
    partial = PartialCaptions(
        model.context_length, cfg.partial_single, cfg.seed + 4, cfg.partial_single_weights
    )

    def loss_fn(idx: Tensor) -> Tensor:
        pick = torch.randint(0, tokens.shape[1], (len(idx),), generator=gen)
        texts, named = [tokens[idx, pick]], [mentions[idx, pick]]
        for _ in range(cfg.partial_per_image):
            ids, m = partial.batch(values[idx].numpy())
            texts.append(ids)
            named.append(m)
        length = max(int((t != 0).sum(1).max()) for t in texts)
        ids = torch.cat([F.pad(t, (0, max(0, length - t.shape[1])))[:, :length] for t in texts])
        named_all = torch.cat(named)
        v = values[idx]
        positives = ((named_all[None] == -1) | (named_all[None] == v[:, None])).all(-1)
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        return multi_positive_loss(model(x, ids), positives)

    groupings = [factor_keys(samples, tuple(g)) for g in cfg.clip_groupings]
    batch = min(cfg.batch_size, len(samples))
    sampler = hard_negative_batches(
        groupings, batch, gen, cfg.group_fraction, cfg.clip_grouping_weights
    )
    run_steps(model, loss_fn, len(samples), cfg.clip_steps, cfg.clip_lr, cfg, "clip", sampler)
    return model


def train_cnn(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> ShapeCNN:
    """Supervised training on the ``shape`` factor only."""
    labels = torch.tensor([FACTORS["shape"].index(s.shape) for s in samples])
    model = ShapeCNN(num_classes=len(FACTORS["shape"]), **cfg.cnn_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 2)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        return F.cross_entropy(model(x), labels[idx])

    run_steps(model, loss_fn, len(samples), cfg.cnn_steps, cfg.cnn_lr, cfg, "cnn")
    return model


def train_vit(images: Tensor, samples: list[Sample], cfg: TrainSettings) -> WorldViT:
    """Supervised training on every factor at once (one head each, summed cross-entropies)."""
    labels = torch.from_numpy(factor_values(samples))
    torch.manual_seed(cfg.seed + 5)  # its own seed: the ViT does not depend on the other models
    model = WorldViT(num_classes={f: len(v) for f, v in FACTORS.items()}, **cfg.vit_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 5)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        logits = model.factor_logits(x)
        return cast(Tensor, sum(
            (cfg.vit_shape_weight if f == "shape" else 1.0) * F.cross_entropy(logits[f], labels[idx, i])
            for i, f in enumerate(FACTORS)
        ))

    run_steps(model, loss_fn, len(samples), cfg.vit_steps, cfg.vit_lr, cfg, "vit")
    return model


def saturation_weights(x: Tensor, gain: float) -> Tensor:
    """Per-pixel weights ``1 + gain * chroma`` of normalised images (label-free)."""
    rgb = x * torch.tensor(WORLD_STD).view(1, 3, 1, 1) + torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    chroma = rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
    return 1.0 + gain * chroma


def train_ae(images: Tensor, cfg: TrainSettings) -> AutoEncoder:
    """Reconstruction-only training (no labels).

    The squared error is weighted up on saturated pixels: the backgrounds are grey, so this
    keeps the small coloured objects (and their colour) from drowning in background texture.
    """
    model = AutoEncoder(**cfg.ae_hparams)
    gen = torch.Generator().manual_seed(cfg.seed + 3)

    def loss_fn(idx: Tensor) -> Tensor:
        x = random_shift(normalise(images[idx]), cfg.max_shift, gen)
        weights = saturation_weights(x, cfg.ae_saturation_gain)
        return (weights * (model(x) - x) ** 2).mean()

    run_steps(model, loss_fn, len(images), cfg.ae_steps, cfg.ae_lr, cfg, "ae")
    return model
