"""Do concept scores mean what they say? Per factor value of the concept world: mean score of its
concept on images that have it minus the mean on images that do not (and the ROC AUC), for the tiny
CLIP's own embeddings and for each backbone aligned to it; first for the raw cosine scores
(``concept_scores``), then for contrast scores (``contrast_scores``: the margin over the best other
value of the same factor).

    python benchmarks/world_concepts.py [--n-train 4000] [--n-test 2000]
"""

from __future__ import annotations

import argparse
import time

from sklearn.metrics import roc_auc_score

from t2c_captum.concepts import ConceptBank, concept_scores
from t2c_captum.concepts.scores import contrast_scores
from t2c_captum.features import extract_features
from t2c_captum.world.adapters import WORLD_BACKBONES, fit_world_aligner, world_concepts, world_source
from t2c_captum.world.checks import factor_value_gaps, factor_value_masks


def separation(scores, samples, bank) -> dict[str, tuple[float, float]]:
    """Concept → (mean gap, AUC) between images with and without its factor value."""
    gaps = factor_value_gaps(scores, bank, samples)
    return {
        concept: (gaps[concept], float(roc_auc_score(has, scores[:, bank.index(concept)].numpy())))
        for concept, has in factor_value_masks(samples).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    args = parser.parse_args()
    start = time.perf_counter()
    fitted = {name: fit_world_aligner(name, args.n_train) for name in WORLD_BACKBONES}
    space = next(iter(fitted.values()))[1]
    bank = ConceptBank.from_vocabulary(space, "world")
    source = world_source("test", n=args.n_test)
    encoders = {"world-clip": space, **{name: bb for name, (bb, _, _) in fitted.items()}}
    store = extract_features(source, encoders, progress=False).load(list(encoders))
    samples = source.items.samples
    raw = {"world-clip": concept_scores(store["world-clip"], bank)}
    for name, (_, _, aligner) in fitted.items():
        raw[name] = concept_scores(store[name], bank, aligner)
    by_factor: dict[str, list[str]] = {}
    for concept, (factor, _) in world_concepts().items():
        by_factor.setdefault(factor, []).append(concept)
    for title, transform in (("raw cosine scores", None), ("contrast scores", contrast_scores)):
        results = {
            name: separation(transform(scores, bank) if transform else scores, samples, bank)
            for name, scores in raw.items()
        }
        print(f"\n{title}\n")
        print(f"| factor | {' | '.join(f'{m} gap>0 / min AUC' for m in results)} |")
        print("|---" * (len(results) + 1) + "|")
        for factor, concepts in by_factor.items():
            cells = []
            for res in results.values():
                ok = sum(res[c][0] > 0 for c in concepts)
                cells.append(f"{ok}/{len(concepts)} / {min(res[c][1] for c in concepts):.2f}")
            print(f"| {factor} | {' | '.join(cells)} |")
        for name, res in results.items():
            total = sum(g > 0 for g, _ in res.values())
            worst = sorted(res.items(), key=lambda kv: kv[1][0])[:3]
            print(f"{name}: {total}/{len(res)} concepts score higher with their factor value; "
                  f"lowest gaps: {', '.join(f'{c} {g:+.3f}' for c, (g, _) in worst)}")
    print(f"({time.perf_counter() - start:.0f} s; n_train {args.n_train}, n_test {args.n_test})")


if __name__ == "__main__":
    main()
