"""Zero-shot classification: class names + prompt templates → a text classifier in a CLIP space,
applied to CLIP image embeddings or to a backbone's aligned features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._exceptions import DataError, DimensionMismatchError
from .aligners.base import as_tensor_2d

__all__ = ["ZeroShotClassifier", "ZeroShotResult", "topk_accuracy"]


def topk_accuracy(logits: torch.Tensor, labels: Any, k: int = 1) -> float:
    """Share of rows whose label is among the ``k`` highest logits (labels < 0 are ignored)."""
    labels = labels.cpu() if isinstance(labels, torch.Tensor) else labels
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    logits = logits.cpu()
    keep = y >= 0
    if not keep.any():
        raise DataError("no labelled rows to score")
    k = min(k, logits.shape[1])
    top = logits[keep].topk(k, dim=1).indices
    return float((top == y[keep, None]).any(dim=1).float().mean())


@dataclass
class ZeroShotResult:
    """Predictions of a zero-shot classifier: top-k class indices, names and probabilities."""

    indices: torch.Tensor
    probs: torch.Tensor
    class_names: list[str]

    def names(self) -> list[list[str]]:
        return [[self.class_names[int(i)] for i in row] for row in self.indices]


class ZeroShotClassifier(nn.Module):
    """A text classifier: one unit vector per class (the mean of its normalised prompt embeddings).

    Args:
        space (Space): the CLIP-like space whose text encoder builds the classifier.
        class_names (list of str): one name per class.
        templates (list of str, optional): prompt templates with ``{}``; default the space's own.
        aligner (Aligner, optional): maps backbone features into the space; without it the inputs
            must already be space embeddings. Default: ``None``
        prompts (dict, optional): class name → full prompts, overriding ``templates`` (for
            datasets that know how their classes are best described). Default: ``None``

    Examples::

        >>> clf = ZeroShotClassifier(space, ["cat", "dog"], aligner=aligner)
        >>> clf.predict(backbone_features, k=1).names()
    """

    text_weights_: torch.Tensor

    def __init__(
        self,
        space: Any,
        class_names: Sequence[str],
        templates: Sequence[str] | None = None,
        aligner: nn.Module | None = None,
        logit_scale: float = 100.0,
        prompts: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        if not class_names:
            raise DataError("a zero-shot classifier needs at least one class name")
        self.class_names = list(class_names)
        self.templates = list(templates or space.templates)
        self.aligner = aligner
        self.logit_scale = logit_scale
        if prompts is not None:
            missing = [c for c in self.class_names if c not in prompts]
            if missing:
                raise DataError(f"no prompts for classes {missing[:5]}")
            weights = space.encode_prompt_sets([list(prompts[c]) for c in self.class_names])
        else:
            weights = space.encode_prompts(self.class_names, self.templates)
        self.register_buffer("text_weights_", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]``: scaled cosine between (aligned) inputs and class vectors."""
        z = self.aligner(x) if self.aligner is not None else x
        if z.shape[-1] != self.text_weights_.shape[1]:
            raise DimensionMismatchError(
                f"inputs are {z.shape[-1]}-d but the space's embeddings are "
                f"{self.text_weights_.shape[1]}-d; pass aligner= to map backbone features"
            )
        z = nn.functional.normalize(z, dim=-1)
        return self.logit_scale * z @ self.text_weights_.to(z.device, z.dtype).T

    @torch.no_grad()
    def logits(self, X: Any) -> torch.Tensor:
        return self(as_tensor_2d(X, "features"))

    @torch.no_grad()
    def predict(self, X: Any, k: int = 1) -> ZeroShotResult:
        """Top-``k`` classes and their softmax probabilities."""
        probs = self.logits(X).softmax(dim=-1)
        top = probs.topk(min(k, probs.shape[1]), dim=1)
        return ZeroShotResult(top.indices, top.values, self.class_names)

    def accuracy(self, X: Any, labels: Any, k: int = 1) -> float:
        """Top-``k`` accuracy against integer labels."""
        return topk_accuracy(self.logits(X), labels, k)
