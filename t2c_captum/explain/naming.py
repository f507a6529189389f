"""Name feature-space vectors in words: Captum attributions at the aligned layer, differences between
predictions or groups, and single units (neurons) of the aligned layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._exceptions import ConfigurationError, DataError
from ..aligners.base import as_tensor_2d
from ..aligners.directions import align_directions, direction_rows, linear_part_for
from ..concepts import ConceptBank, top_concepts

__all__ = [
    "NamedUnits",
    "align_directions",
    "explain_predictions",
    "feature_attributions",
    "name_attributions",
    "name_difference",
    "name_directions",
    "name_units",
]


def name_directions(
    directions: Any, aligner: Any, bank: ConceptBank, k: int = 5, *, centre: bool = True
) -> list[list[tuple[str, float]]]:
    """The concepts that feature-space directions ``[N, d]`` (or one ``[d]``) read as.

    A direction ``v`` moves the aligned embedding by ``W v`` (``W`` the aligner's linear part), so it
    is named by the cosine between ``W v`` and the concepts. With ``centre`` the concepts' mean
    embedding is removed first (it is shared by every concept and would otherwise name nothing).

    Returns:
        For each direction, its ``k`` best ``(concept, cosine)`` pairs.
    """
    moved = align_directions(directions, aligner)
    concepts = bank.embeddings
    if centre and len(bank) > 1:
        concepts = nn.functional.normalize(concepts - concepts.mean(0), dim=-1)
    scores = nn.functional.normalize(moved, dim=-1) @ concepts.T
    return top_concepts(scores, bank, k)


def _baseline(x: torch.Tensor, baseline: torch.Tensor | str | None) -> torch.Tensor:
    if isinstance(baseline, str) and baseline == "mean":
        return x.mean(0, keepdim=True).expand_as(x)
    if baseline is None or (isinstance(baseline, str) and baseline == "zero"):
        return torch.zeros_like(x)
    if isinstance(baseline, str):
        raise DataError(f"baseline must be 'mean', 'zero' or a tensor, not {baseline!r}")
    return torch.as_tensor(baseline).float().expand_as(x)


def feature_attributions(
    backbone: Any,
    features: Any,
    target: int | Sequence[int] | torch.Tensor,
    *,
    head: nn.Module | None = None,
    baseline: torch.Tensor | str | None = "mean",
    n_steps: int = 32,
) -> torch.Tensor:
    """Integrated-gradients attributions ``[N, d]`` of a head's logit to the aligned-layer features.

    This is Captum's ``IntegratedGradients`` applied to the head on the features (the same numbers
    as ``LayerIntegratedGradients`` at the aligned layer with a feature-space baseline). For a linear
    head it is exactly ``w_target * (f - baseline)``.

    Args:
        backbone (Backbone): gives the head (``backbone.head``) unless ``head`` is passed.
        features (Tensor): ``[N, d]`` features of the images.
        target: class index per image (or one for all).
        head (nn.Module, optional): any differentiable features → logits module.
        baseline: ``"mean"`` (the batch's mean features: "why this class here rather than on an
            average image"), ``None``/``"zero"``, or a ``[d]`` / ``[N, d]`` tensor. Default: ``"mean"``
    """
    from captum.attr import IntegratedGradients

    head = head if head is not None else getattr(backbone, "head", None)
    if head is None:
        raise ConfigurationError(
            "feature attributions need a classifier head: the backbone has none; pass head="
        )
    x = as_tensor_2d(features, "features").float()
    n_out = head(x[:1]).shape[-1]
    t = torch.as_tensor(target).long().reshape(-1)
    if ((t < 0) | (t >= n_out)).any():
        raise DataError(f"target class {t.tolist()[:5]} is outside the head's 0..{n_out - 1} outputs")
    base = _baseline(x, baseline)
    tgt: Any = int(t[0]) if t.numel() == 1 else t
    attr = IntegratedGradients(head).attribute(x, baselines=base, target=tgt, n_steps=n_steps)
    return attr.detach()


def name_attributions(
    attributions: Any, displacement: Any, aligner: Any, bank: ConceptBank, k: int = 5
) -> list[list[tuple[str, float]]]:
    """Name feature attributions: how much each concept carried the attributed output.

    With IG's completeness, ``logit - logit(baseline) = sum(a)`` and ``a = g * Δf`` (``g`` the
    path-averaged gradient, ``Δf`` the features' displacement from the baseline). Through the
    aligner, ``Δz = W Δf`` and ``g·Δf ≈ u·Δz`` with ``u = (W⁺)ᵀ g``; over unit concept directions
    ``t`` (centred on the vocabulary's mean) the logit change splits into ``(t·Δz)(t·u)`` terms —
    exactly, were the concepts an orthonormal basis. A concept is named when it is present in the
    image (``t·Δz > 0``) and pushes the output up (``t·u > 0``); its score is the product.

    Args:
        attributions: ``[N, d]`` (or ``[d]``) Captum attributions at the aligned layer.
        displacement: features minus the attribution baseline, same shape.
        aligner (Aligner): fitted on these features.
        bank (ConceptBank): candidate names.
        k (int): names per row.
    """
    a = direction_rows(attributions, "attributions")
    delta = torch.as_tensor(displacement).float().reshape(a.shape)
    weight = linear_part_for(aligner, a.shape[1])
    safe = delta.abs() > 1e-8
    gradient = torch.where(safe, a / torch.where(safe, delta, torch.ones_like(delta)), torch.zeros_like(a))
    moved = delta @ weight.T
    pull = gradient @ torch.linalg.pinv(weight)
    concepts = bank.embeddings
    if len(bank) > 1:
        concepts = nn.functional.normalize(concepts - concepts.mean(0), dim=-1)
    scores = (moved @ concepts.T).clamp_min(0) * (pull @ concepts.T).clamp_min(0)
    return top_concepts(scores, bank, k)


def explain_predictions(
    backbone: Any,
    features: Any,
    aligner: Any,
    bank: ConceptBank,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    k: int = 5,
    baseline: torch.Tensor | str | None = "mean",
) -> list[list[tuple[str, float]]]:
    """"The prediction was driven by features that read as …": Captum attributions of the head's
    logit (default: the predicted class) at the aligned layer, named by :func:`name_attributions`."""
    x = as_tensor_2d(features, "features").float()
    if target is None:
        with torch.no_grad():
            target = backbone.classify(x).argmax(1)
    attr = feature_attributions(backbone, x, target, baseline=baseline)
    return name_attributions(attr, x - _baseline(x, baseline), aligner, bank, k)


def name_difference(features_a: Any, features_b: Any, aligner: Any, bank: ConceptBank, k: int = 5) -> dict:
    """What sets group A apart from group B (two predictions, two classes, two datasets), in words.

    Returns:
        ``{"a_over_b": [...], "b_over_a": [...]}``: the concepts of ``mean(A) - mean(B)`` and its
        opposite.
    """
    a, b = as_tensor_2d(features_a, "features_a"), as_tensor_2d(features_b, "features_b")
    diff = a.float().mean(0) - b.float().mean(0)
    return {
        "a_over_b": name_directions(diff, aligner, bank, k)[0],
        "b_over_a": name_directions(-diff, aligner, bank, k)[0],
    }


@dataclass
class NamedUnits:
    """Names of the units of the aligned layer.

    Attributes:
        by_aligner: per unit, concepts of the unit's direction pushed through the aligner.
        by_examples: per unit, concepts of the mean aligned embedding of its top-activating probe
            images minus the probe set's mean (CLIP-Dissect-style cross-check); ``None`` without probes.
        agreement: share of units whose best name is the same both ways (``nan`` without probes).
    """

    by_aligner: list[list[tuple[str, float]]]
    by_examples: list[list[tuple[str, float]]] | None
    agreement: float


def name_units(
    aligner: Any,
    bank: ConceptBank,
    units: Sequence[int] | None = None,
    *,
    probe_features: Any = None,
    top_fraction: float = 0.05,
    k: int = 3,
) -> NamedUnits:
    """Name units (feature dimensions) of the aligned layer, through the aligner and from examples.

    Args:
        aligner (Aligner): fitted on this layer.
        bank (ConceptBank): candidate names.
        units (list of int, optional): which units (default all).
        probe_features (Tensor, optional): ``[N, d]`` features of probe images for the cross-check.
        top_fraction (float, optional): share of probe images that count as a unit's top
            activations. Default: ``0.05``
        k (int, optional): names per unit. Default: ``3``
    """
    d = int(aligner.linear_part.shape[1])
    ids = list(range(d)) if units is None else [int(u) for u in units]
    if any(not 0 <= u < d for u in ids):
        raise DataError(f"units must be in 0..{d - 1}")
    by_aligner = name_directions(torch.eye(d)[ids], aligner, bank, k)
    if probe_features is None:
        return NamedUnits(by_aligner, None, float("nan"))
    x = as_tensor_2d(probe_features, "probe_features").float()
    if x.shape[0] < 20:
        raise DataError(f"naming units from examples needs at least 20 probe images, got {x.shape[0]}")
    top = max(1, int(round(top_fraction * x.shape[0])))
    z = aligner.transform(x).float().cpu()
    mean = z.mean(0)
    rows = []
    for u in ids:
        best = x[:, u].topk(top).indices
        rows.append(z[best].mean(0) - mean)
    moved = nn.functional.normalize(torch.stack(rows), dim=-1)
    concepts = nn.functional.normalize(bank.embeddings - bank.embeddings.mean(0), dim=-1)
    by_examples = top_concepts(moved @ concepts.T, bank, k)
    agree = float(np.mean([a[0][0] == b[0][0] for a, b in zip(by_aligner, by_examples, strict=True)]))
    return NamedUnits(by_aligner, by_examples, agree)
