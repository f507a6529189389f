"""``t2c shift``: which concepts two image datasets differ in (Welch's t, Hedges' g, BH-corrected)."""

from __future__ import annotations

import math
import warnings
from typing import Annotated

import typer
from rich.table import Table

from ..features.options import ExtractOptions
from ._common import (
    BackboneOpt,
    CheckpointOpt,
    ConceptsOpt,
    VocabularyOpt,
    extraction_options,
    load_aligned,
    make_bank,
)


def _fmt(value: float, spec: str) -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


@extraction_options
def shift_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    source: Annotated[
        str, typer.Option("--source", "-a", help="Reference images (folder, CSV/TXT list, world:SPLIT).")
    ],
    target: Annotated[str, typer.Option("--target", "-b", help="Images compared with the reference.")],
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    by_class: Annotated[bool, typer.Option("--by-class", help="Test within each class (labelled).")] = False,
    top: Annotated[int, typer.Option("--top", "-k", help="Rows shown and plotted.")] = 15,
    direction: Annotated[
        str | None, typer.Option(help="Show only concepts that go 'up' (more in the target) or 'down'.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="False discovery rate for significance.")] = 0.05,
    min_samples: Annotated[int, typer.Option(help="Groups with fewer images are not tested.")] = 10,
    effect: Annotated[
        str, typer.Option(help="Effect size: glass (in SDs of the source) or hedges (pooled SD).")
    ] = "glass",
    csv_path: Annotated[str | None, typer.Option("--csv", help="Write all rows as CSV here.")] = None,
    plot_path: Annotated[str | None, typer.Option("--plot", help="Save a bar chart (PNG/PDF/SVG).")] = None,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON instead.")] = False,
) -> None:
    """Diagnose a distribution shift: the concepts whose scores differ between --source and --target.

    Every concept gets Welch's t-test, an effect size (Glass's delta by default; > 0: more in the
    target) and a Benjamini-Hochberg q-value; rows with q < alpha come first, by |effect|.
    """
    from ..shift import diagnose_shift
    from ._console import console

    pair = load_aligned(aligner, backbone, checkpoint)
    bank = make_bank(pair.space, vocabulary, concepts, pair.vocabulary)
    stores = [pair.features(d, extraction) for d in (source, target)]
    with warnings.catch_warnings():  # printed below, with the table
        warnings.simplefilter("ignore", UserWarning)
        report = diagnose_shift(stores[0], stores[1], bank, pair.aligner, pair.backbone,
                                by_class=by_class, alpha=alpha, min_samples=min_samples, effect=effect)
    report.info.update(name_a=source, name_b=target)
    if csv_path:
        report.to_csv(csv_path)
    if plot_path:
        report.plot(plot_path, k=top, summary=by_class)
    if as_json:
        typer.echo(report.to_json())
        return
    for note in report.warnings:
        console.print(f"[yellow]warning:[/] {note}", highlight=False)
    n_sig = len(report.significant())
    name = "Glass's delta" if effect == "glass" else "Hedges' g"
    table = Table(title=f"{source} -> {target}: {n_sig} of {len(report.rows)} tests with q < {alpha:g} "
                  f"(Welch's t, BH; effect = {name}, > 0: more in the target)", title_justify="left")
    for col in ("#", "concept", "class", "mean source", "mean target", "effect", "t", "q", "n"):
        table.add_column(col, justify="left" if col in ("concept", "class") else "right")
    shown = report.top(top, direction=direction)
    for i, r in enumerate(shown, 1):
        table.add_row(str(i), r.concept, r.class_name or "", _fmt(r.mean_a, ".3f"), _fmt(r.mean_b, ".3f"),
                      _fmt(r.effect, "+.2f"), _fmt(r.t, "+.1f"), _fmt(r.q, ".2g"), f"{r.n_a}/{r.n_b}")
    console.print(table)
    if by_class:
        found = report.significant(summary=True)[:top]
        summary = ", ".join(f"{r.concept} ({r.effect:+.2f}, q={r.q:.2g})" for r in found)
        console.print(f"across classes: {summary or f'no concept with q < {alpha:g}'}", highlight=False)
    for what, path in (("rows", csv_path), ("plot", plot_path)):
        if path:
            console.print(f"saved {what} to {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``t2c shift`` to ``app``."""
    app.command("shift")(shift_cmd)
