"""The Captum bridge measured on the concept world (ground truth known):

* pixel attribution: share of concept-map maxima on the object (pointing game) and share of the
  map's mass inside the object mask, for colour and shape concepts;
* named attributions: for world-cnn's correct predictions, is the true shape among the top-3 names
  of its Captum feature attribution;
* text-CAV TCAV per shape class (world-cnn aligned at an inner layer, so scores are graded);
* neuron naming: does a unit's name through the aligner match the factor value it is most
  selective for (measured on labels)?

    python benchmarks/world_explain.py [--n-train 3000] [--n-test 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from t2c_captum.concepts import ConceptBank
from t2c_captum.explain import (
    ConceptProbe,
    name_units,
    text_tcav,
)
from t2c_captum.world.adapters import fit_world_aligner, world_concepts, world_source
from t2c_captum.world.checks import concept_maps_by_value, named_shape_hits, object_masks, unit_selectivity
from t2c_captum.world.generator import FACTORS

RANDOM_TEXTS = ["one", "two", "three", "small", "large", "on the left", "in the centre", "on the right"]


def pixel_rows(models: dict, bank: ConceptBank, samples: list, images: torch.Tensor) -> list[str]:
    masks = object_masks(samples)
    rows = []
    for label, (backbone, aligner, factor) in models.items():
        probe = ConceptProbe(backbone, aligner, bank, list(FACTORS[factor]))
        point, mass = [], []
        for idx, maps in concept_maps_by_value(probe, images, samples, factor):
            point += maps.pointing_game(masks[idx]).tolist()
            mass += maps.mass_inside(masks[idx]).tolist()
        rows.append(f"| {label} | {factor} | {np.mean(point):.3f} | {np.mean(mass):.3f} | "
                    f"{masks.float().mean():.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=300)
    args = parser.parse_args()
    start = time.perf_counter()
    cnn, space, cnn_al = fit_world_aligner("world-cnn", args.n_train)
    ae, _, ae_al = fit_world_aligner("world-ae", args.n_train)
    inner, _, inner_al = fit_world_aligner("world-cnn", args.n_train, layer="encoder.trunk")
    bank = ConceptBank.from_vocabulary(space, "world")
    samples = world_source("test", n=args.n_test).items.samples
    images = torch.stack([cnn.preprocess(world_source("test", n=args.n_test).items.image(i))
                          for i in range(args.n_test)])
    print("## Pixel attribution (integrated gradients, zero baseline)\n")
    print("| model | concepts | pointing game | mass inside | object share of image |\n|---|---|---|---|---|")
    models = {"world-cnn aligned": (cnn, cnn_al, "shape"), "world-ae aligned": (ae, ae_al, "colour"),
              "tiny CLIP itself": (space, None, "shape"), "tiny CLIP itself ": (space, None, "colour")}
    print("\n".join(pixel_rows(models, bank, samples, images)))
    hits = named_shape_hits(cnn, cnn_al, bank, samples, images)
    hit, n = float(np.mean(hits)), len(hits)
    print(f"\n## Named attributions\n\nworld-cnn correct predictions (n={n}): true shape in the top 3 "
          f"names of the attribution: {hit:.3f}\n")
    print("## Text-CAV TCAV (world-cnn aligned at encoder.trunk, 40 images per class)\n")
    print("| class | own shape: mean TCAV (p) | 'red' (p) | 'striped background' (p) | null mean |")
    print("|---|---|---|---|---|")
    truth = np.array([s.shape for s in samples])
    for ci, shape in enumerate(FACTORS["shape"]):
        idx = np.flatnonzero(truth == shape)[:40]
        res = text_tcav(inner, inner_al, bank, [shape, "red", "striped background"], images[idx], ci,
                        random_texts=RANDOM_TEXTS)
        cells = [f"{res.mean(c):.2f} ({res.p_values[c]:.3g})" for c in (shape, "red", "striped background")]
        print(f"| {shape} | {' | '.join(cells)} | {np.mean(res.random_scores):.2f} |")
    print("\n## Neuron naming (world-cnn aligned at encoder.trunk)\n")
    with torch.no_grad():
        unit_feats = inner(images)
    selective = unit_selectivity(unit_feats, samples)
    named = name_units(inner_al, bank, probe_features=unit_feats, k=1)
    concept_of = world_concepts()
    by_aligner = [concept_of[row[0][0]] for row in named.by_aligner]
    by_examples = [concept_of[row[0][0]] for row in named.by_examples or []]
    for label, names in (("through the aligner", by_aligner), ("from top images", by_examples)):
        value = np.mean([a == b for a, b in zip(names, selective, strict=True)])
        factor = np.mean([a[0] == b[0] for a, b in zip(names, selective, strict=True)])
        print(f"- names {label}: same factor value as the unit's most selective one {value:.3f} "
              f"(chance {1 / len(concept_of):.3f}); same factor {factor:.3f}")
    print(f"\n({time.perf_counter() - start:.0f} s; n_train {args.n_train}, n_test {args.n_test})")


if __name__ == "__main__":
    main()
