"""The ``t2c`` command: fit, evaluate and use aligners from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._exceptions import ConfigurationError, T2CError
from .commands import (
    ErrorBoundary,
    JsonOpt,
    LayerOpt,
    PretrainedOpt,
    SpaceWeightsOpt,
    WeightsOpt,
    console,
    extraction_options,
    load_models,
)
from .features.options import ExtractOptions

app = typer.Typer(
    name="t2c",
    help=(
        "Give any frozen vision model a vocabulary: align its features to a CLIP space, then "
        "classify zero-shot and name what it sees.\n\n"
        "Start with `t2c demo` (offline, on the built-in concept world), then "
        "`t2c fit BACKBONE SPACE --data IMAGES`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ErrorBoundary,
)

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="Images: a folder, a labelled ImageFolder tree, a CSV/TXT list, or world:SPLIT[:FACTOR].",
    ),
]
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if 0 <= value <= 1 else f"{value:.4g}"
    return str(value)


def _eval_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    keys = [
        "split",
        "task",
        "n",
        "r2",
        "mean_cosine",
        "aligned_top1",
        "space_top1",
        "own_head_top1",
        "aligned_top5",
    ]
    present = [k for k in keys if any(k in r and r[k] is not None for r in rows)]
    for k in present:
        table.add_column(k, justify="right" if k not in ("split", "task") else "left")
    for r in rows:
        cells = []
        for k in present:
            v = r.get(k)
            cells.append("-" if v is None else (f"{v:.3f}" if k in ("r2", "mean_cosine") else _fmt(v)))
        table.add_row(*cells)
    return table


@app.command("plugins")
def plugins_cmd(as_json: JsonOpt = False) -> None:
    """List every registered part (backbones, spaces, aligners, vocabularies, probes) and who gave it;
    probes with the backbone, layer and space they were fitted for."""
    from .plugins import list_parts

    parts = list_parts()
    data = [
        {"kind": k, "name": e.name, "plugin": e.plugin, "description": e.description,
         **(_probe_fields(e.name) if k == "probes" else {})}
        for k, e in parts
    ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="registered parts", title_justify="left")
    for col in ("kind", "name", "plugin", "description"):
        table.add_column(col)
    for row in data:
        fitted = (f" (fitted: {row['backbone']}, {row['layer']} -> {row['space']})"
                  if "backbone" in row else "")
        described = row["description"] + fitted + row.get("error", "")
        table.add_row(row["kind"], row["name"], row["plugin"], described)
    console.print(table)


def _probe_fields(name: str) -> dict[str, Any]:
    """What a registered probe was fitted for (its loader runs), or why it could not be loaded.

    The one deliberate catch outside :class:`~t2c_captum.commands.ErrorBoundary`: a listing goes on
    past one probe that fails to load, showing the error in that probe's row."""
    from .aligners.io import registered_probe

    try:
        loaded = registered_probe(name)
    except T2CError as exc:
        return {"error": f" (failed to load: {exc})"}
    if loaded is None:  # a file of that name shadows the probe
        return {"error": " (shadowed by a file of that name)"}
    aligner = getattr(loaded, "aligner", loaded)
    return {"backbone": aligner.source_.get("id"), "layer": aligner.source_.get("layer"),
            "space": aligner.target_.get("id")}


@app.command("fit")
@extraction_options
def fit_cmd(
    backbone: Annotated[
        str, typer.Argument(help="world-cnn, timm:resnet50, torchvision:resnet18, hf-hub:ORG/REPO ...")
    ],
    space: Annotated[
        str,
        typer.Argument(
            help="world-clip, open_clip:ViT-B-16@openai, hf-hub:..., or backbone:NAME (cross-model)."
        ),
    ],
    data: DataOpt,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to save the aligner (NAME -> NAME.json + NAME.safetensors)."),
    ] = Path("aligner"),
    eval_data: Annotated[
        str | None, typer.Option(help="Separate evaluation images (same forms as --data).")
    ] = None,
    kind: Annotated[
        str, typer.Option(help="Aligner kind: linear (closed-form ridge) or sgd (the paper's recipe).")
    ] = "linear",
    alpha: Annotated[
        float | None, typer.Option(help="Fixed ridge strength (linear); default: chosen on held-out rows.")
    ] = None,
    layer: LayerOpt = None,
    checkpoint: WeightsOpt = None,
    space_checkpoint: SpaceWeightsOpt = None,
    pretrained: PretrainedOpt = False,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Fit an aligner from BACKBONE features to SPACE embeddings and report its held-out quality."""
    from .alignment import fit_aligner

    bb, tg = load_models(backbone, space, layer, checkpoint, space_checkpoint, pretrained)
    params = {"alpha": alpha} if (alpha is not None and kind == "linear") else {}
    aligner, report = fit_aligner(
        bb,
        tg,
        data,
        eval_data=eval_data,
        kind=kind,
        aligner_params=params,
        extraction=extraction,
    )
    saved = aligner.save(out)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "saved": str(saved)}, indent=2, default=str))
        return
    console.print(
        f"aligned [bold]{report.backbone}[/] -> [bold]{report.target}[/] "
        f"({report.kind}, {report.n_train} training images, "
        f"alpha={report.fit_stats.get('alpha', '-')})"
    )
    console.print(
        _eval_table(
            "alignment quality (images not used for fitting)", [e.as_dict() for e in report.evaluations]
        )
    )
    console.print(f"saved {saved} and {saved.with_suffix('.safetensors')}")


def _load_pair(
    aligner_path: str,
    backbone: str | None,
    space: str | None,
    checkpoint: str | None,
    space_checkpoint: str | None,
) -> tuple[Any, Any, Any]:
    """A saved aligner (or a registered probe's) with its backbone and space, checked to match."""
    from .probes import load_probe

    probe = load_probe(aligner_path, backbone=backbone, space=space, checkpoint=checkpoint,
                       space_checkpoint=space_checkpoint)
    return probe.aligner, probe.backbone, probe.space


@app.command("eval")
@extraction_options
def eval_cmd(
    aligner: Annotated[
        str, typer.Argument(help="A saved aligner (NAME, NAME.json, a folder, or hf-hub:ORG/REPO).")
    ],
    data: DataOpt,
    backbone: Annotated[
        str | None, typer.Option(help="Override the backbone recorded in the aligner.")
    ] = None,
    space: Annotated[str | None, typer.Option(help="Override the space recorded in the aligner.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Local backbone weights.")] = None,
    space_checkpoint: Annotated[str | None, typer.Option(help="Local space weights.")] = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Measure a saved aligner on new images: R², mean cosine, zero-shot accuracy (if labelled)."""
    from .alignment import evaluate_store

    al, bb, tg = _load_pair(aligner, backbone, space, checkpoint, space_checkpoint)
    store = extraction.extract(data, {"source": bb, "target": tg}, label="eval")
    report = evaluate_store(al, store, bb, tg, split=str(data))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    console.print(_eval_table(f"{bb.name} -> {tg.name}", [report.as_dict()]))


@app.command("classify")
def classify_cmd(
    aligner: Annotated[str, typer.Argument(help="A saved aligner.")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or world:SPLIT.")],
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names.")] = None,
    vocabulary: Annotated[
        str | None,
        typer.Option(
            help="A registered vocabulary (imagenet, world) or a .txt/.json/.csv file of class names."
        ),
    ] = None,
    templates: Annotated[
        str,
        typer.Option(
            help="space (the space's own), imagenet (open_clip's 80), simple, or a template with {}."
        ),
    ] = "space",
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
    limit: Annotated[int, typer.Option(help="At most this many images.")] = 50,
    backbone: Annotated[
        str | None, typer.Option(help="Override the backbone recorded in the aligner.")
    ] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Local backbone weights.")] = None,
    space_checkpoint: Annotated[str | None, typer.Option(help="Local space weights.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify images zero-shot through a saved aligner (the backbone's features, CLIP's words)."""
    import torch

    from .concepts import load_vocabulary
    from .data import open_images
    from .spaces import imagenet_templates
    from .zeroshot import ZeroShotClassifier

    if not classes and not vocabulary:
        raise ConfigurationError("give the classes: --classes 'cat,dog' or --vocabulary imagenet")
    names = (
        [c.strip() for c in classes.split(",") if c.strip()]
        if classes
        else load_vocabulary(str(vocabulary))
    )
    al, bb, tg = _load_pair(aligner, backbone, None, checkpoint, space_checkpoint)
    tmpl = {"space": None, "imagenet": imagenet_templates(), "simple": imagenet_templates(True)}
    chosen = tmpl.get(templates, [templates])
    clf = ZeroShotClassifier(tg, names, chosen, aligner=al)
    source = open_images(images)
    rows: list[dict[str, Any]] = []
    for i in range(min(limit, len(source))):
        img, _ = source.load(i)
        with torch.no_grad():
            result = clf.predict(bb(bb.preprocess(img).unsqueeze(0)), k=top_k)
        rows.append(
            {
                "image": source.describe(i),
                "top": [
                    {"class": n, "prob": float(p)}
                    for n, p in zip(result.names()[0], result.probs[0].tolist(), strict=True)
                ],
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        tops = ", ".join(f"{t['class']} {100 * t['prob']:.0f}%" for t in row["top"])
        console.print(f"{row['image']}: {tops}", highlight=False)


@app.command("demo")
def demo_cmd(
    n_train: Annotated[int, typer.Option(help="Training images from the world's train split.")] = 8000,
    n_test: Annotated[int, typer.Option(help="Test images per factor.")] = 2000,
    out: Annotated[Path, typer.Option(help="Where aligners and the summary go.")] = Path("runs/demo"),
    as_json: JsonOpt = False,
) -> None:
    """The main job, offline: align the concept world's backbones to its tiny CLIP and report."""
    from .demo import run_demo

    summary = run_demo(
        n_train=n_train,
        n_test=n_test,
        out=out,
        progress=not as_json,
        console=None if as_json else console,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))


def _register_commands() -> None:
    import importlib
    import pkgutil

    from . import commands

    for module in pkgutil.iter_modules(commands.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module.name}").register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``t2c`` script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        console.print("interrupted; finished feature shards are kept and will be reused")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
