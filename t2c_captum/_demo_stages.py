"""The demo's second half: every capability built on the aligners, judged on the concept world's truth."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

__all__ = ["capability_checks"]


def _row(capability: str, measured: str, target: str, passed: bool, seconds: float) -> dict[str, Any]:
    return {"capability": capability, "measured": measured, "target": target, "passed": bool(passed),
            "seconds": round(seconds, 1)}


def _concept_scores(bank: Any, store: Any, source: Any, aligners: dict, names: list[str]) -> dict:
    from .concepts import concept_scores, contrast_scores
    from .world.checks import factor_value_gaps

    t0 = time.perf_counter()
    feats = store.load(names)
    raw: dict[str, int] = {}
    contrast: dict[str, int] = {}
    for name in names:
        scores = concept_scores(feats[name], bank, aligners[name])
        for counts, s in ((raw, scores), (contrast, contrast_scores(scores, bank))):
            counts[name] = sum(g > 0 for g in factor_value_gaps(s, bank, source.items.samples).values())
    n = len(bank)
    text = ("cosine: " + ", ".join(f"{k} {v}/{n}" for k, v in raw.items())
            + "; contrast: " + ", ".join(f"{k} {v}/{n}" for k, v in contrast.items()))
    passed = max(raw.values()) == n and min(contrast.values()) == n
    return _row("concept scores: factor values scoring higher where present", text,
                f"all {n}: by cosine for an aligned backbone, by contrast for every one", passed,
                time.perf_counter() - t0)


def _cbm(bank: Any, train: Any, test: Any, aligner: Any, key: str) -> dict:
    from .cbm import ConceptBottleneck

    t0 = time.perf_counter()
    data = train.load([key])
    x, y = data[key], data["labels"].numpy()
    val = aligner.holdout(data["indices"]).numpy()
    cbm = ConceptBottleneck(bank, aligner, max_nonzero_per_class=10)
    cbm.fit(x[~val], y[~val], x[val], y[val], class_names=train.class_names)
    t = test.load([key])
    result = cbm.evaluate(t[key], t["labels"].numpy())
    gap = result["probe_accuracy"] - result["accuracy"]
    report = cbm.report()
    own = sum(c in [w for w, _ in report.top_concepts[c][:3]] for c in report.class_names)
    text = (f"{key} shape: CBM {100 * result['accuracy']:.1f}% vs probe "
            f"{100 * result['probe_accuracy']:.1f}%, {report.nnz} weights, own word in top 3 for "
            f"{own}/{len(report.class_names)} classes")
    return _row("label-free CBM", text, "within 3 pts of the probe; own shape word in top 3",
                gap <= 0.03 and own == len(report.class_names), time.perf_counter() - t0)


def _shift(bank: Any, backbone: Any, aligner: Any, n: int) -> dict:
    from .data import open_source
    from .shift import diagnose_shift
    from .world.tasks import SHIFT_TASKS, concept_term, null_pair

    t0 = time.perf_counter()
    parts, ok = [], True
    for task in [t for t in SHIFT_TASKS if t.strength == 0.5]:
        a, b = task.make(n=n)
        report = diagnose_shift(open_source(a), open_source(b), bank, aligner, backbone, progress=False)
        concept = concept_term(task.factor, task.value)
        row = report.row(concept)
        first = report.rank(concept) == 1 and row.q < 0.01
        ok &= first
        parts.append(f"{concept} #{report.rank(concept)}")
    a, b = null_pair(n=n)
    null = diagnose_shift(open_source(a), open_source(b), bank, aligner, backbone, progress=False)
    flagged = len(null.significant(0.05))
    parts.append(f"null pair: {flagged} flagged")
    return _row("shift diagnosis (strength 0.5)", ", ".join(parts),
                "injected concept first with q<0.01; null pair clean", ok and flagged == 0,
                time.perf_counter() - t0)


def _retrieval(bank: Any, store: Any, source: Any, aligners: dict, names: list[str]) -> dict:
    from .retrieval import Retriever
    from .world.tasks import RETRIEVAL_QUERIES, answer_set

    t0 = time.perf_counter()
    precision = {}
    for name in names:
        hits = []
        for query in RETRIEVAL_QUERIES:
            truth = answer_set(query, source.items)
            found = Retriever(bank, aligners[name], key=name).search(query.text, store, k=10).indices
            hits.append(np.mean([int(i) in truth for i in found]))
        precision[name] = float(np.mean(hits))
    text = ", ".join(f"{n} {p:.2f}" for n, p in precision.items())
    return _row("retrieval: mean precision@10 over 8 known-answer queries", text,
                ">= 0.9 (an aligned backbone)", max(precision.values()) >= 0.9, time.perf_counter() - t0)


def _explain(bank: Any, backbone: Any, aligner: Any, source: Any, n: int) -> dict:
    from .explain import ConceptProbe
    from .world.checks import concept_maps_by_value, object_masks
    from .world.generator import FACTORS

    t0 = time.perf_counter()
    samples = source.items.samples[:n]
    images = torch.stack([backbone.preprocess(source.items.image(i)) for i in range(len(samples))])
    masks = object_masks(samples)
    probe = ConceptProbe(backbone, aligner, bank, list(FACTORS["shape"]))
    hits = []
    for idx, maps in concept_maps_by_value(probe, images, samples, "shape", n_steps=16):
        hits += maps.pointing_game(masks[idx]).tolist()
    share = float(np.mean(hits))
    return _row("Captum: shape concept maps point at the object", f"world-cnn pointing game {share:.2f}",
                ">= 0.80", share >= 0.8, time.perf_counter() - t0)


def _decoder(
    space: Any, backbones: dict, aligners: dict, store: Any, source: Any, n: int, n_shift: int
) -> list[dict]:
    from .decoders import caption_embeddings
    from .world.decoder import caption_accuracy, world_decoder, world_shift_captions
    from .world.tasks import SHIFT_TASKS

    t0 = time.perf_counter()
    decoder = world_decoder()
    names = list(backbones)
    feats = store.load([space.name, *names])
    samples = source.items.samples[:n]
    clip = caption_accuracy(caption_embeddings(decoder, feats[space.name][:n]), samples)
    aligned = {
        name: caption_accuracy(
            caption_embeddings(decoder, aligners[name].transform(feats[name][:n])), samples
        )
        for name in names
    }
    t1 = time.perf_counter()

    def pct(acc: dict) -> str:
        return f"{100 * acc['all']:.0f}% (shape {100 * acc['shape']:.0f}, colour {100 * acc['colour']:.0f})"

    rows = [
        _row("concept-to-text: captions of the tiny CLIP's image embeddings name shape and colour",
             f"{pct(clip)} of {len(samples)} test images", ">= 85%", clip["all"] >= 0.85, t1 - t0),
        _row("concept-to-text: captions of aligned features name shape and colour",
             ", ".join(f"{k} {pct(v)}" for k, v in aligned.items()), ">= 80% (an aligned backbone)",
             max(v["all"] for v in aligned.values()) >= 0.80, 0.0),
    ]
    parts, missed_by = [], {}
    for name in ("world-vit", "world-ae"):  # world-vit carries every factor; world-ae little shape or pattern
        shifts = world_shift_captions(decoder, backbones[name], aligners[name],
                                      [t for t in SHIFT_TASKS if t.strength == 0.5], n=n_shift)
        missed_by[name] = [r["task"] for r in shifts if not r["named"]]
        part = f"{name} {len(shifts) - len(missed_by[name])}/{len(shifts)}"
        parts.append(part + (f" (missed {', '.join(missed_by[name])})" if missed_by[name] else ""))
    rows.append(_row("concept-to-text: shift directions (strength 0.5) name the shifted value",
                     ", ".join(parts), "all (world-vit, the backbone that carries every factor)",
                     not missed_by["world-vit"], time.perf_counter() - t1))
    return rows


def capability_checks(
    space: Any, backbones: dict, aligners: dict, train: Any, test: Any, test_source: Any, n_shift: int = 500
) -> list[dict[str, Any]]:
    """Concept scores, CBM, shift, retrieval, Captum maps and concept-to-text on the demo's stores and
    aligners."""
    from .concepts import ConceptBank

    bank = ConceptBank.from_vocabulary(space, "world")
    names = list(backbones)
    return [
        _concept_scores(bank, test, test_source, aligners, names),
        _cbm(bank, train, test, aligners["world-cnn"], "world-cnn"),
        _shift(bank, backbones["world-ae"], aligners["world-ae"], n_shift),
        _retrieval(bank, test, test_source, aligners, names),
        _explain(bank, backbones["world-cnn"], aligners["world-cnn"], test_source, 60),
        *_decoder(space, backbones, aligners, test, test_source, 500, n_shift),
    ]
