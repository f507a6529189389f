"""The settings of a feature extraction and their checks, below the functions that take them.

:class:`ExtractSettings` holds the fields of :class:`~t2c_captum.features.ExtractOptions` (which
adds :meth:`~t2c_captum.features.ExtractOptions.extract`, the switch between the backends), so
that :func:`~t2c_captum.features.extract_features` and the Ray backend take one settings object
without importing the module that calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .._device import PRECISIONS, resolve_precision
from .._exceptions import ConfigurationError, SettingsError
from ..data.loader import check_reduced_decode
from .store import store_key

__all__ = ["BACKENDS", "SHARD_SIZE", "ExtractSettings", "check_sizes", "worker_device"]

#: extraction backends: in-process, or Ray Data workers (``pip install 't2c_captum[ray]'``)
BACKENDS = ("local", "ray")

#: images per store shard (the unit of resuming, writing and Ray work); part of a store's key
SHARD_SIZE = 4096

_Settings = TypeVar("_Settings", bound="ExtractSettings")


def check_sizes(*, batch_size: int, shard_size: int, num_workers: int | None = None) -> None:
    """Refuse sizes an extraction cannot use, before any store is created (a
    :class:`~t2c_captum.SettingsError`)."""
    flags = {"batch_size": " (t2c: --batch-size)", "num_workers": " (t2c: --workers)"}
    for name, value, least in (("batch_size", batch_size, 1), ("shard_size", shard_size, 1),
                               ("num_workers", num_workers, 0)):
        if value is not None and value < least:
            raise SettingsError(f"{name} must be at least {least}, got {value}{flags.get(name, '')}")


def worker_device(device: str | torch.device | None, gpus_per_worker: float = 0) -> str:
    """The Ray workers' device, decided on the driver: ``None``/``"auto"`` is CUDA when the workers
    get GPUs, else the CPU (the driver's own GPUs say nothing about the workers')."""
    if device is None or device == "auto":
        return "cuda" if gpus_per_worker > 0 else "cpu"
    return str(device)


@dataclass(frozen=True)
class ExtractSettings:
    """The fields of :class:`~t2c_captum.features.ExtractOptions` (documented there) and their
    checks, run when made (a bad one is a :class:`~t2c_captum.SettingsError`); use
    ``ExtractOptions``, which adds ``extract``."""

    batch_size: int = 64
    num_workers: int | None = None
    device: str | torch.device | None = "auto"
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
            raise SettingsError(f"backend must be 'local' or 'ray' (t2c: --backend), not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise SettingsError(
                f"precision must be one of {', '.join(PRECISIONS)} (t2c: --precision), not {self.precision!r}"
            )
        workers = self.ray_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SettingsError(
                f"ray_workers must be a whole number of at least 1 (t2c: --ray-workers), got {workers!r}"
            )
        if self.backend == "local" and self.ray_address is not None:
            raise SettingsError("ray_address is set but the backend is local: add backend='ray' "
                            "(t2c: --backend ray)")
        check_sizes(batch_size=self.batch_size, shard_size=SHARD_SIZE, num_workers=self.num_workers)
        check_reduced_decode(self.reduced_decode, {})  # the number; the encoders are checked later

    def with_(self: _Settings, **changes: Any) -> _Settings:
        """A copy with some settings changed (checked again)."""
        return replace(self, **changes)

    @classmethod
    def from_settings(
        cls: type[_Settings], extraction: ExtractSettings | None = None, **settings: Any
    ) -> _Settings:
        """``extraction`` (default: the defaults) with ``settings`` (fields given one by one, as
        ``fit_aligner(..., batch_size=32)`` takes them) applied over it; an unknown name is a
        :class:`~t2c_captum.ConfigurationError` listing the fields."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigurationError(
                f"unknown extraction setting(s) {', '.join(map(repr, unknown))}; ExtractOptions takes "
                + ", ".join(f.name for f in fields(cls))
            )
        if extraction is None:
            return cls(**settings)
        if not isinstance(extraction, cls):  # settings of the base class, as this class
            extraction = cls(**{f.name: getattr(extraction, f.name) for f in fields(cls)})
        return extraction.with_(**settings)

    def as_dict(self) -> dict[str, Any]:
        """The settings, as plain values."""
        return asdict(self)

    def store_path(
        self, source: Any, encoders: Mapping[str, nn.Module], label: str, *, shard_size: int = SHARD_SIZE
    ) -> Path | None:
        """Where the store of ``source`` goes under ``cache_dir`` (``None``: the default cache)."""
        if self.cache_dir is None:
            return None
        ids = {n: dict(getattr(e, "identity", {})) for n, e in encoders.items()}
        device = worker_device(self.device) if self.backend == "ray" else self.device
        precision = resolve_precision(device, self.precision)
        key = store_key(ids, source.fingerprint, shard_size, precision, self.reduced_decode)
        return Path(self.cache_dir) / f"{label}-{key}"
