"""``t2c cbm fit|eval|explain``: a sparse concept bottleneck model on a backbone's aligned features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from ..features.options import ExtractOptions
from ._common import (
    BackboneOpt,
    CheckpointOpt,
    ConceptsOpt,
    JsonOpt,
    VocabularyOpt,
    backbone_features,
    extraction_options,
    load_aligned,
    make_bank,
)

cbm_app = typer.Typer(
    help="Concept bottleneck models: classify through a few named concepts (sparse, explainable).",
    no_args_is_help=True,
)

DataOpt = Annotated[
    str,
    typer.Option("--data", "-d", help="Labelled images: an ImageFolder tree, a CSV, or world:SPLIT:FACTOR."),
]


def _load_backbone(aligner: Any, backbone: str | None, checkpoint: str | None) -> Any:
    """The backbone a saved CBM's aligner was fitted for (checked to match)."""
    from ..aligners import check_compatible
    from ..aligners.loading import recorded_backbone

    bb = recorded_backbone(aligner, backbone, checkpoint)
    check_compatible(aligner, bb)
    return bb


def _load_cbm(path: str, backbone: str | None, checkpoint: str | None) -> tuple[Any, Any]:
    from .._exceptions import IncompatibleArtifactError
    from ..cbm import ConceptBottleneck

    cbm = ConceptBottleneck.load(path)
    if cbm.aligner is None:
        raise IncompatibleArtifactError(
            f"{path!r} was fitted on space embeddings (no aligner), so the CLI cannot run it on images: "
            "use it from Python (ConceptBottleneck.load)"
        )
    return cbm, _load_backbone(cbm.aligner, backbone, checkpoint)


def _remap(labels: np.ndarray, names: list[str] | None, classes: list[str]) -> np.ndarray:
    """Labels of a test set, mapped onto the model's classes by name."""
    from .._exceptions import DataError

    if names is None or list(names) == classes:
        return labels
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise DataError(
            f"the data has classes {unknown[:5]} that the concept bottleneck does not know "
            f"(it knows {classes}); evaluate on data of the same task"
        )
    return np.array([classes.index(names[i]) for i in labels], dtype=np.int64)


def _top_table(report: Any) -> Table:
    table = Table(title="concepts per class (largest positive weights)", title_justify="left")
    for col in ("class", "non-zero", "top concepts"):
        table.add_column(col, justify="right" if col == "non-zero" else "left")
    for cls in report.class_names:
        tops = ", ".join(f"{c} {w:+.2f}" for c, w in report.top_concepts[cls])
        table.add_row(cls, str(report.nnz_per_class[cls]), tops or "-")
    return table


@cbm_app.command("fit")
@extraction_options
def fit_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    data: DataOpt,
    val_data: Annotated[str, typer.Option("--val-data", help="Labelled validation images (sparsity).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the model goes (NAME.json/.safetensors).")],
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    l1_ratio: Annotated[float, typer.Option(help="1 = L1 (lasso); below 1 = elastic-net.")] = 1.0,
    max_per_class: Annotated[int | None, typer.Option(help="At most this many concepts per class.")] = None,
    tolerance: Annotated[float, typer.Option(help="Validation accuracy a sparser model may lose.")] = 0.01,
    probe: Annotated[bool, typer.Option(help="Also fit a dense linear probe for comparison.")] = True,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Fit a sparse concept bottleneck on labelled images; sparsity chosen on --val-data."""
    from ..cbm import ConceptBottleneck
    from ._console import console

    pair = load_aligned(aligner, backbone, checkpoint)
    bank = make_bank(pair.space, vocabulary, concepts, pair.vocabulary)
    train, val = (
        backbone_features(d, pair.backbone, extraction) for d in (data, val_data)
    )
    cbm = ConceptBottleneck(
        bank,
        pair.aligner,
        l1_ratio=l1_ratio,
        tolerance=tolerance,
        max_nonzero_per_class=max_per_class,
        probe=probe,
    )
    cbm.fit_stores(train, val)
    path = cbm.save(out)
    report = cbm.report()
    if as_json:
        typer.echo(json.dumps({"saved": str(path), **report.as_dict()}, indent=2))
        return
    probe_txt = (
        "" if report.probe_val_accuracy is None else (f", dense probe {100 * report.probe_val_accuracy:.1f}%")
    )
    console.print(
        f"validation accuracy {100 * report.val_accuracy:.1f}%{probe_txt}; {report.nnz} non-zero "
        f"weights over {len(report.concepts)} concepts (C={report.C:.3g})",
        highlight=False,
    )
    console.print(_top_table(report))
    console.print(f"saved {path}", highlight=False)


@cbm_app.command("eval")
@extraction_options
def eval_cmd(
    model: Annotated[str, typer.Argument(help="A saved concept bottleneck (NAME or NAME.json).")],
    data: DataOpt,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy of a concept bottleneck (and of its dense probe) on labelled images."""
    from ..cbm import labelled_features
    from ._console import console

    cbm, bb = _load_cbm(model, backbone, checkpoint)
    store = backbone_features(data, bb, extraction)
    x, y, names = labelled_features(store, cbm.aligner)
    result = {"data": data, **cbm.evaluate(x, _remap(y, names, cbm.class_names_))}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    probe_txt = (
        "" if result["probe_accuracy"] is None else (f", dense probe {100 * result['probe_accuracy']:.1f}%")
    )
    acc = 100 * result["accuracy"]
    console.print(
        f"{data}: {result['n']} images, concept bottleneck {acc:.1f}%{probe_txt}; "
        f"{result['nnz']} non-zero weights",
        highlight=False,
    )


@cbm_app.command("explain")
@extraction_options
def explain_cmd(
    model: Annotated[str, typer.Argument(help="A saved concept bottleneck (NAME or NAME.json).")],
    images: Annotated[list[str], typer.Argument(help="Image files, a folder, a CSV or world:SPLIT.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Concepts shown per image.")] = 5,
    limit: Annotated[int, typer.Option(help="At most this many images.")] = 20,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Predict images and show the concepts that contributed most (signed) to each prediction."""
    from torch.utils.data import Subset

    from ..data import ImageSource, open_images
    from ._console import console

    cbm, bb = _load_cbm(model, backbone, checkpoint)
    source = open_images(images)
    if len(source) > limit:
        items = source.items
        head = items[:limit] if isinstance(items, list) else Subset(items, range(limit))  # type: ignore[arg-type]
        source = ImageSource(head, name=source.name)
    store = backbone_features(source, bb, extraction.with_(progress=False))
    data = store.load(["source"])
    exp = cbm.explain(data["source"])
    probs = cbm.predict_proba(data["source"])
    rows = [
        {
            "image": source.describe(int(idx)),
            "prediction": exp.class_names[int(exp.predictions[r])],
            "prob": float(probs[r, exp.predictions[r]]),
            "intercept": float(exp.intercept[exp.predictions[r]]),
            "logit": float(exp.logits[r, exp.predictions[r]]),
            "top": [{"concept": c, "contribution": v} for c, v in exp.top(r, top_k)],
        }
        for r, idx in enumerate(data["indices"].tolist())
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        parts = ", ".join(f"{t['concept']} {t['contribution']:+.2f}" for t in row["top"])
        pred = f"{row['prediction']} ({100 * row['prob']:.0f}%)"
        console.print(f"{row['image']}: {pred} <- {parts}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``t2c cbm`` to ``app``."""
    app.add_typer(cbm_app, name="cbm")
