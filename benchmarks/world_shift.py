"""Concept shift diagnosis on the concept world's injected shifts: is the injected concept found?

For every standard shift pair (``t2c_captum.world.tasks.SHIFT_TASKS``: the target over-represents
red / star / striped / noisy background at strength 0.25, 0.5, 0.9) and the null pair, the report of
:func:`t2c_captum.shift.diagnose_shift` over the "world" vocabulary (31 concepts) is computed with

* every world backbone (world-cnn, world-ae, world-vit), aligned to the tiny CLIP (closed-form
  aligner, 3000 training images);
* the tiny CLIP's own image embeddings (no aligner), as the reference.

Printed per pair and encoder: the injected concept's rank among all rows (significant rows by
|effect|, the default effect size being Glass's delta), among the rows that go up (more in the
target), and among all rows when ranked by Hedges' g instead; its q-value and effect sizes; for the
null pair, how many concepts have q < 0.05.

    python benchmarks/world_shift.py            # n=1000 images per side, about 5 minutes on 2 cores
    python benchmarks/world_shift.py --n 600 --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import time
import warnings
from pathlib import Path

import torch

from t2c_captum.world.adapters import WORLD_BACKBONES


def weights_id() -> str:
    """Short hashes of the world weights in use (they are retrained from time to time)."""
    folder = Path(__import__("t2c_captum.world", fromlist=["x"]).__file__).parent / "weights"
    return ", ".join(
        f"{name}={hashlib.sha256((folder / f'{name}.safetensors').read_bytes()).hexdigest()[:10]}"
        for name in ("world-clip", *WORLD_BACKBONES)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="images per side of each pair")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pairs")
    parser.add_argument("--n-train", type=int, default=3000, help="aligner training images")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from t2c_captum.concepts import ConceptBank
    from t2c_captum.data import from_dataset
    from t2c_captum.shift import diagnose_shift
    from t2c_captum.world.adapters import fit_world_aligner
    from t2c_captum.world.tasks import SHIFT_TASKS, concept_term, null_pair

    start = time.perf_counter()
    encoders = {}
    for name in WORLD_BACKBONES:
        backbone, space, aligner = fit_world_aligner(name, args.n_train)
        encoders[name] = (backbone, aligner)
    encoders["world-clip (own)"] = (space, None)
    bank = ConceptBank.from_vocabulary(space, "world")
    print(f"weights: {weights_id()}; n={args.n} per side, seed={args.seed}, {len(bank)} concepts")

    def report(pair, effect="glass"):
        a, b = pair
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for name, (encoder, aligner) in encoders.items():
                out[name] = diagnose_shift(from_dataset(a, name=a.split), from_dataset(b, name=b.split),
                                           bank, aligner, encoder, effect=effect)
        return out

    print("| task | encoder | rank | rank among up | q | Glass's delta | top row | rank by g | g |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in SHIFT_TASKS:
        term = concept_term(task.factor, task.value)
        pair = task.make(n=args.n, seed=args.seed)
        by_g = report(pair, "hedges")
        for name, rep in report(pair).items():
            row = rep.row(term)
            up = [r.concept for r in rep.top(len(rep.rows), direction="up")]
            rank_up = up.index(term) + 1 if term in up else "-"
            first = rep.rows[0]
            print(f"| {task.name} | {name} | {rep.rank(term)} | {rank_up} | {row.q:.1e} | {row.effect:+.2f} "
                  f"| {first.concept} ({first.effect:+.2f}) | {by_g[name].rank(term)} "
                  f"| {by_g[name].row(term).effect:+.2f} |", flush=True)
    print()
    print("| null pair | encoder | concepts with q < 0.05 | smallest q | largest abs(delta) |")
    print("| --- | --- | --- | --- | --- |")
    for name, rep in report(null_pair(n=args.n, seed=args.seed)).items():
        print(f"| null | {name} | {len(rep.significant(0.05))} | {min(r.q for r in rep.rows):.2f} "
              f"| {max(abs(r.effect) for r in rep.rows):.2f} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
