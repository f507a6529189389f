"""Calibration figures of trained models: CLIP zero-shot, the models' own heads and linear probes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from t2c_captum.world.generator import FACTORS, Sample
from t2c_captum.world.models import TinyCLIP, WorldViT
from t2c_captum.world.zeroshot import zero_shot_weights

from .data import labels_of, normalise

PROBE_FACTORS = tuple(FACTORS)


@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], images: Tensor, batch: int = 500) -> Tensor:
    """Apply ``fn`` to normalised uint8 images in batches."""
    return torch.cat([fn(normalise(images[i : i + batch])).float()
                      for i in range(0, len(images), batch)])



def zero_shot_accuracy(model: TinyCLIP, image_emb: Tensor, samples: list[Sample]) -> dict:
    """Top-1 zero-shot accuracy per factor."""
    img = F.normalize(image_emb, dim=-1)
    out = {}
    for factor in FACTORS:
        pred = (img @ zero_shot_weights(model, factor).t()).argmax(1).numpy()
        out[factor] = float((pred == labels_of(samples, factor)).mean())
    return out


def probe_accuracy(train_x: Tensor, train_s: list, test_x: Tensor, test_s: list) -> dict:
    """Linear-probe (logistic regression) accuracy per factor."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    a, b = scaler.transform(train_x.numpy()), scaler.transform(test_x.numpy())
    out = {}
    for factor in PROBE_FACTORS:
        y_train = labels_of(train_s, factor)
        if len(np.unique(y_train)) < 2:
            out[factor] = float("nan")
            continue
        clf = LogisticRegression(max_iter=500, C=1.0).fit(a, y_train)
        out[factor] = float((clf.predict(b) == labels_of(test_s, factor)).mean())
    return out


def head_accuracy(vit: WorldViT, images: Tensor, samples: list[Sample]) -> dict:
    """Top-1 accuracy of each of the ViT's factor heads."""
    with torch.no_grad():
        logits = [vit.factor_logits(normalise(images[i : i + 500])) for i in range(0, len(images), 500)]
    return {f: float((torch.cat([lg[f] for lg in logits]).argmax(1).numpy()
                      == labels_of(samples, f)).mean()) for f in FACTORS}


def calibrate(models: dict[str, Any], data: dict[str, tuple[Tensor, list]]) -> dict:
    """All calibration figures: CLIP zero-shot, ShapeCNN head, ViT heads, linear probes."""
    clip, cnn, ae = (models[m] for m in ("world-clip", "world-cnn", "world-ae"))
    vit = models.get("world-vit")
    cal: dict = {name: {} for name in models}
    for split in ("test", "compositional"):
        images, samples = data[split]
        emb = embed(clip.encode_image, images)
        cal["world-clip"][f"zero_shot_{split}"] = zero_shot_accuracy(clip, emb, samples)
        pred = embed(cnn, images).argmax(1).numpy()
        cal["world-cnn"][f"head_shape_{split}"] = float(
            (pred == labels_of(samples, "shape")).mean()
        )
        if vit is not None:
            cal["world-vit"][f"heads_{split}"] = head_accuracy(vit, images, samples)
    feature_fns = {"world-clip": clip.encode_image, "world-cnn": cnn.features, "world-ae": ae.features}
    if vit is not None:
        feature_fns["world-vit"] = vit.features
    (val_x, val_s), (test_x, test_s) = data["val"], data["test"]
    for name, fn in feature_fns.items():
        cal[name]["probe_test"] = probe_accuracy(embed(fn, val_x), val_s, embed(fn, test_x), test_s)
    return cal
