"""How features are extracted: one set of settings for every command and function that extracts.

:class:`ExtractOptions` gathers what :func:`~t2c_captum.features.extract_features` and the Ray
backend take (batch size, decoding workers, device, precision, memory format, compile, reduced
decoding, fault handling) with the backend switch, so ``t2c fit``, ``t2c eval``, ``t2c concepts``,
``t2c shift``, ``t2c retrieve``, ``t2c cbm`` and ``t2c report`` extract the same way from the same
flags, and a scale run moves to a Ray cluster with ``--backend ray`` on any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._device import PRECISIONS
from .._exceptions import ConfigurationError, DataError
from ..data.loader import check_reduced_decode
from .extract import SHARD_SIZE, check_sizes, extract_features
from .store import FeatureStore, ShardSummary

__all__ = ["BACKENDS", "ExtractOptions"]

#: extraction backends: in-process, or Ray Data workers (``pip install 't2c_captum[ray]'``)
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class ExtractOptions:
    """Settings of a feature extraction, checked when made.

    Attributes:
        batch_size (int): images per forward pass. Default: ``64``
        num_workers (int, optional): decoding worker processes (local backend); ``None``: 0 on the
            CPU, up to 16 on CUDA. Default: ``None``
        device (str, optional): ``"auto"`` picks CUDA, then MPS, then CPU (Ray: the workers' device;
            ``auto`` is the CPU there). Default: ``"auto"``
        precision (str): ``auto``, ``bf16``, ``fp16`` or ``fp32``. Default: ``"auto"``
        strict (bool): fail on unreadable images instead of skipping them. Default: ``False``
        channels_last (bool, optional): channels-last conv nets; ``None``: on for CUDA and CPU.
        compile (bool): ``torch.compile`` the encoders first. Default: ``False``
        reduced_decode (float, optional): decode JPEGs reduced, at least this many times the
            encoders' resize (see :func:`~t2c_captum.features.extract_features`). Default: ``None``
        backend (str): ``"local"`` (in-process) or ``"ray"`` (Ray Data workers). Default: ``"local"``
        ray_address (str, optional): the Ray cluster; ``None`` starts a local instance.
        ray_workers (int): Ray workers extracting in parallel. Default: ``2``
        cache_dir (str, optional): a folder for the stores (``LABEL-KEY`` inside it); ``None``: the
            keyed folders of :func:`~t2c_captum.features.default_cache_dir`. Default: ``None``
        progress (bool): show progress. Default: ``True``

    Examples::

        >>> opts = ExtractOptions(batch_size=128, precision="bf16", backend="ray", ray_workers=4)
        >>> store = opts.extract("images/", {"source": backbone})
    """

    batch_size: int = 64
    num_workers: int | None = None
    device: str | None = "auto"
    precision: str = "auto"
    strict: bool = False
    channels_last: bool | None = None
    compile: bool = False
    reduced_decode: float | None = None
    backend: str = "local"
    ray_address: str | None = None
    ray_workers: int = 2
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise DataError(f"backend must be 'local' or 'ray' (t2c: --backend), not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise DataError(
                f"precision must be one of {', '.join(PRECISIONS)} (t2c: --precision), not {self.precision!r}"
            )
        workers = self.ray_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise DataError(
                f"ray_workers must be a whole number of at least 1 (t2c: --ray-workers), got {workers!r}"
            )
        if self.backend == "local" and self.ray_address is not None:
            raise DataError("ray_address is set but the backend is local: add backend='ray' "
                            "(t2c: --backend ray)")
        check_sizes(batch_size=self.batch_size, shard_size=SHARD_SIZE, num_workers=self.num_workers)
        check_reduced_decode(self.reduced_decode, {})  # the number; the encoders are checked later

    def with_(self, **changes: Any) -> ExtractOptions:
        """A copy with some settings changed (checked again)."""
        return replace(self, **changes)

    @classmethod
    def from_settings(cls, extraction: ExtractOptions | None = None, **settings: Any) -> ExtractOptions:
        """``extraction`` (default: the defaults) with ``settings`` (fields given one by one, as
        ``fit_aligner(..., batch_size=32)`` takes them) applied over it; an unknown name is a
        :class:`~t2c_captum.ConfigurationError` listing the fields."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigurationError(
                f"unknown extraction setting(s) {', '.join(map(repr, unknown))}; ExtractOptions takes "
                + ", ".join(f.name for f in fields(cls))
            )
        return (extraction or cls()).with_(**settings)

    def as_dict(self) -> dict[str, Any]:
        """The settings, as plain values."""
        return asdict(self)

    def store_path(
        self, source: Any, encoders: Mapping[str, nn.Module], label: str
    ) -> Path | None:
        """Where the store of ``source`` goes under ``cache_dir`` (``None``: the default cache)."""
        if self.cache_dir is None:
            return None
        from .._device import resolve_precision
        from .ray_backend import worker_device
        from .store import store_key

        ids = {n: dict(getattr(e, "identity", {})) for n, e in encoders.items()}
        device = worker_device(self.device) if self.backend == "ray" else self.device
        precision = resolve_precision(device, self.precision)
        key = store_key(ids, source.fingerprint, SHARD_SIZE, precision, self.reduced_decode)
        return Path(self.cache_dir) / f"{label}-{key}"

    def extract(
        self,
        data: Any,
        encoders: Mapping[str, nn.Module],
        *,
        label: str = "features",
        summary: ShardSummary | None = None,
        on_summary: Callable[[dict[str, Any]], object] | None = None,
    ) -> FeatureStore:
        """Extract (or reuse, or resume) the store of ``encoders`` on ``data``.

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
        common: dict[str, Any] = dict(
            batch_size=self.batch_size, device=self.device, precision=self.precision, strict=self.strict,
            progress=self.progress, channels_last=self.channels_last, compile=self.compile,
            reduced_decode=self.reduced_decode,
        )
        summarise = summary if on_summary is not None else None
        if self.backend == "ray":
            from .ray_backend import extract_features_ray

            fs, _ = extract_features_ray(
                source, encoders, store=store, num_workers=self.ray_workers, address=self.ray_address,
                summary=summarise, on_summary=on_summary, **common,
            )
            return fs
        return _extract_local(source, encoders, store, common | {"num_workers": self.num_workers},
                              summarise, on_summary)


def _extract_local(
    source: Any,
    encoders: Mapping[str, nn.Module],
    store: Path | None,
    options: dict[str, Any],
    summary: ShardSummary | None,
    on_summary: Callable[[dict[str, Any]], object] | None,
) -> FeatureStore:
    """In-process extraction; with ``summary``, every shard's summary as it is written, then those of
    shards an earlier run had finished (read back from the store)."""
    if summary is None or on_summary is None:
        return extract_features(source, encoders, store=store, **options)
    seen: set[int] = set()

    def add(shard: int, tensors: dict[str, torch.Tensor]) -> None:
        seen.add(shard)
        on_summary(summary(tensors))

    fs = extract_features(source, encoders, store=store, on_shard=add, **options)
    for shard, tensors in fs.numbered_shards():
        if shard not in seen:
            on_summary(summary(tensors))
    return fs

