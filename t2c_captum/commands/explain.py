"""``t2c explain``: concept maps over pixels and the prediction named in words, saved as figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    BackboneOpt,
    CheckpointOpt,
    ConceptsOpt,
    JsonOpt,
    VocabularyOpt,
    load_aligned,
    make_bank,
)


def explain_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner (NAME, NAME.json or hf-hub:ORG/REPO).")],
    images: Annotated[list[str], typer.Argument(help="Image files, a folder, or world:SPLIT[:FACTOR[:N]].")],
    concept: Annotated[
        list[str] | None, typer.Option("--concept", help="Concept to map over the pixels (repeatable).")
    ] = None,
    vocabulary: VocabularyOpt = None,
    concepts: ConceptsOpt = None,
    method: Annotated[
        str, typer.Option(help="integrated_gradients, saliency, noise_tunnel, occlusion or input_x_gradient.")
    ] = "integrated_gradients",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Named concepts per prediction.")] = 5,
    limit: Annotated[int, typer.Option(help="At most this many images.")] = 16,
    out: Annotated[Path, typer.Option(help="Folder for the figures.")] = Path("runs/explain"),
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Map concepts onto the pixels of images and name what drove the backbone's own predictions."""
    import torch

    from ..data import open_images
    from ..explain import ConceptProbe, attribute_concept, explain_predictions
    from ._console import console

    result: dict[str, Any] = {"figures": [], "predictions": []}
    pair = load_aligned(aligner, backbone, checkpoint)
    bank = make_bank(pair.space, vocabulary, concepts, pair.vocabulary)
    source = open_images(images)
    n = min(limit, len(source))
    pil = [source.load(i)[0] for i in range(n)]
    x = torch.stack([pair.backbone.preprocess(img) for img in pil])
    out.mkdir(parents=True, exist_ok=True)
    for name in concept or []:
        probe = ConceptProbe(pair.backbone, pair.aligner, bank, [name])
        maps = attribute_concept(probe, x, name, method)
        path = out / f"{name.replace(' ', '_').replace('/', '_')}-{method}.png"
        maps.overlay(pil, str(path))
        result["figures"].append({"concept": name, "path": str(path)})
    if getattr(pair.backbone, "head", None) is not None:
        with torch.no_grad():
            feats = pair.backbone(x)
            pred = pair.backbone.classify(feats).argmax(1)
        named = explain_predictions(pair.backbone, feats, pair.aligner, bank, pred, k=top_k)
        classes = pair.backbone.class_names or []
        for i in range(n):
            label = classes[int(pred[i])] if classes else int(pred[i])
            result["predictions"].append(
                {"image": source.describe(i), "predicted": label, "named": named[i]}
            )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for fig in result["figures"]:
        console.print(f"concept map of {fig['concept']!r}: {fig['path']}", highlight=False)
    for row in result["predictions"]:
        words = ", ".join(f"{c} {s:+.2f}" for c, s in row["named"])
        console.print(
            f"{row['image']}: predicted {row['predicted']}, driven by features that read as: {words}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``t2c explain`` to ``app``."""
    app.command("explain")(explain_cmd)
