"""Precision@k of text-constrained retrieval on the concept world's known-answer queries.

Fits closed-form aligners from each of the world's non-CLIP backbones to its tiny CLIP,
extracts features of world:test (2000 images), and searches them for each query of
``t2c_captum.world.tasks.RETRIEVAL_QUERIES`` with the "world" vocabulary's concepts; the CLIP's own
image embeddings are searched as the reference. The default scores each concept by contrast (its
cosine minus the best cosine among the other values of its factor, > 0); the other variants apply
one threshold to every concept. Prints markdown tables (docs/retrieval.md).

    python benchmarks/world_retrieval.py [--n-train 3000] [--n-test 2000] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from t2c_captum.concepts import ConceptBank
from t2c_captum.features import extract_features
from t2c_captum.retrieval import Retriever, cosine, quantile, zscore
from t2c_captum.world.adapters import WORLD_BACKBONES, fit_world_aligner, world_source
from t2c_captum.world.dataset import WorldDataset
from t2c_captum.world.tasks import RETRIEVAL_QUERIES, answer_set

#: (name, Retriever options) compared; the first is the library's default.
VARIANTS: list[tuple[str, dict]] = [
    ("contrast>0 where grouped (default)", {}),
    ("z>0, centred", {"default_threshold": zscore(0.0)}),
    ("z>0, uncentred", {"default_threshold": zscore(0.0), "centre": False}),
    ("z>1, centred", {"default_threshold": zscore(1.0)}),
    ("q0.8, centred", {"default_threshold": quantile(0.8)}),
    ("cosine>0.2", {"default_threshold": cosine(0.2)}),
]


def precision(ranked: list[int], answers: set[int], k: int) -> float:
    """Share of the first ``k`` results that are in the answer set."""
    return float(np.mean([i in answers for i in ranked[:k]]))


def measure(retriever: Retriever, store, dataset: WorldDataset) -> list[tuple[str, int, float, float]]:
    """``(query, |answers|, p@10, p@min(25, |answers|))`` per query."""
    rows = []
    for query in RETRIEVAL_QUERIES:
        answers = answer_set(query, dataset)
        k25 = min(25, len(answers))
        ranked = retriever.search(query.text, store, k=max(10, k25)).indices.tolist()
        p10, p25 = precision(ranked, answers, 10), precision(ranked, answers, k25)
        rows.append((query.text, len(answers), p10, p25))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="Folder for feature stores (reused).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="t2c-retrieval-"))
    source = world_source("test", n=args.n_test)
    dataset = source.items
    results: dict[str, dict[str, list]] = {}
    space = None
    for name in WORLD_BACKBONES:
        bb, space, aligner = fit_world_aligner(name, args.n_train, store_dir=str(work / f"{name}-train"))
        encoders = {"source": bb, "target": space} if name == "world-ae" else {"source": bb}
        store = extract_features(source, encoders, store=work / f"{name}-test", progress=False)
        bank = ConceptBank.from_vocabulary(space, "world")
        results[name] = {v: measure(Retriever(bank, aligner, **o), store, dataset) for v, o in VARIANTS}
        if name == "world-ae":
            results["CLIP (reference)"] = {
                v: measure(Retriever(bank, key="target", **o), store, dataset) for v, o in VARIANTS
            }
    default = VARIANTS[0][0]
    names = list(results)
    print(f"precision@10 / precision@min(25, |answers|), world:test n={args.n_test}, "
          f"aligners fitted on {args.n_train} train images, default settings\n")
    print("| query | answers | " + " | ".join(names) + " |")
    print("| --- | ---: |" + " ---: |" * len(names))
    for i, query in enumerate(RETRIEVAL_QUERIES):
        cells = [f"{results[n][default][i][2]:.1f} / {results[n][default][i][3]:.2f}" for n in names]
        print(f"| `{query.text}` | {results[names[0]][default][i][1]} | " + " | ".join(cells) + " |")
    means = [np.mean([r[2] for r in results[n][default]]) for n in names]
    means25 = [np.mean([r[3] for r in results[n][default]]) for n in names]
    cells = [f"**{a:.2f} / {b:.2f}**" for a, b in zip(means, means25, strict=True)]
    print("| **mean** | | " + " | ".join(cells) + " |\n")
    print("mean precision@10 / precision@min(25, |answers|) per scoring variant\n")
    print("| variant | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for variant, _ in VARIANTS:
        cells = [f"{np.mean([r[2] for r in results[n][variant]]):.2f} / "
                 f"{np.mean([r[3] for r in results[n][variant]]):.2f}" for n in names]
        print(f"| {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
