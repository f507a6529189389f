"""Decode anything into a caption: images through an aligned backbone, feature vectors, and directions
(a neuron, a CBM concept's weights, a shift, a text CAV) pushed through the aligner into the space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .._exceptions import DataError, DimensionMismatchError
from ..aligners.base import as_tensor_2d
from ..aligners.directions import align_directions
from .base import check_embeddings

if TYPE_CHECKING:
    from ..features import ExtractOptions

__all__ = [
    "DIRECTION_KINDS",
    "align_directions",
    "caption_direction",
    "caption_embeddings",
    "caption_features",
    "caption_images",
    "shift_direction",
]

#: What a direction may be: a vector in the backbone's feature space, or already in the space.
DIRECTION_KINDS = ("feature", "space")


def _check_pair(decoder: Any, aligner: Any) -> None:
    target = dict(getattr(aligner, "target_", {}) or {})
    if target and hasattr(decoder, "check_space"):
        decoder.check_space(identity=target)


def caption_embeddings(
    decoder: Any, embeddings: Any, *, project: bool | None = None, **options: Any
) -> list[str]:
    """Captions of ``[N, D]`` embeddings of the decoder's space (image embeddings: ``project`` onto
    the text memory, the default; text embeddings: ``project=False``)."""
    return list(decoder.decode(embeddings, project=project, **options))


def caption_features(
    decoder: Any, features: Any, aligner: Any, *, project: bool | None = None, **options: Any
) -> list[str]:
    """Captions of backbone features ``[N, d]`` (or one ``[d]``) aligned into the decoder's space.

    Raises:
        DimensionMismatchError: the features are not the aligner's input size.
        IncompatibleArtifactError: the aligner maps into another space than the decoder's.
    """
    _check_pair(decoder, aligner)
    x = as_tensor_2d(features, "features")
    d = aligner.dims[0] if aligner.dims else x.shape[1]
    if x.shape[1] != d:
        raise DimensionMismatchError(
            f"features are {x.shape[1]}-d but the aligner takes {d}-d features of "
            f"{aligner.source_.get('id', 'its backbone')}; use that backbone (and layer)"
        )
    return caption_embeddings(decoder, aligner.transform(x).cpu(), project=project, **options)


@torch.no_grad()
def caption_images(
    decoder: Any,
    images: Any,
    backbone: Any = None,
    aligner: Any = None,
    *,
    space: Any = None,
    extraction: ExtractOptions | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> list[str]:
    """Captions of images: through ``backbone`` + ``aligner``, or through the ``space``'s own image
    encoder when no backbone is given.

    Args:
        decoder: a caption decoder for the space.
        images: anything :func:`~t2c_captum.data.open_source` opens (folder, list, ``world:SPLIT``...).
        backbone (Backbone, optional) / aligner (Aligner, optional): the aligned backbone.
        space (Space, optional): the space (used when there is no backbone).
        extraction (ExtractOptions, optional): how the images are extracted (batch size, decoding
            workers, device, precision, cache folder, the Ray backend...).
            Default: ``ExtractOptions(progress=False)``
        batch_size (int, optional): images per forward pass, applied over ``extraction``.
            Default: ``extraction``'s (``64``)
        device (str, optional): the extraction device, applied over ``extraction``.
            Default: ``extraction``'s (``"auto"``)
        progress (bool, optional): show progress, applied over ``extraction``.
            Default: ``extraction``'s (``False`` without ``extraction``)
        **options: decoding options for the decoder (``strategy="beam"``, ``project=False``...).
    """
    from ..data import open_source
    from ..features import ExtractOptions

    extract = ExtractOptions.for_task(extraction, batch_size=batch_size, device=device, progress=progress)
    source = open_source(images)
    if backbone is not None:
        if aligner is None:
            raise DataError("captioning through a backbone needs its aligner into the decoder's space")
        store = extract.extract(source, {"source": backbone})
        return caption_features(decoder, store.load(["source"])["source"], aligner, **options)
    if space is None:
        raise DataError(
            "give backbone= and aligner=, or space= to caption images with the space's own encoder"
        )
    if hasattr(decoder, "check_space"):
        decoder.check_space(space)
    store = extract.extract(source, {"space": space})
    return caption_embeddings(decoder, store.load(["space"])["space"], **options)


def caption_direction(
    decoder: Any, direction: Any, aligner: Any = None, *, kind: str = "feature", **options: Any
) -> list[str]:
    """Captions of directions: what moving along them adds, in words.

    A direction has no position, so it is not decoded as a point: its unit image ``W v`` (``kind=
    "feature"``: a neuron ``e_i``, a CBM concept's weight vector over features, a text CAV, a
    difference of mean features) or the vector itself (``kind="space"``: a difference of aligned
    means) is matched against the decoder's text memory with the memory's mean removed (the same
    centring :func:`~t2c_captum.explain.name_directions` applies to concepts), and the caption is
    decoded from the matched texts.

    Args:
        decoder: a :class:`~t2c_captum.decoders.PrefixDecoder` (it needs a text memory).
        direction: ``[d]`` / ``[N, d]`` (``feature``) or ``[D]`` / ``[N, D]`` (``space``).
        aligner (Aligner, optional): needed for ``kind="feature"``.
        kind (str, optional): ``"feature"`` or ``"space"``. Default: ``"feature"``
    """
    if kind not in DIRECTION_KINDS:
        raise DataError(f"kind must be one of {DIRECTION_KINDS}, not {kind!r}")
    if kind == "feature":
        if aligner is None:
            raise DataError("a feature-space direction needs the aligner (or pass kind='space')")
        _check_pair(decoder, aligner)
        moved = align_directions(direction, aligner)
    else:
        moved = check_embeddings(direction, decoder.embed_dim, "directions")
    if not hasattr(decoder, "project"):
        raise DataError(f"{type(decoder).__name__} has no text memory to decode directions with")
    if bool((moved.norm(dim=-1) == 0).any()):
        raise DataError("a direction is zero (after the aligner); it moves nothing and names nothing")
    points = decoder.project(nn.functional.normalize(moved, dim=-1), centre=True)
    return caption_embeddings(decoder, points, project=False, **options)


def shift_direction(source_features: Any, target_features: Any, aligner: Any = None) -> torch.Tensor:
    """``mean aligned target − mean aligned source`` ``[D]``: the direction of a dataset shift in the
    space (with ``aligner=None`` the inputs are taken as already in the space)."""
    a, b = as_tensor_2d(source_features, "source_features"), as_tensor_2d(target_features, "target_features")
    if a.shape[1] != b.shape[1]:
        raise DimensionMismatchError(f"source features are {a.shape[1]}-d, target features {b.shape[1]}-d")
    if aligner is not None:
        a, b = aligner.transform(a).cpu(), aligner.transform(b).cpu()
    return b.mean(0) - a.mean(0)
