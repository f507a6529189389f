"""Ray Data backend: throughput with 1 and 2 workers, against in-process, and the fit's agreement.

Generated JPEGs, a random-init timm backbone aligned to a second one (no downloads). A local Ray
instance (``ray.init(num_cpus=--cpus)``); each worker gets one CPU (one torch thread). The
in-process run gets ``--cpus`` torch threads. Figures: images/s of extraction (with the fit's
statistics summed from the workers), and the relative difference between the Ray fit and the
in-process fit of the same features.

    python benchmarks/ray_scaling.py                     # 96 images, resnet18 -> vit_tiny, 2 CPUs
    python benchmarks/ray_scaling.py --address auto      # on a running cluster (see docs/scale.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--backbone", default="timm:resnet18")
    parser.add_argument("--target", default="backbone:timm:vit_tiny_patch16_224")
    parser.add_argument("--address", default=None)
    args = parser.parse_args()

    from pipeline_overhead import make_jpegs

    from t2c_captum.aligners import LinearAligner
    from t2c_captum.aligners.fit import fit_from_store
    from t2c_captum.aligners.loading import load_target
    from t2c_captum.aligners.streaming import FitStatistics
    from t2c_captum.backbones import load_backbone
    from t2c_captum.features import extract_features
    from t2c_captum.features.ray_backend import connect, extract_features_ray

    bb, tg = load_backbone(args.backbone), load_target(args.target)
    encoders = {"source": bb, "target": tg}
    out: dict = {"n": args.n, "cpus": args.cpus, "backbone": args.backbone, "target": args.target, "runs": []}
    with tempfile.TemporaryDirectory(prefix="t2c-ray-") as tmp:
        images = make_jpegs(Path(tmp) / "images", args.n, 256)
        torch.set_num_threads(args.cpus)
        t0 = time.perf_counter()
        local = extract_features(
            images,
            encoders,
            store=Path(tmp) / "local",
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            progress=False,
            precision="fp32",
        )
        local_s = time.perf_counter() - t0
        reference = fit_from_store(local, LinearAligner())
        print(f"in-process ({args.cpus} threads): {args.n / local_s:.2f} img/s", flush=True)
        out["local_img_s"] = args.n / local_s
        connect(args.address, num_cpus=args.cpus)
        for workers in args.workers:
            t0 = time.perf_counter()
            store, stats = extract_features_ray(
                images,
                encoders,
                store=Path(tmp) / f"ray{workers}",
                shard_size=args.shard_size,
                batch_size=args.batch_size,
                num_workers=workers,
                summary=FitStatistics(),
                progress=False,
                precision="fp32",
            )
            seconds = time.perf_counter() - t0
            aligner = LinearAligner().add_stats(*FitStatistics.combine(stats))
            aligner.solve()
            rel = float((aligner.weight_ - reference.weight_).norm() / reference.weight_.norm())
            row = {"workers": workers, "img_s": args.n / seconds, "seconds": seconds, "fit_rel_diff": rel}
            out["runs"].append(row)
            print(
                f"ray, {workers} worker(s): {row['img_s']:.2f} img/s ({seconds:.1f} s, incl. Ray Data "
                f"start-up); fit vs in-process: relative difference {rel:.2e}",
                flush=True,
            )
    if len(out["runs"]) >= 2:
        ratio = out["runs"][-1]["img_s"] / out["runs"][0]["img_s"]
        print(f"{out['runs'][-1]['workers']} workers vs {out['runs'][0]['workers']}: {ratio:.2f}x")
        out["scaling"] = ratio
    print(json.dumps(out))


if __name__ == "__main__":
    main()
