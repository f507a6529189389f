"""fp32 vs bf16 forwards on this CPU, through the pipeline: images/s and the fit's held-out R², side by side.

For each backbone, the concept world's images go through the backbone and the tiny CLIP
(``world-clip``) once with ``precision="fp32"`` and once with ``precision="bf16"`` (autocast), as
``t2c fit --precision`` does; a closed-form aligner is fitted on each store and scored on its own
held-out rows. bf16 pays where the CPU multiplies bf16 natively (AVX512-BF16, AMX); elsewhere it
is emulated and several times slower. The table says which, for this CPU (named in the first line),
and whether the fit loses R² (``--precision auto`` chooses bf16 on a CPU only where both hold).

    python benchmarks/cpu_precision.py                                  # world models, 4,000 images
    python benchmarks/cpu_precision.py --models timm:resnet50 timm:vit_base_patch16_224 --n 1000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _synthetic import cpu_description

from t2c_captum import LinearAligner, extract_features, load_backbone, load_space
from t2c_captum.world.adapters import world_source


def run(name: str, n: int, batch_size: int, folder: Path) -> dict[str, Any]:
    """Extract ``n`` world images in each precision (best of the timed run), fit, score."""
    backbone, space = load_backbone(name), load_space("world-clip")
    source = world_source("train", n=n, factor="shape")
    warm = world_source("val", n=batch_size, factor="shape")
    row: dict[str, Any] = {"model": name, "dim": backbone.feature_dim}
    for precision in ("fp32", "bf16"):
        encoders = {"source": backbone, "target": space}
        extract_features(warm, encoders, store=folder / f"warm-{precision}", batch_size=batch_size,
                         precision=precision, device="cpu", progress=False)
        start = time.perf_counter()
        store = extract_features(source, encoders, store=folder / precision, batch_size=batch_size,
                                 precision=precision, device="cpu", progress=False)
        seconds = time.perf_counter() - start
        data = store.load()
        indices = data["indices"]
        aligner = LinearAligner().fit(data["source"], data["target"], indices)
        held = aligner.holdout(indices)
        row[precision] = {
            "images_per_s": n / seconds,
            "r2": aligner.evaluate(data["source"][held], data["target"][held]).r2,
        }
    row["speedup"] = row["bf16"]["images_per_s"] / row["fp32"]["images_per_s"]
    row["r2_change"] = row["bf16"]["r2"] - row["fp32"]["r2"]
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["world-cnn", "world-ae", "world-vit"])
    parser.add_argument("--n", type=int, default=4000, help="world training images per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.n} images; "
          f"{cpu_description()}")
    print("| backbone (+ world-clip) | d | fp32 img/s | bf16 img/s | bf16 speed-up | fp32 R² | bf16 R² "
          "| R² change |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="t2c-precision-"))
    try:
        for name in args.models:
            row = run(name, args.n, args.batch_size, folder)
            rows.append(row)
            print(f"| {name} | {row['dim']} | {row['fp32']['images_per_s']:.1f} | "
                  f"{row['bf16']['images_per_s']:.1f} | {row['speedup']:.2f}x | {row['fp32']['r2']:.4f} | "
                  f"{row['bf16']['r2']:.4f} | {row['r2_change']:+.4f} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
