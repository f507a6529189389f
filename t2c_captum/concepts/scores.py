"""Concept scores: cosine between (aligned) features and concept embeddings, per image and per dataset."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError, DimensionMismatchError
from ..aligners.base import as_tensor_2d
from .bank import ConceptBank

__all__ = [
    "ConceptSummary",
    "concept_scores",
    "contrast_scores",
    "iter_store_scores",
    "summarize_scores",
    "top_concepts",
]


@torch.no_grad()
def concept_scores(
    X: Any, bank: ConceptBank, aligner: Any = None, *, batch_size: int = 8192
) -> torch.Tensor:
    """Cosine scores ``[N, K]`` between features and the bank's concepts.

    Args:
        X: backbone features ``[N, d]`` (with ``aligner``) or space embeddings ``[N, D]``.
        bank (ConceptBank): the concepts.
        aligner (Aligner, optional): maps backbone features into the bank's space. Default: ``None``
        batch_size (int, optional): rows per matrix product. Default: ``8192``

    Returns:
        Tensor: float32 ``[N, K]`` cosines in [-1, 1].
    """
    x = as_tensor_2d(X, "features")
    if aligner is not None:
        bank.check_aligner(aligner)
    device = getattr(getattr(aligner, "weight_", None), "device", torch.device("cpu"))
    weights = bank.embeddings.to(device)
    out = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(device)
        z = aligner(chunk) if aligner is not None else chunk
        if z.shape[1] != bank.dim:
            hint = "" if aligner is not None else "; pass aligner= to map backbone features first"
            raise DimensionMismatchError(
                f"features are {z.shape[1]}-d but the concept bank is {bank.dim}-d{hint}"
            )
        out.append((torch.nn.functional.normalize(z.float(), dim=-1) @ weights.T).cpu())
    if not out:
        return torch.zeros(0, len(bank))
    return torch.cat(out)


def contrast_scores(scores: torch.Tensor, bank: ConceptBank) -> torch.Tensor:
    """Each concept's score minus the best score among its alternatives (the other concepts of its
    group, :meth:`ConceptBank.alternatives`): positive where the concept beats every alternative, as
    zero-shot classification within the group asks.

    Raw cosines carry what an image shares with every text (on the concept world, aligned images of
    large objects score higher with *every* concept, "small" included); the margin over the
    alternatives cancels it.

    Args:
        scores (Tensor): ``[N, K]`` scores of the bank's concepts (:func:`concept_scores`).
        bank (ConceptBank): the concepts, with groups (``Vocabulary(groups=...)``; the ``world``,
            ``visual-grouped`` and ``imagenet`` vocabularies have them).

    Returns:
        Tensor: ``[N, K]`` margins, in the scores' unit.

    Raises:
        DataError: a concept has no alternatives in the bank (no group, or alone in its group).
    """
    names = _names(bank)
    s = _check_width(scores, names).float()
    lonely = [c for c in names if not bank.alternatives(c)]
    if lonely:
        raise DataError(
            f"{len(lonely)} concept(s) have no alternatives to contrast with: "
            f"{', '.join(map(repr, lonely[:8]))}; give the vocabulary groups (Vocabulary(groups=...)), "
            "or bank.with_groups({c: 'all' for c in bank}) to contrast every concept with all the others"
        )
    out = torch.empty_like(s)
    members: dict[str, list[int]] = {}
    for concept, group in bank.groups.items():
        members.setdefault(group, []).append(bank.index(concept))
    for rows in members.values():
        cols = torch.tensor(rows)
        top2 = s[:, cols].topk(2, dim=1)
        first = top2.indices[:, :1] == torch.arange(len(rows))  # [N, m]: the column holding the max
        best_other = torch.where(first, top2.values[:, 1:2], top2.values[:, :1])
        out[:, cols] = s[:, cols] - best_other
    return out


def iter_store_scores(
    store: Any, bank: ConceptBank, aligner: Any = None, *, key: str = "source"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(dataset indices, scores [n, K])`` per shard of a feature store (never all in memory)."""
    for shard in store.iter_shards([key]):
        if shard["indices"].numel():
            yield shard["indices"], concept_scores(shard[key], bank, aligner)


def _names(concepts: ConceptBank | Sequence[str]) -> list[str]:
    return concepts.concepts if isinstance(concepts, ConceptBank) else list(concepts)


def _check_width(scores: torch.Tensor, names: list[str]) -> torch.Tensor:
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise DimensionMismatchError(
            f"scores of shape {tuple(scores.shape)} do not match {len(names)} concepts"
        )
    return scores


def top_concepts(
    scores: torch.Tensor, concepts: ConceptBank | Sequence[str], k: int = 5
) -> list[list[tuple[str, float]]]:
    """The ``k`` best-scoring concepts of each row, as ``(concept, score)`` pairs."""
    names = _names(concepts)
    _check_width(scores, names)
    top = scores.topk(min(k, len(names)), dim=1)
    return [
        [(names[int(i)], float(v)) for i, v in zip(idx, val, strict=True)]
        for idx, val in zip(top.indices, top.values, strict=True)
    ]


@dataclass
class ConceptSummary:
    """Dataset-level concept statistics.

    Attributes:
        concepts: concept names.
        mean / std: per-concept mean and standard deviation of the scores.
        top_share: share of images for which the concept is among their ``k`` best.
        n: number of images; k: the ``k`` of ``top_share``.
    """

    concepts: list[str]
    mean: np.ndarray
    std: np.ndarray
    top_share: np.ndarray
    n: int
    k: int
    extra: dict[str, Any] = field(default_factory=dict)

    def ranked(self, by: str = "top_share", limit: int | None = 20) -> list[dict[str, Any]]:
        """Rows sorted by ``top_share``, ``mean`` or ``std`` (descending)."""
        if by not in ("top_share", "mean", "std"):
            raise DataError(f"rank by 'top_share', 'mean' or 'std', not {by!r}")
        key = getattr(self, by)
        order = np.lexsort((-self.mean, -key))[:limit]
        return [
            {"concept": self.concepts[i], "mean": float(self.mean[i]), "std": float(self.std[i]),
             "top_share": float(self.top_share[i])}
            for i in order
        ]


def summarize_scores(
    scores: torch.Tensor | Iterable[torch.Tensor], concepts: ConceptBank | Sequence[str], k: int = 5
) -> ConceptSummary:
    """Mean, spread and top-``k`` frequency of every concept, from a score matrix or score chunks."""
    names = _names(concepts)
    chunks = [scores] if isinstance(scores, torch.Tensor) else scores
    total = np.zeros(len(names))
    squares = np.zeros(len(names))
    hits = np.zeros(len(names))
    n = 0
    kk = min(k, len(names))
    for chunk in chunks:
        s = _check_width(chunk, names)  # sums in float64, without a float64 copy of the chunk
        total += s.sum(0, dtype=torch.float64).numpy()
        squares += (s * s).sum(0, dtype=torch.float64).numpy()
        hits += np.bincount(s.topk(kk, dim=1).indices.flatten().numpy(), minlength=len(names))
        n += s.shape[0]
    if n == 0:
        raise DataError("no scores to summarise")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    return ConceptSummary(names, mean, std, hits / n, n, kk)
