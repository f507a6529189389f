"""Device and precision choices shared by extraction and fitting."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

from ._exceptions import ConfigurationError

__all__ = [
    "PRECISIONS",
    "autocast",
    "best_device",
    "cpu_bf16_flags",
    "resolve_device",
    "resolve_precision",
]

#: Values of every ``precision`` argument.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def best_device() -> torch.device:
    """CUDA if available, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` means :func:`best_device`; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return best_device()
    return torch.device(device)


def resolve_precision(device: str | torch.device | None, precision: str = "auto") -> str:
    """What ``precision`` means on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``"auto"`` is bf16 on CUDA (fp16 where the GPU lacks bf16); on the CPU, bf16 where it has native
    bf16 arithmetic (:func:`cpu_bf16_flags`: AVX512-BF16 or AMX; 1.3-2.9x the images/s of fp32 at
    the same held-out R² within 0.001 in ``benchmarks/cpu_precision.py``) and fp32 where bf16 would
    be emulated (several times slower); fp32 elsewhere. ``T2C_CPU_BF16=0`` (or ``1``) overrides the
    CPU's choice. A CUDA device this process cannot see (a Ray driver without GPUs, say) is taken to
    support bf16.
    """
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = resolve_device(device).type
    if kind == "cpu":
        return "bf16" if cpu_bf16_pays() else "fp32"
    if kind != "cuda":
        return "fp32"
    if not torch.cuda.is_available():
        return "bf16"
    return "bf16" if _native_bf16() else "fp16"


def cpu_bf16_pays() -> bool:
    """Whether ``"auto"`` runs CPU forwards in bf16: ``T2C_CPU_BF16`` (``0``/``1``) when set, else
    whether the CPU multiplies bf16 natively."""
    override = os.environ.get("T2C_CPU_BF16", "").strip().lower()
    if override in ("0", "false", "no", "off"):
        return False
    if override in ("1", "true", "yes", "on"):
        return True
    return bool(cpu_bf16_flags())


def _native_bf16() -> bool:
    """bf16 in hardware (Ampere or later): emulated bf16 on older GPUs runs without tensor cores."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before the argument existed counted only native support
        return bool(torch.cuda.is_bf16_supported())


#: CPU flags of native bf16 arithmetic (Linux names): AVX512-BF16 dot products, AMX tiles
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags() -> frozenset[str]:
    """Which of :data:`BF16_CPU_FLAGS` this CPU has (empty where ``/proc/cpuinfo`` cannot tell)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(set(line.split(":", 1)[1].split()) & set(BF16_CPU_FLAGS))
    except OSError:
        pass
    return frozenset()


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "auto") -> Iterator[None]:
    """Mixed precision where it helps: bf16/fp16 autocast on CUDA, full precision elsewhere.

    Args:
        device (torch.device): where the models run.
        precision (str, optional): ``"auto"`` (bf16 on CUDA when supported, else fp16 on CUDA, fp32
            elsewhere), ``"bf16"``, ``"fp16"`` or ``"fp32"``. Default: ``"auto"``
    """
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
