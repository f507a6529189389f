"""A concept bottleneck's labelled inputs: features and labels of feature stores, checked against the
aligner's backbone and against each other, and label arrays checked against the classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._exceptions import DataError, DimensionMismatchError, IncompatibleArtifactError
from .._identity import identity_differences

__all__ = ["check_labels", "identity_diff", "labelled_features", "labelled_pair"]


def identity_diff(what: str, saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The identity fields a concept bottleneck compares that differ, as ``"WHAT.field: ..."``."""
    return identity_differences("cbm", saved, given, prefix=f"{what}.")


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
        problems = identity_diff("backbone", aligner.source_, store.manifest["encoders"].get(key, {}))
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


def labelled_pair(
    train: Any, val: Any, aligner: Any = None, *, key: str = "source"
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, list[str] | None]:
    """:func:`labelled_features` of a training and a validation store, checking that both hold the same
    backbone's features and the same classes: ``(X_train, y_train, X_val, y_val, class names)``."""
    xtr, ytr, names = labelled_features(train, aligner, key=key)
    xv, yv, val_names = labelled_features(val, aligner, key=key)
    problems = identity_diff(
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
    return xtr, ytr, xv, yv, names


def check_labels(y: Any, n_rows: int, n_classes: int | None, name: str) -> np.ndarray:
    """``y`` as int64 class indices ``[n_rows]`` in ``0..n_classes-1`` (any range without ``n_classes``)."""
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
