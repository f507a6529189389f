"""The Captum bridge measured on the concept world (ground truth known):

* pixel attribution: share of concept-map maxima on the object (pointing game) and share of the
  map's mass inside the object mask, for colour and shape concepts;
* named attributions: for world-cnn's correct predictions, is the true shape among the top-3 names
  of its Captum feature attribution;
* TCAV per shape class (world-cnn aligned at an inner layer, so scores are graded) with text CAVs
  from probe images, image-trained CAVs and readout CAVs, against each concept's measured effect;
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
    cav_similarity,
    image_tcav,
    name_units,
    text_tcav,
)
from t2c_captum.world.adapters import fit_world_aligner, world_concepts, world_source
from t2c_captum.world.checks import (
    concept_maps_by_value,
    intervention_effect,
    named_shape_hits,
    object_masks,
    sibling_concepts,
    unit_selectivity,
)
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


def _cell(result, concept: str) -> str:
    return f"{result.mean(concept):.2f}{'*' if concept in result.significant else ''}"


def tcav_section(backbone, aligner, space, bank: ConceptBank, samples: list, images: torch.Tensor) -> None:
    """TCAV per shape class by three CAV routes, against the measured effect of each concept."""
    probe = world_source("val", n=1000).items
    probe_x = torch.stack([backbone.preprocess(probe.image(i)) for i in range(len(probe))])
    with torch.no_grad():
        probe_f = backbone(probe_x)
    concept_of, siblings = world_concepts(), sibling_concepts()
    unrelated = ["on the left", "on the right"]
    print("## Text-CAV TCAV (world-cnn aligned at encoder.trunk, 40 images per class, 1,000 probe "
          "images from world:val, 20 runs)\n")
    print("TCAV score (* = significant, p < 0.05) by CAV route — **text**: probe images that read as "
          "the concept through the aligner; **images**: probe images labelled with the concept "
          "(ground truth); **readout**: the aligner's readout direction `Wᵀ(t − t_random)` — next to "
          "the measured effect: the share of the class's images whose logit rises when the concept "
          "is set, everything else unchanged.\n")
    print("| class | concept | text | images | readout | effect: share rising (mean Δlogit) |")
    print("|---|---|---|---|---|---|")
    truth = np.array([s.shape for s in samples])
    tally: dict[str, list[int]] = {"own": [], "text": [], "images": [], "readout": []}
    cosines: dict[str, list[float]] = {}
    for ci, shape in enumerate(FACTORS["shape"]):
        idx = np.flatnonzero(truth == shape)[:40]
        concepts = [shape, "red", "striped background", *unrelated]
        text = text_tcav(backbone, aligner, bank, concepts, images[idx], ci, probe_features=probe_f,
                         contrast=siblings)
        examples = {c: probe_f[[i for i, s in enumerate(probe.samples)
                                if getattr(s, concept_of[c][0]) == concept_of[c][1]]] for c in concepts}
        imaged = image_tcav(backbone, examples, probe_f, images[idx], ci)
        readout = text_tcav(backbone, aligner, bank, concepts, images[idx], ci,
                            random_texts=[t for t in RANDOM_TEXTS if t not in concepts])
        tally["own"].append(int(text.mean(shape) >= 0.8 and shape in text.significant))
        for c in concepts:
            factor, value = concept_of[c]
            effect = ("(the class itself)" if factor == "shape" else "{1:.2f} ({0:+.2f})".format(
                *intervention_effect(backbone.model, backbone.preprocess,
                                     [samples[i] for i in idx], factor, value, ci)))
            cells = " | ".join(_cell(r, c) for r in (text, imaged, readout))
            print(f"| {shape} | {c} | {cells} | {effect} |")
            key = c if factor != "shape" else "own shape"
            cosines.setdefault(f"text {key}", []).append(cav_similarity(text.cavs[c], imaged.cavs[c]))
            cosines.setdefault(f"readout {key}", []).append(cav_similarity(readout.cavs[c], imaged.cavs[c]))
            if c in unrelated:
                for name, res in (("text", text), ("images", imaged), ("readout", readout)):
                    tally[name].append(int(c in res.significant))
    n = len(tally["text"])
    print(f"\nOwn shape concept >= 0.8 and significant (text route): {sum(tally['own'])}/6 classes.")
    print(f"Unrelated concepts ({', '.join(unrelated)}; a global-pooling shape classifier barely "
          f"responds to where objects are) significant: text {sum(tally['text'])}/{n}, images "
          f"{sum(tally['images'])}/{n}, readout {sum(tally['readout'])}/{n}.")
    print("\nCosine with the image-trained CAV (mean over classes):\n")
    print("| concept | text CAV | readout CAV |\n|---|---|---|")
    for key in [k.removeprefix("text ") for k in cosines if k.startswith("text ")]:
        text_cos, readout_cos = np.mean(cosines["text " + key]), np.mean(cosines["readout " + key])
        print(f"| {key} | {text_cos:+.2f} | {readout_cos:+.2f} |")


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
    tcav_section(inner, inner_al, space, bank, samples, images)
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
