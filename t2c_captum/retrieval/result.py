"""The ranked results of one search, and their image grid."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError
from .query import Query

__all__ = ["RetrievalResult"]


@dataclass
class RetrievalResult:
    """The ranked results of one search.

    Attributes:
        query: the query searched.
        indices: ``[k]`` dataset indices of the results, best first.
        margins: ``[k]`` their margins (> 0: the image satisfies the query).
        scores: concept → ``[k]`` cosines of the results with that concept (uncentred).
        n_matching: images of the whole collection that satisfy the query.
        n_searched: images searched.
    """

    query: Query
    indices: torch.Tensor
    margins: torch.Tensor
    scores: dict[str, torch.Tensor]
    n_matching: int
    n_searched: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def matching(self) -> torch.Tensor:
        """``[k]`` booleans: which results satisfy the query."""
        return self.margins > 0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per result: rank, index, margin, matches, per-concept cosine."""
        return [
            {
                "rank": r + 1,
                "index": int(self.indices[r]),
                "margin": float(self.margins[r]),
                "matches": bool(self.margins[r] > 0),
                "scores": {c: float(s[r]) for c, s in self.scores.items()},
            }
            for r in range(len(self))
        ]

    def grid(
        self, source: Any, path: str | os.PathLike[str], *, cols: int = 4, tile: float = 2.0
    ) -> Path:
        """Save the results as an image grid (PNG by default) titled with rank, index and margin.

        Args:
            source: the images searched: an :class:`~t2c_captum.data.ImageSource`, a Dataset or
                anything :func:`~t2c_captum.data.open_source` takes (same order as the features).
            path: the file to write (format from the suffix).
            cols (int, optional): images per row. Default: ``4``
            tile (float, optional): inches per image. Default: ``2.0``

        Returns:
            Path: ``path``.
        """
        from matplotlib.figure import Figure

        from ..data import open_source

        if len(self) == 0:
            raise DataError("the search returned no images, so there is no grid to draw")
        if cols < 1:
            raise DataError(f"cols must be at least 1, got {cols}")
        images = open_source(source)
        n_cols = min(cols, len(self))
        n_rows = math.ceil(len(self) / n_cols)
        fig = Figure(figsize=(tile * n_cols, (tile + 0.25) * n_rows + 0.4), layout="constrained")
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for row in self.rows():
            index = row["index"]
            if index >= len(images):
                raise DataError(
                    f"result index {index} is outside the {len(images)} images given to grid(); "
                    "pass the same images that were searched"
                )
            ax = axes.flat[row["rank"] - 1]
            ax.imshow(images.load(index)[0])
            ax.set_title(f"#{row['rank']} [{index}] {row['margin']:+.2f}", fontsize=8,
                         color="black" if row["matches"] else "firebrick")
        fig.suptitle(str(self.query), fontsize=9)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
        return out


def _ranked(
    q: Query,
    ids: np.ndarray,
    margins: np.ndarray,
    raw: np.ndarray,
    k: int,
    matching_only: bool,
    n_searched: int,
    info: dict[str, Any],
) -> RetrievalResult:
    """The ``k`` rows with the largest margins (ties by dataset index), as a result; ``raw`` holds
    the rows' cosines with the query's concepts, in ``q.concepts()`` order."""
    order = np.lexsort((ids, -margins))[:k]
    if matching_only:
        order = order[margins[order] > 0]
    return RetrievalResult(
        query=q,
        indices=torch.from_numpy(ids[order].copy()),
        margins=torch.from_numpy(margins[order].astype(np.float32)),
        scores={c: torch.from_numpy(raw[order, j].astype(np.float32)) for j, c in enumerate(q.concepts())},
        n_matching=int((margins > 0).sum()),
        n_searched=n_searched,
        info=info,
    )

