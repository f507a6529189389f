"""Batched feature extraction: decode once, run every encoder, write shards, resume when interrupted."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._device import autocast, resolve_device, resolve_precision
from .._exceptions import ConfigurationError, DataError
from .._io import keyed_identity
from ..data import ImageSource, iter_batches, open_source, split_preprocess, warn_skipped
from ..data.loader import check_reduced_decode
from .settings import SHARD_SIZE, ExtractSettings, check_sizes
from .store import FeatureStore, store_key

if TYPE_CHECKING:  # options.py imports this module for ExtractOptions.extract
    from .options import ExtractOptions

__all__ = ["SHARD_SIZE", "default_cache_dir", "extract_features"]


def default_cache_dir() -> Path:
    """``$T2C_CACHE`` or ``~/.cache/t2c_captum``."""
    return Path(os.environ.get("T2C_CACHE", Path.home() / ".cache" / "t2c_captum"))


def _identity(encoder: nn.Module) -> dict[str, Any]:
    identity = keyed_identity(encoder)  # the weights too: another checkpoint never reuses a store
    dim = identity.get("feature_dim", identity.get("embed_dim"))
    identity["dim"] = int(dim) if dim is not None else None
    return identity


def _check_finite(name: str, out: torch.Tensor, indices: torch.Tensor, source: ImageSource) -> None:
    bad = ~torch.isfinite(out).all(dim=1)
    if bad.any():
        where = [source.describe(int(i)) for i in indices[bad][:3]]
        raise DataError(
            f"{name} produced NaN/Inf features for {int(bad.sum())} image(s) ({', '.join(where)}). "
            "Finished shards are kept; try precision='fp32' or check the model's weights, then rerun "
            "to resume."
        )


def extract_features(
    source: Any,
    encoders: Mapping[str, nn.Module],
    options: ExtractOptions | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    shard_size: int = SHARD_SIZE,
    on_shard: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    **settings: Any,
) -> FeatureStore:
    """Run every encoder on every image once and write a :class:`FeatureStore`.

    Each image is decoded once and preprocessed by each encoder's own ``preprocess``. Finished
    shards are skipped when the same store (same encoders, preprocessing and dataset) is extracted
    again, so a second run reuses the features and an interrupted run resumes.

    Args:
        source: a path, ``world:SPLIT``, an :class:`~t2c_captum.data.ImageSource` or a Dataset.
        encoders (dict): name → backbone or space (anything with ``preprocess`` and a forward).
        options (ExtractOptions, optional): the extraction settings (batch size, decoding workers,
            device, precision, memory format, compile, reduced decode, strict, progress, cache
            folder; see :class:`~t2c_captum.features.ExtractOptions`); its backend must be
            ``"local"`` (``ExtractOptions.extract`` picks the backend). Default: ``ExtractOptions()``
        store (str, optional): the store directory. Default: ``CACHE_DIR/features-KEY`` with the
            options' ``cache_dir``, else a keyed folder in :func:`default_cache_dir`
        shard_size (int, optional): images per shard file. Default: ``4096``
        on_shard (callable, optional): ``on_shard(shard, tensors)`` after each shard is written
            (in the writer thread), e.g. to accumulate fit statistics while features stream.
            Default: ``None``
        **settings: ``ExtractOptions`` fields one by one (``batch_size=32``, ``precision="fp32"``,
            ``progress=False``), applied over ``options``; an unknown name is a
            :class:`~t2c_captum.ConfigurationError` listing the fields.

    Returns:
        FeatureStore: the finished store (its key does not depend on how the settings were given).

    Examples::

        >>> store = extract_features("images/", {"source": backbone}, batch_size=32, progress=False)
        >>> store = extract_features("images/", {"source": backbone}, ExtractOptions(batch_size=32))
    """
    if not encoders:
        raise ConfigurationError("give at least one encoder")
    opts = ExtractSettings.from_settings(options, **settings)
    if opts.backend != "local":
        raise ConfigurationError(
            f"extract_features extracts in-process, but the options' backend is {opts.backend!r}: "
            "call options.extract(data, encoders), or extract_features_ray"
        )
    check_sizes(batch_size=opts.batch_size, shard_size=shard_size, num_workers=opts.num_workers)
    source = open_source(source)
    dev = resolve_device(opts.device)
    precision = resolve_precision(dev, opts.precision)
    num_workers = default_workers(dev) if opts.num_workers is None else opts.num_workers
    if store is None:
        store = opts.store_path(source, encoders, "features", shard_size=shard_size)
    fs = open_store(source, encoders, store, shard_size, precision, opts.reduced_decode)
    _check_corrupt(fs, opts.strict)
    pending = [s for s in range(fs.manifest["n_shards"]) if not fs.is_done(s)]
    if not pending:
        return fs
    write = None
    if on_shard is not None:
        def write(s: int, tensors: dict[str, torch.Tensor], skipped: list[int]) -> None:
            fs.write_shard(s, tensors, skipped)
            on_shard(s, tensors)

    with _placed(encoders, dev, channels_last=opts.channels_last, compile=opts.compile) as models:
        _run(fs, source, models, pending, shard_size, opts.batch_size, num_workers, dev, precision,
             opts.strict, opts.progress, on_shard=write, reduced_decode=opts.reduced_decode)
    warn_skipped(source, fs.skipped)
    return fs


@contextlib.contextmanager
def _placed(
    encoders: Mapping[str, nn.Module], dev: torch.device, *, channels_last: bool | None, compile: bool
) -> Iterator[dict[str, nn.Module]]:
    """:func:`prepare_models` for the duration of an extraction; afterwards every encoder is back on
    its own device and memory format (so a model fitted on a GPU is still usable on the CPU)."""
    before = {name: (_device_of(enc), _is_channels_last(enc)) for name, enc in encoders.items()}
    try:
        yield prepare_models(encoders, dev, channels_last=channels_last, compile=compile)
    finally:
        for name, enc in encoders.items():
            device, was_channels_last = before[name]
            enc.to(device)
            if not was_channels_last and _is_channels_last(enc):
                enc.to(memory_format=torch.contiguous_format)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_corrupt(fs: FeatureStore, strict: bool) -> None:
    """Un-mark (and warn about) corrupt finished shards so they are redone; error under strict."""
    bad = fs.verify(strict=strict)
    if bad:
        import warnings

        warnings.warn(
            f"feature store {str(fs.path)!r}: corrupt shard(s) {bad} recorded in the manifest and "
            "extracted again",
            stacklevel=3,
        )


def prepare_models(
    encoders: Mapping[str, nn.Module],
    dev: torch.device,
    *,
    channels_last: bool | None = None,
    compile: bool = False,
) -> dict[str, nn.Module]:
    """Encoders on ``dev`` in eval mode, optionally channels-last (``None``: where it is measured to
    help, see :func:`default_channels_last`) and ``torch.compile``-d."""
    if channels_last is None:
        channels_last = default_channels_last(dev)
    models: dict[str, nn.Module] = {}
    for name, enc in encoders.items():
        model = enc.to(dev).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model)  # type: ignore[assignment]  # attributes forward to the module
        models[name] = model
    return models


def default_channels_last(dev: torch.device) -> bool:
    """Channels-last by default on CUDA (tensor cores) and the CPU (oneDNN's NHWC convolutions:
    1.1–1.6× for ResNets, EfficientNet and the concept world's conv nets, never slower in
    ``benchmarks/cpu_forward_options.py``); off on devices where it was not measured (MPS, XPU)."""
    return dev.type in ("cuda", "cpu")


def default_workers(dev: torch.device) -> int:
    """Decoding processes when none are asked for. On CUDA, where decoding sets the pace, one per
    usable core but one (the models' process), at most 16. Elsewhere 0: on a CPU the forwards keep
    every core busy and decoding is under a tenth of the work (docs/scale.md); on MPS each spawned
    worker costs seconds to start."""
    if dev.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores - 1))


def open_store(
    source: ImageSource,
    encoders: Mapping[str, nn.Module],
    store: str | os.PathLike[str] | None,
    shard_size: int,
    precision: str = "fp32",
    reduced_decode: float | None = None,
) -> FeatureStore:
    """The store for these encoders, images, (resolved) precision and decode (resumed when it
    exists with the same key); a ``reduced_decode`` that cannot be used is refused first."""
    check_reduced_decode(reduced_decode, encoders)
    identities = {name: _identity(enc) for name, enc in encoders.items()}
    key = store_key(identities, source.fingerprint, shard_size, precision, reduced_decode)
    path = Path(store) if store is not None else default_cache_dir() / "features" / key
    n = len(source)
    n_shards = (n + shard_size - 1) // shard_size
    return FeatureStore.create(
        path,
        key=key,
        encoders=identities,
        dataset={
            "name": source.name,
            "fingerprint": source.fingerprint,
            "n": n,
            "class_names": source.class_names,
            "templates": source.templates,
            "task": source.task,
            "class_prompts": source.class_prompts,
        },
        shard_size=shard_size,
        n_shards=n_shards,
        precision=precision,
        reduced_decode=reduced_decode,
    )


def _run(
    fs: FeatureStore,
    source: ImageSource,
    models: Mapping[str, nn.Module],
    pending: list[int],
    shard_size: int,
    batch_size: int,
    num_workers: int,
    dev: torch.device,
    precision: str,
    strict: bool,
    progress: bool,
    on_shard: Callable[[int, dict[str, torch.Tensor], list[int]], None] | None = None,
    reduced_decode: float | None = None,
) -> None:
    """Extract the ``pending`` shards; each finished shard goes to ``on_shard(shard, tensors,
    skipped)`` (default: written to ``fs`` by a writer thread, so writing overlaps compute)."""
    n = len(source)
    batches, shard_of = [], []
    for s in pending:
        idx = list(range(s * shard_size, min(n, (s + 1) * shard_size)))
        for i in range(0, len(idx), batch_size):
            batches.append(idx[i : i + batch_size])
            shard_of.append(s)
    remaining = {s: sum(len(b) for b, o in zip(batches, shard_of, strict=True) if o == s) for s in pending}
    parts: dict[int, dict[str, list[torch.Tensor]]] = {s: {} for s in pending}
    skipped: dict[int, list[int]] = {s: [] for s in pending}
    writer = ThreadPoolExecutor(max_workers=1)
    writes: list[Future[None]] = []
    bar = tqdm(total=sum(remaining.values()), disable=not progress, desc="extracting", unit="img")
    whole: list[Any] = [getattr(m, "preprocess") for m in models.values()]  # noqa: B009
    splits = [split_preprocess(p) if _normalise_on(dev) else None for p in whole]
    on_cpu = [s.on_cpu if s else p for s, p in zip(splits, whole, strict=True)]
    finish = [s.finish if s else None for s in splits]
    try:
        stream = iter_batches(
            source,
            on_cpu,
            batches,
            num_workers=num_workers,
            strict=strict,
            pin_memory=dev.type == "cuda",
            reduced_decode=reduced_decode,
        )
        for batch, s in zip(stream, shard_of, strict=False):  # the stream may stop early
            skipped[s].extend(batch.skipped)
            if batch.indices.numel():
                outputs = _forward(models, batch.inputs, dev, precision, finish)
                for name, out in outputs.items():
                    _check_finite(name, out, batch.indices, source)
                    parts[s].setdefault(name, []).append(out)
                parts[s].setdefault("labels", []).append(batch.labels)
                parts[s].setdefault("indices", []).append(batch.indices)
            count = batch.indices.numel() + len(batch.skipped)
            remaining[s] -= count
            bar.update(count)
            if remaining[s] == 0:
                tensors = _finish_shard(parts.pop(s), models)
                writes.append(writer.submit(on_shard or fs.write_shard, s, tensors, skipped.pop(s)))
    finally:
        bar.close()
        writer.shutdown(wait=True)
    for w in writes:
        w.result()


def _normalise_on(dev: torch.device) -> bool:
    """Whether decoding workers stop at uint8 pixels and ``dev`` normalises the batches.

    On an accelerator that step costs next to nothing, and the workers, which set the pace there,
    do about a quarter less (``benchmarks/decode_throughput.py``: 1.2-1.3x images/s). On the CPU it
    would only move the work to the process that runs the models, so the workers keep it.
    """
    return dev.type != "cpu" or _NORMALISE_ON_CPU


#: Tests set this to run the split preprocessing path on the CPU.
_NORMALISE_ON_CPU = False


@torch.no_grad()
def _forward(
    models: Mapping[str, nn.Module],
    inputs: list[torch.Tensor],
    dev: torch.device,
    precision: str,
    finish: Sequence[Callable[[torch.Tensor], torch.Tensor] | None],
) -> dict[str, torch.Tensor]:
    out = {}
    with autocast(dev, precision):
        for (name, model), x, done in zip(models.items(), inputs, finish, strict=True):
            x = x.to(dev, non_blocking=True)
            if done is not None:
                x = done(x)
            if x.ndim == 4 and _is_channels_last(model):
                x = x.contiguous(memory_format=torch.channels_last)
            out[name] = _call(name, model, x)
    # every forward is queued before the first copy back waits: on a GPU the next model's kernels
    # are launched while the previous one still runs, not after a synchronisation
    return {name: y.float().cpu() for name, y in out.items()}


def _call(name: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``; a model whose forward cannot take channels-last tensors (a ``.view`` where
    ``.reshape`` was needed) goes back to contiguous tensors, with a warning, instead of failing."""
    try:
        return model(x)
    except RuntimeError as err:
        if "view size is not compatible" not in str(err) or not _is_channels_last(model):
            raise
    import warnings

    warnings.warn(
        f"encoder {name!r} fails in channels-last memory format (its forward uses .view where "
        "channels-last tensors need .reshape); it runs with contiguous tensors instead. Pass "
        "channels_last=False (t2c fit --no-channels-last) to skip the attempt.",
        stacklevel=2,
    )
    model.to(memory_format=torch.contiguous_format)
    return model(x.contiguous())


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are channels-last (judged on the first 4-d weight
    whose layout tells: a 1×1 kernel is contiguous in both formats)."""
    for p in model.parameters():
        if p.ndim == 4 and not (p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)):
            return bool(p.is_contiguous(memory_format=torch.channels_last))
    return False


def _finish_shard(
    parts: dict[str, list[torch.Tensor]], models: Mapping[str, nn.Module]
) -> dict[str, torch.Tensor]:
    if not parts:  # every image in the shard was unreadable
        empty: dict[str, torch.Tensor] = {
            name: torch.empty(0, _identity(m)["dim"] or 0) for name, m in models.items()
        }
        empty["labels"] = torch.empty(0, dtype=torch.long)
        empty["indices"] = torch.empty(0, dtype=torch.long)
        return empty
    return {k: torch.cat(v) for k, v in parts.items()}
