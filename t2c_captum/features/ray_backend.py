"""Optional Ray Data backend: extract a feature store on a Ray cluster and sum the fit's statistics.

``pip install t2c_captum[ray]`` (``ray[data]``). The store's shards are the units of work: a Ray
Data pipeline maps every pending shard to a pool of actors (``num_workers``), each holding the
encoders once, decoding that shard's images once for every encoder and writing the shard file
(atomically) straight into the store, which must therefore live on storage every worker sees (a
shared file system on a cluster; any local folder on one machine). The driver is the manifest's
only writer: it marks a shard done when its result comes back. Given a shard ``summary`` (e.g. the
closed-form fit's statistics, :class:`~t2c_captum.aligners.streaming.FitStatistics`), each worker
also summarises the shard it wrote and the summary comes back with the result, so an aligner is
fitted without reading the features again and equals the in-process fit (to float rounding).

Faults: a worker that dies is restarted by Ray and its shard redone; a run that stops (an error in
a worker, the driver interrupted, the cluster lost) leaves only finished shards marked done, so
rerunning the same command resumes from them (their summaries are then computed from the store).
A cluster that cannot be reached raises :class:`RayClusterError` before any store is created.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .._device import resolve_device, resolve_precision
from .._exceptions import ConfigurationError, DataError, RayClusterError, SettingsError
from ..data import ImageSource, open_source, warn_skipped
from .extract import _check_corrupt, _run, open_store, prepare_models
from .settings import SHARD_SIZE, ExtractSettings, check_sizes, worker_device
from .store import FeatureStore, ShardSummary

if TYPE_CHECKING:  # options.py imports this module for ExtractOptions.extract
    from .options import ExtractOptions

__all__ = ["RayClusterError", "connect", "extract_features_ray", "require_ray"]

_SUMMARY = "summary."  # the result columns that carry a shard's summary


def require_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a :class:`DataError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            "the Ray backend needs Ray Data: pip install 't2c_captum[ray]' (or 'ray[data]'); "
            "without it, run with the default in-process backend"
        ) from exc
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast (``ray.init`` retries an unreachable address for minutes)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port (e.g. "auto"): leave it to ray.init
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayClusterError(
            f"cannot reach the Ray cluster at {address!r} ({exc}). Check that the head node runs "
            "('ray start --head' prints its address; the default port is 6379, or 10001 for ray://), "
            "that this machine can reach it, or run without --backend ray (in-process). No feature "
            "store was created or changed."
        ) from exc


def connect(address: str | None = None, *, num_cpus: int | None = None, timeout: float = 5.0) -> Any:
    """Join the Ray cluster at ``address`` (``None``: start a local instance); reuse a live one.

    Raises:
        RayClusterError: the address cannot be reached, or Ray fails to start.
    """
    ray = require_ray()
    if address and address not in ("local",):
        _check_reachable(address, timeout)
    if ray.is_initialized():
        return ray
    try:
        if address and address != "local":
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as exc:
        where = f"the Ray cluster at {address!r}" if address and address != "local" else "a local Ray"
        raise RayClusterError(
            f"could not start or join {where}: {type(exc).__name__}: {exc}. Check the address (or run "
            "'ray status' there), or run without --backend ray. No feature store was created or changed."
        ) from exc
    return ray


class _ShardWorker:
    """A Ray Data actor: holds the encoders; maps ``{"shard": [s]}`` to the shard's written record."""

    def __init__(
        self,
        source: ImageSource,
        encoders: Mapping[str, nn.Module],
        store: str,
        settings: dict[str, Any],
    ) -> None:
        torch.set_num_threads(max(1, int(settings["threads"])))
        self.dev = resolve_device(settings["device"])
        self.models = prepare_models(
            encoders,
            self.dev,
            channels_last=settings.get("channels_last"),
            compile=settings.get("compile", False),
        )
        self.source, self.fs, self.settings = source, FeatureStore(store), settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        cfg = self.settings
        for shard in batch["shard"].tolist():
            done: dict[str, Any] = {}

            def keep(s: int, tensors: dict[str, torch.Tensor], skipped: list[int], done: dict = done) -> None:
                self.fs.write_shard_file(s, tensors)
                done.update(tensors=tensors, skipped=skipped)

            _run(
                self.fs,
                self.source,
                self.models,
                [int(shard)],
                cfg["shard_size"],
                cfg["batch_size"],
                0,
                self.dev,
                cfg["precision"],
                cfg["strict"],
                False,
                on_shard=keep,
                reduced_decode=cfg.get("reduced_decode"),
            )
            row: dict[str, Any] = {
                "shard": np.array([shard], dtype=np.int64),
                "n": np.array([int(done["tensors"]["indices"].shape[0])], dtype=np.int64),
                "skipped": np.array([json.dumps([int(i) for i in done["skipped"]])], dtype=object),
            }
            if cfg["summary"] is not None:
                summary = cfg["summary"](done["tensors"])
                row.update({f"{_SUMMARY}{k}": np.asarray(v)[None] for k, v in summary.items()})
            rows.append(row)
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


#: this function's old names of two Ray settings (deprecated). ``num_workers`` here was always the
#: Ray actors: the options' own ``num_workers`` (local decoding processes) has no use on Ray.
_DEPRECATED_NAMES = {"num_workers": "ray_workers", "address": "ray_address"}


def _rename_deprecated(settings: dict[str, Any]) -> None:
    """Move ``num_workers=`` / ``address=`` (warning) to ``ray_workers`` / ``ray_address`` in
    ``settings``; the same setting under both names with two values is a ConfigurationError."""
    for old, new in _DEPRECATED_NAMES.items():
        value = settings.pop(old, None)
        if value is None:  # not given (None was the old default)
            continue
        warnings.warn(
            f"extract_features_ray({old}=...) is deprecated: give {new}= (ExtractOptions.{new})",
            DeprecationWarning,
            stacklevel=3,
        )
        if old == "num_workers" and value < 1:
            raise SettingsError(f"num_workers must be at least 1 (the Ray actors), got {value}")
        if new in settings and settings[new] != value:
            raise ConfigurationError(
                f"give {new} once: as {old}= or as {new}=, not both "
                f"({old}={value!r}, {new}={settings[new]!r})"
            )
        settings[new] = value


def extract_features_ray(
    source: Any,
    encoders: Mapping[str, nn.Module],
    options: ExtractOptions | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    shard_size: int = SHARD_SIZE,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    summary: ShardSummary | None = None,
    on_summary: Callable[[dict[str, Any]], object] | None = None,
    **settings: Any,
) -> tuple[FeatureStore, list[dict[str, Any]] | None]:
    """Like :func:`~t2c_captum.features.extract_features`, on a Ray cluster through Ray Data.

    Writes the same store (same key, layout and manifest), so either backend can resume or reuse
    what the other wrote.

    Args:
        source: images (a folder, a CSV, ``world:SPLIT``, tar shards, an ImageSource...); the
            source is sent to the workers, so its files must be readable there.
        encoders (dict): name → backbone or space, sent to every worker.
        options (ExtractOptions, optional): the extraction settings (batch size, device, precision,
            memory format, compile, reduced decode, strict, progress, cache folder, ``ray_workers``,
            ``ray_address``), as for ``extract_features``, in every worker; its ``backend`` and
            ``num_workers`` (local decoding processes) are not used. Default: the defaults with
            ``device="cpu"``
        store (str, optional): the store directory, on storage every worker sees. Default: as for
            ``extract_features``
        shard_size (int, optional): images per shard file (the unit of Ray work). Default: ``4096``
        cpus_per_worker / gpus_per_worker (float, optional): resources per actor (torch threads =
            CPUs). Default: ``1`` / ``0``
        summary (callable, optional): a picklable ``summary(tensors)`` → dict of arrays, run by the
            worker on each shard it writes (and here on shards finished before), e.g.
            :class:`~t2c_captum.aligners.streaming.FitStatistics`. Default: ``None``
        on_summary (callable, optional): receives each shard's summary here as it arrives, so memory
            stays flat however many shards there are. Default: ``None`` (the summaries are returned)
        **settings: ``ExtractOptions`` fields one by one (``batch_size=32``, ``device="cuda"``,
            ``progress=False``), applied over ``options``. The workers' ``device``: ``None`` or
            ``"auto"`` is CUDA when ``gpus_per_worker`` > 0, else the CPU; a CUDA device gives
            each worker a GPU if ``gpus_per_worker`` is 0.
            ``ray_workers`` is the number of Ray actors extracting in parallel (default ``2``),
            ``ray_address`` the cluster (``"auto"``, ``HOST:PORT``, ``ray://HOST:PORT``; ``None``
            starts or reuses a local Ray instance). Their old names here, ``num_workers=`` and
            ``address=``, still work but are deprecated (a ``DeprecationWarning``); given with
            the new name and another value, they are a ``ConfigurationError``.

    Returns:
        (FeatureStore, list or None): the finished store, and, when ``summary`` was given without
        ``on_summary``, every shard's summary (shards finished before this run first, then as they
        arrived).

    Raises:
        ConfigurationError: an unknown setting, or a Ray setting given under both of its names
            with two values.
        RayClusterError: the cluster cannot be reached (before any store is created).
        DataError: a worker failed; finished shards are kept, rerun to resume.
    """
    if not encoders:
        raise ConfigurationError("give at least one encoder")
    _rename_deprecated(settings)
    base = options if options is not None else ExtractSettings(device="cpu")  # the workers' default
    opts = ExtractSettings.from_settings(base, **{**settings, "backend": "ray"})
    check_sizes(batch_size=opts.batch_size, shard_size=shard_size)
    ray = connect(opts.ray_address, num_cpus=None)
    source = open_source(source)
    device = worker_device(opts.device, gpus_per_worker)
    if device.startswith("cuda") and gpus_per_worker <= 0:
        gpus_per_worker = 1  # Ray hides the GPUs from actors that ask for none
    precision = resolve_precision(device, opts.precision)  # resolved here: every worker runs the same
    if store is None:
        store = opts.store_path(source, encoders, "features", shard_size=shard_size)
    fs = open_store(source, encoders, store, shard_size, precision, opts.reduced_decode)
    _check_corrupt(fs, opts.strict)
    pending = [s for s in range(fs.manifest["n_shards"]) if not fs.is_done(s)]
    summaries: list[dict[str, Any]] | None = None
    if summary is not None:
        summaries = []
        deliver = on_summary if on_summary is not None else summaries.append
        for _, tensors in fs.numbered_shards():  # the shards finished before this run
            deliver(summary(tensors))
    if pending:
        worker = {
            "shard_size": shard_size,
            "batch_size": opts.batch_size,
            "precision": precision,
            "strict": opts.strict,
            "device": device,
            "threads": cpus_per_worker,
            "summary": summary,
            "channels_last": opts.channels_last,
            "compile": opts.compile,
            "reduced_decode": opts.reduced_decode,
        }
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = opts.progress
        ds = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            _ShardWorker,
            fn_constructor_kwargs={
                "source": source,
                "encoders": dict(encoders),
                "store": str(fs.path),
                "settings": worker,
            },
            batch_size=1,
            concurrency=min(opts.ray_workers, len(pending)),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
        )
        finished = 0
        try:
            for row in ds.iter_rows():
                shard = int(row["shard"])
                fs.record_shard(shard, int(row["n"]), json.loads(str(row["skipped"])))
                finished += 1
                if summary is not None:
                    deliver({k[len(_SUMMARY):]: v for k, v in row.items() if k.startswith(_SUMMARY)})
        except Exception as exc:
            done = sum(fs.is_done(s) for s in range(fs.manifest["n_shards"]))
            raise DataError(
                f"the Ray extraction stopped after {finished} new shard(s) ({done} of "
                f"{fs.manifest['n_shards']} done): {_short(exc)}. Finished shards are kept in "
                f"{str(fs.path)!r}; fix the cause and rerun the same command to resume."
            ) from exc
    warn_skipped(source, fs.skipped)
    return fs, (summaries if on_summary is None else None)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    cause = [line for line in text if "Error" in line or "Exception" in line]
    return (cause[-1] if cause else (text[-1] if text else type(exc).__name__))[:300]


