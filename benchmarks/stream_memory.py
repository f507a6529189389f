"""Peak memory of the steps that stream a feature store does not grow with the number of images.

For each N a synthetic feature store (d -> D, shards of 4,096 rows) is written by one subprocess.
Then each step runs in a *fresh* subprocess that reports its peak RSS (``ru_maxrss``), so the
figures are not polluted by the writer or by each other:

- ``fit``: the closed-form fit (``fit_from_store``), whose aligner the other steps use;
- ``scores``: concept scores of every image against K concepts, summarised
  (``iter_store_scores`` + ``summarize_scores``);
- ``shift``: the concept-shift report between two stores (``diagnose_shift``; the store against
  itself, which reads both in full as two different stores would);
- ``retrieve``: an exact search with two contrast-scored concepts (``Retriever.search``), which by
  design keeps a few floats per image (8 bytes × (terms + contrast terms + 2)), so it may grow by
  that much and no more.

Stores are deleted afterwards. Each step runs ``--repeat`` times per N (the median peak is
reported, with the range: the allocator's peak varies by some 10% between identical runs); the
ratio printed is the largest N's median over the smallest's. A step's peak is reached within its
first few shards, as glibc's allocator warms up (its mmap threshold rises, then freed chunk
temporaries are reused from the heap); a store of 20,000 rows has only 5 shards of 4,096, so the
middle N shows whether the peak still moves past that.

    python benchmarks/stream_memory.py                # N = 20,000, 100,000, 200,000; 2048 -> 512
    python benchmarks/stream_memory.py --n 2000 20000 --d 256 --D 64 --concepts 100  # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = ("fit", "scores", "shift", "retrieve")
QUERY = '"concept 3" & ~"concept 17"'  # both have alternatives (groups of 10): contrast thresholds


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _make(path: str, n: int, d: int, D: int, shard: int) -> None:
    from _synthetic import write_store  # beside this script, on sys.path when it runs

    write_store(path, n, d, D, shard)


def _bank(store: Any, k: int) -> Any:
    import torch

    from t2c_captum.concepts import ConceptBank

    dim = store.manifest["encoders"]["target"]["dim"]
    names = [f"concept {i}" for i in range(k)]
    embeddings = torch.randn(k, dim, generator=torch.Generator().manual_seed(1))
    return ConceptBank(names, embeddings, space_id="synthetic-space",
                       groups={c: f"group {i // 10}" for i, c in enumerate(names)})


def _step(step: str, path: str, aligner_path: str, k: int) -> dict[str, Any]:
    """Run one step on the store at ``path``; returns its figures (peak RSS is read by the caller)."""
    from t2c_captum.aligners import LinearAligner
    from t2c_captum.features import FeatureStore

    store = FeatureStore(path)
    if step == "fit":
        from t2c_captum.aligners.fit import fit_from_store

        aligner = fit_from_store(store, LinearAligner())
        aligner.save(aligner_path)
        return {"holdout_r2": aligner.fit_stats_["holdout_r2_from_stats"]}
    from t2c_captum.aligners.io import load_aligner

    aligner, bank = load_aligner(aligner_path), _bank(store, k)
    if step == "scores":
        from t2c_captum.concepts import iter_store_scores, summarize_scores

        summary = summarize_scores((s for _, s in iter_store_scores(store, bank, aligner)), bank)
        return {"images": summary.n}
    if step == "shift":
        from t2c_captum.shift import diagnose_shift

        report = diagnose_shift(store, FeatureStore(path), bank, aligner)
        return {"tests": len(report.rows)}
    from t2c_captum.retrieval import Retriever

    result = Retriever(bank, aligner).search(QUERY, store, k=10)
    return {"searched": result.n_searched}


def _run_step(step: str, path: str, aligner_path: str, k: int) -> None:
    import torch

    torch.set_num_threads(2)
    # every module a step uses is imported first: imports are not the step's memory
    import importlib

    for module in ("concepts", "pipeline", "retrieval", "shift"):
        importlib.import_module(f"t2c_captum.{module}")

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    row = _step(step, path, aligner_path, k)
    row.update(step=step, peak_rss_mib=_peak_rss_mib(), rss_after_import_mib=base,
               seconds=time.perf_counter() - t0)
    print(json.dumps(row))


def _subprocess(*args: str) -> str:
    return subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                          text=True).stdout


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000, 200_000])
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--D", type=int, default=512)
    parser.add_argument("--shard", type=int, default=4096)
    parser.add_argument("--concepts", type=int, default=1000, help="K, the concepts scored")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh processes per step and N (the median peak is reported)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS),
                        help="steps to measure (fit always runs: the others use its aligner)")
    parser.add_argument("--make", help=argparse.SUPPRESS)
    parser.add_argument("--step", nargs=3, metavar=("STEP", "STORE", "ALIGNER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make:
        _make(args.make, args.n[0], args.d, args.D, args.shard)
        return {}
    if args.step:
        _run_step(*args.step, args.concepts)
        return {}
    steps = ["fit", *[s for s in args.steps if s != "fit"]]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in steps}
    from _synthetic import rmtree

    with tempfile.TemporaryDirectory(prefix="t2c-streammem-") as tmp:
        for n in args.n:
            store, aligner = str(Path(tmp) / f"n{n}"), str(Path(tmp) / f"aligner{n}")
            t0 = time.perf_counter()
            _subprocess("--make", store, "--n", str(n), "--d", str(args.d), "--D", str(args.D),
                        "--shard", str(args.shard))
            print(f"N={n:,}: store written in {time.perf_counter() - t0:.1f} s", flush=True)
            for step in steps:
                runs = [json.loads(_subprocess("--step", step, store, aligner, "--concepts",
                                               str(args.concepts)).strip().splitlines()[-1])
                        for _ in range(1 if step == "fit" else args.repeat)]  # fit: saves the aligner
                peaks = sorted(r["peak_rss_mib"] for r in runs)
                row = {**runs[0], "n": n, "peak_rss_mib": statistics.median(peaks), "peak_rss_runs": peaks}
                results[step].append(row)
                spread = f" (runs {peaks[0]:.0f}–{peaks[-1]:.0f})" if len(peaks) > 1 else ""
                print(f"  {step:<8}  peak RSS {row['peak_rss_mib']:8.1f} MiB{spread}  (after imports "
                      f"{row['rss_after_import_mib']:.1f})  {row['seconds']:.1f} s", flush=True)
            rmtree(Path(store))
    ratios = {}
    if len(args.n) >= 2:
        for step, rows in results.items():
            ratios[step] = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
            print(f"{step:<8} peak RSS ratio N={rows[-1]['n']:,} / N={rows[0]['n']:,}: "
                  f"{ratios[step]:.3f} ({(ratios[step] - 1) * 100:+.1f}%, target <= +10%)")
    out = {"dims": [args.d, args.D], "shard": args.shard, "concepts": args.concepts,
           "results": results, "ratios": ratios}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
