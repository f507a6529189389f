"""Accelerator readiness: pipeline images/s vs the model pair's raw bf16 forward throughput, and GPU fit time.

Prepared for one NVIDIA GPU; finishes in a few minutes (well under 10) on a recent one. Models are
timm's ResNet-50 (backbone, 2048-d) and ViT-B/16 (target, 768-d), random init (``pretrained=False``;
speed does not depend on the weights), so nothing is downloaded. Steps, in one process:

1. raw throughput: each model alone on ready-made input tensors already on the GPU, bf16 autocast
   (ResNet channels-last), after warm-up; the pair's raw rate is ``1 / (1/a + 1/b)`` images/s
   (both models see every image);
2. the pipeline: ``fit_aligner`` on N generated JPEGs (decode once in worker processes, both
   forwards in bf16, statistics summed while features stream, closed-form fit on the GPU, held-out
   evaluation), images/s end to end and for extraction alone, as a share of the raw pair rate;
3. the closed-form fit on the GPU from synthetic 2048 -> 768 statistics of ``--fit-n`` rows
   (accumulating and solving).

    python benchmarks/gpu_throughput.py                    # on a GPU machine
    python benchmarks/gpu_throughput.py --compile          # also torch.compile the models
    python benchmarks/gpu_throughput.py --smoke            # tiny, on CPU: checks the script still runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def raw_throughput(
    model: torch.nn.Module, dev: torch.device, batch: int, iters: int, precision: str, channels_last: bool
) -> float:
    """Images/s of ``model`` alone on ready GPU tensors (after warm-up)."""
    from t2c_captum._device import autocast
    from t2c_captum.features.extract import prepare_models

    net = prepare_models({"m": model}, dev, channels_last=channels_last)["m"]
    x = torch.randn(batch, 3, 224, 224, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(dev, precision):
        for _ in range(2):
            net(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            net(x)
        _sync(dev)
    return batch * iters / (time.perf_counter() - t0)


def gpu_fit_seconds(n: int, d: int, D: int, dev: torch.device, chunk: int = 8192) -> dict[str, float]:
    """Accumulate statistics of ``n`` synthetic rows on ``dev`` and solve (alpha searched)."""
    from t2c_captum.aligners import LinearAligner

    gen = torch.Generator(device=dev).manual_seed(0)
    W = torch.randn(d, D, device=dev, generator=gen) / d**0.5
    aligner = LinearAligner(device=str(dev))
    _sync(dev)
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        x = torch.randn(rows, d, device=dev, generator=gen)
        y = x @ W + 0.3 * torch.randn(rows, D, device=dev, generator=gen)
        aligner.partial_fit(x, y, torch.arange(start, start + rows))  # indices stay on the CPU
    _sync(dev)
    accumulate = time.perf_counter() - t0
    t0 = time.perf_counter()
    aligner._ensure_solved()
    _sync(dev)
    return {
        "accumulate_s": accumulate,
        "solve_s": time.perf_counter() - t0,
        "holdout_r2": float(aligner.fit_stats_["holdout_r2_from_stats"]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=8192, help="generated images for the pipeline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--backbone", default="timm:resnet50")
    parser.add_argument("--target", default="backbone:timm:vit_base_patch16_224")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--iters", type=int, default=20, help="timed batches for raw throughput")
    parser.add_argument("--fit-n", type=int, default=200_000)
    parser.add_argument("--fit-dims", type=int, nargs=2, default=[2048, 768], metavar=("d", "D"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny models and sizes on CPU")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.batch_size, args.workers, args.iters, args.fit_n = 12, 4, 0, 1, 4096
        args.fit_dims = [256, 64]
        args.backbone, args.target, args.device = "timm:resnet18", "backbone:timm:vit_tiny_patch16_224", "cpu"
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke to check the script on CPU")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    from pipeline_overhead import make_jpegs

    from t2c_captum.backbones import load_backbone
    from t2c_captum.pipeline import fit_aligner, load_target

    started = time.perf_counter()
    bb, tg = load_backbone(args.backbone), load_target(args.target)
    out: dict = {
        "backbone": args.backbone,
        "target": args.target,
        "precision": args.precision,
        "n": args.n,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "compile": args.compile,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    raw = {
        name: raw_throughput(model, dev, args.batch_size, args.iters, args.precision, name == "backbone")
        for name, model in (("backbone", bb), ("target", tg))
    }
    pair = 1.0 / sum(1.0 / r for r in raw.values())
    out.update(raw_img_s=raw, raw_pair_img_s=pair)
    print(
        f"raw {args.precision} forward: backbone {raw['backbone']:.0f} img/s, target {raw['target']:.0f} "
        f"img/s, pair {pair:.0f} img/s",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="t2c-gpu-") as tmp:
        t0 = time.perf_counter()
        images = make_jpegs(Path(tmp) / "images", args.n, 256)
        out["make_images_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        aligner, report = fit_aligner(
            bb,
            tg,
            images,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=str(dev),
            precision=args.precision,
            cache_dir=str(Path(tmp) / "stores"),
            progress=False,
            channels_last=True,
            compile=args.compile,
            aligner_params={"device": str(dev)},
        )
        total = time.perf_counter() - t0
    extract = report.seconds["extract"]
    out.update(
        pipeline_s=total,
        pipeline_img_s=args.n / total,
        extract_img_s=args.n / extract,
        fit_on_device_s=report.seconds["fit"],
        evaluate_s=report.seconds["evaluate"],
        share_of_raw_pair=(args.n / extract) / pair,
    )
    print(
        f"pipeline: {args.n / total:.0f} img/s end to end ({args.n / extract:.0f} img/s extracting = "
        f"{100 * out['share_of_raw_pair']:.0f}% of the raw pair rate); fit {report.seconds['fit']:.2f} s",
        flush=True,
    )
    d, D = args.fit_dims
    fit = gpu_fit_seconds(args.fit_n, d, D, dev)
    out["fit_synthetic"] = {"n": args.fit_n, "d": d, "D": D, **fit}
    print(
        f"closed-form fit on {dev.type}: {args.fit_n:,} x {d} -> {D}: "
        f"accumulate {fit['accumulate_s']:.2f} s, solve {fit['solve_s']:.2f} s",
        flush=True,
    )
    out["wall_s"] = time.perf_counter() - started
    print(json.dumps(out))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
