"""Optional Ray Data backend: extract a feature store on a Ray cluster and sum the fit's statistics.

``pip install t2c_captum[ray]`` (``ray[data]``). The store's shards are the units of work: a Ray
Data pipeline maps every pending shard to a pool of actors (``num_workers``), each holding the
encoders once, decoding that shard's images once for every encoder and writing the shard file
(atomically) straight into the store, which must therefore live on storage every worker sees (a
shared file system on a cluster; any local folder on one machine). The driver is the manifest's
only writer: it marks a shard done when its result comes back. The result of a shard also carries
its closed-form :class:`~t2c_captum.aligners.linear.SufficientStats` (training rows and held-out
rows, split by dataset index as the local fit does), and the driver merges them, so the aligner is
fitted without reading the features again and equals the in-process fit (to float rounding).

Faults: a worker that dies is restarted by Ray and its shard redone; a run that stops (an error in
a worker, the driver interrupted, the cluster lost) leaves only finished shards marked done, so
rerunning the same command resumes from them (their statistics are then read back from the store).
A cluster that cannot be reached raises :class:`RayClusterError` before any store is created.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._device import resolve_device, resolve_precision
from .._exceptions import DataError, T2CError
from ..data import ImageSource, open_source, warn_skipped
from .extract import SHARD_SIZE, _check_corrupt, _run, check_sizes, open_store, prepare_models
from .store import FeatureStore

__all__ = ["RayClusterError", "connect", "extract_features_ray", "require_ray"]

_FIELDS = ("shift_x", "shift_y", "sx", "sy", "sxx", "sxy", "syy")


class RayClusterError(T2CError):
    """The Ray cluster could not be reached or started."""


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


def stats_arrays(stats: Any, prefix: str) -> dict[str, np.ndarray]:
    """One row (leading axis of 1) of a :class:`SufficientStats`'s sums, for a Ray Data batch."""
    out = {f"{prefix}n": np.array([stats.n], dtype=np.int64)}
    for name in _FIELDS:
        out[f"{prefix}{name}"] = getattr(stats, name).cpu().numpy()[None]
    return out


def stats_from_arrays(row: Mapping[str, Any], prefix: str) -> Any:
    """The :class:`SufficientStats` of :func:`stats_arrays`' row ``row``."""
    from ..aligners.linear import SufficientStats

    sxy = np.asarray(row[f"{prefix}sxy"])
    stats = SufficientStats(sxy.shape[0], sxy.shape[1])
    stats.n = int(np.asarray(row[f"{prefix}n"]).reshape(-1)[0])
    for name in _FIELDS:
        setattr(stats, name, torch.from_numpy(np.array(row[f"{prefix}{name}"], dtype=np.float64)))
    return stats


def worker_device(device: str | None, gpus_per_worker: float = 0) -> str:
    """The Ray workers' device, decided on the driver: ``None``/``"auto"`` is CUDA when the workers
    get GPUs, else the CPU (the driver's own GPUs say nothing about the workers')."""
    if device is None or device == "auto":
        return "cuda" if gpus_per_worker > 0 else "cpu"
    return str(device)


def shard_stats(
    tensors: Mapping[str, torch.Tensor],
    keys: tuple[str, str],
    fraction: float,
    device: torch.device | None = None,
) -> tuple[Any, Any]:
    """Training and held-out statistics of one shard (held-out rows chosen by dataset index),
    computed on ``device`` (default: CPU)."""
    from ..aligners.base import holdout_mask
    from ..aligners.linear import SufficientStats

    x, y = tensors[keys[0]], tensors[keys[1]]
    d, D = x.shape[1], y.shape[1]
    train, held = SufficientStats(d, D, device), SufficientStats(d, D, device)
    if x.shape[0]:
        mask = holdout_mask(tensors["indices"], fraction)
        train.update(x, y, ~mask)
        held.update(x, y, mask)
    return train, held


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
            if cfg["stats_keys"]:
                train, held = shard_stats(done["tensors"], tuple(cfg["stats_keys"]), cfg["fraction"])
                row.update(stats_arrays(train, "t_"))
                row.update(stats_arrays(held, "h_"))
            rows.append(row)
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def extract_features_ray(
    source: Any,
    encoders: Mapping[str, nn.Module],
    *,
    store: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    shard_size: int = SHARD_SIZE,
    num_workers: int = 2,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    address: str | None = None,
    device: str | None = "cpu",
    precision: str = "auto",
    strict: bool = False,
    channels_last: bool | None = None,
    compile: bool = False,
    stats_keys: Sequence[str] | None = None,
    validation_fraction: float = 0.1,
    progress: bool = True,
    reduced_decode: float | None = None,
) -> tuple[FeatureStore, tuple[Any, Any] | None]:
    """Like :func:`~t2c_captum.features.extract_features`, on a Ray cluster through Ray Data.

    Writes the same store (same key, layout and manifest), so either backend can resume or reuse
    what the other wrote.

    Args:
        source: images (a folder, a CSV, ``world:SPLIT``, tar shards, an ImageSource...); the
            source is sent to the workers, so its files must be readable there.
        encoders (dict): name → backbone or space, sent to every worker.
        store (str, optional): the store directory, on storage every worker sees.
        num_workers (int, optional): Ray actors extracting in parallel. Default: ``2``
        cpus_per_worker / gpus_per_worker (float, optional): resources per actor (torch threads =
            CPUs). Default: ``1`` / ``0``
        address (str, optional): the cluster (``"auto"``, ``HOST:PORT``, ``ray://HOST:PORT``);
            ``None`` starts (or reuses) a local Ray instance. Default: ``None``
        device (str, optional): the workers' device; ``None`` or ``"auto"``: CUDA when
            ``gpus_per_worker`` > 0, else the CPU. A CUDA device gives each worker a GPU if
            ``gpus_per_worker`` is 0. Default: ``"cpu"``
        stats_keys ((str, str), optional): ``(source, target)`` features whose closed-form fit
            statistics the workers return. Default: ``None`` (no statistics)
        validation_fraction (float, optional): held-out share for those statistics. Default: ``0.1``
        channels_last / compile (bool, optional): as for ``extract_features``, in every worker.
        reduced_decode (float, optional): as for ``extract_features``, in every worker.

    Returns:
        (FeatureStore, (train, held) or None): the finished store, and the merged
        :class:`~t2c_captum.aligners.linear.SufficientStats` when ``stats_keys`` was given.

    Raises:
        RayClusterError: the cluster cannot be reached (before any store is created).
        DataError: a worker failed; finished shards are kept, rerun to resume.
    """
    if not encoders:
        raise ValueError("give at least one encoder")
    if num_workers < 1:
        raise DataError(f"num_workers must be at least 1, got {num_workers}")
    check_sizes(batch_size=batch_size, shard_size=shard_size)
    ray = connect(address, num_cpus=None)
    source = open_source(source)
    device = worker_device(device, gpus_per_worker)
    if device.startswith("cuda") and gpus_per_worker <= 0:
        gpus_per_worker = 1  # Ray hides the GPUs from actors that ask for none
    precision = resolve_precision(device, precision)  # resolved here: every worker runs the same
    fs = open_store(source, encoders, store, shard_size, precision, reduced_decode)
    _check_corrupt(fs, strict)
    pending = [s for s in range(fs.manifest["n_shards"]) if not fs.is_done(s)]
    keys = tuple(stats_keys) if stats_keys else None
    merged = _stats_of(
        fs, [s for s in range(fs.manifest["n_shards"]) if s not in pending], keys, validation_fraction
    )
    if pending:
        settings = {
            "shard_size": shard_size,
            "batch_size": batch_size,
            "precision": precision,
            "strict": strict,
            "device": device,
            "threads": cpus_per_worker,
            "stats_keys": keys,
            "fraction": validation_fraction,
            "channels_last": channels_last,
            "compile": compile,
            "reduced_decode": reduced_decode,
        }
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ds = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            _ShardWorker,
            fn_constructor_kwargs={
                "source": source,
                "encoders": dict(encoders),
                "store": str(fs.path),
                "settings": settings,
            },
            batch_size=1,
            concurrency=min(num_workers, len(pending)),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
        )
        finished = 0
        try:
            for row in ds.iter_rows():
                shard = int(row["shard"])
                fs.record_shard(shard, int(row["n"]), json.loads(str(row["skipped"])))
                finished += 1
                if keys is not None and merged is not None:
                    merged[0].merge(stats_from_arrays(row, "t_"))
                    merged[1].merge(stats_from_arrays(row, "h_"))
        except Exception as exc:
            done = sum(fs.is_done(s) for s in range(fs.manifest["n_shards"]))
            raise DataError(
                f"the Ray extraction stopped after {finished} new shard(s) ({done} of "
                f"{fs.manifest['n_shards']} done): {_short(exc)}. Finished shards are kept in "
                f"{str(fs.path)!r}; fix the cause and rerun the same command to resume."
            ) from exc
    warn_skipped(source, fs.skipped)
    return fs, merged


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    cause = [line for line in text if "Error" in line or "Exception" in line]
    return (cause[-1] if cause else (text[-1] if text else type(exc).__name__))[:300]


def _stats_of(
    fs: FeatureStore, shards: list[int], keys: tuple[str, ...] | None, fraction: float
) -> tuple[Any, Any] | None:
    """Statistics of already finished shards, read from the store (a resumed or reused run)."""
    if keys is None:
        return None
    from ..aligners.linear import SufficientStats

    d, D = fs.dim(keys[0]), fs.dim(keys[1])
    train, held = SufficientStats(d, D), SufficientStats(d, D)
    wanted = set(shards)
    for s, tensors in enumerate_shards(fs, list(keys)):
        if s in wanted:
            t, h = shard_stats(tensors, (keys[0], keys[1]), fraction)
            train.merge(t)
            held.merge(h)
    return train, held


def enumerate_shards(fs: FeatureStore, names: list[str]) -> Any:
    """``(shard number, tensors)`` of every finished shard."""
    from safetensors import safe_open

    wanted = [*names, "labels", "indices"]
    for shard in range(fs.manifest["n_shards"]):
        if fs.is_done(shard):
            with safe_open(str(fs.shard_file(shard)), framework="pt") as fh:
                yield shard, {k: fh.get_tensor(k) for k in wanted}
