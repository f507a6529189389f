"""Aligners fitted elsewhere: a linear map ``x @ W.T + b`` read from a tensors-only file.

The paper's public code saves its aligner with ``torch.save`` as ``{"W": [D, d], "b": [D]}``
(features ``@ W.T + b``); an ``nn.Linear`` state dict (``{"weight", "bias"}``) is the same map.
:func:`import_aligner` reads such a file without unpickling anything (``safetensors``, or
``torch.load(weights_only=True)``), checks its shapes against the backbone and space it is said to
connect, and returns an :class:`ImportedAligner` that records both identities, so that it saves as an
ordinary aligner artifact and is checked like one when it is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._exceptions import CheckpointFormatError, ConfigurationError, DimensionMismatchError
from .._io import load_state_dict_file
from .base import Aligner

__all__ = ["ImportedAligner", "import_aligner", "read_linear_map"]

#: the key sets an imported file may hold: the paper's ``torch.save`` dict, or an ``nn.Linear`` state dict
LINEAR_KEYS = (("W", "b"), ("weight", "bias"))


class ImportedAligner(Aligner):
    """A linear map ``z = x @ weight_.T + bias_`` given, not fitted here (see :func:`import_aligner`).

    It maps features as any aligner does, saves and loads as an artifact and is checked against
    its backbone and space; it cannot be refitted.

    Args:
        origin (str, optional): where the map came from (the imported file's name). Default: ``""``
        validation_fraction (float, optional): the held-out share used by code that splits rows
            the way aligners do (the imported map was fitted on rows unknown here). Default: ``0.1``
    """

    kind = "imported"

    def __init__(self, origin: str = "", validation_fraction: float = 0.1) -> None:
        super().__init__(validation_fraction=validation_fraction)
        self.origin = origin

    def get_params(self) -> dict[str, Any]:
        return {"origin": self.origin, **super().get_params()}

    def partial_fit(self, X: Any, Y: Any, indices: Any | None = None) -> Aligner:
        raise ConfigurationError(
            f"an imported aligner ({self.origin or 'a given linear map'}) is fixed and cannot be "
            "refitted; fit a new one for this pair instead (t2c fit, or LinearAligner().fit)"
        )

    def _solve(self) -> None:
        self._stale = False


def read_linear_map(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [D, d], b [D])`` from a tensors-only file holding exactly ``{"W", "b"}`` or
    ``{"weight", "bias"}``, as float32.

    Raises:
        CheckpointFormatError: the file holds anything but tensors (nothing is unpickled), other
            keys, or tensors of the wrong shape, type or values.
    """
    name = str(path)
    tensors = load_state_dict_file(path)
    keys = set(tensors)
    expected = next((pair for pair in LINEAR_KEYS if set(pair) == keys), None)
    if expected is None:
        closest = min(LINEAR_KEYS, key=lambda pair: len(keys.symmetric_difference(pair)))
        missing, extra = sorted(set(closest) - keys), sorted(keys - set(closest))
        raise CheckpointFormatError(
            f"{name!r} holds keys {sorted(keys)}; a linear aligner is exactly {{'W': [D, d], 'b': [D]}} "
            f"(the paper's torch.save) or {{'weight', 'bias'}} (nn.Linear.state_dict())"
            + (f"; missing {missing}" if missing else "")
            + (f"; not expected {extra}" if extra else "")
            + ". Save only those two tensors."
        )
    weight, bias = (tensors[key] for key in expected)
    if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
        raise CheckpointFormatError(
            f"{name!r}: {expected[0]!r} is {list(weight.shape)} and {expected[1]!r} is {list(bias.shape)}; "
            f"expected {expected[0]!r} [D, d] (features @ W.T) and {expected[1]!r} [D] with the same D"
        )
    for key, tensor in zip(expected, (weight, bias), strict=True):
        if not tensor.is_floating_point():
            raise CheckpointFormatError(f"{name!r}: {key!r} is {tensor.dtype}, not a floating-point tensor")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointFormatError(f"{name!r}: {key!r} holds NaN or infinite values")
    return weight.float().contiguous(), bias.float().contiguous()


def _dim(model: Any, *names: str) -> int | None:
    identity = dict(model.identity)
    return next((int(identity[n]) for n in names if identity.get(n) is not None), None)


def import_aligner(path: str | os.PathLike[str], backbone: Any, space: Any) -> ImportedAligner:
    """An aligner from a linear map fitted elsewhere (see :func:`read_linear_map`), recorded as
    mapping ``backbone``'s features into ``space`` (a space, or a backbone for cross-model maps).

    The aligner gives ``features @ W.T + b`` exactly. Save it with ``.save(NAME)``.

    Raises:
        CheckpointFormatError: the file is not a tensors-only linear map (see :func:`read_linear_map`).
        DimensionMismatchError: ``W`` does not map the backbone's feature size to the space's size.

    Examples::

        >>> aligner = import_aligner("resnet18_to_clip.pth", load_backbone("torchvision:resnet18"),
        ...                          load_space("open_clip:ViT-B-16@openai"))
        >>> aligner.save("r18")
    """
    weight, bias = read_linear_map(path)
    D, d = weight.shape
    d_model = _dim(backbone, "feature_dim")
    D_model = _dim(space, "embed_dim", "feature_dim")
    problems = []
    if d_model is not None and d != d_model:
        problems.append(f"it takes {d}-d features but {backbone.identity.get('id')!r} gives {d_model}-d")
    if D_model is not None and D_model != D:
        problems.append(f"it gives {D}-d vectors but {space.identity.get('id')!r} is {D_model}-d")
    if problems:
        raise DimensionMismatchError(
            f"{str(path)!r} maps {d} -> {D}: " + "; ".join(problems)
            + ". Name the backbone (and --layer) and the space the map was fitted for."
        )
    aligner = ImportedAligner(origin=Path(path).name)
    aligner.weight_, aligner.bias_ = weight, bias
    aligner.x_mean_, aligner.x_scale_ = torch.zeros(d), torch.ones(d)
    aligner.source_, aligner.target_ = dict(backbone.identity), dict(space.identity)
    aligner.fit_stats_ = {"imported_from": str(path)}
    return aligner
