"""``t2c retrieve``: the images of a dataset that satisfy a boolean query of concepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..features.options import ExtractOptions
from ._common import (
    BackboneOpt,
    CheckpointOpt,
    ConceptsOpt,
    JsonOpt,
    VocabularyOpt,
    extraction_options,
    load_aligned,
    make_bank,
)


@extraction_options
def retrieve_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    query: Annotated[
        str,
        typer.Argument(help='The query, e.g. \'"red" & ("circle" | "star") & ~"striped background">z1\'.'),
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="Images: folder, CSV/TXT list or world:SPLIT.")],
    k: Annotated[int, typer.Option("--top-k", "-k", help="Results shown.")] = 16,
    grid: Annotated[Path | None, typer.Option(help="Save the results as an image grid (PNG).")] = None,
    cols: Annotated[int, typer.Option(help="Images per row of the grid.")] = 4,
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    threshold: Annotated[
        str,
        typer.Option(help="Threshold of concepts written without one: auto (c0 where the concept has "
                     "alternatives in the vocabulary's groups, else z0), or one for all: c0 "
                     "(contrast), z0, z1.5, q0.9 or 0.3."),
    ] = "auto",
    centre: Annotated[
        bool | None,
        typer.Option("--centre/--no-centre", help="Centre scores on the bank's concepts (default: 8+)."),
    ] = None,
    matching_only: Annotated[bool, typer.Option(help="List only images that satisfy the query.")] = False,
    index: Annotated[
        str,
        typer.Option(help="exact (chunked search over the store), faiss-flat or faiss-ivf "
                     "(pip install 't2c_captum[faiss]'; built beside the feature store on first use)."),
    ] = "exact",
    nprobe: Annotated[int | None, typer.Option(help="IVF cells visited per search (faiss-ivf).")] = None,
    candidates: Annotated[
        int | None, typer.Option(help="Rows fetched from the index per positive concept.")
    ] = None,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Find the images that satisfy QUERY: concepts joined by & (and), | (or), ~ (not).

    Thresholds: "red">z1.5 (z-score), "red">q0.9 (quantile), "red">0.3 (cosine), "red">c0.02
    (contrast: red's cosine beats the other concepts of its group, e.g. the other colours, by 0.02).
    Default: contrast > 0 for concepts whose vocabulary gives them a group with alternatives
    (world, visual-grouped, imagenet), z > 0 for the others.

    With --vocabulary/--concepts every query concept must be in it (on the concept world use -v world).

    Without them the query's own concepts are embedded with the space's templates.
    """
    from ..data import open_source
    from ..retrieval import Retriever, parse_query, parse_threshold
    from ._console import console

    kinds = {"exact": None, "faiss-flat": "flat", "faiss-ivf": "ivf"}
    if index not in kinds:
        raise typer.BadParameter(f"--index must be one of {', '.join(kinds)}, not {index!r}")
    parsed = parse_query(query)
    default = None if threshold.strip().lower() == "auto" else parse_threshold(threshold)
    pair = load_aligned(aligner, backbone, checkpoint)
    bank = (make_bank(pair.space, vocabulary, concepts, pair.vocabulary) if (vocabulary or concepts)
            else pair.space)
    retriever = Retriever(bank, pair.aligner, centre=centre, default_threshold=default)
    retriever.bank_for(parsed)  # unknown concepts fail before the images are read
    source = open_source(data)
    store = pair.features(data, extraction)
    found = None
    kind = kinds[index]
    if kind is not None:
        from ..retrieval.faiss_index import FaissIndex

        found = FaissIndex.open(store, pair.aligner, kind=kind, nprobe=nprobe)
    result = retriever.search(parsed, store, k=k, matching_only=matching_only, index=found,
                              candidates=candidates)
    saved = result.grid(source, grid, cols=cols) if grid is not None else None
    rows = [{**row, "image": source.describe(row["index"])} for row in result.rows()]
    if as_json:
        typer.echo(json.dumps({"query": str(result.query), "n_searched": result.n_searched,
                               "n_matching": result.n_matching, "results": rows,
                               "grid": str(saved) if saved else None, **result.info}, indent=2))
        return
    table = Table(title=f"{result.query}: {result.n_matching} of {result.n_searched} images match",
                  title_justify="left")
    for col in ("rank", "image", "margin", *result.scores):
        table.add_column(col, justify="left" if col == "image" else "right")
    for row in rows:
        mark = "" if row["matches"] else " (no)"
        table.add_row(str(row["rank"]), row["image"], f"{row['margin']:+.2f}{mark}",
                      *(f"{s:.3f}" for s in row["scores"].values()))
    console.print(table)
    if saved:
        console.print(f"saved {saved}")


def register(app: typer.Typer) -> None:
    """Add ``t2c retrieve`` to ``app``."""
    app.command("retrieve")(retrieve_cmd)
