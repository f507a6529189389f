"""Label-free concept bottleneck models: a sparse linear classifier on concept activations.

A backbone's features are mapped into a CLIP space by an aligner and scored against a
:class:`~t2c_captum.concepts.ConceptBank` (cosines, :func:`~t2c_captum.concepts.concept_scores`). The
scores, standardised on the training set, are the only inputs of an L1 (or elastic-net) multinomial
logistic regression, so every logit is a short sum of per-concept contributions plus an intercept.
The sparsity is chosen on validation data along a regularisation path, and a dense linear probe on the
same backbone features is fitted next to it for comparison.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._exceptions import (
    CheckpointFormatError,
    DataError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    NotFittedError,
)
from ._io import atomic_write_json, atomic_write_tensors, load_state_dict_file, read_json
from .aligners.base import as_tensor_2d
from .concepts.bank import ConceptBank
from .concepts.scores import concept_scores

__all__ = ["CBMReport", "ConceptBottleneck", "Explanation", "PathPoint", "labelled_features"]

CBM_FORMAT = 1
_DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 1, 13))
_PROBE_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
_IDENTITY_KEYS = ("id", "layer", "preprocess", "feature_dim", "embed_dim", "dim")


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


def _logistic(C: float, l1_ratio: float, **options: Any) -> Any:
    """A LogisticRegression with an elastic-net mix, across scikit-learn's ``penalty`` deprecation."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) < (1, 8):
        penalty = "l2" if l1_ratio == 0 else "l1" if l1_ratio == 1 else "elasticnet"
        options["penalty"] = penalty
        if penalty == "elasticnet":
            options["l1_ratio"] = l1_ratio
    else:
        options["l1_ratio"] = l1_ratio
    return LogisticRegression(C=C, **options)


def _softmax_form(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fitted model's float64 weights ``[C, K]`` and intercepts ``[C]``; binary scikit-learn models
    have one row, split into two with the same softmax."""
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    if coef.shape[0] == 1:
        return np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (x - mean) / scale


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-8, scale, 1.0)


def _temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The scale of ``logits`` that minimises the validation log-loss (temperature scaling)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(log_scale: float) -> float:
        return float(-log_softmax(np.exp(log_scale) * logits, axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 5.0), method="bounded").x))


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def _identity_diff(what: str, saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    return [
        f"{what}.{k}: saved {saved[k]!r}, given {given[k]!r}"
        for k in _IDENTITY_KEYS
        if k in saved and k in given and saved[k] != given[k]
    ]


def labelled_features(
    store: Any, aligner: Any = None, *, key: str = "source"
) -> tuple[torch.Tensor, np.ndarray, list[str] | None]:
    """Features, labels and class names of a feature store, checked against the aligner's backbone.

    Args:
        store (FeatureStore): extracted features (with labels).
        aligner (Aligner, optional): the features must come from the backbone it was fitted for.
        key (str, optional): the store's encoder. Default: ``"source"``

    Returns:
        ``(X [N, d], y [N], class names or None)``.
    """
    if aligner is not None and getattr(aligner, "source_", None):
        problems = _identity_diff("backbone", aligner.source_, store.manifest["encoders"].get(key, {}))
        if problems:
            raise IncompatibleArtifactError(
                f"the features in {str(store.path)!r} come from another backbone than the aligner's: "
                + "; ".join(problems)
                + ". Extract them with the aligner's backbone."
            )
    data = store.load([key])
    labels = data["labels"].numpy().astype(np.int64)
    if labels.size and (labels < 0).all():
        raise DataError(
            f"the images in {str(store.path)!r} have no labels; use a labelled ImageFolder tree, a CSV "
            "with a label column, or world:SPLIT:FACTOR"
        )
    return data[key], labels, store.class_names


class ConceptBottleneck:
    """A sparse, interpretable classifier whose only inputs are concept activations.

    Concept activations are :func:`~t2c_captum.concepts.concept_scores` of the features (through
    ``aligner`` when given), standardised with the training set's mean and spread. :meth:`fit` runs a
    regularisation path over ``Cs`` (multinomial logistic regression, saga, warm starts), from strong to
    weak, and keeps the sparsest model whose validation accuracy is within ``tolerance`` of the best
    on the path (ties: the stronger regularisation), among models with at most
    ``max_nonzero_per_class`` non-zero weights per class when that is set. A dense L2 probe on the
    standardised features themselves (``C`` chosen on validation accuracy) is fitted for comparison.

    Args:
        bank (ConceptBank): the concepts.
        aligner (Aligner, optional): maps backbone features into the bank's space; without one the
            inputs are space embeddings. Default: ``None``
        l1_ratio (float, optional): 1 = L1 (lasso), below 1 elastic-net. Default: ``1.0``
        Cs (sequence of float, optional): inverse regularisation strengths of the path.
            Default: 13 values from 1e-3 to 10 (log scale)
        tolerance (float, optional): accuracy a sparser model may give up. Default: ``0.01``
        max_nonzero_per_class (int, optional): largest number of concepts a class may use.
        probe (bool, optional): also fit the dense linear probe. Default: ``True``
        max_iter (int, optional): solver iterations per path point. Default: ``2000``
        tol (float, optional): saga's tolerance; looser leaves many small non-zero weights.
            Default: ``1e-4``
        random_state (int, optional): saga's shuffling seed. Default: ``0``

    Examples::

        >>> cbm = ConceptBottleneck(bank, aligner).fit(X_train, y_train, X_val, y_val, class_names)
        >>> cbm.score(X_test, y_test), cbm.report().nnz
        >>> cbm.explain(X_test[:1]).top(0, k=5)
    """

    def __init__(
        self,
        bank: ConceptBank,
        aligner: Any = None,
        *,
        l1_ratio: float = 1.0,
        Cs: Sequence[float] = _DEFAULT_CS,
        tolerance: float = 0.01,
        max_nonzero_per_class: int | None = None,
        probe: bool = True,
        max_iter: int = 2000,
        tol: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        if not isinstance(bank, ConceptBank):
            raise DataError(
                f"bank must be a ConceptBank, not {type(bank).__name__}; build one with "
                "ConceptBank.build(space, concepts)"
            )
        if not 0 < l1_ratio <= 1:
            raise DataError(f"l1_ratio must be in (0, 1] (1 = L1), got {l1_ratio}")
        if not Cs or any(c <= 0 for c in Cs):
            raise DataError("Cs must be a non-empty list of positive regularisation values")
        if max_nonzero_per_class is not None and max_nonzero_per_class < 1:
            raise DataError("max_nonzero_per_class must be at least 1 (or None)")
        bank.check_aligner(aligner)
        self.bank = bank
        self.aligner = aligner
        self.l1_ratio = float(l1_ratio)
        self.Cs = sorted(float(c) for c in Cs)
        self.tolerance = float(tolerance)
        self.max_nonzero_per_class = max_nonzero_per_class
        self.probe = probe
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.coef_: np.ndarray | None = None

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__`` (without bank and aligner)."""
        return {
            "l1_ratio": self.l1_ratio,
            "Cs": list(self.Cs),
            "tolerance": self.tolerance,
            "max_nonzero_per_class": self.max_nonzero_per_class,
            "probe": self.probe,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "random_state": self.random_state,
        }

    # ------------------------------------------------------------------ inputs
    @property
    def n_features_in(self) -> int:
        """Width of the inputs: the aligner's source dim, or the bank's embedding dim."""
        dims = getattr(self.aligner, "dims", None) if self.aligner is not None else None
        return int(dims[0]) if dims else self.bank.dim

    def _features(self, X: Any, name: str = "X") -> torch.Tensor:
        x = as_tensor_2d(X, name)
        if x.shape[1] != self.n_features_in:
            what = (
                "the aligner's backbone features"
                if self.aligner is not None
                else ("space embeddings of the bank's space (or pass aligner= for backbone features)")
            )
            raise DimensionMismatchError(
                f"{name} is {x.shape[1]}-d but this model takes {self.n_features_in}-d inputs ({what}); "
                "were these features extracted with another backbone or layer?"
            )
        return x.cpu()  # scikit-learn and numpy take it from here

    def concept_activations(self, X: Any) -> np.ndarray:
        """Raw concept activations (cosines) ``[N, K]`` of features ``X``."""
        return concept_scores(self._features(X), self.bank, self.aligner).double().numpy()

    def _check_fitted(self) -> None:
        if self.coef_ is None:
            raise NotFittedError("this ConceptBottleneck is not fitted yet; call fit() first")

    def transform(self, X: Any) -> np.ndarray:
        """Standardised concept activations ``[N, K]``: the bottleneck."""
        self._check_fitted()
        return _standardise(self.concept_activations(X), self.concept_mean_, self.concept_scale_)

    def _labels(self, y: Any, n_rows: int, n_classes: int | None, name: str) -> np.ndarray:
        labels = np.asarray(y.cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if labels.ndim != 1 or labels.shape[0] != n_rows:
            raise DimensionMismatchError(f"{name} must be [N] with N = {n_rows} rows, got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise DataError(f"{name} must hold integer class indices")
            labels = labels.astype(np.int64)
        if labels.size and labels.min() < 0:
            raise DataError(
                f"{name} holds negative labels ({int((labels < 0).sum())} rows): unlabelled images? "
                "Give labelled data (an ImageFolder tree, a CSV with labels, world:SPLIT:FACTOR)"
            )
        if n_classes is not None and labels.size and labels.max() >= n_classes:
            raise DataError(
                f"{name} holds label {int(labels.max())} but there are only {n_classes} classes "
                "(labels are indices 0..C-1 into class_names)"
            )
        return labels.astype(np.int64)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X_train: Any,
        y_train: Any,
        X_val: Any,
        y_val: Any,
        class_names: Sequence[str] | None = None,
    ) -> ConceptBottleneck:
        """Fit the path on the training set and choose the sparsity on the validation set.

        Args:
            X_train / X_val: backbone features ``[N, d]`` (or space embeddings without an aligner).
            y_train / y_val: integer labels ``[N]`` in ``0..C-1``.
            class_names (list of str, optional): names of the ``C`` classes. Default: ``"0"``, ``"1"``...

        Returns:
            ``self``.
        """
        xtr, xv = self._features(X_train, "X_train"), self._features(X_val, "X_val")
        n_classes = len(class_names) if class_names is not None else None
        ytr = self._labels(y_train, xtr.shape[0], n_classes, "y_train")
        n_classes = n_classes if n_classes is not None else int(ytr.max()) + 1 if ytr.size else 0
        if n_classes < 2 or len(set(ytr.tolist())) < 2:
            raise DataError(
                f"a classifier needs at least 2 classes in the training labels, got {len(set(ytr.tolist()))}"
            )
        yv = self._labels(y_val, xv.shape[0], n_classes, "y_val")
        names = [str(c) for c in class_names] if class_names is not None else list(map(str, range(n_classes)))
        missing = sorted(set(range(n_classes)) - set(ytr.tolist()))
        if missing:
            raise DataError(
                f"classes {[names[i] for i in missing][:8]} have no training images; give "
                "training data with every class, or drop those classes"
            )
        if len(yv) == 0:
            raise DataError("the validation set is empty; the sparsity is chosen on validation data")
        self.class_names_ = names
        raw_tr = concept_scores(xtr, self.bank, self.aligner).double().numpy()
        raw_v = concept_scores(xv, self.bank, self.aligner).double().numpy()
        self.concept_mean_, self.concept_scale_ = _moments(raw_tr)
        a_tr = _standardise(raw_tr, self.concept_mean_, self.concept_scale_)
        a_v = _standardise(raw_v, self.concept_mean_, self.concept_scale_)
        self._fit_path(a_tr, ytr, a_v, yv)
        self.probe_coef_: np.ndarray | None = None
        self.probe_C_: float | None = None
        self.probe_val_accuracy_: float | None = None
        if self.probe:
            self._fit_probe(xtr.double().numpy(), ytr, xv.double().numpy(), yv)
        self.n_train_, self.n_val_ = int(len(ytr)), int(len(yv))
        return self

    def fit_stores(self, train: Any, val: Any, *, key: str = "source") -> ConceptBottleneck:
        """:meth:`fit` on two feature stores, checking that both hold the same backbone's features
        (the aligner's) and the same classes."""
        xtr, ytr, names = labelled_features(train, self.aligner, key=key)
        xv, yv, val_names = labelled_features(val, self.aligner, key=key)
        problems = _identity_diff(
            "backbone", train.manifest["encoders"].get(key, {}), val.manifest["encoders"].get(key, {})
        )
        if problems:
            raise IncompatibleArtifactError(
                "training and validation features come from different backbones: " + "; ".join(problems)
            )
        if names and val_names and list(names) != list(val_names):
            raise DataError(
                f"training classes {names} differ from validation classes {val_names}; "
                "label both with the same task"
            )
        return self.fit(xtr, ytr, xv, yv, names)

    def _fit_path(self, a_tr: np.ndarray, ytr: np.ndarray, a_v: np.ndarray, yv: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning

        model = _logistic(
            self.Cs[0],
            self.l1_ratio,
            solver="saga",
            warm_start=True,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        path: list[PathPoint] = []
        fits: list[tuple[np.ndarray, np.ndarray]] = []
        for C in self.Cs:  # strong → weak regularisation, each fit warm-started from the last
            model.set_params(C=C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(a_tr, ytr)
            coef, intercept = _softmax_form(model)
            per_class = (coef != 0).sum(1)
            acc = _accuracy(a_v @ coef.T + intercept, yv)
            converged = bool(np.max(model.n_iter_) < self.max_iter)
            path.append(PathPoint(C, acc, int((model.coef_ != 0).sum()), int(per_class.max()), converged))
            fits.append((coef.copy(), intercept.copy()))
        chosen = self._choose(path)
        self.path_ = path
        self.C_ = path[chosen].C
        coef, intercept = fits[chosen]
        # a strongly regularised sparse model is right but timid (flat probabilities): one scale,
        # fitted on the validation set, calibrates them without changing any prediction or sparsity
        self.temperature_ = _temperature(a_v @ coef.T + intercept, yv)
        self.coef_, self.intercept_ = coef * self.temperature_, intercept * self.temperature_
        self.val_accuracy_ = path[chosen].val_accuracy

    def _choose(self, path: list[PathPoint]) -> int:
        """The sparsest point within ``tolerance`` of the best validation accuracy (ties: smaller C)."""
        allowed = [
            i
            for i, p in enumerate(path)
            if self.max_nonzero_per_class is None or p.max_nnz_per_class <= self.max_nonzero_per_class
        ]
        if not allowed:
            fewest = min(p.max_nnz_per_class for p in path)
            raise DataError(
                f"no model on the path uses at most {self.max_nonzero_per_class} concepts per class (the "
                f"sparsest uses {fewest}); add smaller Cs or raise max_nonzero_per_class"
            )
        best = max(path[i].val_accuracy for i in allowed)
        good = [i for i in allowed if path[i].val_accuracy >= best - self.tolerance - 1e-12]
        return min(good, key=lambda i: (path[i].nnz, path[i].C))

    def _fit_probe(self, xtr: np.ndarray, ytr: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning

        self.probe_x_mean_, self.probe_x_scale_ = _moments(xtr)
        ftr = _standardise(xtr, self.probe_x_mean_, self.probe_x_scale_)
        fv = _standardise(xv, self.probe_x_mean_, self.probe_x_scale_)
        best: tuple[float, float, np.ndarray, np.ndarray] | None = None
        for C in _PROBE_CS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = _logistic(C, 0.0, max_iter=1000).fit(ftr, ytr)
            coef, intercept = _softmax_form(model)
            acc = _accuracy(fv @ coef.T + intercept, yv)
            if best is None or acc > best[0]:
                best = (acc, C, coef, intercept)
        assert best is not None
        self.probe_val_accuracy_, self.probe_C_, self.probe_coef_, self.probe_intercept_ = best

    # ------------------------------------------------------------------ prediction
    def explain(self, X: Any) -> Explanation:
        """Per-concept contributions to every class's logit for each row of ``X``."""
        a = self.transform(X)
        assert self.coef_ is not None
        contributions = a[:, None, :] * self.coef_[None, :, :]
        logits = contributions.sum(-1) + self.intercept_
        return Explanation(
            list(self.bank.concepts),
            list(self.class_names_),
            a,
            contributions,
            self.intercept_.copy(),
            logits,
            logits.argmax(1),
        )

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits ``[N, C]`` (float64)."""
        a = self.transform(X)
        assert self.coef_ is not None
        return np.asarray(a @ self.coef_.T + self.intercept_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[N, C]`` (softmax of the logits)."""
        logits = self.decision_function(X)
        logits = logits - logits.max(1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class indices ``[N]``."""
        return np.asarray(self.decision_function(X).argmax(1))

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on ``(X, y)``."""
        x = self._features(X)
        return _accuracy(self.decision_function(x), self._labels(y, x.shape[0], len(self.class_names_), "y"))

    def probe_score(self, X: Any, y: Any) -> float:
        """Accuracy of the dense linear probe on ``(X, y)``."""
        self._check_fitted()
        if self.probe_coef_ is None:
            raise NotFittedError("this ConceptBottleneck was fitted without a probe (probe=False)")
        x = self._features(X).double().numpy()
        labels = self._labels(y, x.shape[0], len(self.class_names_), "y")
        f = _standardise(x, self.probe_x_mean_, self.probe_x_scale_)
        return _accuracy(f @ self.probe_coef_.T + self.probe_intercept_, labels)

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]:
        """Accuracy of the CBM (and of the probe, when fitted) on labelled data."""
        out: dict[str, Any] = {"n": int(as_tensor_2d(X, "X").shape[0]), "accuracy": self.score(X, y)}
        out["probe_accuracy"] = self.probe_score(X, y) if self.probe_coef_ is not None else None
        out["nnz"] = self.nnz
        return out

    # ------------------------------------------------------------------ reading the model
    @property
    def nnz(self) -> int:
        """Number of non-zero concept weights (all classes)."""
        self._check_fitted()
        assert self.coef_ is not None
        return int((self.coef_ != 0).sum()) if len(self.class_names_) > 2 else int((self.coef_[1] != 0).sum())

    def _class_row(self, class_name: str | int) -> int:
        if isinstance(class_name, int):
            if not 0 <= class_name < len(self.class_names_):
                raise DataError(f"class index {class_name} is out of range 0..{len(self.class_names_) - 1}")
            return class_name
        if class_name not in self.class_names_:
            from ._exceptions import UnknownNameError

            raise UnknownNameError("class", class_name, self.class_names_)
        return self.class_names_.index(class_name)

    def top_concepts(self, class_name: str | int, k: int = 5) -> list[tuple[str, float]]:
        """Up to ``k`` concepts with the largest positive weights for a class, with their weights."""
        self._check_fitted()
        assert self.coef_ is not None
        w = self.coef_[self._class_row(class_name)]
        order = np.argsort(-w, kind="stable")
        return [(self.bank.concepts[i], float(w[i])) for i in order[:k] if w[i] > 0]

    def report(self, k: int = 5) -> CBMReport:
        """Accuracies, sparsity, the path and each class's top ``k`` concepts."""
        self._check_fitted()
        assert self.coef_ is not None
        return CBMReport(
            class_names=list(self.class_names_),
            concepts=list(self.bank.concepts),
            C=self.C_,
            l1_ratio=self.l1_ratio,
            val_accuracy=self.val_accuracy_,
            probe_val_accuracy=self.probe_val_accuracy_,
            nnz=self.nnz,
            nnz_per_class={c: int((self.coef_[i] != 0).sum()) for i, c in enumerate(self.class_names_)},
            path=list(self.path_),
            top_concepts={c: self.top_concepts(c, k) for c in self.class_names_},
            probe_C=self.probe_C_,
            n_train=self.n_train_,
            n_val=self.n_val_,
            extra={"temperature": float(getattr(self, "temperature_", 1.0))},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``NAME.safetensors`` (weights, concept embeddings, aligner) + ``NAME.json``; returns the
        JSON path. Nothing is pickled."""
        self._check_fitted()
        stem = _stem(path)
        tensors = {
            "coef": self.coef_,
            "intercept": self.intercept_,
            "concept_mean": self.concept_mean_,
            "concept_scale": self.concept_scale_,
            "bank_embeddings": self.bank.embeddings,
        }
        if self.probe_coef_ is not None:
            tensors.update(
                probe_coef=self.probe_coef_,
                probe_intercept=self.probe_intercept_,
                probe_x_mean=self.probe_x_mean_,
                probe_x_scale=self.probe_x_scale_,
            )
        aligner_meta = None
        if self.aligner is not None:
            for name in ("weight_", "bias_", "x_mean_", "x_scale_"):
                tensors[f"aligner.{name}"] = getattr(self.aligner, name)
            aligner_meta = {
                "kind": self.aligner.kind,
                "params": self.aligner.get_params(),
                "source": self.aligner.source_,
                "target": self.aligner.target_,
                "fit_stats": getattr(self.aligner, "fit_stats_", {}),
            }
        from . import __version__

        meta = {
            "format_version": CBM_FORMAT,
            "library_version": __version__,
            "kind": "concept_bottleneck",
            "params": self.get_params(),
            "class_names": self.class_names_,
            "bank": {"concepts": self.bank.concepts, "space_id": self.bank.space_id, "info": self.bank.info},
            "aligner": aligner_meta,
            "n_features_in": self.n_features_in,
            "report": self.report().as_dict(),
        }
        out = {
            k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
            for k, v in tensors.items()
        }
        atomic_write_tensors(stem.with_suffix(".safetensors"), out, {"format": "t2c_captum.cbm"})
        atomic_write_json(stem.with_suffix(".json"), meta)
        return stem.with_suffix(".json")

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, bank: ConceptBank | None = None, aligner: Any = None
    ) -> ConceptBottleneck:
        """Read a model written by :meth:`save`.

        Args:
            path: ``NAME``, ``NAME.json`` or ``NAME.safetensors``.
            bank (ConceptBank, optional): must hold the saved concepts, in order, embedded by the same
                space; default: the saved concept embeddings.
            aligner (Aligner, optional): must be the saved aligner (same models, same weights);
                default: the saved aligner.

        Raises:
            IncompatibleArtifactError: ``bank`` or ``aligner`` differ from what the model was fitted on.
        """
        stem = _stem(path)
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
            _check_bank(saved_bank, bank)
        saved_aligner = _saved_aligner(meta.get("aligner"), t)
        if aligner is not None:
            _check_aligner(saved_aligner, aligner)
        model = cls(
            bank if bank is not None else saved_bank,
            aligner if aligner is not None else saved_aligner,
            **meta["params"],
        )
        _restore(model, meta, t)
        return model

    def __repr__(self) -> str:
        state = (
            f"{len(self.class_names_)} classes, {self.nnz} non-zero weights"
            if self.coef_ is not None
            else "not fitted"
        )
        return f"ConceptBottleneck({len(self.bank)} concepts, {state})"


def _stem(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        return p / "cbm"
    return p.with_suffix("") if p.suffix in {".json", ".safetensors"} else p


def _check_bank(saved: ConceptBank, given: ConceptBank) -> None:
    problems = []
    if saved.concepts != given.concepts:
        extra, lost = set(given.concepts) - set(saved.concepts), set(saved.concepts) - set(given.concepts)
        problems.append(
            f"concepts differ (given bank adds {sorted(extra)[:5]}, lacks {sorted(lost)[:5]}"
            + (", or orders them differently" if not extra and not lost else "")
            + ")"
        )
    if saved.space_id != given.space_id:
        problems.append(f"space: saved {saved.space_id!r}, given {given.space_id!r}")
    elif saved.concepts == given.concepts and not torch.allclose(
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


def _saved_aligner(meta: dict[str, Any] | None, tensors: dict[str, torch.Tensor]) -> Any:
    if meta is None:
        return None
    from .plugins import get_registries

    aligner = get_registries().aligners.get(meta["kind"])(**meta.get("params", {}))
    for name in ("weight_", "bias_", "x_mean_", "x_scale_"):
        if f"aligner.{name}" not in tensors:
            raise CheckpointFormatError(f"the saved concept bottleneck lacks the aligner's {name}")
        setattr(aligner, name, tensors[f"aligner.{name}"])
    aligner.source_, aligner.target_ = meta.get("source", {}), meta.get("target", {})
    aligner.fit_stats_ = meta.get("fit_stats", {})
    return aligner


def _check_aligner(saved: Any, given: Any) -> None:
    if saved is None:
        raise IncompatibleArtifactError(
            "this concept bottleneck was fitted on space embeddings, without an "
            "aligner; load it without aligner="
        )
    problems = _identity_diff("backbone", saved.source_, getattr(given, "source_", {}))
    problems += _identity_diff("space", saved.target_, getattr(given, "target_", {}))
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


def _restore(model: ConceptBottleneck, meta: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
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
