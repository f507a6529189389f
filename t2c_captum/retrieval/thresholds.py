"""Thresholds of concept terms: where a concept starts to count as present (z-score, quantile, cosine,
contrast) and the default for concepts written without one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .._exceptions import DataError

__all__ = ["DEFAULT_THRESHOLD", "Threshold", "ThresholdKind", "contrast", "cosine", "quantile", "zscore"]

ThresholdKind = Literal["z", "quantile", "cosine", "contrast"]

_PREFIX: dict[str, str] = {"z": "z", "quantile": "q", "cosine": "", "contrast": "c"}


@dataclass(frozen=True)
class Threshold:
    """Where a concept starts to count as present.

    Args:
        kind: ``"z"`` (z-score of the concept's score over the searched collection), ``"quantile"``
            (a quantile of those scores, in [0, 1]), ``"cosine"`` (an absolute cosine) or
            ``"contrast"`` (the concept's cosine minus the largest cosine among its alternatives,
            the other concepts of its group: a cosine difference).
        value: the cut-off in that unit.
    """

    kind: ThresholdKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX:
            raise DataError(
                f"threshold kind must be 'z', 'quantile', 'cosine' or 'contrast', not {self.kind!r}"
            )
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise DataError(f"a {self.kind} threshold needs a finite number, got {self.value!r}")
        if self.kind == "quantile" and not 0.0 <= self.value <= 1.0:
            raise DataError(f"a quantile threshold must lie in [0, 1], got {self.value!r} (e.g. q0.9)")
        if self.kind == "cosine" and not -1.0 <= self.value <= 1.0:
            raise DataError(f"a cosine threshold must lie in [-1, 1], got {self.value!r}")

    def __str__(self) -> str:
        return f"{_PREFIX[self.kind]}{self.value:g}"


def zscore(value: float) -> Threshold:
    """Present when the score is ``value`` standard deviations above the collection's mean."""
    return Threshold("z", float(value))


def quantile(value: float) -> Threshold:
    """Present when the score is above the collection's ``value`` quantile (e.g. 0.9: the top 10%)."""
    return Threshold("quantile", float(value))


def cosine(value: float) -> Threshold:
    """Present when the (uncentred) cosine between image and concept is above ``value``."""
    return Threshold("cosine", float(value))


def contrast(value: float) -> Threshold:
    """Present when the concept's cosine beats the best of its alternatives (the other concepts of
    its group in the bank) by more than ``value`` (a cosine difference; 0: it wins its group)."""
    return Threshold("contrast", float(value))


#: Threshold of concepts written without one where no bank says which are alternatives (e.g.
#: :func:`evaluate_query`): above the collection's average score (z > 0). A :class:`Retriever`
#: uses ``contrast(0)`` instead for concepts that have alternatives in its bank.
DEFAULT_THRESHOLD = zscore(0.0)
