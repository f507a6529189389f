"""The closed-form fit's statistics, summed shard by shard while features stream.

:class:`FitStatistics` is a shard summary in the sense of :meth:`ExtractOptions.extract
<t2c_captum.features.ExtractOptions.extract>`: the feature layer calls it on every shard wherever
the shard's features are (in-process, or inside a Ray worker) and hands the summary back; this module
alone knows what is in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .base import holdout_mask
from .linear import SufficientStats

__all__ = ["FitStatistics", "shard_stats"]

_FIELDS = ("shift_x", "shift_y", "sx", "sy", "sxx", "sxy", "syy")
_SIDES = ("t_", "h_")  # training rows, held-out rows


def shard_stats(
    tensors: Mapping[str, torch.Tensor],
    keys: tuple[str, str],
    fraction: float,
    device: torch.device | None = None,
) -> tuple[SufficientStats, SufficientStats]:
    """Training and held-out statistics of one shard (held-out rows chosen by dataset index),
    computed on ``device`` (default: CPU)."""
    x, y = tensors[keys[0]], tensors[keys[1]]
    d, D = x.shape[1], y.shape[1]
    train, held = SufficientStats(d, D, device), SufficientStats(d, D, device)
    if x.shape[0]:
        mask = holdout_mask(tensors["indices"], fraction)
        train.update(x, y, ~mask)
        held.update(x, y, mask)
    return train, held


def _arrays(stats: SufficientStats, prefix: str) -> dict[str, np.ndarray]:
    out = {f"{prefix}n": np.asarray(stats.n, dtype=np.int64)}
    for name in _FIELDS:
        out[f"{prefix}{name}"] = getattr(stats, name).cpu().numpy()
    return out


def _stats(row: Mapping[str, Any], prefix: str) -> SufficientStats:
    sxy = np.asarray(row[f"{prefix}sxy"])
    stats = SufficientStats(sxy.shape[-2], sxy.shape[-1])
    stats.n = int(np.asarray(row[f"{prefix}n"]).reshape(-1)[0])
    for name in _FIELDS:
        value = np.asarray(row[f"{prefix}{name}"], dtype=np.float64)
        setattr(stats, name, torch.from_numpy(np.array(value.reshape(getattr(stats, name).shape))))
    return stats


@dataclass(frozen=True)
class FitStatistics:
    """A shard summary: the closed-form fit's training and held-out statistics of ``keys``
    (``(source, target)`` feature names), as plain arrays so that Ray can carry them.

    Args:
        keys ((str, str), optional): the features regressed from and onto. Default: ``("source", "target")``
        validation_fraction (float, optional): held-out share, by dataset index. Default: ``0.1``
        device (torch.device, optional): where each shard's products are computed. Default: the CPU
    """

    keys: tuple[str, str] = ("source", "target")
    validation_fraction: float = 0.1
    device: torch.device | None = None

    def __call__(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        train, held = shard_stats(tensors, self.keys, self.validation_fraction, self.device)
        return {**_arrays(train, _SIDES[0]), **_arrays(held, _SIDES[1])}

    @staticmethod
    def unpack(summary: Mapping[str, Any]) -> tuple[SufficientStats, SufficientStats]:
        """The ``(train, held)`` statistics of one shard's summary."""
        return _stats(summary, _SIDES[0]), _stats(summary, _SIDES[1])

    @classmethod
    def combine(cls, summaries: Iterable[Mapping[str, Any]]) -> tuple[SufficientStats, SufficientStats]:
        """The summed ``(train, held)`` statistics of many shards' summaries."""
        train = held = None
        for summary in summaries:
            t, h = cls.unpack(summary)
            train, held = (t, h) if train is None or held is None else (train.merge(t), held.merge(h))
        if train is None or held is None:
            return SufficientStats(0, 0), SufficientStats(0, 0)
        return train, held
