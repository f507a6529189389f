"""Feature-space directions moved into the space by a fitted aligner's linear part (``W v``).

Below the tasks so that any of them (naming in ``explain``, captions of directions in ``decoders``)
moves directions the same way without importing each other.
"""

from __future__ import annotations

from typing import Any

import torch

from .._exceptions import DimensionMismatchError
from .base import as_tensor_2d

__all__ = ["align_directions", "direction_rows", "linear_part_for"]


def direction_rows(values: Any, name: str) -> torch.Tensor:
    """``values`` as float ``[N, d]`` rows (a ``[d]`` vector becomes one row; leading axes are flattened)."""
    t = torch.as_tensor(values).float()
    return as_tensor_2d(t.reshape(-1, t.shape[-1]), name)


def linear_part_for(aligner: Any, d: int) -> torch.Tensor:
    """The aligner's linear part ``W`` ``[D, d]`` (float, CPU), checked to take ``d``-d features."""
    weight = aligner.linear_part.detach().float().cpu()
    if weight.shape[1] != d:
        raise DimensionMismatchError(
            f"the aligner takes {weight.shape[1]}-d features but the vectors are {d}-d; use the aligner "
            "fitted on this backbone and layer"
        )
    return weight


def align_directions(directions: Any, aligner: Any) -> torch.Tensor:
    """Feature-space directions ``[N, d]`` (or one ``[d]``) moved into the space by the aligner's
    linear part (``W v``; the bias cancels in a difference), as ``explain.name_directions`` names them."""
    v = direction_rows(directions, "directions")
    return v @ linear_part_for(aligner, v.shape[1]).T
