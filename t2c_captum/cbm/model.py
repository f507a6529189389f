"""The concept bottleneck estimator: concept activations of the features, standardised, feed a sparse
multinomial logistic regression whose logits are exact sums of per-concept contributions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError, DimensionMismatchError, NotFittedError, UnknownNameError
from ..aligners.base import as_tensor_2d
from ..concepts.bank import ConceptBank
from ..concepts.scores import concept_scores
from .artifact import read_cbm, restore, write_cbm
from .features import check_labels, labelled_pair
from .fitting import DEFAULT_CS, accuracy, choose, fit_path, fit_probe, moments, standardise, temperature
from .reports import CBMReport, Explanation

__all__ = ["ConceptBottleneck"]


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
        Cs: Sequence[float] = DEFAULT_CS,
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
        return standardise(self.concept_activations(X), self.concept_mean_, self.concept_scale_)

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
        ytr = check_labels(y_train, xtr.shape[0], n_classes, "y_train")
        n_classes = n_classes if n_classes is not None else int(ytr.max()) + 1 if ytr.size else 0
        if n_classes < 2 or len(set(ytr.tolist())) < 2:
            raise DataError(
                f"a classifier needs at least 2 classes in the training labels, got {len(set(ytr.tolist()))}"
            )
        yv = check_labels(y_val, xv.shape[0], n_classes, "y_val")
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
        self.concept_mean_, self.concept_scale_ = moments(raw_tr)
        a_tr = standardise(raw_tr, self.concept_mean_, self.concept_scale_)
        a_v = standardise(raw_v, self.concept_mean_, self.concept_scale_)
        path, fits = fit_path(
            a_tr,
            ytr,
            a_v,
            yv,
            Cs=self.Cs,
            l1_ratio=self.l1_ratio,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        chosen = choose(path, self.tolerance, self.max_nonzero_per_class)
        self.path_ = path
        self.C_ = path[chosen].C
        coef, intercept = fits[chosen]
        # a strongly regularised sparse model is right but timid (flat probabilities): one scale,
        # fitted on the validation set, calibrates them without changing any prediction or sparsity
        self.temperature_ = temperature(a_v @ coef.T + intercept, yv)
        self.coef_, self.intercept_ = coef * self.temperature_, intercept * self.temperature_
        self.val_accuracy_ = path[chosen].val_accuracy
        self.probe_coef_: np.ndarray | None = None
        self.probe_C_: float | None = None
        self.probe_val_accuracy_: float | None = None
        if self.probe:
            (
                self.probe_x_mean_,
                self.probe_x_scale_,
                self.probe_val_accuracy_,
                self.probe_C_,
                self.probe_coef_,
                self.probe_intercept_,
            ) = fit_probe(xtr.double().numpy(), ytr, xv.double().numpy(), yv)
        self.n_train_, self.n_val_ = int(len(ytr)), int(len(yv))
        return self

    def fit_stores(self, train: Any, val: Any, *, key: str = "source") -> ConceptBottleneck:
        """:meth:`fit` on two feature stores, checking that both hold the same backbone's features
        (the aligner's) and the same classes."""
        xtr, ytr, xv, yv, names = labelled_pair(train, val, self.aligner, key=key)
        return self.fit(xtr, ytr, xv, yv, names)

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
        return accuracy(self.decision_function(x), check_labels(y, x.shape[0], len(self.class_names_), "y"))

    def probe_score(self, X: Any, y: Any) -> float:
        """Accuracy of the dense linear probe on ``(X, y)``."""
        self._check_fitted()
        if self.probe_coef_ is None:
            raise NotFittedError("this ConceptBottleneck was fitted without a probe (probe=False)")
        x = self._features(X).double().numpy()
        labels = check_labels(y, x.shape[0], len(self.class_names_), "y")
        f = standardise(x, self.probe_x_mean_, self.probe_x_scale_)
        return accuracy(f @ self.probe_coef_.T + self.probe_intercept_, labels)

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
        return write_cbm(self, path)

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
        bank, aligner, meta, t = read_cbm(path, bank=bank, aligner=aligner)
        model = cls(bank, aligner, **meta["params"])
        restore(model, meta, t)
        return model

    def __repr__(self) -> str:
        state = (
            f"{len(self.class_names_)} classes, {self.nnz} non-zero weights"
            if self.coef_ is not None
            else "not fitted"
        )
        return f"ConceptBottleneck({len(self.bank)} concepts, {state})"
