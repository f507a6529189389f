"""``t2c concepts``: the concepts a backbone's features read as, per image and over a dataset."""

from __future__ import annotations

import json
from typing import Annotated

import torch
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
def concepts_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    data: Annotated[str, typer.Option("--data", "-d", help="Images: folder, CSV/TXT list or world:SPLIT.")],
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Concepts shown per image.")] = 5,
    limit: Annotated[int, typer.Option(help="Images listed one by one (the summary uses all).")] = 10,
    relative: Annotated[
        bool,
        typer.Option(
            help="Rank an image's concepts by z-score over the dataset (what is distinctive about it) "
            "instead of raw cosine (which favours concepts that score high on every image)."
        ),
    ] = True,
    contrast: Annotated[
        bool,
        typer.Option(
            help="Rank an image's concepts by their margin over the best alternative of their group "
            "(\"red\" against the other colours; needs a vocabulary with groups: world, "
            "visual-grouped, imagenet). Overrides --relative."
        ),
    ] = False,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Name what a backbone sees: top concepts per image, and which concepts dominate the dataset."""
    from ..concepts import contrast_scores, iter_store_scores, summarize_scores, top_concepts
    from ..data import open_source
    from ._console import console

    pair = load_aligned(aligner, backbone, checkpoint)
    bank = make_bank(pair.space, vocabulary, concepts, pair.vocabulary)
    source = open_source(data)
    store = pair.features(data, extraction)
    chunks: list[torch.Tensor] = []
    first: list[torch.Tensor] = []
    shown: list[int] = []
    for indices, scores in iter_store_scores(store, bank, pair.aligner):
        chunks.append(scores)
        take = max(0, min(limit - len(shown), len(indices)))
        shown += indices[:take].tolist()
        first.append(scores[:take])
    summary = summarize_scores(chunks, bank, k=top_k)
    head = torch.cat(first)
    if contrast:
        head = contrast_scores(head, bank)
    elif relative:
        head = (head - torch.from_numpy(summary.mean).float()) / torch.from_numpy(
            summary.std + 1e-8
        ).float()
    per_image = [
        {"image": source.describe(i), "top": best}
        for i, best in zip(shown, top_concepts(head, bank, top_k), strict=True)
    ]
    ranked = summary.ranked(limit=20)
    if as_json:
        typer.echo(json.dumps({"images": per_image, "summary": ranked, "n": summary.n}, indent=2))
        return
    unit = "margin over the best alternative" if contrast else "z" if relative else "cos"
    console.print(f"top {top_k} concepts per image ({unit}):", highlight=False)
    for item in per_image:
        named = ", ".join(f"{c} {s:.2f}" for c, s in item["top"])
        console.print(f"{item['image']}: {named}", highlight=False)
    table = Table(title=f"{summary.n} images: concepts most often in an image's top {summary.k}",
                  title_justify="left")
    for col in ("concept", "top-k share", "mean cosine", "std"):
        table.add_column(col, justify="left" if col == "concept" else "right")
    for r in ranked:
        table.add_row(r["concept"], f"{100 * r['top_share']:.1f}%", f"{r['mean']:.3f}", f"{r['std']:.3f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``t2c concepts`` to ``app``."""
    app.command("concepts")(concepts_cmd)
