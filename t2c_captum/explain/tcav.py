"""Text CAVs: concept activation vectors derived from text through the aligner, used with
``captum.concept.TCAV`` without any concept images."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._exceptions import DataError, T2CError
from ..concepts import ConceptBank

__all__ = ["FeatureHeadModel", "TextTCAVResult", "tcav_target", "text_cav", "text_tcav"]


class FeatureHeadModel(nn.Module):
    """``head(features(backbone(x)))`` with the aligned layer exposed as the module ``features``,
    so Captum's TCAV and layer methods can hook exactly the features the aligner reads."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        head = head if head is not None else getattr(backbone, "head", None)
        if head is None:
            raise T2CError("TCAV needs class logits: the backbone has no head; pass head=")
        self.backbone = backbone
        self.features = nn.Identity()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.backbone(x)))


def text_cav(
    aligner: Any, bank: ConceptBank, concept: str, against: str | torch.Tensor | None = None
) -> torch.Tensor:
    """The backbone-feature direction ``[d]`` of a text concept (optionally relative to another).

    The aligner is affine, ``z = W f + b``, with any standardisation folded into ``W``; the score
    ``t·z`` of concept ``t`` grows fastest along ``Wᵀ t``. Against a counterpart ``r`` (a random
    text, as TCAV's random concepts) the direction is ``Wᵀ (t - r)``: the normal of the linear
    classifier that separates the two in the space.
    """
    t = bank.vector(concept)
    if against is not None:
        t = t - (bank.vector(against) if isinstance(against, str) else torch.as_tensor(against).float())
    return aligner.linear_part.detach().float().cpu().T @ t


@dataclass
class TextTCAVResult:
    """TCAV scores of text concepts for one class.

    Attributes:
        scores: concept → TCAV sign-count score of each run (one run per random counterpart).
        random_scores: sign-count scores of random-vs-random runs (the null distribution).
        p_values: concept → two-sided t-test p-value of its scores against the null.
        significant: concepts with ``p < alpha`` whose mean score differs from the null's.
    """

    target: int
    scores: dict[str, list[float]]
    random_scores: list[float]
    p_values: dict[str, float]
    alpha: float
    significant: list[str] = field(default_factory=list)

    def mean(self, concept: str) -> float:
        """Mean TCAV score of a concept over its runs."""
        return float(np.mean(self.scores[concept]))


def _save_cav(save_path: str, model_id: str, pair: list[Any], layer: str, direction: torch.Tensor) -> None:
    from captum.concept import CAV

    weights = torch.stack([direction, -direction]).float()
    CAV.create_cav_dir_if_missing(save_path, model_id)
    CAV(pair, layer, {"weights": weights, "classes": [c.id for c in pair], "accs": None},
        save_path, model_id).save()


def tcav_target(backbone: nn.Module, head: nn.Module | None = None) -> tuple[nn.Module, str, str]:
    """``(model with class logits, layer name, pooling)`` that TCAV should hook for a backbone.

    A :class:`~t2c_captum.backbones.ModuleBackbone` at a named layer gives its own model and layer
    (the CAV is spread over the layer's positions, as its pooling is an average); any other
    backbone with a head gives ``FeatureHeadModel(backbone)`` and its ``features`` layer.
    """
    from ..backbones import ModuleBackbone

    if isinstance(backbone, ModuleBackbone) and not backbone._capture_input:
        return backbone.model, backbone._target_name, backbone.pool
    return FeatureHeadModel(backbone, head), "features", "flatten"


def _layer_shape(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[int, ...]:
    from captum.attr import LayerActivation

    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        out = LayerActivation(model, module).attribute(x[:1])
    return tuple(out.shape[1:])


def _spread(direction: torch.Tensor, shape: tuple[int, ...], pool: str) -> torch.Tensor:
    """A pooled-feature direction as a direction of the whole layer output (flattened)."""
    if len(shape) == 1 or pool == "flatten":
        if direction.numel() != int(np.prod(shape)):
            raise DataError(f"the CAV has {direction.numel()} entries but the layer gives {shape}")
        return direction
    if pool != "avg":
        raise DataError(
            f"text CAVs at a pooled layer need average pooling (a linear map); the backbone uses {pool!r}"
        )
    if len(shape) == 3 and shape[0] == direction.numel():  # [C, H, W]
        return direction[:, None].expand(shape[0], shape[1] * shape[2]).flatten()
    if len(shape) == 2 and shape[1] == direction.numel():  # [T, C]
        return direction[None, :].expand(shape[0], shape[1]).flatten()
    raise DataError(f"cannot spread a {direction.numel()}-d CAV over a layer output of shape {shape}")


def text_tcav(
    backbone: nn.Module,
    aligner: Any,
    bank: ConceptBank,
    concepts: Sequence[str],
    inputs: torch.Tensor,
    target: int,
    *,
    random_texts: Sequence[str] | None = None,
    head: nn.Module | None = None,
    alpha: float = 0.05,
    save_path: str | os.PathLike[str] | None = None,
) -> TextTCAVResult:
    """TCAV scores of text concepts with Captum's ``TCAV``, using text CAVs instead of trained ones.

    For each concept and each random counterpart text, the CAV ``Wᵀ(t_concept - t_random)`` is
    written where ``captum.concept.TCAV`` looks for saved CAVs, so Captum computes its usual
    sign-count scores (share of ``inputs`` whose ``target`` logit grows along the CAV at the aligned
    layer) without any concept images. Significance follows TCAV: the concept's scores over the
    random counterparts against random-vs-random scores, two-sided Welch t-test.

    At the penultimate layer of a linear head the logit's gradient is the same for every image, so
    each score is 0 or 1; align an earlier layer (a :class:`~t2c_captum.backbones.ModuleBackbone`
    with ``layer=``) for graded scores.

    Args:
        backbone (Backbone): a ModuleBackbone at the aligned layer of a classifier, or a backbone
            with a head (or pass ``head``).
        aligner (Aligner): fitted on the backbone's features.
        bank (ConceptBank): must contain ``concepts`` and ``random_texts``.
        concepts (list of str): concepts to test.
        inputs (Tensor): ``[N, 3, H, W]`` preprocessed images of the class under study.
        target (int): the class logit.
        random_texts (list of str): at least 3 counterpart concepts of the bank; default: the bank's
            concepts that are not tested.
        alpha (float, optional): significance level. Default: ``0.05``
    """
    from captum.attr import LayerGradientXActivation
    from captum.concept import TCAV, Concept
    from scipy.stats import ttest_ind

    randoms = list(random_texts) if random_texts is not None else [c for c in bank if c not in concepts]
    if len(randoms) < 3:
        raise DataError("TCAV significance needs at least 3 random counterpart texts (random_texts=)")
    bank.indices(list(concepts) + randoms)
    model, layer, pool = tcav_target(backbone, head)
    n_out = model(inputs[:1]).shape[-1]
    if not 0 <= target < n_out:
        raise DataError(f"target {target} is outside the model's 0..{n_out - 1} outputs")
    shape = _layer_shape(model, layer, inputs)
    folder = str(save_path) if save_path is not None else tempfile.mkdtemp(prefix="t2c-text-cavs-")
    model_id = "text-cavs"
    named = {name: Concept(i, name, None) for i, name in enumerate(dict.fromkeys([*concepts, *randoms]))}
    sets, plan = [], []
    for concept in [*concepts, *randoms]:
        for other in randoms:
            if other == concept:
                continue
            pair = [named[concept], named[other]]
            cav = _spread(text_cav(aligner, bank, concept, other), shape, pool)
            _save_cav(folder, model_id, pair, layer, cav)
            sets.append(pair)
            plan.append((concept, other))
    tcav = TCAV(model, [layer], model_id=model_id, save_path=folder,
                layer_attr_method=LayerGradientXActivation(model, None, multiply_by_inputs=False))
    out = tcav.interpret(inputs, sets, target=target)
    scores: dict[str, list[float]] = {c: [] for c in concepts}
    null: list[float] = []
    for (concept, other), pair in zip(plan, sets, strict=True):
        value = float(out["-".join(str(c.id) for c in pair)][layer]["sign_count"][0])
        if concept in scores:
            scores[concept].append(value)
        elif named[concept].id < named[other].id:
            null.append(value)
    p_values = {c: float(ttest_ind(s, null, equal_var=False).pvalue) for c, s in scores.items()}
    significant = [c for c, p in p_values.items() if p < alpha]
    return TextTCAVResult(target, scores, null, p_values, alpha, significant)
