"""The entry points: :func:`shift_report` (two score matrices), :func:`report_from_moments` (per-group
moments of both datasets) and :func:`diagnose_shift` (images or feature stores)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._exceptions import DataError, DimensionMismatchError
from ..concepts.bank import ConceptBank, check_concepts
from .moments import ConceptMoments, _as_matrix
from .report import ShiftReport, ShiftRow
from .statistics import EFFECTS, RANKING, _adjust, _check_options, _combine, _ranked, _tests
from .stores import _check_stores, _encoder_for, _moments_of, _pick_key, _store_class_names

if TYPE_CHECKING:
    from ..features import ExtractOptions


def _class_name(key: Any, class_names: Sequence[str] | None) -> str:
    if class_names is not None and isinstance(key, (int, np.integer)) and 0 <= key < len(class_names):
        return str(class_names[int(key)])
    return str(key)



def report_from_moments(
    moments_a: ConceptMoments,
    moments_b: ConceptMoments,
    concepts: Sequence[str],
    *,
    by_class: bool = False,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
    info: Mapping[str, Any] | None = None,
) -> ShiftReport:
    """A :class:`ShiftReport` from per-group moments of both datasets (what the other entry points use).

    Args:
        moments_a / moments_b (ConceptMoments): statistics of each dataset (grouped by class when
            ``by_class``).
        concepts (list of str): the ``K`` concept names.
        by_class (bool, optional): test within every class present in both datasets. Default: ``False``
        class_names (list of str, optional): names of integer class labels. Default: ``None``
        alpha (float, optional): q level for ranking and :meth:`ShiftReport.significant`. Default: ``0.05``
        min_samples (int, optional): groups with fewer images in either dataset are not tested (a
            warning says so). Default: ``10``
        effect (str, optional): ``"glass"`` (Glass's delta) or ``"hedges"`` (Hedges' g). Default: glass
        info (dict, optional): extra entries for the report's ``info``.

    Returns:
        ShiftReport: the ranked tests.
    """
    names = check_concepts(concepts)
    _check_options(alpha, min_samples, effect)
    for which, m in (("a", moments_a), ("b", moments_b)):
        if m.n == 0:
            raise DataError(f"dataset {which} has no images; give a non-empty dataset (or feature store)")
        if m.n_concepts != len(names):
            raise DimensionMismatchError(
                f"dataset {which} has scores for {m.n_concepts} concepts but {len(names)} concepts are named"
            )
    notes: list[str] = []
    if by_class:
        groups_a, groups_b = set(moments_a.groups) - {None}, set(moments_b.groups) - {None}
        for which, only in (("a", groups_a - groups_b), ("b", groups_b - groups_a)):
            if only:
                shown = ", ".join(sorted(_class_name(k, class_names) for k in only))
                notes.append(f"classes only in dataset {which} (not tested): {shown}")
        groups = sorted(groups_a & groups_b, key=lambda k: (str(type(k)), k))
        if not groups:
            raise DataError("the two datasets share no class; test without by_class, or check the labels")
    else:
        groups = [None]
    rows: list[ShiftRow] = []
    for key in groups:
        sa, sb = moments_a.stats(key), moments_b.stats(key)
        enough = min(sa[0], sb[0]) >= min_samples
        if not enough:
            where = "" if key is None else f"class {_class_name(key, class_names)!r}: "
            notes.append(f"{where}too few images for a test ({sa[0]} in a, {sb[0]} in b; min_samples="
                         f"{min_samples}); its rows are reported untested")
        label = None if key is None else _class_name(key, class_names)
        new = _tests(names, label, sa, sb, enough, effect)
        constant = [r.concept for r in new if enough and not r.tested]
        if constant:
            where = "" if key is None else f"class {label!r}: "
            notes.append(f"{where}scores constant in both datasets, not tested: {', '.join(constant[:8])}")
        rows += new
    _adjust(rows)
    summary: list[ShiftRow] = []
    if by_class:
        summary = _combine(names, rows, effect)
        _adjust(summary)
        summary = _ranked(summary, alpha)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    details = {
        "n_a": moments_a.n,
        "n_b": moments_b.n,
        "concepts": len(names),
        "test": "Welch's t-test (unequal variances), two-sided; t > 0: higher in b",
        "effect_size": effect,
        "effect": EFFECTS[effect],
        "correction": "Benjamini-Hochberg over all tested rows",
        "ranking": RANKING,
        "min_samples": int(min_samples),
    }
    details.update(info or {})
    return ShiftReport(_ranked(rows, alpha), alpha, by_class, summary, notes, details)


def _labels_for(labels: Any, n: int, which: str) -> np.ndarray:
    if labels is None:
        raise DataError(f"by_class needs labels for dataset {which} (labels_{which}=...)")
    arr = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    if arr.shape != (n,):
        raise DimensionMismatchError(f"{arr.size} labels for the {n} rows of dataset {which}")
    return arr


def shift_report(
    scores_a: Any,
    scores_b: Any,
    concepts: ConceptBank | Sequence[str],
    *,
    labels_a: Any = None,
    labels_b: Any = None,
    by_class: bool = False,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
) -> ShiftReport:
    """Test every concept for a shift between two score matrices.

    Args:
        scores_a (Tensor or array): concept scores ``[N_a, K]`` of dataset ``a`` (the reference).
        scores_b (Tensor or array): concept scores ``[N_b, K]`` of dataset ``b``.
        concepts (ConceptBank or list of str): the ``K`` concepts, in column order.
        labels_a / labels_b (array, optional): class of every row (ints or strings); needed for
            ``by_class``. Default: ``None``
        by_class (bool, optional): test within every class present in both datasets, so that a change
            of class mix is not mistaken for a shift; BH runs over all (class, concept) tests and
            :attr:`ShiftReport.summary` combines each concept's classes. Default: ``False``
        class_names (list of str, optional): names of integer labels. Default: ``None``
        alpha (float, optional): q level for ranking and significance. Default: ``0.05``
        min_samples (int, optional): groups with fewer rows in either dataset are reported untested,
            with a warning. Default: ``10``
        effect (str, optional): ``"glass"``: Glass's delta, the mean difference in standard
            deviations of ``a`` (the reference's spread is the unit; a shift changes the spread of
            ``b``, which a pooled SD would mix in); ``"hedges"``: Hedges' g (pooled SD). Default: glass

    Returns:
        ShiftReport: ranked rows with means, Welch's t, p, BH q and the effect size.
    """
    names = concepts.concepts if isinstance(concepts, ConceptBank) else check_concepts(concepts)
    a, b = _as_matrix(scores_a, "scores_a"), _as_matrix(scores_b, "scores_b")
    for which, s in (("a", a), ("b", b)):
        if s.shape[0] == 0:
            raise DataError(f"scores_{which} has no rows; give scores of at least {min_samples} images")
        if s.shape[1] != len(names):
            raise DimensionMismatchError(
                f"scores_{which} has {s.shape[1]} columns but {len(names)} concepts are named"
            )
    moments = ConceptMoments(len(names)), ConceptMoments(len(names))
    moments[0].update(a, _labels_for(labels_a, a.shape[0], "a") if by_class else None)
    moments[1].update(b, _labels_for(labels_b, b.shape[0], "b") if by_class else None)
    return report_from_moments(*moments, names, by_class=by_class, class_names=class_names, alpha=alpha,
                               min_samples=min_samples, effect=effect)


def diagnose_shift(
    data_a: Any,
    data_b: Any,
    bank: ConceptBank,
    aligner: Any = None,
    backbone: Any = None,
    *,
    concepts: Sequence[str] | None = None,
    by_class: bool = False,
    key: str | None = None,
    alpha: float = 0.05,
    min_samples: int = 10,
    effect: str = "glass",
    extraction: ExtractOptions | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> ShiftReport:
    """Find the concepts two image datasets (or feature stores) differ in.

    Images are encoded once into feature stores (cached); scores stream shard by shard into per-concept
    counts, means and variances, so the datasets never need to fit in memory.

    Args:
        data_a: the reference dataset: a :class:`~t2c_captum.features.FeatureStore`, or anything
            :func:`~t2c_captum.data.open_source` accepts (folder, CSV, ``world:SPLIT``, a Dataset).
        data_b: the dataset compared with it (same kinds).
        bank (ConceptBank): the concepts, embedded in the aligner's target space.
        aligner (Aligner, optional): maps the backbone's features into the bank's space; ``None``
            scores the space's own image embeddings. Default: ``None``
        backbone (Backbone, optional): the encoder for images (the aligner's backbone; without an
            aligner, the space). Default: loaded from the aligner's record
        concepts (list of str, optional): test only these concepts of the bank. Default: all
        by_class (bool, optional): test within each class present in both datasets. Default: ``False``
        key (str, optional): which features of a store to read. Default: ``source`` (``target`` for
            stores that have it when there is no aligner)
        alpha (float, optional): q level for ranking and significance. Default: ``0.05``
        min_samples (int, optional): groups with fewer images are reported untested. Default: ``10``
        effect (str, optional): ``"glass"`` (Glass's delta) or ``"hedges"`` (Hedges' g); see
            :func:`shift_report`. Default: ``"glass"``
        extraction (ExtractOptions, optional): how images that are not stores yet are extracted
            (batch size, decoding workers, device, precision, cache folder, the Ray backend...).
            Default: ``ExtractOptions(progress=False)``
        batch_size (int, optional): images per forward pass, applied over ``extraction``.
            Default: ``extraction``'s (``64``)
        device (str, optional): the extraction device, applied over ``extraction``.
            Default: ``extraction``'s (``"auto"``)
        progress (bool, optional): show progress, applied over ``extraction``.
            Default: ``extraction``'s (``False`` without ``extraction``)

    Returns:
        ShiftReport: ranked tests; ``info`` names the datasets.
    """
    from ..features import ExtractOptions, FeatureStore

    options = ExtractOptions.for_task(extraction, batch_size=batch_size, device=device, progress=progress)

    if not isinstance(bank, ConceptBank):
        raise DataError(
            f"bank must be a ConceptBank (ConceptBank.build(space, concepts)), not {type(bank).__name__}"
        )
    if concepts is not None:
        bank = bank.subset(concepts)
    _check_options(alpha, min_samples, effect)
    encoder: list[Any] = []  # loaded once, only for data that is not a store yet

    def store_of(data: Any) -> Any:
        if isinstance(data, FeatureStore):
            return data
        if not encoder:
            encoder.append(_encoder_for(aligner, backbone))
        return options.extract(data, {"source": encoder[0]})

    stores = (store_of(data_a), store_of(data_b))
    feature_key = _pick_key(stores[0], key, aligner)
    _check_stores(stores, feature_key, bank, aligner)
    class_names = _store_class_names(stores, by_class)
    moments = [_moments_of(s, feature_key, bank, aligner, by_class) for s in stores]
    info = {"name_a": _name(data_a, stores[0]), "name_b": _name(data_b, stores[1]), "space": bank.space_id,
            "encoder": stores[0].manifest["encoders"][feature_key].get("id")}
    return report_from_moments(moments[0], moments[1], bank.concepts, by_class=by_class,
                               class_names=class_names, alpha=alpha, min_samples=min_samples, effect=effect,
                               info=info)


def _name(data: Any, store: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return str(store.manifest["dataset"].get("name") or getattr(data, "name", "data"))
