"""The concept bottleneck artifact: ``NAME.safetensors`` (weights, concept embeddings, the aligner's
tensors) + ``NAME.json`` (parameters, classes, bank, aligner identity, report); nothing pickled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._exceptions import CheckpointFormatError, IncompatibleArtifactError
from .._identity import artifact_stem, identity_differences, recorded_id
from .._io import atomic_write_json, atomic_write_tensors, load_state_dict_file, read_json
from ..aligners.io import ALIGNER_TENSORS, aligner_from_state
from ..concepts.bank import ConceptBank
from .features import identity_diff
from .reports import PathPoint

if TYPE_CHECKING:
    from .model import ConceptBottleneck

__all__ = ["CBM_FORMAT", "check_aligner", "check_bank", "read_cbm", "restore", "saved_aligner", "write_cbm"]

CBM_FORMAT = 1


def write_cbm(model: ConceptBottleneck, path: str | os.PathLike[str]) -> Path:
    """Write a fitted model's ``NAME.safetensors`` + ``NAME.json``; returns the JSON path."""
    stem = artifact_stem(path, "cbm")
    tensors = {
        "coef": model.coef_,
        "intercept": model.intercept_,
        "concept_mean": model.concept_mean_,
        "concept_scale": model.concept_scale_,
        "bank_embeddings": model.bank.embeddings,
    }
    if model.probe_coef_ is not None:
        tensors.update(
            probe_coef=model.probe_coef_,
            probe_intercept=model.probe_intercept_,
            probe_x_mean=model.probe_x_mean_,
            probe_x_scale=model.probe_x_scale_,
        )
    aligner_meta = None
    if model.aligner is not None:
        for name in ALIGNER_TENSORS:
            tensors[f"aligner.{name}"] = getattr(model.aligner, name)
        aligner_meta = {
            "kind": model.aligner.kind,
            "params": model.aligner.get_params(),
            "source": model.aligner.source_,
            "target": model.aligner.target_,
            "fit_stats": getattr(model.aligner, "fit_stats_", {}),
        }
    from .._version import __version__

    meta = {
        "format_version": CBM_FORMAT,
        "library_version": __version__,
        "kind": "concept_bottleneck",
        "params": model.get_params(),
        "class_names": model.class_names_,
        "bank": {"concepts": model.bank.concepts, "space_id": model.bank.space_id, "info": model.bank.info},
        "aligner": aligner_meta,
        "n_features_in": model.n_features_in,
        "report": model.report().as_dict(),
    }
    out = {
        k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
        for k, v in tensors.items()
    }
    atomic_write_tensors(stem.with_suffix(".safetensors"), out, {"format": "t2c_captum.cbm"})
    atomic_write_json(stem.with_suffix(".json"), meta)
    return stem.with_suffix(".json")


def read_cbm(
    path: str | os.PathLike[str], *, bank: ConceptBank | None = None, aligner: Any = None
) -> tuple[ConceptBank, Any, dict[str, Any], dict[str, torch.Tensor]]:
    """Read an artifact and check ``bank`` and ``aligner`` against the saved ones: ``(bank, aligner,
    meta, tensors)``, where ``bank`` / ``aligner`` are the given ones or else the saved ones."""
    stem = artifact_stem(path, "cbm")
    meta = read_json(stem.with_suffix(".json")) if stem.with_suffix(".json").is_file() else None
    if not isinstance(meta, dict) or meta.get("kind") != "concept_bottleneck":
        raise CheckpointFormatError(
            f"{str(stem.with_suffix('.json'))!r} is not a saved concept bottleneck "
            "(ConceptBottleneck.save writes NAME.json + NAME.safetensors)"
        )
    if int(meta.get("format_version", 0)) > CBM_FORMAT:
        raise CheckpointFormatError(
            f"{str(stem)!r} uses CBM format {meta['format_version']}, newer than "
            f"this library understands ({CBM_FORMAT}); upgrade t2c_captum"
        )
    t = load_state_dict_file(stem.with_suffix(".safetensors"))
    saved_bank = ConceptBank(
        meta["bank"]["concepts"], t["bank_embeddings"], meta["bank"]["space_id"], meta["bank"].get("info")
    )
    # exactly as saved: normalising unit rows again can move their last bits
    saved_bank.embeddings = t["bank_embeddings"].float().clone()
    if bank is not None:
        check_bank(saved_bank, bank)
    saved = saved_aligner(meta.get("aligner"), t)
    if aligner is not None:
        check_aligner(saved, aligner)
    return (bank if bank is not None else saved_bank), (aligner if aligner is not None else saved), meta, t


def check_bank(saved: ConceptBank, given: ConceptBank) -> None:
    """Raise :class:`IncompatibleArtifactError` unless ``given`` holds the saved concepts, in order,
    embedded by the same space (the same recorded space id, where both record one, and the same
    embeddings)."""
    problems = []
    if saved.concepts != given.concepts:
        extra, lost = set(given.concepts) - set(saved.concepts), set(saved.concepts) - set(given.concepts)
        problems.append(
            f"concepts differ (given bank adds {sorted(extra)[:5]}, lacks {sorted(lost)[:5]}"
            + (", or orders them differently" if not extra and not lost else "")
            + ")"
        )
    # a bank without a recorded space (built from bare embeddings) compares no id, as every other
    # check of a bank's space does (``_identity.recorded_id``); its embeddings still have to match
    other_space = identity_differences(
        "bank", recorded_id(saved.space_id), recorded_id(given.space_id), prefix="space "
    )
    problems += other_space
    if not other_space and saved.concepts == given.concepts and not torch.allclose(
        saved.embeddings, given.embeddings, atol=1e-4
    ):
        problems.append("the concept embeddings differ (other prompts or templates, or other space weights)")
    if problems:
        raise IncompatibleArtifactError(
            "this concept bottleneck was fitted on another concept bank: "
            + "; ".join(problems)
            + ". Load it without bank= to use the saved "
            "concepts, or fit a new one on this bank."
        )


def saved_aligner(meta: dict[str, Any] | None, tensors: dict[str, torch.Tensor]) -> Any:
    """The aligner saved with a model (``None`` when it was fitted on space embeddings)."""
    if meta is None:
        return None
    from ..plugins import get_registries

    cls = get_registries().aligners.get(meta["kind"])
    for name in ALIGNER_TENSORS:
        if f"aligner.{name}" not in tensors:
            raise CheckpointFormatError(f"the saved concept bottleneck lacks the aligner's {name}")
    return aligner_from_state(cls, meta, tensors, "aligner.")


def check_aligner(saved: Any, given: Any) -> None:
    """Raise :class:`IncompatibleArtifactError` unless ``given`` is the saved aligner (same models,
    same weights)."""
    if saved is None:
        raise IncompatibleArtifactError(
            "this concept bottleneck was fitted on space embeddings, without an "
            "aligner; load it without aligner="
        )
    problems = identity_diff("backbone", saved.source_, getattr(given, "source_", {}))
    problems += identity_diff("space", saved.target_, getattr(given, "target_", {}))
    w_saved, w_given = saved.weight_.cpu(), getattr(given, "weight_", torch.empty(0)).detach().cpu()
    if w_saved.shape != w_given.shape:
        problems.append(f"aligner weights: saved {tuple(w_saved.shape)}, given {tuple(w_given.shape)}")
    elif not problems and not torch.allclose(w_saved.float(), w_given.float(), atol=1e-6):
        problems.append("the aligner's weights differ (another fit of the same pair)")
    if problems:
        raise IncompatibleArtifactError(
            "this concept bottleneck was fitted through another aligner: "
            + "; ".join(problems)
            + ". Load it without aligner= to use the saved "
            "one, or fit a new concept bottleneck for this aligner."
        )


def restore(model: ConceptBottleneck, meta: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    """Set a freshly made model's fitted state from an artifact's ``meta`` and tensors ``t``."""

    def arr(name: str) -> np.ndarray:
        if name not in t:
            raise CheckpointFormatError(f"the saved concept bottleneck lacks {name!r}")
        return t[name].double().numpy()

    report = meta.get("report", {})
    model.class_names_ = list(meta["class_names"])
    model.coef_, model.intercept_ = arr("coef"), arr("intercept")
    model.concept_mean_, model.concept_scale_ = arr("concept_mean"), arr("concept_scale")
    model.probe_coef_ = arr("probe_coef") if "probe_coef" in t else None
    if model.probe_coef_ is not None:
        model.probe_intercept_ = arr("probe_intercept")
        model.probe_x_mean_, model.probe_x_scale_ = arr("probe_x_mean"), arr("probe_x_scale")
    model.C_ = float(report.get("C", float("nan")))
    model.val_accuracy_ = float(report.get("val_accuracy", float("nan")))
    model.probe_val_accuracy_ = report.get("probe_val_accuracy")
    model.probe_C_ = report.get("probe_C")
    model.path_ = [PathPoint(**p) for p in report.get("path", [])]
    model.n_train_, model.n_val_ = int(report.get("n_train", 0)), int(report.get("n_val", 0))
    model.temperature_ = float(report.get("extra", {}).get("temperature", 1.0))
    if model.coef_.shape != (len(model.class_names_), len(model.bank)):
        raise CheckpointFormatError(
            f"saved weights are {tuple(model.coef_.shape)} but the model has {len(model.class_names_)} "
            f"classes and {len(model.bank)} concepts; the files are corrupted"
        )
