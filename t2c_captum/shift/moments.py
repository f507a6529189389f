"""Streaming concept-score moments: per group, the count, mean and sum of squared deviations of every
score column, merged chunk by chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError, DimensionMismatchError


class ConceptMoments:
    """Count, mean and sum of squared deviations of ``K`` concept scores, per group, from chunks.

    Chunks are merged with Chan et al.'s pairwise update (float64), so the result does not depend on
    how the data was split into shards.

    Args:
        n_concepts (int): ``K``, the number of score columns.
    """

    def __init__(self, n_concepts: int) -> None:
        self.n_concepts = int(n_concepts)
        self._groups: dict[Any, tuple[int, np.ndarray, np.ndarray]] = {}

    def update(self, scores: Any, groups: Sequence[Any] | np.ndarray | None = None) -> None:
        """Add a chunk of scores ``[n, K]``, optionally with the group (class) of each row."""
        s = _as_matrix(scores, "scores")
        if s.shape[1] != self.n_concepts:
            raise DimensionMismatchError(
                f"scores have {s.shape[1]} columns but there are {self.n_concepts} concepts"
            )
        if groups is None:
            self._add(None, s)
            return
        keys = np.asarray(groups)
        if keys.shape != (s.shape[0],):
            raise DimensionMismatchError(f"{keys.size} labels for {s.shape[0]} rows of scores")
        for key in np.unique(keys):
            self._add(key.item(), s[keys == key])

    def _add(self, key: Any, s: np.ndarray) -> None:
        n = s.shape[0]
        if n == 0:
            return
        mean = s.mean(axis=0)
        deviations = s - mean
        m2 = np.einsum("ij,ij->j", deviations, deviations)  # no second [n, K] temporary
        if key in self._groups:
            n0, mean0, m20 = self._groups[key]
            total = n0 + n
            delta = mean - mean0
            mean = mean0 + delta * (n / total)
            m2 = m20 + m2 + delta**2 * (n0 * n / total)
            n = total
        self._groups[key] = (n, mean, m2)

    @property
    def groups(self) -> list[Any]:
        """The groups seen (``[None]`` when rows had no groups)."""
        return list(self._groups)

    def stats(self, group: Any = None) -> tuple[int, np.ndarray, np.ndarray]:
        """``(n, means [K], unbiased variances [K])`` of one group (variances NaN when ``n < 2``)."""
        if group not in self._groups:
            return 0, np.full(self.n_concepts, np.nan), np.full(self.n_concepts, np.nan)
        n, mean, m2 = self._groups[group]
        var = m2 / (n - 1) if n > 1 else np.full(self.n_concepts, np.nan)
        return n, mean, var

    @property
    def n(self) -> int:
        """Rows seen, over all groups."""
        return sum(v[0] for v in self._groups.values())


def _as_matrix(x: Any, what: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{what} must be a matrix [N, K], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} hold NaN or Inf values; check the features they were computed from")
    return arr
