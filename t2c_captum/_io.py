"""Safe loading and atomic writing of tensors and JSON."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._exceptions import CheckpointFormatError

__all__ = [
    "atomic_write_json",
    "atomic_write_tensors",
    "keyed_identity",
    "load_state_dict_file",
    "read_json",
    "weights_digest",
]

#: module -> (the state it was computed for, digest)
_DIGESTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[Any, ...], str]]
_DIGESTS = weakref.WeakKeyDictionary()


def _state(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter's and buffer's name, dtype, shape and bytes: two models of the same
    architecture with other weights (another checkpoint, another random init, a fine-tuned copy) get
    other digests. Kept per module until a tensor is replaced or changed in place (optimizer steps and
    ``load_state_dict`` bump the tensors' versions), so reading it again is cheap."""
    state = _state(module)
    key = tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype) for name, t in state)
    cached = _DIGESTS.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in state:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(flat.view(torch.uint8).numpy().data)
    digest = h.hexdigest()
    _DIGESTS[module] = (key, digest)
    return digest


def keyed_identity(model: Any) -> dict[str, Any]:
    """``model.identity`` with its weights: the identity's own ``weights`` field where it has one (the
    concept world's models record their files' digest), else :func:`weights_digest`. What keys
    caches of computed features and embeddings, so that other weights never reuse them."""
    identity = dict(getattr(model, "identity", None) or {"id": type(model).__name__})
    if "weights" not in identity and isinstance(model, torch.nn.Module):
        identity["weights"] = weights_digest(model)
    return identity


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict without unpickling code.

    ``.safetensors`` files are read with safetensors; anything else goes through
    ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.

    Raises:
        CheckpointFormatError: the file is missing, corrupted or holds more than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointFormatError(
                f"{str(path)!r} is not a valid safetensors file ({exc}); re-save it with "
                "safetensors.torch.save_file(state_dict, path)"
            ) from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointFormatError(
            f"{str(path)!r} is neither safetensors nor a tensors-only torch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Nothing is "
            "unpickled for safety: convert it with safetensors.torch.save_file(model.state_dict(), "
            "'model.safetensors') in a trusted environment."
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(
            f"{str(path)!r} does not hold a state dict of tensors; save model.state_dict() instead"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _atomic_replace(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors as safetensors through a temporary file and a rename."""
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic_replace(Path(path), lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON through a temporary file and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")

    _atomic_replace(Path(path), write)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with a clear error when it is not JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CheckpointFormatError(f"{str(path)!r} is not valid JSON: {exc}") from exc
