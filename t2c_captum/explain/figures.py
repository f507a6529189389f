"""Figures of the Captum bridge (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        arr = image.detach().float().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = arr.transpose(1, 2, 0)
        lo, hi = arr.min(), arr.max()
        return (arr - lo) / (hi - lo + 1e-8)
    return np.asarray(image.convert("RGB"), dtype=float) / 255.0


def overlay_figure(
    images: torch.Tensor | Sequence[Any],
    maps: torch.Tensor,
    title: str,
    path: str | None = None,
    cols: int = 8,
) -> Any:
    """Images (PIL or tensors; tensors are min-max scaled) with heat maps on top, in a grid."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = maps.shape[0]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.8 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        rgb = _as_rgb(images[i])
        ax.imshow(rgb)
        heat = maps[i].detach().float().cpu().numpy()
        h, w = rgb.shape[:2]
        ax.imshow(heat / (heat.max() + 1e-12), cmap="inferno", alpha=0.55, interpolation="bilinear",
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
