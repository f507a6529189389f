"""The sections of a concept report: small builders, each producing its section or a note.

A builder takes the :class:`ReportContext` and returns a :class:`Section`. When the capability or
the input it needs is missing, it returns ``Section.missing(...)``, whose note says which input would
enable it; the page then shows the note instead of failing. Adding a section is one function plus
one template ``templates/sections/ID.html.j2``, appended to :data:`SECTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..features.options import ExtractOptions
from .assets import Assets, Figure

__all__ = ["SECTIONS", "ReportContext", "ReportOptions", "Section"]


@dataclass
class ReportOptions:
    """What the caller asked for, beyond the aligner and the images."""

    compare_data: str | None = None
    cbm: str | None = None
    queries: list[str] = field(default_factory=list)
    decoder: str | None = None
    n_samples: int = 8
    n_maps: int = 4
    map_method: str = "integrated_gradients"
    top_k: int = 5
    #: how the report's images and ``compare_data`` are extracted
    extraction: ExtractOptions = field(default_factory=lambda: ExtractOptions(progress=False))


@dataclass
class ReportContext:
    """Everything the section builders share, computed once.

    Attributes:
        aligned: aligner, backbone and space (:class:`~t2c_captum.probes.AlignedData`).
        data: the dataset spec, as given.
        source: the images (an :class:`~t2c_captum.data.ImageSource`).
        store: their feature store (keys ``source`` and ``target``).
        features: ``[N, d]`` backbone features in dataset order; ``indices`` their dataset indices.
        labels: ``[N]`` class of each row (-1: none), or ``None`` when the images are unlabelled.
        class_names: the names of the labels, or ``None``.
        bank: the concept bank; ``scores`` ``[N, K]`` cosines of every image with every concept.
        assets: where thumbnails and figures go.
        facts: figures worth keeping in ``report.json``; sections add to it.
    """

    aligned: Any
    data: str
    source: Any
    store: Any
    features: torch.Tensor
    indices: torch.Tensor
    labels: np.ndarray | None
    class_names: list[str] | None
    bank: Any
    scores: torch.Tensor
    assets: Assets
    options: ReportOptions
    evaluation: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def describe(self, row: int) -> str:
        """Alt text of image row ``row``: where it comes from and its label."""
        index = int(self.indices[row])
        label = ""
        if self.labels is not None and self.class_names and self.labels[row] >= 0:
            label = f", labelled {self.class_names[int(self.labels[row])]}"
        return f"image {index} of {self.data}{label}"


@dataclass
class Section:
    """One section of the page: ``id`` (anchor and template name), title, data for its template, or a
    note saying why it is left out and what would enable it."""

    id: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @classmethod
    def missing(cls, id: str, title: str, note: str) -> Section:
        return cls(id, title, note=note)

    @property
    def present(self) -> bool:
        return self.note is None

    @property
    def figures(self) -> list[Figure]:
        return [f for f in self.data.get("figures", []) if isinstance(f, Figure)]


Builder = Callable[[ReportContext], Section]


def _fmt_pct(value: Any) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f}%"


# ---------------------------------------------------------------------------------------- alignment
def alignment_section(ctx: ReportContext) -> Section:
    """R² and mean cosine on these images and on the aligner's own held-out rows; the ridge path."""
    from matplotlib.figure import Figure as MplFigure

    al = ctx.aligned.aligner
    stats = getattr(al, "fit_stats_", {}) or {}
    ev = ctx.evaluation
    rows = [{"where": f"these images ({ctx.data})", "n": ev.metrics.n,
             "r2": ev.metrics.r2, "mean_cosine": ev.metrics.mean_cosine}]
    for saved in stats.get("evaluations", []) or []:
        if "r2" in saved:
            rows.append({"where": f"at fit time: {saved.get('split', 'held out')}", "n": saved.get("n"),
                         "r2": saved["r2"], "mean_cosine": saved.get("mean_cosine")})
    ctx.facts.update(r2=ev.metrics.r2, mean_cosine=ev.metrics.mean_cosine)
    figures = []
    path = stats.get("alpha_path")
    if path:
        alphas, scores = zip(*[(float(a), float(s)) for a, s in path], strict=True)
        fig = MplFigure(figsize=(5.5, 3.0), layout="constrained")
        ax = fig.add_subplot()
        ax.semilogx(alphas, scores, marker="o", color="#1f4e79")
        chosen = stats.get("alpha")
        if chosen is not None:
            ax.axvline(float(chosen), color="#b03a2e", linestyle="--", label=f"chosen α = {chosen:.2g}")
            ax.legend(loc="lower left")
        ax.set_xlabel("ridge strength α")
        ax.set_ylabel("held-out R²")
        ax.set_title("choice of the ridge strength")
        best = max(scores)
        figures.append(ctx.assets.figure(
            fig, "alpha-path",
            alt=f"Line chart of held-out R² against ridge strength for {len(alphas)} values; the best "
                f"R² is {best:.3f}" + (f" at the chosen α = {float(chosen):.2g}" if chosen else "") + ".",
        ))
    r2 = ev.metrics.r2
    verdict = ("good: concept scores through this aligner can be read with confidence" if r2 >= 0.5 else
               "moderate: read concept scores as rankings, not as absolute values" if r2 >= 0.2 else
               "low: the aligned features explain little of the space; do not trust concept scores")
    return Section("alignment", "Alignment quality", {
        "identity": {
            "backbone": al.source_.get("id", "?"), "layer": al.source_.get("layer", "penultimate"),
            "space": al.target_.get("id", "?"), "kind": getattr(al, "kind", "?"),
            "n_train": stats.get("n_train"), "alpha": stats.get("alpha"),
        },
        "rows": rows, "verdict": verdict, "figures": figures,
    })


# ---------------------------------------------------------------------------------------- zero-shot
def zeroshot_section(ctx: ReportContext) -> Section:
    """Zero-shot accuracy (aligned backbone, the space itself, the backbone's own head) and a
    confusion matrix of the aligned backbone's predictions."""
    title = "Zero-shot classification"
    if ctx.labels is None or not ctx.class_names or not (ctx.labels >= 0).any():
        return Section.missing("zeroshot", title,
                               "these images have no labels: pass a labelled dataset (an ImageFolder tree "
                               "of class folders, or world:SPLIT:FACTOR) to see zero-shot accuracy and a "
                               "confusion matrix.")
    from matplotlib.figure import Figure as MplFigure
    from sklearn.metrics import ConfusionMatrixDisplay

    from ..zeroshot import ZeroShotClassifier

    clf = ZeroShotClassifier(ctx.aligned.space, ctx.class_names, getattr(ctx.source, "templates", None),
                             aligner=ctx.aligned.aligner, prompts=getattr(ctx.source, "class_prompts", None))
    keep = ctx.labels >= 0
    pred = clf.logits(ctx.features[torch.from_numpy(keep)]).argmax(1).numpy()
    truth = ctx.labels[keep]
    zs = ctx.evaluation.zero_shot
    rows = [(name, zs.get(f"{key}_top1"), zs.get(f"{key}_top5"))
            for key, name in (("aligned", "aligned backbone (backbone → aligner → text)"),
                              ("space", f"{ctx.aligned.space.name} itself (its own image encoder)"),
                              ("own_head", "the backbone's own classifier head"))
            if zs.get(f"{key}_top1") is not None]
    ctx.facts.update({k: v for k, v in zs.items()})
    n_cls = len(ctx.class_names)
    side = min(9.0, max(4.0, 0.45 * n_cls + 2.5))
    fig = MplFigure(figsize=(side, side * 0.85), layout="constrained")
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        truth, pred, labels=list(range(n_cls)), display_labels=ctx.class_names, normalize="true",
        values_format=".2f", include_values=n_cls <= 15, cmap="Blues", colorbar=False, ax=ax,
        xticks_rotation="vertical",
    )
    acc = float((pred == truth).mean())
    ax.set_title(f"aligned zero-shot, rows: true class (top-1 {100 * acc:.1f}%)")
    confused = _most_confused(truth, pred, ctx.class_names)
    alt = (f"Confusion matrix of {n_cls} classes, rows normalised; the aligned backbone's top-1 accuracy "
           f"is {100 * acc:.1f}%." + (f" Most frequent confusion: {confused}." if confused else ""))
    figure = ctx.assets.figure(fig, "confusion", alt=alt)
    return Section("zeroshot", title, {
        "task": getattr(ctx.source, "task", None), "n": int(keep.sum()), "classes": n_cls,
        "rows": [(name, _fmt_pct(t1), _fmt_pct(t5)) for name, t1, t5 in rows],
        "figures": [figure],
    })


def _most_confused(truth: np.ndarray, pred: np.ndarray, names: list[str]) -> str:
    wrong = truth != pred
    if not wrong.any():
        return ""
    pairs, counts = np.unique(np.stack([truth[wrong], pred[wrong]], 1), axis=0, return_counts=True)
    t, p = pairs[int(counts.argmax())]
    return f"{names[int(t)]} read as {names[int(p)]} ({int(counts.max())} images)"


# ------------------------------------------------------------------------------------------ samples
def _relative(ctx: ReportContext) -> torch.Tensor:
    mean = ctx.scores.mean(0, keepdim=True)
    std = ctx.scores.std(0, keepdim=True) if ctx.n > 1 else torch.ones_like(mean)
    return (ctx.scores - mean) / (std + 1e-8)


def _sample_rows(ctx: ReportContext) -> np.ndarray:
    """The rows shown as samples: ``n_samples`` spread evenly over the dataset."""
    n = min(ctx.options.n_samples, ctx.n)
    rows = np.linspace(0, ctx.n - 1, n).round().astype(int) if n else np.array([], dtype=int)
    return np.unique(rows)


def samples_section(ctx: ReportContext) -> Section:
    """Sample images with their most distinctive concepts as bars (and concept maps when Captum and
    a differentiable backbone are there)."""
    from ..concepts import summarize_scores

    k = ctx.options.top_k
    rows = _sample_rows(ctx)
    rel = _relative(ctx)
    samples = []
    for r in rows.tolist():
        top = rel[r].topk(min(k, len(ctx.bank)))
        zmax = max(float(top.values[0]), 1e-6)
        bars = [{"concept": ctx.bank.concepts[int(i)], "z": float(z), "cos": float(ctx.scores[r, int(i)]),
                 "width": max(2.0, min(100.0, 100 * float(z) / zmax))}
                for z, i in zip(top.values, top.indices, strict=True)]
        names = ", ".join(b["concept"] for b in bars[:3])
        samples.append({
            "row": r,
            "thumb": ctx.assets.thumbnail(int(ctx.indices[r]), f"{ctx.describe(r)}; reads as {names}"),
            "label": ctx.describe(r), "bars": bars, "map": None,
        })
    maps_note = _concept_maps(ctx, samples)
    summary = summarize_scores(ctx.scores, ctx.bank, k=k).ranked(limit=10)
    return Section("samples", "Sample images and their concepts", {
        "samples": samples, "k": k, "maps_note": maps_note, "summary": summary, "n": ctx.n,
        "figures": [s["map"] for s in samples if s["map"] is not None],
    })


def _concept_maps(ctx: ReportContext, samples: list[dict[str, Any]]) -> str | None:
    """Adds ``map`` (a Figure) to the first samples; returns a note when maps cannot be drawn."""
    if ctx.options.n_maps <= 0:
        return "concept maps are off (n_maps=0)."
    try:
        from ..explain import ConceptProbe, attribute_concept
        from ..explain.figures import overlay_figure
    except ImportError:
        return "concept maps need the Captum bridge: pip install captum."
    backbone = ctx.aligned.backbone
    if not isinstance(backbone, torch.nn.Module) or not hasattr(backbone, "preprocess"):
        return "concept maps need a differentiable backbone with a preprocess step."
    chosen = samples[: ctx.options.n_maps]
    by_concept: dict[str, list[dict[str, Any]]] = {}
    for s in chosen:
        by_concept.setdefault(s["bars"][0]["concept"], []).append(s)
    method = ctx.options.map_method
    for concept, group in by_concept.items():
        pil = [ctx.source.load(int(ctx.indices[s["row"]]))[0] for s in group]
        preprocess: Any = backbone.preprocess
        x = torch.stack([preprocess(img) for img in pil])
        probe = ConceptProbe(backbone, ctx.aligned.aligner, ctx.bank, [concept])
        maps = attribute_concept(probe, x, concept, method)
        for j, s in enumerate(group):
            fig = overlay_figure([pil[j]], maps.maps[j : j + 1], f"{concept}", None, 1)
            fig.set_size_inches(2.2, 2.4)
            s["map"] = ctx.assets.figure(
                fig, f"map-{s['row']}",
                alt=f"Concept map of '{concept}' ({method}) over {s['label']}: brighter pixels raised "
                    f"the '{concept}' score more.",
            )
    return None


# ---------------------------------------------------------------------------------------------- CBM
def cbm_section(ctx: ReportContext) -> Section:
    """A label-free concept bottleneck model's top concepts per class (and its accuracy here)."""
    title = "Concept bottleneck model"
    if not ctx.options.cbm:
        return Section.missing("cbm", title,
                               "no concept bottleneck model given: fit one with `t2c cbm fit` and pass "
                               "--cbm MODEL to see each class's top concepts.")
    from ..cbm import ConceptBottleneck

    model = ConceptBottleneck.load(ctx.options.cbm, aligner=ctx.aligned.aligner)
    rep = model.report(k=ctx.options.top_k)
    classes = []
    for c in rep.class_names:
        top = rep.top_concepts.get(c, [])
        wmax = max([w for _, w in top] or [1.0])
        classes.append({"name": c, "nnz": rep.nnz_per_class.get(c, 0),
                        "bars": [{"concept": w, "weight": v, "width": max(2.0, 100 * v / wmax)}
                                 for w, v in top]})
    accuracy = None
    if ctx.labels is not None and ctx.class_names and list(ctx.class_names) == list(rep.class_names):
        keep = ctx.labels >= 0
        if keep.any():
            accuracy = model.evaluate(ctx.features[torch.from_numpy(keep)], ctx.labels[keep])
            ctx.facts.update(cbm_accuracy=accuracy["accuracy"],
                             cbm_probe_accuracy=accuracy.get("probe_accuracy"))
    return Section("cbm", title, {
        "path": ctx.options.cbm, "classes": classes, "nnz": rep.nnz, "n_concepts": len(rep.concepts),
        "val_accuracy": _fmt_pct(rep.val_accuracy), "probe_val_accuracy": _fmt_pct(rep.probe_val_accuracy),
        "accuracy": None if accuracy is None else _fmt_pct(accuracy["accuracy"]),
        "probe_accuracy": None if accuracy is None else _fmt_pct(accuracy.get("probe_accuracy")),
    })


# -------------------------------------------------------------------------------------------- shift
def shift_section(ctx: ReportContext) -> Section:
    """Which concepts differ between the report's images and ``compare_data``."""
    title = "Shift between two datasets"
    other = ctx.options.compare_data
    if not other:
        return Section.missing("shift", title,
                               "no second dataset: pass --compare-data IMAGES (compare_data=...) to see "
                               "which concepts differ between the two, with a plot.")
    import warnings

    from ..shift import diagnose_shift

    store_b = ctx.options.extraction.extract(other, {"source": ctx.aligned.backbone})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        report = diagnose_shift(ctx.store, store_b, ctx.bank, ctx.aligned.aligner, ctx.aligned.backbone,
                                key="source")
    report.info.update(name_a=ctx.data, name_b=other)
    top = report.top(10)
    sig = report.significant()
    ctx.facts.update(shift_significant=len(sig), shift_tests=len(report.rows))
    shown = ", ".join(f"{r.concept} ({r.effect:+.2f})" for r in sig[:3]) or "none"
    fig = report.plot(k=12)
    figure = ctx.assets.figure(
        fig, "shift",
        alt=f"Bar chart of effect sizes of the 12 best-ranked concepts between {ctx.data} and {other}; "
            f"{len(sig)} of {len(report.rows)} concepts differ significantly; the strongest: {shown}.",
    )
    rows = [{"concept": r.concept, "a": r.mean_a, "b": r.mean_b, "effect": r.effect, "q": r.q,
             "significant": r.is_significant(report.alpha)} for r in top]
    return Section("shift", title, {
        "a": ctx.data, "b": other, "rows": rows, "n_sig": len(sig), "n_tests": len(report.rows),
        "alpha": report.alpha, "warnings": [str(w.message) for w in caught] + list(report.warnings),
        "figures": [figure],
    })


# ---------------------------------------------------------------------------------------- retrieval
def retrieval_section(ctx: ReportContext) -> Section:
    """The images that satisfy each query, as a grid of thumbnails."""
    title = "Text-constrained retrieval"
    if not ctx.options.queries:
        return Section.missing("retrieval", title,
                               "no queries: pass --query '\"red\" & ~\"striped background\"' (repeatable) "
                               "to see the images that satisfy each one.")
    from ..retrieval import Retriever, parse_query

    results = []
    for text in ctx.options.queries:
        query = parse_query(text)
        # the report's bank when it knows every concept (scores centred on it); else the query's own texts
        known = all(c in ctx.bank for c in query.concepts())
        retriever = Retriever(ctx.bank if known else ctx.aligned.space, ctx.aligned.aligner)
        found = retriever.search(query, ctx.features, k=12)
        items = []
        for row in found.rows():
            r = row["index"]
            what = "satisfies" if row["matches"] else "does not satisfy"
            items.append({
                "rank": row["rank"], "margin": row["margin"], "matches": row["matches"],
                "thumb": ctx.assets.thumbnail(int(ctx.indices[r]),
                                              f"result {row['rank']}: {ctx.describe(r)}, {what} the query"),
            })
        results.append({"query": str(found.query), "n_matching": found.n_matching,
                        "n_searched": found.n_searched, "images": items})
    return Section("retrieval", title, {"results": results})


# ----------------------------------------------------------------------------------------- captions
def captions_section(ctx: ReportContext) -> Section:
    """The sample images' aligned features decoded into captions, next to the captions of the space's
    own embeddings of the same images."""
    title = "Decoded captions"
    if not ctx.options.decoder:
        return Section.missing("captions", title,
                               "no caption decoder: pass --decoder world-decoder (a registered name), a "
                               "saved decoder or clipcap:PATH to read each sample image back as a caption.")
    from .._exceptions import T2CError
    from ..decoders import caption_embeddings, caption_features, load_decoder

    rows = _sample_rows(ctx)
    loaded = ctx.store.load(["target"])
    own = loaded["target"][torch.argsort(loaded["indices"])][torch.as_tensor(rows)]
    try:
        decoder = load_decoder(ctx.options.decoder, space=ctx.aligned.space)
        aligned = caption_features(decoder, ctx.features[torch.as_tensor(rows)], ctx.aligned.aligner)
        from_space = caption_embeddings(decoder, own)
    except T2CError as exc:
        return Section.missing("captions", title, f"the decoder {ctx.options.decoder!r} cannot caption "
                                                   f"these features: {exc}")
    items = []
    for r, caption, reference in zip(rows.tolist(), aligned, from_space, strict=True):
        items.append({
            "thumb": ctx.assets.thumbnail(int(ctx.indices[r]), f"{ctx.describe(r)}; decoded as: {caption}"),
            "label": ctx.describe(r), "aligned": caption, "space": reference,
        })
    ctx.facts["captions"] = [{"index": int(ctx.indices[r]), "aligned": it["aligned"], "space": it["space"]}
                             for r, it in zip(rows.tolist(), items, strict=True)]
    return Section("captions", title, {"decoder": ctx.options.decoder, "items": items,
                                       "space": ctx.aligned.space.name})


#: The sections, in page order. Append a builder (and its template) to add one.
SECTIONS: list[Builder] = [
    alignment_section,
    zeroshot_section,
    samples_section,
    cbm_section,
    shift_section,
    retrieval_section,
    captions_section,
]


def run_sections(ctx: ReportContext, builders: list[Builder] | None = None) -> list[Section]:
    """Every section, in order."""
    return [build(ctx) for build in (SECTIONS if builders is None else builders)]

