"""The caption-decoder protocol: embeddings of a text-image space in, captions out."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .._exceptions import DimensionMismatchError, IncompatibleArtifactError
from .._identity import identity_differences as _differences
from ..aligners.base import as_tensor_2d

__all__ = ["CaptionDecoder", "check_embeddings", "check_space", "identity_differences", "project_onto"]


@runtime_checkable
class CaptionDecoder(Protocol):
    """Anything that turns ``[N, D]`` embeddings of one space into ``N`` captions.

    Attributes:
        embed_dim (int): ``D``, the size of the space's embeddings it decodes.
        space_identity (dict): identity of the space it was trained for (``{}`` when unknown).
    """

    embed_dim: int
    space_identity: dict[str, Any]

    def decode(self, embeddings: Any, *, project: bool | None = None, **options: Any) -> list[str]:
        """Captions of ``embeddings`` (``[N, D]`` or ``[D]``); ``project`` asks to project the inputs
        onto the decoder's text memory first (``None``: the decoder's default); ``options`` are
        :class:`~t2c_captum.decoders.generation.GenerationOptions` fields."""
        ...


def identity_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Fields of two space identities that differ (only fields both record), as
    ``"field: decoder has X, given Y"``.

    Kept for compatibility: a thin wrapper over the one comparison,
    ``t2c_captum._identity.identity_differences("decoder", ...)`` (fields: ``COMPARED["decoder"]``).
    """
    return _differences("decoder", saved, given, names=("decoder has", "given"))


def check_space(decoder: Any, space: Any = None, identity: dict[str, Any] | None = None) -> None:
    """Raise :class:`IncompatibleArtifactError` when ``decoder`` was made for another space than
    ``space`` (or a space ``identity``, such as an aligner's ``target_``), listing what differs."""
    given = dict(space.identity) if space is not None else dict(identity or {})
    if not given:
        return
    problems = identity_differences(dict(decoder.space_identity), given)
    # the size the decoder decodes against the space's, whether or not its identity records one
    dim = given.get("embed_dim", given.get("dim"))
    if dim is not None:
        problems += _differences(
            "decoder", {"embed_dim": int(decoder.embed_dim)}, {"embed_dim": int(dim)},
            names=("decoder decodes", "the space has"),
        )
    if problems:
        raise IncompatibleArtifactError(
            "this decoder was trained for a different space: "
            + "; ".join(dict.fromkeys(problems))
            + ". Train a decoder on this space (t2c decoder train SPACE --corpus ...), or use the space "
            "(and an aligner into it) that the decoder was made for."
        )


def check_embeddings(embeddings: Any, dim: int, what: str = "embeddings") -> torch.Tensor:
    """A float ``[N, dim]`` tensor, or a :class:`DimensionMismatchError` that says what was given."""
    x = as_tensor_2d(embeddings, what)
    if x.shape[1] != dim:
        raise DimensionMismatchError(
            f"{what} are {x.shape[1]}-d but the decoder decodes {dim}-d embeddings of its space; pass "
            "the space's embeddings, or backbone features through an aligner into that space "
            "(caption_features(decoder, features, aligner))"
        )
    return x


def project_onto(
    x: torch.Tensor, memory: torch.Tensor, temperature: float, *, centre: bool = False
) -> torch.Tensor:
    """Move unit vectors ``x`` onto a memory of unit text embeddings: ``normalise(softmax(x·mᵀ/τ)·m)``.

    With ``centre`` the memory's mean is removed before the similarities are taken (for directions,
    which are differences and carry no mean), and the weighted sum is of the original memory rows.
    """
    keys = memory
    if centre:
        keys = nn.functional.normalize(memory - memory.mean(0), dim=-1)
    weights = torch.softmax((nn.functional.normalize(x, dim=-1) @ keys.T) / temperature, dim=-1)
    return nn.functional.normalize(weights @ memory, dim=-1)
