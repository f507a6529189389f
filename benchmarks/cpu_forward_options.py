"""What the pipeline's speed options do to each model's forward on this CPU, side by side in one run.

The pipeline offers channels-last (convolutional encoders), bf16/fp16 autocast (``--precision``) and
``torch.compile``. This script times one batch forward of each model (random init, timm, no
downloads) in fp32, channels-last, bf16 autocast and compiled, best of ``--repeat`` after a
warm-up, and prints each option's speed-up over fp32 (and the compile time, paid once per run).
It tells whether the forwards, 90% of ``t2c fit`` on a CPU (docs/scale.md), can get cheaper here.

    python benchmarks/cpu_forward_options.py
    python benchmarks/cpu_forward_options.py --models resnet50 vit_small_patch16_224 --batch-size 16
    python benchmarks/cpu_forward_options.py --models world-cnn world-ae world-vit world-clip \
        --batch-size 128 --no-compile      # the concept world's models (64 px, packaged weights)
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch


def best_time(model: Any, x: torch.Tensor, repeat: int, dtype: torch.dtype | None = None) -> float:
    """Best wall time of ``repeat`` forwards after one warm-up (autocast to ``dtype`` if given)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        model(x)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return min(times)


def _model(name: str, size: int) -> tuple[torch.nn.Module, int]:
    """A random-init timm model (``size`` px), or a concept world model as the library loads it
    (``world-clip`` is the space's image tower; 64 px)."""
    if name == "world-clip":
        from t2c_captum.spaces import load_space

        return load_space(name).eval(), 64
    if name.startswith("world-"):
        from t2c_captum.backbones import load_backbone

        return load_backbone(name).eval(), 64
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0).eval(), size


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print the table; return its rows (seconds and speed-ups per model)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["resnet18", "vit_tiny_patch16_224"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    flags = Path("/proc/cpuinfo").read_text() if platform.system() == "Linux" else ""
    support = {flag: "yes" if flag in flags else "no" for flag in ("avx512_bf16", "amx_bf16")}
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}; CPU bf16 support: "
          + ", ".join(f"{flag} {has}" for flag, has in support.items()))
    print("| model | fp32 s | channels-last | bf16 autocast | compiled | compile time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        model, side = _model(name, args.size)
        x = torch.randn(args.batch_size, 3, side, side)
        fp32 = best_time(model, x, args.repeat)
        cells = [f"{fp32:.3f}"]
        last = model.to(memory_format=torch.channels_last)
        cl_time = best_time(last, x.contiguous(memory_format=torch.channels_last), args.repeat)
        row: dict[str, Any] = {"model": name, "fp32_s": fp32, "channels_last": fp32 / cl_time}
        cells.append(f"{fp32 / cl_time:.2f}x")
        model = model.to(memory_format=torch.contiguous_format)
        row["bf16"] = fp32 / best_time(model, x, args.repeat, torch.bfloat16)
        cells.append(f"{row['bf16']:.2f}x")
        if args.no_compile:
            cells += ["-", "-"]
        else:
            start = time.perf_counter()
            compiled = torch.compile(model)
            with torch.no_grad():
                compiled(x)
            built = time.perf_counter() - start
            row["compiled"] = fp32 / best_time(compiled, x, args.repeat)
            cells += [f"{row['compiled']:.2f}x", f"{built:.0f} s"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
