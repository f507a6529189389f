"""What the concept commands share: aligner + backbone + space, a concept bank, features of images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..concepts import ConceptBank, Vocabulary, resolve_vocabulary

__all__ = [
    "AlignedData",
    "BackboneOpt",
    "CheckpointOpt",
    "ConceptsOpt",
    "DeviceOpt",
    "JsonOpt",
    "VocabularyOpt",
    "backbone_features",
    "load_aligned",
    "make_bank",
]

BackboneOpt = Annotated[str | None, typer.Option(help="Override the backbone recorded in the aligner.")]
CheckpointOpt = Annotated[str | None, typer.Option(help="Local backbone weights.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead.")]

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


@dataclass
class AlignedData:
    """A saved aligner with its backbone and space, ready to score images."""

    aligner: Any
    backbone: Any
    space: Any

    def features(
        self, data: str, *, batch_size: int = 64, device: str = "auto", progress: bool = True
    ) -> Any:
        """A feature store (key ``source``) of the backbone's features of ``data``."""
        return backbone_features(data, self.backbone, batch_size=batch_size, device=device, progress=progress)


def backbone_features(
    data: Any, backbone: Any, *, batch_size: int = 64, device: str = "auto", progress: bool = True
) -> Any:
    """A feature store (key ``source``) of ``backbone``'s features of ``data``."""
    from ..features import extract_features

    return extract_features(
        data, {"source": backbone}, batch_size=batch_size, device=device, progress=progress
    )


def load_aligned(aligner: str, backbone: str | None = None, checkpoint: str | None = None) -> AlignedData:
    """Load a saved aligner and the backbone and space recorded in it (checked to match)."""
    from ..cli import _load_pair

    al, bb, tg = _load_pair(aligner, backbone, None, checkpoint, None)
    return AlignedData(al, bb, tg)


def make_bank(space: Any, vocabulary: str | None, concepts: str | None) -> ConceptBank:
    """A concept bank from ``--concepts a,b,c`` or ``--vocabulary NAME``.

    Without either: ``world`` for the concept world's tiny CLIP, ``visual`` for any other space.
    """
    if concepts:
        return ConceptBank.build(space, Vocabulary([c.strip() for c in concepts.split(",") if c.strip()]))
    default = "world" if getattr(space, "name", "") == "world-clip" else "visual"
    return ConceptBank.build(space, resolve_vocabulary(vocabulary or default))
