"""Aligning a backbone to a space end to end: extract features once, fit while they stream, measure.

The quality figures are always measured on images the aligner did not see: the held-out split of the
training data, and, when given, a separate evaluation dataset.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .aligners import Aligner, AlignmentMetrics, make_aligner
from .aligners.fit import extract_with_statistics, fit_from_store
from .aligners.linear import LinearAligner
from .aligners.loading import load_target
from .backbones import Backbone, load_backbone
from .features import ExtractOptions, FeatureStore
from .spaces import Space
from .zeroshot import ZeroShotClassifier

__all__ = [
    "EvalReport",
    "FitReport",
    "LabelTask",
    "evaluate_store",
    "fit_aligner",
]




@dataclass
class EvalReport:
    """Alignment quality on one set of images, with classification figures when labels exist.

    ``zero_shot`` holds, where they apply: ``aligned_top1/top5`` (backbone → aligner → text
    classifier), ``space_top1/top5`` (the space's own image embeddings, i.e. CLIP zero-shot) and
    ``own_head_top1`` (the backbone's own classifier). For a backbone target, ``aligned_top1`` is
    the target's head applied to aligned features and ``space_top1`` its head on its own features.
    """

    split: str
    metrics: AlignmentMetrics
    zero_shot: dict[str, float] = field(default_factory=dict)
    task: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "task": self.task, **self.metrics.as_dict(), **self.zero_shot}


@dataclass
class FitReport:
    """What ``fit_aligner`` did and measured."""

    backbone: str
    target: str
    kind: str
    n_train: int
    fit_stats: dict[str, Any]
    evaluations: list[EvalReport]
    seconds: dict[str, float]
    store: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["evaluations"] = [e.as_dict() for e in self.evaluations]
        out["fit_stats"] = {k: v for k, v in self.fit_stats.items() if k != "alpha_path"}
        return out


class _Accumulator:
    """Streaming R², cosine and accuracy counts over chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.sy: torch.Tensor | None = None
        self.syy = 0.0
        self.cos = 0.0
        self.correct: dict[str, float] = {}
        self.labelled = 0

    def add(self, z: torch.Tensor, y: torch.Tensor) -> None:
        z, y = z.double(), y.double()
        self.n += y.shape[0]
        self.sse += float(((y - z) ** 2).sum())
        self.sy = y.sum(0) if self.sy is None else self.sy + y.sum(0)
        self.syy += float((y * y).sum())
        self.cos += float(nn.functional.cosine_similarity(z, y, dim=1).sum())

    def add_hits(self, name: str, logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> None:
        keep = labels >= 0
        k = min(k, logits.shape[1])
        hits = (logits[keep].topk(k, dim=1).indices == labels[keep, None]).any(dim=1)
        self.correct[name] = self.correct.get(name, 0.0) + float(hits.sum())

    def metrics(self) -> AlignmentMetrics:
        if self.n == 0 or self.sy is None:
            return AlignmentMetrics(float("nan"), float("nan"), 0)
        sst = self.syy - float(self.sy @ self.sy) / self.n
        r2 = 1 - self.sse / sst if sst > 0 else float("nan")  # e.g. a single held-out row
        return AlignmentMetrics(r2, self.cos / self.n, self.n)


@dataclass
class LabelTask:
    """Labels to score against, when they are not the ones stored with the features.

    ``labels[i]`` is the class of dataset index ``i`` (-1 for none); ``class_prompts`` (class name →
    prompts) or ``templates`` say how to ask the space about each class.
    """

    labels: Any
    class_names: Sequence[str]
    name: str | None = None
    templates: Sequence[str] | None = None
    class_prompts: dict[str, list[str]] | None = None

    def as_dataset_info(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "templates": self.templates,
            "class_prompts": self.class_prompts,
            "task": self.name,
        }


def _task_classifiers(
    backbone: Backbone, target: Space | Backbone, dataset: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    names = dataset.get("class_names")
    if not names:
        return {}, None
    out: dict[str, Any] = {}
    if isinstance(target, Space):
        clf = ZeroShotClassifier(
            target, names, dataset.get("templates"), prompts=dataset.get("class_prompts")
        )
        out["aligned"] = clf
        out["space"] = clf
    elif target.head is not None and _same_classes(target, names):
        out["aligned"] = target.classify
        out["space"] = target.classify
    if backbone.head is not None and _same_classes(backbone, names):
        out["own_head"] = backbone.classify
    return out, dataset.get("task")


def _same_classes(model: Backbone, names: Sequence[str]) -> bool:
    own = model.class_names
    return list(own) == list(names) if own else False


@torch.no_grad()
def evaluate_store(
    aligner: Aligner,
    store: FeatureStore,
    backbone: Backbone,
    target: Space | Backbone,
    *,
    split: str = "eval",
    holdout_only: bool = False,
    task: LabelTask | None = None,
    source_key: str = "source",
    target_key: str = "target",
) -> EvalReport:
    """Alignment and classification figures on a store (only held-out rows if ``holdout_only``).

    Classification uses the labels stored with the features, or ``task`` (other labels of the same
    images, e.g. another factor of the concept world) when given.
    """
    info = task.as_dataset_info() if task is not None else store.manifest["dataset"]
    classifiers, task_name = _task_classifiers(backbone, target, info)
    by_index = torch.as_tensor(task.labels, dtype=torch.long) if task is not None else None
    acc = _Accumulator()
    device: torch.device = aligner.weight_.device
    for shard in store.iter_shards([source_key, target_key]):
        x, y, labels = shard[source_key], shard[target_key], shard["labels"]
        if by_index is not None:
            labels = by_index[shard["indices"]]
        if holdout_only:
            keep = aligner.holdout(shard["indices"])
            x, y, labels = x[keep], y[keep], labels[keep]
        if not x.shape[0]:
            continue
        z = aligner(x.to(device)).cpu()
        acc.add(z, y)
        if classifiers and (labels >= 0).any():
            acc.labelled += int((labels >= 0).sum())
            for name, inputs in (("aligned", z), ("space", y), ("own_head", x)):
                if name in classifiers:
                    logits = classifiers[name](inputs)  # a head moves inputs to its own device
                    logits = logits.float().cpu()
                    acc.add_hits(f"{name}_top1", logits, labels, 1)
                    if name != "own_head":
                        acc.add_hits(f"{name}_top5", logits, labels, 5)
    zero_shot = {k: v / acc.labelled for k, v in acc.correct.items()} if acc.labelled else {}
    return EvalReport(split, acc.metrics(), zero_shot, task_name)




def fit_aligner(
    backbone: str | Backbone,
    target: str | Space | Backbone,
    data: Any,
    *,
    eval_data: Any = None,
    kind: str = "linear",
    aligner_params: dict[str, Any] | None = None,
    extraction: ExtractOptions | None = None,
    **settings: Any,
) -> tuple[Aligner, FitReport]:
    """Align ``backbone`` to ``target`` (a space, or another backbone) on ``data``.

    Features are extracted once into feature stores (reused on a second run, resumed after an
    interruption); the aligner is fitted by streaming them; quality is measured on the held-out split
    and on ``eval_data`` when given. A closed-form aligner is fitted from statistics accumulated while
    the features stream (either backend), without reading them again.

    Args:
        backbone: a backbone name (see :func:`~t2c_captum.backbones.load_backbone`) or object.
        target: a space name or object, or a backbone for cross-model alignment.
        data: training images (path, ``world:SPLIT``, ImageSource or Dataset).
        eval_data (optional): separate evaluation images. Default: ``None``
        kind (str, optional): a registered aligner kind. Default: ``"linear"``
        aligner_params (dict, optional): hyper-parameters for the aligner. Default: ``None``
        extraction (ExtractOptions, optional): how the features are extracted (batch size, decoding
            workers, device, precision, memory format, compile, reduced decode, strict, cache folder,
            the Ray backend). Default: ``ExtractOptions()``
        **settings: :class:`~t2c_captum.ExtractOptions` fields one by one (``batch_size=32``,
            ``cache_dir="stores"``, ``backend="ray"``, ``progress=False``), applied over ``extraction``.

    Returns:
        (Aligner, FitReport): the fitted aligner and what was measured.
    """
    options = ExtractOptions.from_settings(extraction, **settings)  # checked before any model loads
    bb = load_backbone(backbone) if isinstance(backbone, str) else backbone
    tg = load_target(target)
    encoders: dict[str, nn.Module] = {"source": bb, "target": tg}
    seconds: dict[str, float] = {}
    aligner = make_aligner(kind, **(aligner_params or {}))
    t0 = time.perf_counter()
    streamed = isinstance(aligner, LinearAligner)
    linear = aligner if isinstance(aligner, LinearAligner) else None
    train_store = extract_with_statistics(data, encoders, options, "train", linear)
    seconds["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if streamed:
        aligner.solve()  # statistics were summed while the features streamed
    else:
        fit_from_store(train_store, aligner)
    aligner.source_, aligner.target_ = dict(bb.identity), dict(tg.identity)
    seconds["fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluations = [evaluate_store(aligner, train_store, bb, tg, split="holdout", holdout_only=True)]
    if eval_data is not None:
        eval_store = options.extract(eval_data, encoders, label="eval")
        evaluations.append(evaluate_store(aligner, eval_store, bb, tg, split="eval"))
    seconds["evaluate"] = time.perf_counter() - t0
    aligner.fit_stats_["evaluations"] = [e.as_dict() for e in evaluations]
    report = FitReport(
        backbone=bb.name,
        target=tg.name,
        kind=aligner.kind,
        n_train=int(aligner.fit_stats_.get("n_train", 0)),
        fit_stats=dict(aligner.fit_stats_),
        evaluations=evaluations,
        seconds=seconds,
        store=str(train_store.path),
    )
    return aligner, report
