"""Ground-truth checks of the concept world used by benchmarks and meaning tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from t2c_captum.world.generator import FACTORS, Sample, max_count, object_mask, render

__all__ = [
    "concept_maps_by_value",
    "factor_value_gaps",
    "factor_value_masks",
    "intervention_effect",
    "sibling_concepts",
    "named_shape_hits",
    "object_masks",
    "unit_selectivity",
]


def object_masks(samples: Sequence[Sample]) -> torch.Tensor:
    """Boolean ``[N, 64, 64]`` masks of the objects of ``samples``."""
    return torch.from_numpy(np.stack([object_mask(s) for s in samples]))


def unit_selectivity(features: torch.Tensor, samples: Sequence[Sample]) -> list[tuple[str, str]]:
    """For each unit (column of ``features``), the ``(factor, value)`` it is most selective for:
    the largest standardised mean difference (Cohen's d) between images with and without it."""
    x = features.double().numpy()
    best = np.full(x.shape[1], -np.inf)
    names: list[tuple[str, str]] = [("", "")] * x.shape[1]
    for factor, values in FACTORS.items():
        labels = np.array([s.value(factor) for s in samples])
        for value in values:
            has = labels == value
            if has.sum() < 2 or (~has).sum() < 2:
                continue
            a, b = x[has], x[~has]
            pooled = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2) + 1e-12
            d = (a.mean(0) - b.mean(0)) / pooled
            better = d > best
            best = np.where(better, d, best)
            names = [(factor, value) if better[u] else names[u] for u in range(x.shape[1])]
    return names


def factor_value_masks(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Concept text → which of ``samples`` have its factor value, for every world concept."""
    from t2c_captum.world.adapters import world_concepts

    return {c: np.array([s.value(f) == v for s in samples]) for c, (f, v) in world_concepts().items()}


def factor_value_gaps(scores: torch.Tensor, bank: Any, samples: Sequence[Sample]) -> dict[str, float]:
    """Concept → its mean score on images with its factor value minus the mean on images without."""
    out = {}
    for concept, has in factor_value_masks(samples).items():
        column = scores[:, bank.index(concept)]
        out[concept] = float(column[has].mean() - column[~has].mean())
    return out


def concept_maps_by_value(
    probe: Any,
    images: torch.Tensor,
    samples: Sequence[Sample],
    factor: str = "shape",
    per_value: int | None = None,
    **kwargs: Any,
) -> list[tuple[list[int], Any]]:
    """Integrated-gradients maps of each value's concept on the images that have it:
    ``[(image indices, ConceptMaps), ...]`` for every value of ``factor`` present."""
    from t2c_captum.explain import attribute_concept

    out = []
    for value in FACTORS[factor]:
        idx = [i for i, s in enumerate(samples) if s.value(factor) == value][:per_value]
        if idx:
            out.append((idx, attribute_concept(probe, images[idx], value, "integrated_gradients", **kwargs)))
    return out


def named_shape_hits(
    backbone: Any, aligner: Any, bank: Any, samples: Sequence[Sample], images: torch.Tensor, k: int = 3
) -> list[bool]:
    """For each correct shape prediction of ``backbone``'s head: is the true shape among the ``k``
    concepts :func:`~t2c_captum.explain.explain_predictions` names?"""
    from t2c_captum.explain import explain_predictions

    with torch.no_grad():
        feats = backbone(images)
        pred = backbone.classify(feats).argmax(1)
    truth = torch.tensor([FACTORS["shape"].index(s.shape) for s in samples])
    ok = pred == truth
    named = explain_predictions(backbone, feats[ok], aligner, bank, pred[ok], k=k)
    return [FACTORS["shape"][int(p)] in [c for c, _ in row] for row, p in zip(named, pred[ok], strict=True)]


def sibling_concepts() -> dict[str, list[str]]:
    """Concept → the other values of its factor ("red" → the other colours): its natural contrast."""
    from .adapters import world_concepts

    concepts = world_concepts()
    return {c: [o for o, (g, _) in concepts.items() if g == f and o != c] for c, (f, _) in concepts.items()}


def intervention_effect(
    model: torch.nn.Module,
    preprocess: Any,
    samples: Sequence[Sample],
    factor: str,
    value: str,
    target: int,
) -> tuple[float, float, int]:
    """What setting ``factor`` to ``value`` does to the ``target`` logit, everything else unchanged.

    Each sample that does not already have the value is re-rendered with it (same render seed,
    so the same positions and noise); samples where the value cannot hold (too many objects for a
    large size) are skipped. This is the ground truth a concept's TCAV score is an estimate of.

    Returns:
        (mean logit change, share of images whose logit rises, number of images changed).
    """
    import dataclasses

    keep = [s for s in samples if getattr(s, factor) != value
            and (factor != "size" or s.count <= max_count(value))]
    if not keep:
        return float("nan"), float("nan"), 0
    changed = [dataclasses.replace(s, **{factor: value}) for s in keep]  # type: ignore[arg-type]
    with torch.no_grad():
        before = model(torch.stack([preprocess(render(s)) for s in keep]))[:, target]
        after = model(torch.stack([preprocess(render(s)) for s in changed]))[:, target]
    delta = after - before
    return float(delta.mean()), float((delta > 0).float().mean()), len(keep)
