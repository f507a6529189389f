"""Device and precision choices shared by extraction and fitting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["PRECISIONS", "autocast", "best_device", "resolve_device", "resolve_precision"]

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

    ``"auto"`` is bf16 on CUDA (fp16 where the GPU lacks bf16) and fp32 elsewhere. A CUDA device
    this process cannot see (a Ray driver without GPUs, say) is taken to support bf16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if resolve_device(device).type != "cuda":
        return "fp32"
    if not torch.cuda.is_available():
        return "bf16"
    return "bf16" if _native_bf16() else "fp16"


def _native_bf16() -> bool:
    """bf16 in hardware (Ampere or later): emulated bf16 on older GPUs runs without tensor cores."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before the argument existed counted only native support
        return bool(torch.cuda.is_bf16_supported())


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
