"""Aligner artifacts: ``NAME.safetensors`` (tensors) + ``NAME.json`` (metadata), nothing pickled.

Loading from a local path and from ``hf-hub:ORG/REPO[/NAME]`` goes through the same code: the hub is
only used to fetch the two files into the local cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    CheckpointFormatError,
    IncompatibleArtifactError,
    PluginError,
    UnknownNameError,
)
from .._identity import artifact_stem, identity_differences
from .._io import atomic_write_json, atomic_write_tensors, load_state_dict_file, read_json

if TYPE_CHECKING:  # base imports this module for Aligner.save/load
    from .base import Aligner

__all__ = [
    "ARTIFACT_FORMAT",
    "check_compatible",
    "load_aligner",
    "registered_probe",
    "resolve_artifact",
    "save_aligner",
]

ARTIFACT_FORMAT = 1
#: the tensors of a fitted aligner, in every artifact that holds one
ALIGNER_TENSORS = ("weight_", "bias_", "x_mean_", "x_scale_")


def _library_version() -> str:
    from .._version import __version__

    return __version__


def save_aligner(aligner: Aligner, path: str | os.PathLike[str]) -> Path:
    """Save a fitted aligner; returns the JSON path. Writes are atomic."""
    aligner.solve()
    stem = artifact_stem(path, "aligner")
    d, D = aligner.dims or (0, 0)
    meta = {
        "format_version": ARTIFACT_FORMAT,
        "library_version": _library_version(),
        "kind": aligner.kind,
        "params": aligner.get_params(),
        "source": aligner.source_,
        "target": aligner.target_,
        "dims": {"source": d, "target": D},
        "fit_stats": aligner.fit_stats_,
    }
    tensors = {name: getattr(aligner, name) for name in ALIGNER_TENSORS}
    atomic_write_tensors(stem.with_suffix(".safetensors"), tensors, {"format": "t2c_captum.aligner"})
    atomic_write_json(stem.with_suffix(".json"), meta)
    return stem.with_suffix(".json")


def resolve_artifact(path: str | os.PathLike[str], default_name: str = "aligner") -> Path:
    """Local stem of an artifact; ``hf-hub:ORG/REPO[/NAME]`` is downloaded to the cache first."""
    text = os.fspath(path)
    if text.startswith("hf-hub:"):
        parts = text.removeprefix("hf-hub:").strip("/").split("/")
        if len(parts) < 2:
            raise CheckpointFormatError(f"{text!r}: use hf-hub:ORG/REPO or hf-hub:ORG/REPO/NAME")
        repo_id, name = "/".join(parts[:2]), "/".join(parts[2:]) or default_name
        from huggingface_hub import hf_hub_download

        try:
            files = [hf_hub_download(repo_id, f"{name}{ext}") for ext in (".json", ".safetensors")]
        except Exception as exc:
            raise CheckpointFormatError(
                f"could not fetch {name}.json/{name}.safetensors from hf-hub {repo_id!r} ({exc}). "
                "Offline? Download both files and pass the local path instead."
            ) from exc
        return Path(files[0]).with_suffix("")
    return artifact_stem(text, "aligner")


def check_compatible(aligner: Aligner, backbone: Any = None, space: Any = None) -> None:
    """Raise :class:`IncompatibleArtifactError` listing every field that differs."""
    problems: list[str] = []
    if backbone is not None:
        problems += identity_differences(
            "aligner", aligner.source_, dict(backbone.identity), prefix="backbone."
        )
    if space is not None:
        problems += identity_differences("aligner", aligner.target_, dict(space.identity), prefix="space.")
    if problems:
        raise IncompatibleArtifactError(
            "this aligner was fitted for a different model: "
            + "; ".join(problems)
            + ". Fit a new aligner for this pair (t2c fit), or load the matching model."
        )


def registered_probe(name: str) -> Any:
    """What the probe registered as ``name`` loads (a fitted :class:`Aligner` or a probe), or ``None``
    when no probe has that name or a file or folder of that name exists (paths win).

    Raises:
        PluginError: the probe's loader raised or returned something else (the plugin is named).
    """
    from ..plugins import get_registries

    registry = get_registries().probes
    if name not in registry or os.path.exists(name) or Path(name).with_suffix(".json").is_file():
        return None
    entry = registry.entry(name)
    try:
        loaded = entry.obj()
    except Exception as exc:
        raise PluginError(
            f"probe {name!r} from plugin {entry.plugin!r} failed to load ({type(exc).__name__}: {exc}); "
            "reinstall or update that plugin, or block it with T2C_BLOCK_PLUGINS"
        ) from exc
    aligner = getattr(loaded, "aligner", loaded)
    if not _is_fitted_aligner(aligner):
        raise PluginError(
            f"probe {name!r} from plugin {entry.plugin!r} loaded {type(loaded).__name__}, not a fitted "
            "aligner or probe; its loader must return Aligner.load(path) or a Probe"
        )
    return loaded


def _is_fitted_aligner(obj: Any) -> bool:
    """An object with an aligner's fitted interface (checked by shape: this module sits below
    :class:`~t2c_captum.aligners.base.Aligner`)."""
    return all(callable(getattr(obj, m, None)) for m in ("transform", "save")) and (
        getattr(obj, "is_fitted", False) is True and isinstance(getattr(obj, "source_", None), dict)
    )


def load_aligner(path: str | os.PathLike[str], backbone: Any = None, space: Any = None) -> Aligner:
    """Load an aligner artifact (or a registered probe's aligner, by the probe's name) and check it
    against ``backbone`` and ``space`` when given."""
    from ..plugins import get_registries

    probe = registered_probe(os.fspath(path))
    if probe is not None:
        aligner = getattr(probe, "aligner", probe)
        check_compatible(aligner, backbone, space)
        return aligner
    stem = resolve_artifact(path)
    json_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not json_path.is_file():
        probes = get_registries().probes
        close = UnknownNameError("probe", os.fspath(path), probes).suggestions if len(probes) else []
        raise CheckpointFormatError(
            f"no aligner metadata at {str(json_path)!r}; an aligner is saved as NAME.json + "
            "NAME.safetensors (Aligner.save), or give a registered probe's name (t2c plugins)"
            + (f". Did you mean the probe {', '.join(map(repr, close))}?" if close else "")
        )
    meta = read_json(json_path)
    if not isinstance(meta, dict) or "kind" not in meta:
        raise CheckpointFormatError(f"{str(json_path)!r} is not aligner metadata")
    if int(meta.get("format_version", 0)) > ARTIFACT_FORMAT:
        raise CheckpointFormatError(
            f"{str(json_path)!r} uses artifact format {meta['format_version']}, newer than this "
            f"library understands ({ARTIFACT_FORMAT}); upgrade t2c_captum"
        )
    try:
        cls = get_registries().aligners.get(meta["kind"])
    except UnknownNameError as exc:
        raise CheckpointFormatError(f"{str(json_path)!r}: {exc}") from exc
    tensors = load_state_dict_file(tensor_path)
    missing = [k for k in ALIGNER_TENSORS if k not in tensors]
    if missing:
        raise CheckpointFormatError(f"{str(tensor_path)!r} lacks tensors {missing}")
    aligner = aligner_from_state(cls, meta, tensors)
    check_compatible(aligner, backbone, space)
    return aligner


def aligner_from_state(
    cls: type[Aligner], meta: dict[str, Any], tensors: dict[str, Any], prefix: str = ""
) -> Aligner:
    """A fitted ``cls`` (the class of ``meta["kind"]``, looked up by the caller) from an artifact's
    metadata (``params``, ``source``, ``target``, ``fit_stats``) and its :data:`ALIGNER_TENSORS`,
    stored as ``PREFIXweight_`` and so on (the caller checks that they are there)."""
    aligner = cls(**meta.get("params", {}))
    for name in ALIGNER_TENSORS:
        setattr(aligner, name, tensors[prefix + name])
    aligner.source_ = meta.get("source", {})
    aligner.target_ = meta.get("target", {})
    aligner.fit_stats_ = meta.get("fit_stats", {})
    return aligner
