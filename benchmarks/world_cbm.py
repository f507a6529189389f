"""Concept bottleneck models on the concept world: accuracy next to a dense probe, sparsity, top concepts.

Usage::

    python benchmarks/world_cbm.py [--n-train 3000] [--n-val 1000] [--n-test 2000] [--json out.json]

For each (backbone, task): the backbone is aligned to the tiny CLIP on the first ``n_train`` training
images, a sparse concept bottleneck over the ``world`` vocabulary is fitted on the same images, its
sparsity chosen on ``world:val``; accuracies are on ``world:test``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from t2c_captum.cbm import ConceptBottleneck, labelled_features
from t2c_captum.concepts import ConceptBank
from t2c_captum.features import extract_features
from t2c_captum.world.adapters import fit_world_aligner, world_source

RUNS = [("world-cnn", "shape"), ("world-ae", "shape"), ("world-ae", "colour")]


def run(backbone: str, task: str, n_train: int, n_val: int, n_test: int) -> dict:
    start = time.perf_counter()
    bb, space, aligner = fit_world_aligner(backbone, n_train)
    bank = ConceptBank.from_vocabulary(space, "world")

    def store(split: str, n: int):
        return extract_features(world_source(split, n, task), {"source": bb}, progress=False)

    cbm = ConceptBottleneck(bank, aligner).fit_stores(store("train", n_train), store("val", n_val))
    x, y, _ = labelled_features(store("test", n_test), aligner)
    rep = cbm.report(k=3)
    own = {c: c in dict(rep.top_concepts[c]) for c in rep.class_names}
    return {
        "backbone": backbone,
        "task": task,
        "test_accuracy": cbm.score(x, y),
        "probe_test_accuracy": cbm.probe_score(x, y),
        "val_accuracy": rep.val_accuracy,
        "probe_val_accuracy": rep.probe_val_accuracy,
        "C": rep.C,
        "nnz": rep.nnz,
        "nnz_per_class": rep.nnz_per_class,
        "n_concepts": len(rep.concepts),
        "top3": rep.top_concepts,
        "own_word_in_top3": own,
        "path": [(p.C, p.val_accuracy, p.nnz) for p in rep.path],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [run(b, t, args.n_train, args.n_val, args.n_test) for b, t in RUNS]
    print(f"world vocabulary, train {args.n_train} / val {args.n_val} / test {args.n_test} images\n")
    print(
        f"{'backbone':10} {'task':7} {'CBM':>6} {'probe':>6} {'gap':>6} {'nnz':>5} {'max/class':>9} {'C':>7}"
    )
    for r in results:
        gap = 100 * (r["probe_test_accuracy"] - r["test_accuracy"])
        print(
            f"{r['backbone']:10} {r['task']:7} {100 * r['test_accuracy']:6.1f} "
            f"{100 * r['probe_test_accuracy']:6.1f} {gap:6.1f} {r['nnz']:5d} "
            f"{max(r['nnz_per_class'].values()):9d} {r['C']:7.3g}"
        )
    for r in results:
        print(f"\n{r['backbone']} / {r['task']}: top 3 concepts per class (weight)")
        for cls, tops in r["top3"].items():
            mark = (
                ""
                if r["task"] not in ("shape", "colour")
                else ("  ok" if r["own_word_in_top3"][cls] else "  MISSING")
            )
            print(f"  {cls:9} " + ", ".join(f"{c} {w:+.2f}" for c, w in tops) + mark)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
