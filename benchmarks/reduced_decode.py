"""Reduced JPEG decoding (``reduced_decode``, ``t2c fit --reduced-decode GAP``): speed and what it
changes, side by side with a full decode in one run.

1. Photos: a real photo (matplotlib's sample ``grace_hopper.jpg``) cropped, flipped, resized to
   each ``--sizes`` and given sensor-like noise, saved as JPEGs (quality 90). Each image is decoded
   once and preprocessed for timm's ResNet-50 and ViT-B/16 transforms (random-init models are never
   run), in this process, stopping at the uint8 pixels the models would see (``split_preprocess``).
   Images/s of a full decode vs each ``--gaps``, interleaved, best of ``--repeat``; and how far
   the reduced pixels are from the full ones: PSNR and the largest difference in grey levels.
2. Meaning: the concept world's training images blown up to ``--world-size`` px JPEGs (the world
   models resize them back to 64 px), through ``world-clip``'s image tower with a full and a
   reduced decode: cosine of the embeddings, and the zero-shot shape accuracy of both (and how
   often their predictions agree).

    python benchmarks/reduced_decode.py
    python benchmarks/reduced_decode.py --sizes 640x480 4032x3024 --gaps 1 2 --n 32
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def write_photos(folder: Path, n: int, width: int, height: int) -> Path:
    """``n`` photo JPEGs of ``width`` x ``height`` from one real photo (crops, flips, noise)."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        photo = Image.open(fh).convert("RGB")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        w, h = photo.size
        left, top = rng.integers(0, w // 5), rng.integers(0, h // 5)
        crop = photo.crop((left, top, left + 4 * w // 5, top + 4 * h // 5))
        if i % 2:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.asarray(crop.resize((width, height), Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(pixels + rng.normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.jpg", quality=90)
    return folder


def _decode_all(dataset: Any) -> tuple[float, list[list[torch.Tensor]]]:
    t0 = time.perf_counter()
    items = [dataset[i][0] for i in range(len(dataset))]
    return time.perf_counter() - t0, items


def photos(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import timm
    from timm.data import create_transform, resolve_data_config

    from t2c_captum.data import DecodeOnce, open_source, split_preprocess

    transforms = [create_transform(**resolve_data_config({}, model=timm.create_model(m, pretrained=False)))
                  for m in args.models]
    uint8 = [s.on_cpu for s in map(split_preprocess, transforms) if s is not None]
    rows = []
    for width, height in map(_size, args.sizes):
        source = open_source(write_photos(tmp / f"{width}x{height}", args.n, width, height))
        runs = {"full": DecodeOnce(source, uint8)}
        runs.update({f"gap {g:g}": DecodeOnce(source, uint8, reduced_decode=g) for g in args.gaps})
        best = dict.fromkeys(runs, math.inf)
        pixels: dict[str, list[list[torch.Tensor]]] = {}
        for _ in range(args.repeat):
            for name, dataset in runs.items():
                seconds, pixels[name] = _decode_all(dataset)
                best[name] = min(best[name], seconds)
        for name in runs:
            if name == "full":
                continue
            diff = torch.cat([(a.float() - b.float()).flatten()
                              for full, red in zip(pixels["full"], pixels[name], strict=True)
                              for a, b in zip(full, red, strict=True)])
            mse = float(diff.pow(2).mean())
            row = {"size": f"{width}x{height}", "setting": name, "draft": list(runs[name].draft or []),
                   "full_img_s": args.n / best["full"], "reduced_img_s": args.n / best[name],
                   "speedup": best["full"] / best[name],
                   "psnr_db": 10 * math.log10(255**2 / mse) if mse else math.inf,
                   "max_abs_grey_levels": float(diff.abs().max())}
            rows.append(row)
            print(f"{row['size']:>10} {name}: full {row['full_img_s']:.0f} img/s, reduced "
                  f"{row['reduced_img_s']:.0f} img/s ({row['speedup']:.2f}x); PSNR {row['psnr_db']:.1f} dB, "
                  f"largest difference {row['max_abs_grey_levels']:.0f} grey levels", flush=True)
    return rows


@torch.no_grad()
def world(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from t2c_captum.aligners.loading import load_target
    from t2c_captum.data import DecodeOnce, open_source
    from t2c_captum.testing import make_world_jpegs
    from t2c_captum.world.generator import FACTORS
    from t2c_captum.world.zeroshot import zero_shot_weights

    folder = tmp / "world"
    samples = make_world_jpegs(folder, args.world_n, size=args.world_size, quality=90)
    labels = torch.tensor([FACTORS["shape"].index(s.shape) for s in samples])
    space = load_target("world-clip").eval()
    classes = zero_shot_weights(space, "shape")
    source = open_source(folder)
    rows, embedded = [], {}
    for name, gap in [("full", None), *((f"gap {g:g}", g) for g in args.gaps)]:
        dataset = DecodeOnce(source, [space.preprocess], reduced_decode=gap)
        images = torch.stack([dataset[i][0][0] for i in range(len(dataset))])
        embedded[name] = torch.nn.functional.normalize(space(images).float(), dim=-1)
        predicted, as_full = ((embedded[k] @ classes.T).argmax(1) for k in (name, "full"))
        cosine = (embedded[name] * embedded["full"]).sum(1)
        row = {"setting": name, "draft": list(dataset.draft or []),
               "shape_accuracy": float((predicted == labels).float().mean()),
               "agreement_with_full": float((predicted == as_full).float().mean()),
               "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}
        rows.append(row)
        print(f"world-clip, {args.world_n} world images at {args.world_size} px, {name}: zero-shot shape "
              f"{row['shape_accuracy']:.1%} (agrees with full decode on {row['agreement_with_full']:.1%}); "
              f"cosine to full decode mean {row['cosine_mean']:.4f}, min {row['cosine_min']:.4f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=64, help="photos per size")
    parser.add_argument("--sizes", nargs="+",
                        default=["500x375", "640x480", "1280x960", "2048x1536", "4032x3024"])
    parser.add_argument("--gaps", type=float, nargs="+", default=[2.0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_base_patch16_224"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--world-n", type=int, default=512)
    parser.add_argument("--world-size", type=int, default=1024)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="t2c-reduced-") as tmp:
        result = {"photos": photos(args, Path(tmp)), "world": world(args, Path(tmp))}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
