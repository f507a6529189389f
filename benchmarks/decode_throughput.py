"""Decoding stage alone: whole preprocessing in the workers vs workers stopping at uint8 pixels.

On a GPU the decoding workers, not the models, set the pace; this measures that stage by itself on
any machine. Generated JPEGs of ImageNet's typical size (500 x 375), each decoded once and
preprocessed for two encoders (timm's ResNet-50 and ViT-B/16 transforms, random-init models are
never run). Side by side, interleaved, best of ``--repeat``:

- whole: each encoder's full ``Compose`` (resize, crop, ToTensor, Normalize) in the workers, float
  batches sent back (what the pipeline did before);
- split, normalised here: the workers stop at uint8 pixels (``split_preprocess``) and the main
  process normalises each batch on the CPU (the work moves, little is saved);
- split, workers alone: the same without the normalising, i.e. the decoding stage when the device
  normalises (what ``extract_features`` does on a GPU, where that step costs next to nothing).

    python benchmarks/decode_throughput.py                 # 512 images, 0 and 2 workers
    python benchmarks/decode_throughput.py --workers 0 1 2 --n 1024
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--image-size", type=int, nargs=2, default=[500, 375], metavar=("W", "H"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_base_patch16_224"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import timm
    from pipeline_overhead import make_jpegs
    from timm.data import create_transform, resolve_data_config

    from t2c_captum.data import iter_batches, open_source, split_preprocess

    whole = [create_transform(**resolve_data_config({}, model=timm.create_model(m, pretrained=False)))
             for m in args.models]
    splits = [split_preprocess(t) for t in whole]
    if any(s is None for s in splits):
        raise SystemExit("a transform could not be split; nothing to compare")
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2c-decode-") as tmp:
        width, height = args.image_size
        source = open_source(make_jpegs(Path(tmp), args.n, width, height=height))
        size = args.batch_size
        batches = [list(range(i, min(args.n, i + size))) for i in range(0, args.n, size)]

        def run(mode: str, workers: int) -> float:
            pre = whole if mode == "whole" else [s.on_cpu for s in splits]
            t0 = time.perf_counter()
            for batch in iter_batches(source, pre, batches, num_workers=workers):
                if mode == "split_here":
                    for s, x in zip(splits, batch.inputs, strict=True):
                        s.finish(x)
            return time.perf_counter() - t0

        for workers in args.workers:
            best = {"whole": float("inf"), "split_here": float("inf"), "split_workers": float("inf")}
            for _ in range(args.repeat):
                for mode in best:
                    best[mode] = min(best[mode], run(mode, workers))
            row = {"workers": workers, **{f"{m}_img_s": args.n / t for m, t in best.items()},
                   "speedup_here": best["whole"] / best["split_here"],
                   "speedup_workers": best["whole"] / best["split_workers"]}
            rows.append(row)
            print(f"{workers} workers: whole {row['whole_img_s']:.0f} img/s; split, normalised here "
                  f"{row['split_here_img_s']:.0f} img/s ({row['speedup_here']:.2f}x); split, workers "
                  f"alone {row['split_workers_img_s']:.0f} img/s ({row['speedup_workers']:.2f}x)", flush=True)
    print(json.dumps({"n": args.n, "image_size": args.image_size, "models": args.models, "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
