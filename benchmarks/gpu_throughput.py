"""Accelerator readiness: the pipeline against the model pair's raw forward throughput and against
the paper's pipeline shape, and the fit time, on one GPU.

Prepared for one NVIDIA GPU; finishes in a few minutes (well under 10) on a recent one. Models are
timm's ResNet-50 (backbone, 2048-d) and ViT-B/16 (target, 768-d), random init (``pretrained=False``;
speed does not depend on the weights), so nothing is downloaded. Images are generated JPEGs of
ImageNet's typical size (500 x 375). Steps, in one process:

0. the pipeline's GPU preprocessing path (workers stop at uint8, the GPU normalises) against each
   model's whole preprocessing on 8 images: largest difference (expected 0);
1. raw throughput: each model alone on ready-made input tensors already on the GPU, bf16 autocast
   (ResNet channels-last) and fp32, after warm-up; the pair's raw rate is ``1 / (1/a + 1/b)``
   images/s (both models see every image);
2. the pipeline: ``fit_aligner`` on N JPEGs (decode once in worker processes, both forwards in
   bf16, statistics summed while features stream, closed-form fit on the GPU, held-out evaluation),
   images/s end to end and for extraction alone, as a share of the raw bf16 pair rate; run first
   and last, best of the two;
3. the paper's shape on the same images and models (each model decodes and runs in its own pass,
   then 5 SGD epochs on the GPU): as the paper's code runs it (fp32), and with the pipeline's own
   forward options (bf16, channels-last), which isolates what decoding once and the closed-form
   fit save; speed-ups of the pipeline over each, and held-out R² of both fits on the same rows;
4. the closed-form fit on the GPU from synthetic 2048 -> 768 statistics of ``--fit-n`` rows
   (accumulating and solving); run before steps 2 and 3.

The JSON (``--out``) is rewritten after every step, so a run cut short keeps what it measured; an
error in the image steps (2, 3) is recorded in it and the other figures are still printed.

    python benchmarks/gpu_throughput.py --out gpu.json     # on a GPU machine
    python benchmarks/gpu_throughput.py --compile          # also torch.compile the models
    python benchmarks/gpu_throughput.py --smoke            # tiny, on CPU: checks the script still runs
    bash benchmarks/gpu_session.sh prepare|run             # the device machine's wrapper (see there)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    from t2c_captum.features.extract import _placed

    x = torch.randn(batch, 3, 224, 224, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # placed as an extraction places it, and put back afterwards (device and memory format)
    with _placed({"m": model}, dev, channels_last=channels_last, compile=False) as placed, \
            torch.no_grad(), autocast(dev, precision):
        net = placed["m"]
        for _ in range(2):
            net(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            net(x)
        _sync(dev)
        elapsed = time.perf_counter() - t0  # before the model is put back
    return batch * iters / elapsed


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
    aligner.solve()
    _sync(dev)
    solve = time.perf_counter() - t0
    on_cpu = LinearAligner().add_stats(aligner.train_stats_, aligner.holdout_stats_)  # same sums, CPU
    on_cpu.solve()
    diff = (aligner.weight_.cpu() - on_cpu.weight_).norm() / on_cpu.weight_.norm()
    return {
        "accumulate_s": accumulate,
        "solve_s": solve,
        "holdout_r2": float(aligner.fit_stats_["holdout_r2_from_stats"]),
        "weights_vs_cpu_solve_rel_diff": float(diff),
    }


def split_check(models: dict[str, Any], dev: torch.device) -> dict[str, float | None]:
    """Largest difference between each model's whole preprocessing (CPU) and its uint8 half
    normalised on ``dev`` (the pipeline's path there), on 8 photo-sized random images; ``None``
    where the preprocessing is not split."""
    import numpy as np
    from PIL import Image

    from t2c_captum.data import split_preprocess

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)) for _ in range(8)]
    out: dict[str, float | None] = {}
    for name, model in models.items():
        split = split_preprocess(model.preprocess)
        if split is None:
            out[name] = None
            continue
        whole = torch.stack([model.preprocess(im) for im in images])
        pixels = torch.stack([split.on_cpu(im) for im in images]).to(dev)
        out[name] = float((split.finish(pixels).cpu() - whole).abs().max())
    return out


def pair_rate(rates: dict[str, float]) -> float:
    """Images/s of the two models in turn on every image: ``1 / (1/a + 1/b)``."""
    return 1.0 / sum(1.0 / r for r in rates.values())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=16384, help="generated images for the pipeline")
    parser.add_argument("--image-size", type=int, nargs=2, default=[500, 375], metavar=("W", "H"),
                        help="generated JPEGs' size (default: ImageNet's typical 500 x 375)")
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
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-shape comparison")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.batch_size, args.workers, args.iters, args.fit_n = 24, 4, 0, 1, 4096
        args.fit_dims, args.image_size, args.precision = [256, 64], [80, 60], "fp32"
        args.backbone, args.target, args.device = "timm:resnet18", "backbone:timm:vit_tiny_patch16_224", "cpu"
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or use --smoke to check the script on CPU")
    if dev.type == "cuda":  # PyTorch's default precision settings (no TF32 matmuls), as users run
        torch.backends.cudnn.benchmark = True

    from t2c_captum.aligners.loading import load_target
    from t2c_captum.backbones import load_backbone

    started = time.perf_counter()
    bb, tg = load_backbone(args.backbone), load_target(args.target)
    out: dict = {
        "backbone": args.backbone,
        "target": args.target,
        "precision": args.precision,
        "n": args.n,
        "image_size": list(args.image_size),
        "cpu_count": os.cpu_count(),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "compile": args.compile,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    def save() -> None:
        out["wall_s"] = time.perf_counter() - started
        if args.out is not None:
            args.out.write_text(json.dumps(out, indent=2))

    out["split_preprocess_max_abs_diff"] = split_check({"backbone": bb, "target": tg}, dev)
    print(f"uint8 workers + normalising on {dev.type} vs whole preprocessing, max |diff|: "
          f"{out['split_preprocess_max_abs_diff']}", flush=True)
    raw: dict[str, dict[str, float]] = {}
    for precision in dict.fromkeys([args.precision, "fp32"]):
        raw[precision] = {
            name: raw_throughput(model, dev, args.batch_size, args.iters, precision,
                                 name == "backbone" and precision != "fp32")
            for name, model in (("backbone", bb), ("target", tg))
        }
        print(
            f"raw {precision} forward: backbone {raw[precision]['backbone']:.0f} img/s, target "
            f"{raw[precision]['target']:.0f} img/s, pair {pair_rate(raw[precision]):.0f} img/s",
            flush=True,
        )
    pair = pair_rate(raw[args.precision])
    out.update(raw_img_s=raw, raw_pair_img_s={p: pair_rate(r) for p, r in raw.items()})
    save()
    d, D = args.fit_dims
    fit = gpu_fit_seconds(args.fit_n, d, D, dev)
    out["fit_synthetic"] = {"n": args.fit_n, "d": d, "D": D, **fit}
    print(
        f"closed-form fit on {dev.type}: {args.fit_n:,} x {d} -> {D}: "
        f"accumulate {fit['accumulate_s']:.2f} s, solve {fit['solve_s']:.2f} s (weights vs the same "
        f"statistics solved on the CPU: {fit['weights_vs_cpu_solve_rel_diff']:.1e} relative)",
        flush=True,
    )
    save()
    try:
        on_images(args, bb, tg, dev, pair, out, save)
    except Exception as err:  # keep every other figure of a rare GPU run; the error is recorded
        out["error"] = f"{type(err).__name__}: {err}"
        print(f"the image steps failed: {out['error']}", flush=True)
        save()
    print(json.dumps(out))
    print(summary(out), flush=True)
    return out


def on_images(
    args: argparse.Namespace, bb: Any, tg: Any, dev: torch.device, pair: float, out: dict,
    save: Callable[[], None],
) -> None:
    """Steps 2 and 3 on generated JPEGs: the pipeline (run first and last) and the paper's shape."""
    from pipeline_overhead import make_jpegs

    from t2c_captum.alignment import fit_aligner

    with tempfile.TemporaryDirectory(prefix="t2c-gpu-") as tmp:
        t0 = time.perf_counter()
        width, height = args.image_size
        images = make_jpegs(Path(tmp) / "images", args.n, width, height=height,
                            processes=1 if args.smoke else max(1, min(16, os.cpu_count() or 1)))
        out["make_images_s"] = time.perf_counter() - t0

        def pipeline(run: int, attempt: str = "") -> tuple[float, Any, Any]:
            t0 = time.perf_counter()
            aligner, report = fit_aligner(
                bb, tg, images, batch_size=args.batch_size, num_workers=args.workers, device=str(dev),
                precision=args.precision, cache_dir=str(Path(tmp) / f"stores{run}{attempt}"), progress=False,
                channels_last=True, compile=args.compile, aligner_params={"device": str(dev)},
            )
            total = time.perf_counter() - t0
            extract = report.seconds["extract"]
            print(
                f"pipeline (run {run}): {args.n / total:.0f} img/s end to end ({args.n / extract:.0f} "
                f"img/s extracting = {100 * (args.n / extract) / pair:.0f}% of the raw pair rate); "
                f"fit {report.seconds['fit']:.2f} s",
                flush=True,
            )
            return total, aligner, report

        try:
            total, aligner, report = pipeline(1)
        except RuntimeError as err:  # e.g. a container's small /dev/shm kills the decoding workers
            if args.workers == 0:
                raise
            out["pipeline_first_error"] = f"{err}; retried with the file_system sharing strategy"
            print(f"pipeline (run 1) failed: {out['pipeline_first_error']}", flush=True)
            torch.multiprocessing.set_sharing_strategy("file_system")
            total, aligner, report = pipeline(1, "-retry")  # a fresh store: no shards to resume
        runs = [total]
        out.update(
            pipeline_s=total,
            pipeline_img_s=args.n / total,
            extract_img_s=args.n / report.seconds["extract"],
            fit_on_device_s=report.seconds["fit"],
            evaluate_s=report.seconds["evaluate"],
            share_of_raw_pair=(args.n / report.seconds["extract"]) / pair,
        )
        save()
        if not args.no_paper:
            out["paper_shape"] = paper_comparison(args, bb, tg, images, Path(tmp), dev, aligner)
            save()
            total, _, report2 = pipeline(2)
            runs.append(total)
            best = min(runs)
            out.update(pipeline_runs_s=runs, pipeline_best_s=best)
            for entry in out["paper_shape"].values():
                entry["speedup_of_pipeline"] = entry["seconds"] / best
            save()


def paper_comparison(
    args: argparse.Namespace, bb: Any, tg: Any, images: Path, root: Path, dev: torch.device, aligner: Any
) -> dict[str, dict[str, Any]]:
    """The paper's shape as its code runs it (fp32) and with the pipeline's forward options; held-out
    R² of its SGD fit and of the pipeline's closed-form fit on the same (fp32) features."""
    from pipeline_overhead import paper_shape

    from t2c_captum.aligners.base import holdout_mask, r2_score

    results: dict[str, dict[str, Any]] = {}
    variants = {
        "fp32 (as the paper)": ("fp32", False),
        f"{args.precision} + channels-last": (args.precision, True),
    }
    for i, (label, (precision, channels_last)) in enumerate(variants.items()):
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        sgd, features, targets, indices = paper_shape(
            bb, tg, images, root / f"paper{i}", args.batch_size, args.workers,
            precision=precision, device=str(dev), channels_last=channels_last, seconds=steps,
        )
        seconds = time.perf_counter() - t0
        entry: dict[str, Any] = {"seconds": seconds, "img_s": args.n / seconds, "steps_s": steps}
        if i == 0:
            held = holdout_mask(indices, 0.1)
            entry["heldout_r2_sgd"] = r2_score(sgd.transform(features[held]).cpu(), targets[held])
            entry["heldout_r2_closed_form"] = r2_score(aligner.transform(features[held]).cpu(), targets[held])
            entry["heldout_rows"] = int(held.sum())
        results[label] = entry
        print(f"paper shape, {label}: {seconds:.1f} s ({args.n / seconds:.0f} img/s; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + ")", flush=True)
    return results


def summary(out: dict) -> str:
    """The short table printed last."""
    lines = [f"{out['device']}, {out['n']} images {out.get('image_size')}, {out['workers']} workers"]
    raw = out["raw_img_s"]
    for precision, rates in raw.items():
        lines.append(f"raw {precision:>5}: backbone {rates['backbone']:8.0f}  target {rates['target']:8.0f}  "
                     f"pair {out['raw_pair_img_s'][precision]:8.0f} img/s")
    best = out.get("pipeline_best_s", out.get("pipeline_s"))
    if best is not None:
        lines.append(f"pipeline: {out['n'] / best:.0f} img/s end to end (best run {best:.1f} s), extraction "
                     f"{100 * out['share_of_raw_pair']:.0f}% of the raw {out['precision']} pair rate")
    for label, entry in out.get("paper_shape", {}).items():
        r2 = (f"; held-out R2 closed form {entry['heldout_r2_closed_form']:.4f} vs SGD "
              f"{entry['heldout_r2_sgd']:.4f}" if "heldout_r2_sgd" in entry else "")
        lines.append(f"paper shape {label}: {entry['seconds']:.1f} s -> pipeline "
                     f"{entry.get('speedup_of_pipeline', float('nan')):.2f}x faster{r2}")
    fit = out["fit_synthetic"]
    lines.append(f"closed-form fit {fit['n']:,} x {fit['d']} -> {fit['D']}: accumulate "
                 f"{fit['accumulate_s']:.2f} s + solve {fit['solve_s']:.2f} s; "
                 f"total wall {out['wall_s']:.0f} s")
    if "error" in out:
        lines.append(f"the image steps failed: {out['error']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
