"""Load the committed concept-world models (safetensors weights + JSON configs)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from t2c_captum._exceptions import WorldError
from t2c_captum.world.models import AutoEncoder, ShapeCNN, TinyCLIP, WorldViT

__all__ = ["DEFAULT_WEIGHTS_DIR", "REGENERATE_COMMAND", "WORLD_MODELS", "load_world_model", "weights_digest",
           "world_model_config"]

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REGENERATE_COMMAND = "python -m t2c_captum.world.train"
WORLD_MODELS = ("world-clip", "world-cnn", "world-ae", "world-vit")
_CLASSES: dict[str, type[nn.Module]] = {
    "TinyCLIP": TinyCLIP, "ShapeCNN": ShapeCNN, "AutoEncoder": AutoEncoder, "WorldViT": WorldViT,
}


def _broken(name: str, path: Path, problem: str) -> WorldError:
    return WorldError(
        f"world model {name!r}: {problem} ({path}). Regenerate the world weights with "
        f"`{REGENERATE_COMMAND}` (about 15 minutes on 2 CPU cores)."
    )


def _check_name(name: str) -> None:
    if name not in WORLD_MODELS:
        import difflib

        close = difflib.get_close_matches(name, WORLD_MODELS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise WorldError(
            f"unknown world model {name!r}.{hint} Valid world models: {', '.join(WORLD_MODELS)}."
        )


def world_model_config(name: str, weights_dir: Path | str | None = None) -> dict:
    """The JSON config (architecture, training settings, calibration) of a world model."""
    _check_name(name)
    path = Path(weights_dir or DEFAULT_WEIGHTS_DIR) / f"{name}.json"
    if not path.is_file():
        raise _broken(name, path, "config file is missing")
    try:
        config = json.loads(path.read_text())
        _CLASSES[config["class"]]
        config["hparams"]
    except (ValueError, KeyError, TypeError) as err:
        raise _broken(name, path, f"config file is corrupted ({err!r})") from err
    return config


def _build(config: dict) -> nn.Module:
    hparams = dict(config["hparams"])
    if config["class"] == "TinyCLIP":
        vocab_size = hparams.pop("vocab_size")
        return TinyCLIP(torch.arange(vocab_size), **hparams)
    return _CLASSES[config["class"]](**hparams)


def weights_digest(name: str, weights_dir: Path | str | None = None) -> str:
    """First 16 hex digits of the SHA-256 of a world model's weights file (keys caches by weights)."""
    import hashlib

    path = Path(weights_dir or DEFAULT_WEIGHTS_DIR) / f"{name}.safetensors"
    if not path.is_file():
        raise _broken(name, path, "weights file is missing")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_world_model(name: str, weights_dir: Path | str | None = None) -> nn.Module:
    """Build a world model from its JSON config, load its safetensors weights, set eval mode.

    Args:
        name: one of ``WORLD_MODELS`` ("world-clip", "world-cnn", "world-ae", "world-vit").
        weights_dir: folder with ``<name>.safetensors`` / ``<name>.json`` (default: packaged).

    Returns:
        The model in eval mode, float32, on CPU.

    Raises:
        WorldError: unknown name, or missing/corrupted files (the message says how to regenerate).
    """
    from safetensors.torch import load_file

    config = world_model_config(name, weights_dir)
    path = Path(weights_dir or DEFAULT_WEIGHTS_DIR) / f"{name}.safetensors"
    if not path.is_file():
        raise _broken(name, path, "weights file is missing")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise _broken(name, path, f"weights file is not valid safetensors ({err})") from err
    try:
        model = _build(config)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as err:
        raise _broken(name, path, f"weights do not match the config ({err})") from err
    return model.float().eval()
