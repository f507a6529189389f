"""``t2c report``: a static HTML page about one aligned backbone on one dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..features.options import ExtractOptions
from ._common import BackboneOpt, CheckpointOpt, ConceptsOpt, JsonOpt, VocabularyOpt, extraction_options


@extraction_options
def report_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    data: Annotated[
        str,
        typer.Option("--data", "-d", help="Images: folder, ImageFolder tree, CSV/TXT list or world:SPLIT."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The report folder (index.html goes in it).")
    ] = Path("report"),
    compare_data: Annotated[
        str | None, typer.Option(help="A second dataset: adds a shift report (which concepts moved).")
    ] = None,
    cbm: Annotated[
        str | None, typer.Option(help="A saved concept bottleneck model (t2c cbm fit): its top concepts.")
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option("--query", "-q", help="A retrieval query (repeatable): its image grid."),
    ] = None,
    decoder: Annotated[
        str | None, typer.Option(help="A caption decoder (world-decoder, a saved one, clipcap:PATH).")
    ] = None,
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    samples: Annotated[int, typer.Option(help="Sample images shown with their top concepts.")] = 8,
    maps: Annotated[int, typer.Option(help="How many samples get a concept map (0: none).")] = 4,
    method: Annotated[str, typer.Option(help="Captum method of the concept maps.")] = "integrated_gradients",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Concepts per image and per class.")] = 5,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Write a self-contained HTML report: alignment quality, zero-shot confusion matrix, sample images
    with their concepts and concept maps, CBM concepts per class, a shift report, retrieval grids and
    decoded captions.

    Sections whose input is missing (no labels, no --compare-data, no --cbm, no --query, no --decoder)
    are replaced by a note saying what would enable them. Open OUT/index.html in any browser; it fetches
    nothing.
    """
    from ..report import build_report
    from ._console import console

    result = build_report(
        aligner, data, out, compare_data=compare_data, cbm=cbm, queries=list(query or []),
        decoder=decoder, vocabulary=vocabulary, concepts=concepts, n_samples=samples, n_maps=maps,
        map_method=method,
        top_k=top_k, backbone=backbone, checkpoint=checkpoint, extraction=extraction,
        overwrite=overwrite,
    )
    if as_json:
        typer.echo(json.dumps({"index": str(result.index), "sections": result.present,
                               "missing": result.missing, "facts": result.facts,
                               "seconds": result.seconds}, indent=2, default=float))
        return
    for sid, note in result.missing.items():
        console.print(f"[yellow]left out[/] {sid}: {note}", highlight=False)
    console.print(f"wrote {result.index} ({len(result.present)} sections, {result.seconds:.0f} s)",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``t2c report`` to ``app``."""
    app.command("report")(report_cmd)
