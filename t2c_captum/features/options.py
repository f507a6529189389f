"""How features are extracted: one set of settings for every command and function that extracts.

:class:`ExtractOptions` gathers what :func:`~t2c_captum.features.extract_features` and the Ray
backend take (batch size, decoding workers, device, precision, memory format, compile, reduced
decoding, fault handling) with the backend switch, so ``t2c fit``, ``t2c eval``, ``t2c concepts``,
``t2c shift``, ``t2c retrieve``, ``t2c cbm``, ``t2c caption`` and ``t2c report`` extract the same way
from the same flags, and a scale run moves to a Ray cluster with ``--backend ray`` on any of them.
Its fields and checks are :class:`~t2c_captum.features.settings.ExtractSettings`' (``settings.py``, which the
extraction functions import); this module adds :meth:`ExtractOptions.extract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .extract import extract_features
from .settings import BACKENDS, ExtractSettings
from .store import FeatureStore, ShardSummary

__all__ = ["BACKENDS", "ExtractOptions"]


@dataclass(frozen=True)
class ExtractOptions(ExtractSettings):
    """Settings of a feature extraction, checked when made.

    Attributes:
        batch_size (int): images per forward pass. Default: ``64``
        num_workers (int, optional): decoding worker processes (local backend); ``None``: 0 on the
            CPU, up to 16 on CUDA (:func:`~t2c_captum.features.extract.default_workers`).
            Default: ``None``
        device (str, optional): ``"auto"`` (or ``None``) picks CUDA, then MPS, then CPU (Ray: the
            workers' device; ``auto`` is CUDA there when the workers get GPUs, else the CPU).
            Default: ``"auto"``
        precision (str): ``"auto"`` (bf16 on CUDA and on CPUs with native bf16, see
            :func:`~t2c_captum._device.resolve_precision`; fp32 elsewhere), ``"bf16"``, ``"fp16"``
            or ``"fp32"``; part of the store's key, so features of another precision are never
            mixed in or reused. Default: ``"auto"``
        strict (bool): fail on unreadable images instead of skipping them. Default: ``False``
        channels_last (bool, optional): run convolutional encoders in channels-last memory format
            (faster on GPUs with bf16/fp16 tensor cores, and for conv nets on CPUs: 1.1–1.6× in
            ``benchmarks/cpu_forward_options.py``; no change for ViTs); ``None`` turns it on for
            CUDA and CPU devices, off elsewhere; a model whose forward fails on channels-last
            tensors runs contiguous instead, with a warning. Encoders are moved and converted for
            the extraction only: afterwards they are back on their own device and memory format.
            Default: ``None``
        compile (bool): ``torch.compile`` every encoder first (pays a compile time once; worth it
            on GPUs for long runs). Default: ``False``
        reduced_decode (float, optional): decode JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
            scaling) while they stay at least this many times the size the encoders' first
            ``Resize`` scales to. ``2`` decodes photos of 2,048 px and more 2.5-5x faster and keeps
            the pixels the models see within a few grey levels (``benchmarks/reduced_decode.py``);
            images smaller than twice that size are decoded as before. Part of the store's key.
            Default: ``None`` (full decode, the models' reference preprocessing)
        backend (str): ``"local"`` (in-process) or ``"ray"`` (Ray Data workers). Default: ``"local"``
        ray_address (str, optional): the Ray cluster; ``None`` starts a local instance.
        ray_workers (int): Ray workers extracting in parallel. Default: ``2``
        cache_dir (str, optional): a folder for the stores (``LABEL-KEY`` inside it); ``None``: the
            keyed folders of :func:`~t2c_captum.features.default_cache_dir`. Default: ``None``
        progress (bool): show progress. Default: ``True``

    Examples::

        >>> opts = ExtractOptions(batch_size=128, precision="bf16", backend="ray", ray_workers=4)
        >>> store = opts.extract("images/", {"source": backbone})
        >>> store = extract_features("images/", {"source": backbone}, opts.with_(backend="local"))
    """

    @classmethod
    def for_task(cls, extraction: ExtractSettings | None = None, **given: Any) -> ExtractOptions:
        """The options of a task that extracts on the way (a report, a shift diagnosis, captions):
        ``extraction`` (default: the defaults without progress bars) with those of the task's own
        setting keywords that were given (not ``None``) applied over it."""
        settings = {name: value for name, value in given.items() if value is not None}
        return cls.from_settings(extraction or cls(progress=False), **settings)

    def extract(
        self,
        data: Any,
        encoders: Mapping[str, nn.Module],
        *,
        label: str = "features",
        summary: ShardSummary | None = None,
        on_summary: Callable[[dict[str, Any]], object] | None = None,
    ) -> FeatureStore:
        """Extract (or reuse, or resume) the store of ``encoders`` on ``data``, with the backend
        these options name.

        Args:
            data: images (anything :func:`~t2c_captum.data.open_source` takes).
            encoders (dict): name → backbone or space.
            label (str, optional): the store folder's prefix under ``cache_dir``. Default: ``"features"``
            summary (callable, optional): ``summary(tensors)`` → a dict of arrays, run on every shard
                where its features are (in-process, or in the Ray worker that wrote it; so it must
                pickle), for shards an earlier run had finished too (read back from the store); e.g.
                :class:`~t2c_captum.aligners.streaming.FitStatistics`. Default: ``None``
            on_summary (callable, optional): receives each shard's summary, here, as it arrives.

        Returns:
            FeatureStore: the finished store.
        """
        from ..data import open_source

        source = open_source(data)
        store = self.store_path(source, encoders, label)
        summarise = summary if on_summary is not None else None
        if self.backend == "ray":
            from .ray_backend import extract_features_ray

            fs, _ = extract_features_ray(
                source, encoders, self, store=store, summary=summarise, on_summary=on_summary
            )
            return fs
        return _extract_local(source, encoders, self, store, summarise, on_summary)


def _extract_local(
    source: Any,
    encoders: Mapping[str, nn.Module],
    options: ExtractOptions,
    store: Path | None,
    summary: ShardSummary | None,
    on_summary: Callable[[dict[str, Any]], object] | None,
) -> FeatureStore:
    """In-process extraction; with ``summary``, every shard's summary as it is written, then those of
    shards an earlier run had finished (read back from the store)."""
    if summary is None or on_summary is None:
        return extract_features(source, encoders, options, store=store)
    seen: set[int] = set()

    def add(shard: int, tensors: dict[str, torch.Tensor]) -> None:
        seen.add(shard)
        on_summary(summary(tensors))

    fs = extract_features(source, encoders, options, store=store, on_shard=add)
    for shard, tensors in fs.numbered_shards():
        if shard not in seen:
            on_summary(summary(tensors))
    return fs
