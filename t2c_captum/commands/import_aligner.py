"""``t2c import-aligner``: a linear map fitted elsewhere (the paper's ``{"W", "b"}`` file) as an
aligner artifact, with the backbone and space it connects recorded and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, LayerOpt, PretrainedOpt, SpaceWeightsOpt, WeightsOpt, load_models


def import_aligner_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            help="A tensors-only file: {'W': [D, d], 'b': [D]} (the paper's torch.save) or an nn.Linear "
            "state dict; .pth/.pt or .safetensors. Nothing is unpickled."
        ),
    ],
    backbone: Annotated[
        str,
        typer.Option(help="The backbone whose features W takes (torchvision:resnet18, timm:..., world-cnn)."),
    ],
    space: Annotated[
        str,
        typer.Option(help="The space W maps into (open_clip:ViT-B-16@openai, world-clip, backbone:NAME)."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to save the aligner (NAME -> NAME.json + NAME.safetensors)."),
    ],
    layer: LayerOpt = None,
    checkpoint: WeightsOpt = None,
    space_checkpoint: SpaceWeightsOpt = None,
    pretrained: PretrainedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a linear aligner fitted elsewhere (features @ W.T + b) for BACKBONE -> SPACE."""
    from ..aligners.imported import import_aligner
    from ._console import console

    bb, tg = load_models(backbone, space, layer, checkpoint, space_checkpoint, pretrained)
    aligner = import_aligner(file, bb, tg)
    saved = aligner.save(out)
    d, D = aligner.dims or (0, 0)
    if as_json:
        typer.echo(json.dumps({"saved": str(saved), "backbone": bb.name, "space": tg.name, "dims": [d, D]}))
        return
    console.print(f"imported {file.name}: [bold]{bb.name}[/] ({d}-d) -> [bold]{tg.name}[/] ({D}-d)")
    console.print(f"saved {saved} and {saved.with_suffix('.safetensors')}")


def register(app: typer.Typer) -> None:
    """Add ``t2c import-aligner`` to ``app``."""
    app.command("import-aligner")(import_aligner_cmd)
