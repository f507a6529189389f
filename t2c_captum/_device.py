"""Device and precision choices shared by extraction and fitting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast", "best_device", "resolve_device"]


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


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "auto") -> Iterator[None]:
    """Mixed precision where it helps: bf16/fp16 autocast on CUDA, full precision elsewhere.

    Args:
        device (torch.device): where the models run.
        precision (str, optional): ``"auto"`` (bf16 on CUDA when supported, else fp16 on CUDA, fp32
            elsewhere), ``"bf16"``, ``"fp16"`` or ``"fp32"``. Default: ``"auto"``
    """
    if precision not in {"auto", "bf16", "fp16", "fp32"}:
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        yield
        return
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
