"""Exact chunked retrieval vs a FAISS index, on a large synthetic store of clustered unit vectors.

A feature store of N x dim unit vectors (space embeddings, so no aligner) around 1,000 centres is
written to a temporary folder; concepts are 16 of the centres. Then, side by side in one process:

* ``Retriever.search`` without an index (the default: one chunked pass over the store);
* the same searches with a FAISS flat index (exact inner product; candidates from the index,
  margins exact on them), after building it (build time reported separately);
* a FAISS IVF index at several ``nprobe``: vector-level recall@10 (IVF top-10 vs flat top-10 for
  200 concept-like query vectors) and query-level recall@10 (IVF search results vs exact search
  results), with latency.

    python benchmarks/retrieval_faiss.py                      # N = 1,000,000 x 512
    python benchmarks/retrieval_faiss.py --n 100000           # a quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import timed as _timed  # noqa: E402
from _synthetic import write_clustered_store  # noqa: E402

from t2c_captum.concepts import ConceptBank  # noqa: E402
from t2c_captum.retrieval import Retriever  # noqa: E402
from t2c_captum.retrieval.faiss_index import FaissIndex  # noqa: E402

QUERIES = ['"c0"', '"c1">z2 & ~"c2"', '"c3" | "c4">q0.999', '"c5">0.3 & "c6"']


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default: sqrt(N))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--spread", type=float, default=2.0, help="noise around each centre (2.0: cosine ~0.45 to the centre)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    out: dict = {"n": args.n, "dim": args.dim, "spread": args.spread, "queries": QUERIES}
    with tempfile.TemporaryDirectory(prefix="t2c-faiss-") as tmp:
        t0 = time.perf_counter()
        store, centres = write_clustered_store(Path(tmp) / "store", args.n, args.dim, spread=args.spread)
        print(f"wrote {args.n:,} x {args.dim} store in {time.perf_counter() - t0:.1f} s", flush=True)
        bank = ConceptBank(
            [f"c{i}" for i in range(16)], torch.from_numpy(centres[:16].copy()), "synthetic-space"
        )
        retriever = Retriever(bank)
        exact = {}
        t_exact = []
        for q in QUERIES:
            seconds, exact[q] = _timed(lambda q=q: retriever.search(q, store, k=10))
            t_exact.append(seconds)
        print(
            f"exact chunked search: {np.mean(t_exact):.3f} s per query (mean of {len(QUERIES)})", flush=True
        )

        build_s, flat = _timed(lambda: FaissIndex.build(store, None, kind="flat", save=False))
        t_flat, agree = [], []
        for q in QUERIES:
            seconds, res = _timed(lambda q=q: retriever.search(q, store, k=10, index=flat), repeat=2)
            t_flat.append(seconds)
            agree.append(len(set(res.indices.tolist()) & set(exact[q].indices.tolist())) / 10)
        ratio = np.mean(t_exact) / np.mean(t_flat)
        print(
            f"FAISS flat: build {build_s:.1f} s; {np.mean(t_flat):.3f} s per query; exact/flat latency "
            f"ratio {ratio:.1f}x; top-10 agreement with exact {np.mean(agree):.3f}",
            flush=True,
        )
        out.update(
            exact_s=float(np.mean(t_exact)),
            flat_s=float(np.mean(t_flat)),
            flat_build_s=build_s,
            exact_over_flat=float(ratio),
            flat_agreement=float(np.mean(agree)),
        )

        rng = np.random.default_rng(1)
        probes = (
            centres[rng.integers(0, len(centres), 200)]
            + 0.5 * rng.standard_normal((200, args.dim)).astype(np.float32) / args.dim**0.5
        )
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        _, truth = flat.search(probes, 10)
        flat = None
        gc.collect()

        build_s, ivf = _timed(lambda: FaissIndex.build(store, None, kind="ivf", nlist=args.nlist, save=False))
        print(f"FAISS IVF: nlist {ivf.info['nlist']}, build {build_s:.1f} s", flush=True)
        out.update(ivf_build_s=build_s, nlist=ivf.info["nlist"], ivf=[])
        for nprobe in args.nprobe:
            ivf.index.nprobe = nprobe
            search_s, (_, found) = _timed(lambda: ivf.search(probes, 10))
            vec_recall = float(
                np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
            )
            t_q, q_recall = [], []
            for q in QUERIES:
                seconds, res = _timed(lambda q=q: retriever.search(q, store, k=10, index=ivf), repeat=2)
                t_q.append(seconds)
                q_recall.append(len(set(res.indices.tolist()) & set(exact[q].indices.tolist())) / 10)
            row = {
                "nprobe": nprobe,
                "vector_recall10": vec_recall,
                "query_recall10": float(np.mean(q_recall)),
                "query_s": float(np.mean(t_q)),
                "vector_search_ms": 1000 * search_s / len(probes),
            }
            out["ivf"].append(row)
            print(
                f"  nprobe {nprobe:>3}: vector recall@10 {vec_recall:.3f}, query recall@10 "
                f"{row['query_recall10']:.3f}, {row['query_s']:.3f} s per query "
                f"(exact/IVF {np.mean(t_exact) / row['query_s']:.1f}x)",
                flush=True,
            )
        ok = [r for r in out["ivf"] if r["vector_recall10"] >= 0.95 and r["query_recall10"] >= 0.95]
        if ok:
            print(
                f"chosen nprobe {ok[0]['nprobe']}: recall@10 {ok[0]['vector_recall10']:.3f} (vectors), "
                f"{ok[0]['query_recall10']:.3f} (queries); target >= 0.95"
            )
        ivf = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
