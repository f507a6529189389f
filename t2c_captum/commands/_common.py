"""What the concept commands share: aligner + backbone + space, a concept bank, features of images."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from .._device import PRECISIONS
from ..concepts.bank import make_bank
from ..features.options import BACKENDS, ExtractOptions
from ..probes import AlignedData, backbone_features, load_aligned

__all__ = [
    "AlignedData",
    "BackboneOpt",
    "CheckpointOpt",
    "ConceptsOpt",
    "DeviceOpt",
    "JsonOpt",
    "LayerOpt",
    "PretrainedOpt",
    "SpaceWeightsOpt",
    "WeightsOpt",
    "VocabularyOpt",
    "backbone_features",
    "extraction_options",
    "load_aligned",
    "load_models",
    "make_bank",
    "one_of",
]

BackboneOpt = Annotated[str | None, typer.Option(help="Override the backbone recorded in the aligner.")]
CheckpointOpt = Annotated[str | None, typer.Option(help="Local backbone weights.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]
LayerOpt = Annotated[str | None, typer.Option(help="Backbone layer (module name); default: penultimate.")]
WeightsOpt = Annotated[
    str | None, typer.Option(help="Local backbone weights (.safetensors or tensors-only .pth).")
]
SpaceWeightsOpt = Annotated[str | None, typer.Option(help="Local weights for the space.")]
PretrainedOpt = Annotated[
    bool, typer.Option(help="Download the backbone's pretrained weights (needs internet).")
]


def load_models(
    backbone: str, space: str, layer: str | None, checkpoint: str | None, space_checkpoint: str | None,
    pretrained: bool,
) -> tuple[Any, Any]:
    """The backbone (at ``layer``) and the target space (or backbone) a command names."""
    from ..aligners.loading import load_target
    from ..backbones import load_backbone

    bb = load_backbone(backbone, layer=layer, checkpoint=checkpoint, pretrained=pretrained or None)
    return bb, load_target(space, checkpoint=space_checkpoint)


def one_of(*choices: str) -> Any:
    """A typer callback that refuses values outside ``choices`` with a usage error."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    return check


def _flag(*names: str, **kwargs: Any) -> Any:
    """A typer option shown under "Feature extraction" in ``--help``."""
    return typer.Option(*names, rich_help_panel="Feature extraction", **kwargs)


def _extraction_flags(
    batch_size: Annotated[int, _flag(help="Images per forward pass.")] = 64,
    workers: Annotated[
        int | None,
        _flag(help="Decoding worker processes (default: 0 on the CPU, up to 16 on CUDA).",
              show_default=False),
    ] = None,
    device: Annotated[str, _flag(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: Annotated[
        str,
        _flag(
            help="Forwards' precision: auto (bf16/fp16 on CUDA; bf16 on CPUs with native bf16, "
            "AVX512-BF16 or AMX, unless T2C_CPU_BF16=0; fp32 elsewhere), bf16, fp16 or fp32.",
            callback=one_of(*PRECISIONS),
        ),
    ] = "auto",
    channels_last: Annotated[
        bool | None,
        _flag(
            "--channels-last/--no-channels-last",
            help="Channels-last memory format for conv nets (default: on with CUDA and on the CPU, "
            "where it is faster; off on other devices).",
            show_default=False,
        ),
    ] = None,
    compile: Annotated[bool, _flag(help="torch.compile the models first (GPU, long runs).")] = False,
    reduced_decode: Annotated[
        float | None,
        _flag(
            metavar="GAP",
            help="Decode JPEGs at 1/2-1/8 scale while they stay GAP times the models' resize (2: photos "
            "of 2,048 px and more decode 2.5-5x faster, pixels within a few grey levels). Default: full "
            "decode.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[bool, _flag(help="Fail on unreadable images instead of skipping them.")] = False,
    cache_dir: Annotated[
        str | None, _flag(help="Feature-store folder (default ~/.cache/t2c_captum).")
    ] = None,
    backend: Annotated[
        str,
        _flag(
            help="local (in-process) or ray (Ray Data workers; pip install 't2c_captum\\[ray]').",
            callback=one_of(*BACKENDS),
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        _flag(help="Ray cluster (--backend ray): auto, HOST:PORT or ray://HOST:PORT (default: local Ray)."),
    ] = None,
    ray_workers: Annotated[int, _flag(help="Ray workers extracting in parallel (--backend ray).")] = 2,
) -> None:
    """The flags every command that extracts features takes (the signature is what matters)."""


_FLAGS = inspect.signature(_extraction_flags, eval_str=True).parameters
_RENAMED = {"workers": "num_workers"}


def extraction_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command the extraction flags (``--batch-size``, ``--workers``, ``--device``,
    ``--precision``, ``--channels-last``, ``--compile``, ``--reduced-decode``, ``--strict``,
    ``--cache-dir``, ``--backend``, ``--ray-address``, ``--ray-workers``); it receives them, checked,
    as ``extraction: ExtractOptions`` (progress off under ``--json``)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "extraction"]
    at = next((i for i, p in enumerate(own) if p.name == "as_json"), len(own))  # flags go before --json
    ordered = (*own[:at], *_FLAGS.values(), *own[at:])
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in ordered]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        flags = {_RENAMED.get(name, name): kwargs.pop(name) for name in _FLAGS}
        extraction = ExtractOptions(**flags, progress=not kwargs.get("as_json", False))
        return command(extraction=extraction, **kwargs)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


VocabularyOpt = Annotated[
    str | None,
    typer.Option(
        "--vocabulary",
        "-v",
        help="A registered vocabulary (visual, imagenet, world) or a .txt/.json/.csv file of concepts.",
    ),
]
ConceptsOpt = Annotated[
    str | None, typer.Option("--concepts", "-c", help="Comma-separated concepts (instead of a vocabulary).")
]
