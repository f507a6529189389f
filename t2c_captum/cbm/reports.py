"""What a concept bottleneck reports: the regularisation path, the fit's summary and per-concept
explanations of its logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["CBMReport", "Explanation", "PathPoint"]


@dataclass
class PathPoint:
    """One point of the regularisation path: strength ``C``, validation accuracy and sparsity."""

    C: float
    val_accuracy: float
    nnz: int
    max_nnz_per_class: int
    converged: bool


@dataclass
class CBMReport:
    """What a fitted :class:`ConceptBottleneck` achieved.

    Attributes:
        class_names / concepts: the classes and the bank's concepts.
        C / l1_ratio: the chosen regularisation (``C`` is scikit-learn's inverse strength).
        val_accuracy / probe_val_accuracy: validation accuracy of the CBM and of the dense probe.
        nnz / nnz_per_class: non-zero concept weights in all and per class.
        path: every point of the regularisation path.
        top_concepts: class → concepts with the largest positive weights.
        probe_C: the dense probe's chosen ``C`` (``None`` without a probe).
    """

    class_names: list[str]
    concepts: list[str]
    C: float
    l1_ratio: float
    val_accuracy: float
    probe_val_accuracy: float | None
    nnz: int
    nnz_per_class: dict[str, int]
    path: list[PathPoint]
    top_concepts: dict[str, list[tuple[str, float]]]
    probe_C: float | None = None
    n_train: int = 0
    n_val: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Explanation:
    """Per-concept contributions to every logit: ``contributions.sum(-1) + intercept == logits``.

    Attributes:
        concepts / class_names: names of the ``K`` concepts and ``C`` classes.
        activations: standardised concept activations ``[N, K]``.
        contributions: ``activation × weight`` for every class ``[N, C, K]``.
        intercept: ``[C]``.
        logits: ``[N, C]``, computed as ``contributions.sum(-1) + intercept``.
        predictions: predicted class index per row ``[N]``.
    """

    concepts: list[str]
    class_names: list[str]
    activations: np.ndarray
    contributions: np.ndarray
    intercept: np.ndarray
    logits: np.ndarray
    predictions: np.ndarray

    def predicted(self) -> np.ndarray:
        """Contributions to each row's predicted class ``[N, K]``."""
        return self.contributions[np.arange(len(self.predictions)), self.predictions]

    def top(self, row: int, k: int = 5, class_index: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` largest non-zero contributions (by magnitude, signed) to one row's logit.

        Args:
            row (int): the row of ``X``.
            k (int, optional): how many. Default: ``5``
            class_index (int, optional): the class whose logit is explained. Default: the prediction
        """
        cls = int(self.predictions[row]) if class_index is None else int(class_index)
        contrib = self.contributions[row, cls]
        order = np.argsort(-np.abs(contrib), kind="stable")
        return [(self.concepts[i], float(contrib[i])) for i in order[:k] if contrib[i] != 0]
