"""Peak memory of a streamed closed-form fit does not grow with the number of images.

For each N a synthetic feature store (d -> D, shards of 4,096 rows) is written by one subprocess,
then a *fresh* subprocess streams it into ``LinearAligner`` through ``fit_from_store`` and reports its
peak RSS (``ru_maxrss``), so the figures are not polluted by the writer or by each other. Stores are
deleted afterwards.

    python benchmarks/fit_memory.py                        # N = 20,000 and 200,000, 2048 -> 512
    python benchmarks/fit_memory.py --n 2000 20000 --d 256 --D 64    # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _make(path: str, n: int, d: int, D: int, shard: int) -> None:
    sys.path.insert(0, str(HERE))
    from _synthetic import write_store

    write_store(path, n, d, D, shard)


def _fit(path: str) -> None:
    import torch

    from t2c_captum.aligners import LinearAligner
    from t2c_captum.features import FeatureStore
    from t2c_captum.pipeline import fit_from_store

    torch.set_num_threads(2)
    store = FeatureStore(path)
    base = _peak_rss_mib()
    t0 = time.perf_counter()
    aligner = fit_from_store(store, LinearAligner())
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "n": len(store),
                "peak_rss_mib": _peak_rss_mib(),
                "rss_after_import_mib": base,
                "fit_s": seconds,
                "holdout_r2": aligner.fit_stats_["holdout_r2_from_stats"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--D", type=int, default=512)
    parser.add_argument("--shard", type=int, default=4096)
    parser.add_argument("--make", help=argparse.SUPPRESS)
    parser.add_argument("--fit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        _make(args.make, args.n[0], args.d, args.D, args.shard)
        return
    if args.fit:
        _fit(args.fit)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="t2c-fitmem-") as tmp:
        for n in args.n:
            store = str(Path(tmp) / f"n{n}")
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--make",
                    store,
                    "--n",
                    str(n),
                    "--d",
                    str(args.d),
                    "--D",
                    str(args.D),
                    "--shard",
                    str(args.shard),
                ],
                check=True,
            )
            made = time.perf_counter() - t0
            out = subprocess.run(
                [sys.executable, __file__, "--fit", store], check=True, capture_output=True, text=True
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["write_store_s"] = made
            results.append(row)
            print(
                f"N={n:>9,}  peak RSS {row['peak_rss_mib']:8.1f} MiB  (after imports "
                f"{row['rss_after_import_mib']:.1f})  fit {row['fit_s']:.1f} s  "
                f"held-out R2 {row['holdout_r2']:.3f}",
                flush=True,
            )
            from _synthetic import rmtree

            rmtree(Path(store))
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
        print(
            f"peak RSS ratio N={results[-1]['n']:,} / N={results[0]['n']:,}: {ratio:.3f} "
            f"({(ratio - 1) * 100:+.1f}%, target <= +10%)"
        )
    print(json.dumps({"dims": [args.d, args.D], "shard": args.shard, "results": results}))


if __name__ == "__main__":
    main()
