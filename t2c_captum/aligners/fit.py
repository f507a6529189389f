"""Fitting an aligner from features: streamed from a store, or summed while the features stream."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..features import ExtractOptions, FeatureStore
from .base import Aligner
from .linear import LinearAligner
from .streaming import FitStatistics

__all__ = ["extract_with_statistics", "fit_from_store"]


def fit_from_store(
    store: FeatureStore, aligner: Aligner, *, source_key: str = "source", target_key: str = "target"
) -> Aligner:
    """Stream a store's shards into ``aligner.partial_fit`` (held-out rows are set aside by index)."""
    for shard in store.iter_shards([source_key, target_key]):
        if shard["indices"].numel():
            aligner.partial_fit(shard[source_key], shard[target_key], shard["indices"])
    return aligner.solve()


def extract_with_statistics(
    data: Any,
    encoders: dict[str, nn.Module],
    options: ExtractOptions,
    label: str,
    aligner: LinearAligner | None,
) -> FeatureStore:
    """Extract a store; with ``aligner``, add every shard's fit statistics to it as shards finish
    (and those of shards an earlier run had finished, read back from the store)."""
    if aligner is None:
        return options.extract(data, encoders, label=label)
    summary = FitStatistics(
        validation_fraction=aligner.validation_fraction, device=_stats_device(aligner, options.device)
    )

    def add(row: dict[str, Any]) -> None:
        aligner.add_stats(*FitStatistics.unpack(row))

    return options.extract(data, encoders, label=label, summary=summary, on_summary=add)


def _stats_device(aligner: LinearAligner | None, device: str | torch.device | None) -> torch.device | None:
    """Where each shard's statistics are multiplied out: the aligner's device if it has one, else
    the GPU the features come from (the CPU is busy decoding there); ``None`` (the CPU) otherwise.
    They are then added to the aligner's statistics, wherever those live."""
    if aligner is None:
        return None
    if aligner.device:
        return torch.device(aligner.device)
    from .._device import resolve_device

    extraction = resolve_device(device)
    return extraction if extraction.type == "cuda" else None
