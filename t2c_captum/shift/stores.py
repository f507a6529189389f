"""Feature stores for a shift test: which features to read, checks that both stores (and the aligner
and concept bank) agree on the encoder, the encoder for images, and concept-score moments streamed
from a store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._exceptions import DataError, DimensionMismatchError, IncompatibleArtifactError
from .._identity import identity_differences, recorded_id
from ..concepts.bank import ConceptBank
from .moments import ConceptMoments

_UNLABELLED = -1


def _encoder_diff(
    a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str] = ("first", "second")
) -> list[str]:
    return identity_differences("store", a, b, names=names)


def _pick_key(store: Any, key: str | None, aligner: Any) -> str:
    if key is not None:
        return key
    return "target" if aligner is None and "target" in store.encoder_names else "source"


def _check_stores(stores: tuple[Any, Any], key: str, bank: ConceptBank, aligner: Any) -> None:
    ids = [dict(s.manifest["encoders"][s.check(key)]) for s in stores]
    problems = _encoder_diff(ids[0], ids[1])
    if problems:
        raise IncompatibleArtifactError(
            f"the two datasets' {key!r} features come from different encoders ({'; '.join(problems)}); "
            "extract both with the same backbone (and layer and preprocessing)"
        )
    if aligner is not None:
        problems = _encoder_diff(
            dict(getattr(aligner, "source_", None) or {}), ids[0], names=("aligner", "features")
        )
        if problems:
            raise IncompatibleArtifactError(
                f"the aligner was fitted on another backbone than the stores' {key!r} features "
                f"({'; '.join(problems)}); use the aligner fitted for this backbone"
            )
    elif identity_differences("bank", recorded_id(bank.space_id), recorded_id(ids[0].get("id"))):
        raise DimensionMismatchError(
            f"without an aligner the features must be the space's own image embeddings, but the stores' "
            f"{key!r} features come from {ids[0]['id']!r} and the concept bank from {bank.space_id!r}; "
            "pass aligner= (and its backbone), or a bank built with that space"
        )


def _store_class_names(stores: tuple[Any, Any], by_class: bool) -> list[str] | None:
    names = [s.class_names for s in stores]
    if by_class and names[0] and names[1] and list(names[0]) != list(names[1]):
        raise DataError(
            "the two datasets name their classes differently "
            f"({names[0][:5]}... vs {names[1][:5]}...); by-class tests need the same label set"
        )
    return list(names[0] or names[1] or []) or None


def _encoder_for(aligner: Any, backbone: Any) -> Any:
    if backbone is not None:
        if aligner is not None:
            from ..aligners import check_compatible

            check_compatible(aligner, backbone)
        return backbone
    source = dict(getattr(aligner, "source_", None) or {})
    if aligner is None or not source.get("id"):
        raise DataError(
            "to score images give the encoder: backbone= (the backbone the aligner maps from), or, "
            "without an aligner, the space itself as backbone=; or pass feature stores"
        )
    from ..backbones import load_backbone

    layer = source.get("layer")
    return load_backbone(source["id"], layer=None if layer in (None, "penultimate") else layer)


def _moments_of(store: Any, key: str, bank: ConceptBank, aligner: Any, by_class: bool) -> ConceptMoments:
    from ..concepts.scores import concept_scores

    moments = ConceptMoments(len(bank))
    unlabelled = 0
    for shard in store.iter_shards([key]):
        if not shard["indices"].numel():
            continue
        scores = concept_scores(shard[key], bank, aligner)
        if by_class:
            labels = shard["labels"].numpy()
            keep = labels != _UNLABELLED
            unlabelled += int((~keep).sum())
            moments.update(scores[torch.from_numpy(keep)], labels[keep])
        else:
            moments.update(scores)
    if by_class and moments.n == 0 and unlabelled:
        raise DataError(f"{store!r} has no labels; test without by_class (--by-class), or label the images")
    return moments

