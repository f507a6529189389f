"""Text CAVs: concept activation vectors chosen by text (through the aligner or the space), used
with ``captum.concept.TCAV`` without any concept images; and the classic image CAVs to compare."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._exceptions import ConfigurationError, DataError
from ..concepts import ConceptBank

__all__ = [
    "FeatureHeadModel",
    "TextTCAVResult",
    "cav_similarity",
    "image_tcav",
    "mean_difference_cavs",
    "tcav_scores",
    "tcav_target",
    "text_cav",
    "text_positives",
    "text_tcav",
]


class FeatureHeadModel(nn.Module):
    """``head(features(backbone(x)))`` with the aligned layer exposed as the module ``features``,
    so Captum's TCAV and layer methods can hook exactly the features the aligner reads."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        head = head if head is not None else getattr(backbone, "head", None)
        if head is None:
            raise ConfigurationError("TCAV needs class logits: the backbone has no head; pass head=")
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
    """TCAV scores of concepts for one class.

    Attributes:
        target: the class logit.
        scores: concept → TCAV sign-count score of each run.
        random_scores: sign-count scores of random-vs-random runs (the null distribution).
        p_values: concept → two-sided Welch t-test p-value of its scores against the null.
        alpha: the significance level.
        significant: concepts with ``p < alpha``.
        method: how the CAVs were made: ``"probe"`` (text-labelled probe images), ``"images"``
            (example images) or ``"readout"`` (the aligner's readout direction of the text).
        n_examples: concept → number of (probe or example) images that stood for it.
        cavs: concept → mean CAV over the runs, in the aligned layer's pooled feature space
            (compare two methods with :func:`cav_similarity`).
    """

    target: int
    scores: dict[str, list[float]]
    random_scores: list[float]
    p_values: dict[str, float]
    alpha: float
    significant: list[str] = field(default_factory=list)
    method: str = "readout"
    n_examples: dict[str, int] = field(default_factory=dict)
    cavs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

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

    if isinstance(backbone, ModuleBackbone) and not backbone.captures_input:
        return backbone.model, backbone.hooked_layer, backbone.pool
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


def _subset_mean(features: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Mean of a random subset of ``size`` rows of ``features`` (without replacement)."""
    return features[torch.randperm(len(features), generator=gen)[:size]].mean(0)


def _set_size(n_concept: int, size: int | None) -> int:
    return size if size is not None else max(5, min(50, n_concept // 2))


def text_positives(
    bank: ConceptBank,
    concept: str,
    contrast: Sequence[str],
    embeddings: torch.Tensor,
) -> torch.Tensor:
    """Which images read as ``concept`` rather than any of ``contrast`` (zero-shot, boolean ``[M]``).

    ``embeddings`` are the images' space embeddings or their aligned backbone features.
    """
    names = [concept, *[c for c in contrast if c != concept]]
    if len(names) < 2:
        raise DataError(f"{concept!r} needs at least one contrast concept to be read against")
    texts = bank.embeddings[bank.indices(names)]
    return (F.normalize(embeddings.float(), dim=-1) @ texts.T).argmax(1) == 0


def mean_difference_cavs(
    concept_features: torch.Tensor,
    random_features: torch.Tensor,
    *,
    runs: int = 20,
    size: int | None = None,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """CAVs as differences of set means, with a matching null, the way TCAV samples its sets.

    Run ``r`` takes a random subset of the concept's examples and a random subset of the random
    examples; its CAV is the difference of their means (a *pattern* CAV: the direction activations
    move when the concept is present). Null CAVs are differences between two disjoint random
    subsets of the same size, so concept and null CAVs carry the same sampling noise.

    Args:
        concept_features (Tensor): ``[n, d]`` pooled layer features of images showing the concept.
        random_features (Tensor): ``[m, d]`` features of other images (at least twice the set size).
        runs (int, optional): number of concept CAVs and of null CAVs. Default: ``20``
        size (int, optional): examples per set. Default: half the concept's examples, 5 to 50.

    Returns:
        (concept CAVs, null CAVs), ``runs`` ``[d]`` tensors each.
    """
    concept_features, random_features = concept_features.float(), random_features.float()
    n = _set_size(len(concept_features), size)
    if len(concept_features) < 5:
        raise DataError(f"only {len(concept_features)} examples stand for the concept; TCAV needs at least 5")
    if len(random_features) < 2 * n:
        raise DataError(f"need at least {2 * n} random examples for sets of {n}; got {len(random_features)}")
    gen = torch.Generator().manual_seed(seed)
    concept = [_subset_mean(concept_features, n, gen) for _ in range(runs)]
    cavs = [mean - _subset_mean(random_features, n, gen) for mean in concept]
    null = []
    for _ in range(runs):
        order = torch.randperm(len(random_features), generator=gen)
        null.append(random_features[order[:n]].mean(0) - random_features[order[n : 2 * n]].mean(0))
    return cavs, null


def cav_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine between two CAVs (e.g. a text CAV and one trained on example images)."""
    return float(F.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def tcav_scores(
    backbone: nn.Module,
    cavs: Mapping[str, Sequence[torch.Tensor]],
    null: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    target: int,
    *,
    head: nn.Module | None = None,
    alpha: float = 0.05,
    save_path: str | os.PathLike[str] | None = None,
    method: str = "custom",
) -> TextTCAVResult:
    """TCAV with ``captum.concept.TCAV`` for CAVs made elsewhere (pooled-feature directions).

    Each CAV is written where Captum looks for saved CAVs (``CAV.save``), so Captum computes its
    usual sign-count scores: the share of ``inputs`` whose ``target`` logit grows along the CAV at the
    aligned layer. A concept is significant when its scores differ from the null CAVs' scores
    (two-sided Welch t-test, as in TCAV).

    Args:
        backbone (Backbone): a ModuleBackbone at the aligned layer of a classifier, or a backbone
            with a head (or pass ``head``).
        cavs (dict): concept → its CAVs ``[d]`` (one per run).
        null (list of Tensor): null CAVs (at least 3), e.g. random-vs-random set differences.
        inputs (Tensor): ``[N, 3, H, W]`` preprocessed images of the class under study.
        target (int): the class logit.
        alpha (float, optional): significance level. Default: ``0.05``
    """
    from captum.attr import LayerGradientXActivation
    from captum.concept import TCAV, Concept
    from scipy.stats import ttest_ind

    if len(null) < 3:
        raise DataError("TCAV significance needs at least 3 null CAVs")
    model, layer, pool = tcav_target(backbone, head)
    n_out = model(inputs[:1]).shape[-1]
    if not 0 <= target < n_out:
        raise DataError(f"target {target} is outside the model's 0..{n_out - 1} outputs")
    shape = _layer_shape(model, layer, inputs)
    folder = str(save_path) if save_path is not None else tempfile.mkdtemp(prefix="t2c-cavs-")
    model_id = "t2c-cavs"
    counter = iter(range(10**9))
    sets, plan = [], []
    for concept, directions in [*cavs.items(), (None, null)]:
        for direction in directions:
            pair = [Concept(next(counter), str(concept), None), Concept(next(counter), "random", None)]
            _save_cav(folder, model_id, pair, layer, _spread(direction.float(), shape, pool))
            sets.append(pair)
            plan.append(concept)
    tcav = TCAV(model, [layer], model_id=model_id, save_path=folder,
                layer_attr_method=LayerGradientXActivation(model, None, multiply_by_inputs=False))
    out = tcav.interpret(inputs, sets, target=target)
    scores: dict[str, list[float]] = {c: [] for c in cavs}
    null_scores: list[float] = []
    for concept, pair in zip(plan, sets, strict=True):
        value = float(out["-".join(str(c.id) for c in pair)][layer]["sign_count"][0])
        (null_scores if concept is None else scores[concept]).append(value)
    p_values = {c: _p_value(s, null_scores, ttest_ind) for c, s in scores.items()}
    significant = [c for c, p in p_values.items() if p < alpha]
    means = {c: torch.stack([d.float() for d in ds]).mean(0) for c, ds in cavs.items()}
    return TextTCAVResult(target, scores, null_scores, p_values, alpha, significant, method, cavs=means)


def _p_value(scores: Sequence[float], null: Sequence[float], test: Any) -> float:
    if np.std(scores) == 0 and np.std(null) == 0:
        return 0.0 if np.mean(scores) != np.mean(null) else 1.0
    return float(test(scores, null, equal_var=False).pvalue)


def text_tcav(
    backbone: nn.Module,
    aligner: Any,
    bank: ConceptBank,
    concepts: Sequence[str],
    inputs: torch.Tensor,
    target: int,
    *,
    probe_features: torch.Tensor | None = None,
    probe_embeddings: torch.Tensor | None = None,
    contrast: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    runs: int = 20,
    set_size: int | None = None,
    seed: int = 0,
    random_texts: Sequence[str] | None = None,
    head: nn.Module | None = None,
    alpha: float = 0.05,
    save_path: str | os.PathLike[str] | None = None,
) -> TextTCAVResult:
    """TCAV scores of text concepts with Captum's ``TCAV``, without any concept images.

    **With probe images** (``probe_features``, recommended): unlabelled images of the domain stand
    in for concept images. Those that read as the concept rather than its ``contrast`` concepts
    (zero-shot through the aligner, or through the space when ``probe_embeddings`` are given) are
    the concept's examples; CAVs are differences of set means against random probe images, and
    the null is random-vs-random sets of the same size (:func:`mean_difference_cavs`). This is the
    TCAV procedure with text choosing the examples.

    **Without** (``method="readout"``): each CAV is the aligner's readout direction
    ``Wᵀ(t_concept - t_random)`` for a random counterpart text, the null ``Wᵀ(t_random - t_random')``.
    The readout direction is the one that best *predicts* the concept's score, which is generally
    not the direction activations move when the concept is present (on the concept world its
    cosine with the measured effect of the concept is about 0.1), so unrelated concepts can come out
    significant: prefer probe images.

    At the penultimate layer of a linear head the logit's gradient is the same for every image, so
    each score is 0 or 1; align an earlier layer (``load_backbone(name, layer=...)``) for graded
    scores.

    Args:
        backbone (Backbone): a ModuleBackbone at the aligned layer of a classifier, or a backbone
            with a head (or pass ``head``).
        aligner (Aligner): fitted on the backbone's features.
        bank (ConceptBank): must contain ``concepts`` and their contrasts (or ``random_texts``).
        concepts (list of str): concepts to test.
        inputs (Tensor): ``[N, 3, H, W]`` preprocessed images of the class under study.
        target (int): the class logit.
        probe_features (Tensor, optional): ``[M, d]`` the backbone's features of unlabelled probe
            images (a few hundred or more).
        probe_embeddings (Tensor, optional): ``[M, D]`` the same images' space embeddings, to read
            them through the space instead of the aligner.
        contrast (list or dict, optional): the concepts each concept is read against (e.g. the
            other colours for ``"red"``); a dict gives them per concept. Default: the bank's other
            concepts.
        runs (int, optional): CAVs per concept and null CAVs (probe method). Default: ``20``
        set_size (int, optional): images per set. Default: half the concept's examples, 5 to 50.
        random_texts (list of str, optional): readout method: at least 3 counterpart texts.
            Default: the bank's concepts that are not tested.
        alpha (float, optional): significance level. Default: ``0.05``
    """
    if probe_features is None:
        return _readout_tcav(backbone, aligner, bank, concepts, inputs, target, random_texts, head,
                             alpha, save_path)
    features = probe_features.float()
    embeddings = probe_embeddings if probe_embeddings is not None else aligner.transform(features)
    if len(embeddings) != len(features):
        raise DataError(f"probe_embeddings has {len(embeddings)} rows but probe_features has {len(features)}")
    positives, counts = {}, {}
    for concept in concepts:
        others = _contrast_of(concept, contrast, bank)
        positives[concept] = text_positives(bank, concept, others, embeddings)
        counts[concept] = int(positives[concept].sum())
        if counts[concept] < 5:
            raise DataError(
                f"only {counts[concept]} of {len(features)} probe images read as {concept!r} rather than "
                f"{_listing(others)}; give more (or more varied) probe images, or a narrower contrast="
            )
    size = _set_size(min(counts.values()), set_size)  # one set size, so one null fits every concept
    cavs: dict[str, list[torch.Tensor]] = {}
    null: list[torch.Tensor] = []
    for i, concept in enumerate(concepts):
        cavs[concept], null = mean_difference_cavs(
            features[positives[concept]], features, runs=runs, size=size, seed=seed + i
        )
    result = tcav_scores(backbone, cavs, null, inputs, target, head=head, alpha=alpha,
                         save_path=save_path, method="probe")
    result.n_examples = counts
    return result


def image_tcav(
    backbone: nn.Module,
    concept_features: Mapping[str, torch.Tensor],
    random_features: torch.Tensor,
    inputs: torch.Tensor,
    target: int,
    *,
    runs: int = 20,
    set_size: int | None = None,
    seed: int = 0,
    head: nn.Module | None = None,
    alpha: float = 0.05,
    save_path: str | os.PathLike[str] | None = None,
) -> TextTCAVResult:
    """TCAV with CAVs from example images (the classic route), for comparison with text CAVs.

    Args:
        concept_features (dict): concept → ``[n, d]`` pooled layer features of its example images.
        random_features (Tensor): ``[m, d]`` features of random images.
    Other arguments as :func:`text_tcav`.
    """
    if not concept_features:
        raise DataError("image_tcav needs at least one concept's example features")
    size = _set_size(min(len(f) for f in concept_features.values()), set_size)
    cavs: dict[str, list[torch.Tensor]] = {}
    null: list[torch.Tensor] = []
    for i, (concept, feats) in enumerate(concept_features.items()):
        cavs[concept], null = mean_difference_cavs(feats, random_features, runs=runs, size=size,
                                                   seed=seed + i)
    result = tcav_scores(backbone, cavs, null, inputs, target, head=head, alpha=alpha,
                         save_path=save_path, method="images")
    result.n_examples = {c: len(f) for c, f in concept_features.items()}
    return result


def _contrast_of(
    concept: str, contrast: Sequence[str] | Mapping[str, Sequence[str]] | None, bank: ConceptBank
) -> list[str]:
    if contrast is None:
        return [c for c in bank if c != concept]
    if isinstance(contrast, Mapping):
        if concept not in contrast:
            raise DataError(f"contrast= has no entry for {concept!r}; give the concepts it is read against")
        return [c for c in contrast[concept] if c != concept]
    return [c for c in contrast if c != concept]


def _listing(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _readout_tcav(
    backbone: nn.Module,
    aligner: Any,
    bank: ConceptBank,
    concepts: Sequence[str],
    inputs: torch.Tensor,
    target: int,
    random_texts: Sequence[str] | None,
    head: nn.Module | None,
    alpha: float,
    save_path: str | os.PathLike[str] | None,
) -> TextTCAVResult:
    randoms = list(random_texts) if random_texts is not None else [c for c in bank if c not in concepts]
    if len(randoms) < 3:
        raise DataError("TCAV significance needs at least 3 random counterpart texts (random_texts=)")
    bank.indices(list(concepts) + randoms)
    cavs = {c: [text_cav(aligner, bank, c, r) for r in randoms if r != c] for c in concepts}
    null = [text_cav(aligner, bank, a, b) for i, a in enumerate(randoms) for b in randoms[i + 1 :]]
    return tcav_scores(backbone, cavs, null, inputs, target, head=head, alpha=alpha,
                       save_path=save_path, method="readout")
