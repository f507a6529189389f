"""``t2c decoder train`` (a text-only caption decoder for a space) and ``t2c caption`` (decode images,
feature vectors or directions into captions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..features.options import ExtractOptions
from ._common import BackboneOpt, CheckpointOpt, DeviceOpt, JsonOpt, extraction_options

decoder_app = typer.Typer(
    help="Caption decoders: train one on captions alone, inspect one.", no_args_is_help=True
)

StrategyOpt = Annotated[str, typer.Option(help="greedy, beam or nucleus.")]


def _corpus(corpus: str, n_samples: int) -> Any:
    """A file path as given (read by the trainer); otherwise a registered caption corpus."""
    if Path(corpus).suffix in {".txt", ".json", ".csv"}:
        return corpus
    from ..decoders import load_caption_corpus

    return load_caption_corpus(corpus, n_samples=n_samples)


def _samples(ctx: typer.Context, n_samples: int, world_samples: int | None) -> int:
    """``--n-samples``, or its old name ``--world-samples`` (hidden, still accepted); both must agree."""
    if world_samples is None:
        return n_samples
    source = ctx.get_parameter_source("n_samples")  # by name: typer vendors click (typer._click)
    if getattr(source, "name", None) == "COMMANDLINE" and n_samples != world_samples:
        from .._exceptions import ConfigurationError

        raise ConfigurationError(
            f"--n-samples {n_samples} and --world-samples {world_samples} disagree; give --n-samples "
            "alone (--world-samples is its old name)"
        )
    return world_samples


@decoder_app.command("train")
def train_cmd(
    ctx: typer.Context,
    space: Annotated[
        str,
        typer.Argument(help="The space whose text encoder embeds the captions (world-clip, open_clip:...)."),
    ],
    corpus: Annotated[
        str,
        typer.Option(
            help="A registered caption corpus ('world': the concept world's captions; see t2c plugins) "
            "or a .txt/.json/.csv file of captions."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for checkpoints and decoder.json + decoder.safetensors."),
    ],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Captions per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    noise_std: Annotated[float, typer.Option(help="Gaussian noise on the unit text embeddings.")] = 0.08,
    layers: Annotated[int, typer.Option(help="GPT-2 layers.")] = 3,
    width: Annotated[int, typer.Option(help="GPT-2 width (n_embd).")] = 128,
    heads: Annotated[int, typer.Option(help="GPT-2 attention heads.")] = 4,
    prefix_length: Annotated[int, typer.Option(help="Prefix tokens per embedding.")] = 8,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 200,
    n_samples: Annotated[
        int,
        typer.Option(
            "--n-samples",
            help="With a registered corpus: its n_samples (world: images whose captions are used).",
        ),
    ] = 2400,
    world_samples: Annotated[
        int | None, typer.Option("--world-samples", hidden=True, help="Old name of --n-samples.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="A local Hugging Face tokenizer directory (default: CLIP BPE).")
    ] = None,
    seed: int = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads while training (1 is fastest for small decoders).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT/checkpoint.* if present.")
    ] = False,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Train a GPT-2-style caption decoder for SPACE on captions alone (the text-only DeCap recipe)."""
    from ..decoders import PrefixDecoderConfig, TextTokenizer, TrainSettings, train_prefix_decoder
    from ..spaces import load_space
    from ._console import console

    n_samples = _samples(ctx, n_samples, world_samples)
    sp = load_space(space)
    decoder = train_prefix_decoder(
        sp,
        _corpus(corpus, n_samples),
        config=PrefixDecoderConfig(
            embed_dim=sp.embed_dim,
            prefix_length=prefix_length,
            n_layer=layers,
            n_embd=width,
            n_head=heads,
        ),
        settings=TrainSettings(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            noise_std=noise_std,
            seed=seed,
            checkpoint_every=checkpoint_every,
        ),
        tokenizer=TextTokenizer("hf", tokenizer) if tokenizer else None,
        out=out,
        resume=resume,
        progress=not as_json,
        device=None if device == "auto" else device,
        threads=threads,
    )
    stats = {"decoder": str(out / "decoder.json"), **decoder.training_stats}
    if as_json:
        typer.echo(json.dumps(stats, indent=2, default=str))
        return
    console.print(
        f"decoder saved to {stats['decoder']}: {stats['n_captions']} captions, vocabulary "
        f"{stats['vocabulary_size']}, loss {stats['first_loss']:.3f} -> {stats['final_loss']:.3f}",
        highlight=False,
    )


@decoder_app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List the registered decoders."""
    from ..plugins import get_registries

    entries = get_registries().decoders.entries()
    if as_json:
        typer.echo(
            json.dumps([{"name": e.name, "plugin": e.plugin, "description": e.description} for e in entries])
        )
        return
    for e in entries:
        typer.echo(f"{e.name}\t{e.plugin}\t{e.description}")


def _load_array(path: Path) -> Any:
    import numpy as np
    import torch

    from .._exceptions import DataError

    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)).float()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if len(tensors) != 1:
            raise DataError(f"{str(path)!r} holds {len(tensors)} tensors; save exactly one")
        return next(iter(tensors.values())).float()
    raise DataError(f"{str(path)!r}: give a .npy or .safetensors file")


@extraction_options
def caption_cmd(
    decoder: Annotated[
        str,
        typer.Argument(
            help="A registered decoder (world-decoder), a saved decoder (NAME.json) or clipcap:PATH."
        ),
    ],
    aligner: Annotated[
        str | None,
        typer.Argument(
            help="An aligner into the decoder's space (for images through a backbone, feature vectors, "
            "feature directions)."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Images: a folder, a list, or world:SPLIT[:FACTOR[:N]]."),
    ] = None,
    vector: Annotated[
        Path | None,
        typer.Option(
            help="A .npy/.safetensors vector (d,) or matrix (N, d): features (with ALIGNER) or embeddings.",
        ),
    ] = None,
    direction: Annotated[
        Path | None,
        typer.Option(help="A .npy/.safetensors direction: in feature space (with ALIGNER) or in the space."),
    ] = None,
    unit: Annotated[
        int | None, typer.Option(help="Caption the direction of this unit (neuron) of the aligned layer.")
    ] = None,
    strategy: StrategyOpt = "greedy",
    beam_size: Annotated[int, typer.Option(help="Beams (beam search).")] = 4,
    top_p: Annotated[float, typer.Option(help="Nucleus mass (nucleus sampling).")] = 0.9,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    project: Annotated[
        bool,
        typer.Option(
            "--project/--no-project", help="Project image/aligned embeddings onto the decoder's text memory."
        ),
    ] = True,
    gpt: Annotated[str | None, typer.Option(help="clipcap: GPT-2 directory or hub name.")] = None,
    backbone: BackboneOpt = None,
    checkpoint: CheckpointOpt = None,
    *,
    extraction: ExtractOptions,
    as_json: JsonOpt = False,
) -> None:
    """Decode images, feature vectors or directions into captions through the decoder's space."""
    from ..decoders import (
        caption_direction,
        caption_embeddings,
        caption_features,
        caption_images,
        load_decoder,
    )
    from ..decoders.generation import GenerationOptions
    from ._console import console

    rows: list[dict[str, Any]] = []
    given = [x is not None for x in (data, vector, direction, unit)]
    if sum(given) != 1:
        from .._exceptions import DataError

        raise DataError("give exactly one of --data, --vector, --direction or --unit")
    options = {"gpt": gpt} if gpt else {}
    dec = load_decoder(decoder, **options)
    gen: dict[str, Any] = {
        "strategy": strategy,
        "beam_size": beam_size,
        "top_p": top_p,
        "temperature": temperature,
        "seed": seed,
    }
    GenerationOptions(**gen)
    pair = None
    if aligner is not None:
        from ._common import load_aligned

        pair = load_aligned(aligner, backbone, checkpoint)
        if hasattr(dec, "check_space"):
            dec.check_space(identity=pair.aligner.target_)
    if data is not None:
        from ..data import open_source

        source = open_source(data)
        quiet = extraction.with_(progress=False)  # no progress bars, as before
        if pair is not None:
            captions = caption_images(
                dec, source, pair.backbone, pair.aligner, extraction=quiet, project=project, **gen
            )
        else:
            from ..spaces import load_space

            space = load_space(dec.space_identity.get("id", ""))
            captions = caption_images(
                dec, source, space=space, extraction=quiet, project=project, **gen
            )
        rows = [{"item": source.describe(i), "caption": c} for i, c in enumerate(captions)]
    elif vector is not None:
        x = _load_array(vector)
        captions = (
            caption_features(dec, x, pair.aligner, project=project, **gen)
            if pair is not None
            else caption_embeddings(dec, x, project=project, **gen)
        )
        rows = [{"item": f"{vector.name}[{i}]", "caption": c} for i, c in enumerate(captions)]
    else:
        import torch

        if unit is not None:
            if pair is None:
                from .._exceptions import DataError

                raise DataError("--unit needs an ALIGNER (the unit is a feature of its backbone)")
            d = int(pair.aligner.linear_part.shape[1])
            if not 0 <= unit < d:
                from .._exceptions import DataError

                raise DataError(f"--unit must be in 0..{d - 1}")
            vec, label = torch.eye(d)[unit], f"unit {unit}"
        else:
            assert direction is not None
            vec, label = _load_array(direction), direction.name
        kind = "feature" if pair is not None else "space"
        captions = caption_direction(dec, vec, pair.aligner if pair else None, kind=kind, **gen)
        rows = [
            {"item": label if len(captions) == 1 else f"{label}[{i}]", "caption": c}
            for i, c in enumerate(captions)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        console.print(f"{row['item']}: {row['caption']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``t2c decoder`` and ``t2c caption`` to ``app``."""
    app.add_typer(decoder_app, name="decoder")
    app.command("caption")(caption_cmd)
