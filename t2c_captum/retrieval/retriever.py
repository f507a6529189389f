"""The :class:`Retriever`: a query's margins over a feature store or in-memory features, by one chunked
pass or from a FAISS index's candidates, ranked into a :class:`RetrievalResult`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError
from ..concepts.bank import ConceptBank, Vocabulary
from .margins import _margins_from_stats, evaluate_query
from .query import And, Concept, Not, Or, Query, as_query
from .result import RetrievalResult, _ranked
from .thresholds import Threshold, contrast, zscore

__all__ = ["Retriever"]


class Retriever:
    """Search images for a query of concepts, on aligned backbone features or space embeddings.

    Args:
        bank_or_space: a :class:`~t2c_captum.concepts.ConceptBank` (every query concept must be in
            it; an unknown one raises :class:`~t2c_captum.UnknownNameError` with close matches), or a
            Space: then each search embeds the query's own concept texts with the space's templates.
        aligner (Aligner, optional): maps backbone features into the space; ``None`` for features
            that already are space embeddings. Default: ``None``
        default_threshold (Threshold, optional): for concepts written without one; a threshold
            given here applies to every such concept. ``None`` chooses per concept: ``contrast(0)``
            (the concept beats the other concepts of its group, see
            :meth:`~t2c_captum.concepts.ConceptBank.alternatives`) where the bank knows alternatives
            of it, ``zscore(0)`` elsewhere (which ``info["defaults"]`` of a result records).
            Contrast raised mean precision@10 on the concept world's known-answer queries from
            0.79 to 1.00 for the tiny CLIP's own embeddings (docs/retrieval.md). Default: ``None``
        centre (bool, optional): subtract each image's mean cosine over all the bank's concepts
            before z and quantile thresholds (removes what an image shares with every text, which
            raised precision@10 on the concept world by 0.01–0.10; contrast and cosine thresholds
            use uncentred cosines, and centring would cancel in a contrast anyway). ``None``:
            centre when the bank holds at least 8 concepts (never for a bank made of the query's own
            2–3 texts, whose mean would be the query itself). Default: ``None``
        key (str, optional): the features' name in a feature store. Default: ``"source"``
        batch_size (int, optional): rows scored at once for in-memory features. Default: ``8192``

    Examples::

        >>> retriever = Retriever(ConceptBank.from_vocabulary(space, "world"), aligner)
        >>> result = retriever.search('"red" & ~"striped background"', store, k=16)
        >>> result.grid(source, "red.png")
    """

    def __init__(
        self,
        bank_or_space: Any,
        aligner: Any = None,
        *,
        default_threshold: Threshold | None = None,
        centre: bool | None = None,
        key: str = "source",
        batch_size: int = 8192,
    ) -> None:
        if default_threshold is not None and not isinstance(default_threshold, Threshold):
            raise DataError(
                "default_threshold must be None (automatic), zscore(..), quantile(..), cosine(..) "
                f"or contrast(..), not {default_threshold!r}"
            )
        is_bank = isinstance(bank_or_space, ConceptBank)
        if not is_bank and not hasattr(bank_or_space, "encode_prompt_sets"):
            raise DataError(
                f"Retriever needs a ConceptBank or a Space, not {type(bank_or_space).__name__}"
            )
        self.bank = bank_or_space if is_bank else None
        self.space = None if is_bank else bank_or_space
        self.aligner = aligner
        self.default_threshold = default_threshold
        self.centre = centre
        self.key = key
        self.batch_size = batch_size

    def bank_for(self, query: Query | str) -> ConceptBank:
        """The bank a search of ``query`` scores with (checks that it knows every concept, and the
        alternatives of every concept with a contrast threshold)."""
        q = as_query(query)
        if self.bank is not None:
            self.bank.indices(q.concepts())
            bank = self.bank
        else:
            bank = ConceptBank.build(self.space, Vocabulary(q.concepts(), name="query"))
        self.thresholds(q, bank)
        return bank

    def thresholds(self, query: Query | str, bank: ConceptBank | None = None) -> dict[str, Threshold]:
        """The default threshold of each of the query's concepts (used where a term gives none).

        Raises:
            DataError: a contrast threshold (written or default) on a concept without alternatives.
        """
        q = as_query(query)
        bank = bank if bank is not None else self.bank_for(q)
        defaults: dict[str, Threshold] = {}
        for text in q.concepts():
            if self.default_threshold is not None:
                defaults[text] = self.default_threshold
            else:
                defaults[text] = contrast(0.0) if bank.alternatives(text) else zscore(0.0)
        for t in q.terms():
            if (t.threshold or defaults[t.text]).kind == "contrast" and not bank.alternatives(t.text):
                group = bank.groups.get(t.text)
                why = (f"it is the only concept of group {group!r} in the bank" if group is not None
                       else "the bank has no group for it" + ("" if bank.groups else
                                                              " (the bank has no groups at all)"))
                raise DataError(
                    f"a contrast threshold on {t.text!r} needs its alternatives (other concepts of "
                    f"its group in the bank), but {why}. Give the vocabulary groups "
                    "(Vocabulary(..., groups={concept: group}), a JSON {\"groups\": {...}} file or a "
                    "CSV 'group' column) with other concepts of its group, or use a z, q or cosine "
                    f'threshold: "{t.text}">z0'
                )
        return defaults

    def _info(self, bank: ConceptBank, centre: bool, defaults: Mapping[str, Threshold]) -> dict[str, Any]:
        auto = "auto: contrast>c0 where the concept has alternatives in the bank, else z>0"
        return {
            "centred": centre,
            "default_threshold": auto if self.default_threshold is None else str(self.default_threshold),
            "defaults": {c: str(t) for c, t in defaults.items()},
            "bank": len(bank),
            "space_id": bank.space_id,
        }

    def search(
        self,
        query: Query | str,
        data: Any,
        k: int = 10,
        *,
        matching_only: bool = False,
        index: Any = None,
        candidates: int | None = None,
    ) -> RetrievalResult:
        """The ``k`` images with the largest margins.

        Args:
            query: a :class:`Query` or a query string (:func:`parse_query`).
            data: a :class:`~t2c_captum.features.FeatureStore` (or its directory), read shard by
                shard, or in-memory features ``[N, d]`` (indices are then ``0..N-1``).
            k (int, optional): results wanted. Default: ``10``
            matching_only (bool, optional): drop results whose margin is not positive. Default: ``False``
            index (FaissIndex, optional): a :class:`~t2c_captum.retrieval.faiss_index.FaissIndex` built for
                ``data`` and this retriever's aligner: candidates come from the index (see
                :meth:`_search_index` for what stays exact). Default: ``None`` (exact chunked search)
            candidates (int, optional): rows fetched from the index per positive concept.
                Default: ``max(50·k, 2000)``

        Returns:
            RetrievalResult: the ranked results.
        """
        q = as_query(query)
        if not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        bank = self.bank_for(q)
        defaults = self.thresholds(q, bank)
        concepts = q.concepts()
        centre = self.centre if self.centre is not None else len(bank) >= 8
        if index is not None:
            if _covered(q):
                return self._search_index(q, data, k, bank, centre, index, matching_only, candidates,
                                          defaults)
            fallback = "exact (the query has a branch without a positive concept)"
        else:
            fallback = None
        contrasted = _contrasted(q, defaults)
        rival_cols = [bank.indices(bank.alternatives(c)) for c in contrasted]
        indices, raw, mean, rival = self._collect(data, bank, bank.indices(concepts), rival_cols)
        scores = raw - mean[:, None] if centre else raw
        margins = evaluate_query(
            q,
            {c: scores[:, j] for j, c in enumerate(concepts)},
            raw={c: raw[:, j] for j, c in enumerate(concepts)},
            rivals={c: rival[:, j] for j, c in enumerate(contrasted)},
            default_threshold=defaults,
        )
        return _ranked(
            q, indices, margins, raw, k, matching_only, n_searched=int(margins.shape[0]),
            info={**self._info(bank, centre, defaults), **({"index": fallback} if fallback else {})},
        )

    def _search_index(
        self,
        q: Query,
        data: Any,
        k: int,
        bank: ConceptBank,
        centre: bool,
        index: Any,
        matching_only: bool,
        candidates: int | None,
        defaults: Mapping[str, Threshold],
    ) -> RetrievalResult:
        """Search with a FAISS index: candidates from the index, margins computed exactly on them.

        For every positive (not negated) concept of the query the index returns the ``candidates``
        rows with the largest score in the direction that concept's threshold uses (its embedding,
        or its embedding minus the bank's mean concept when z/quantile scores are centred; its raw
        embedding for contrast and cosine thresholds). On the union of those rows every term's
        score is then computed exactly from the stored vectors, NOT terms and thresholds included
        (a contrast from the vectors' cosines with the concept and with each of its alternatives).
        What stays exact: every score, the z-score cut-offs and standard deviations (from the
        collection's mean and covariance, kept with the index), cosine and contrast cut-offs,
        AND/OR/NOT, the ranking among candidates. What may differ from the exact search: an image
        that is not among the candidates of any positive concept is not returned (IVF adds its own
        approximation to candidate lists); quantile cut-offs and the standard deviation of a
        contrast (which takes a maximum over the alternatives, so no mean and covariance give it)
        are estimated from the index's row sample (exact when the store has no more rows than the
        sample; ``info["estimated_from_sample"]`` says so); ``n_matching`` counts matching
        candidates only (a lower bound, flagged in ``info``).
        """
        from ..features import FeatureStore

        if isinstance(data, (str, os.PathLike)):
            data = FeatureStore(data)
        if not isinstance(data, FeatureStore):
            raise DataError("searching with an index needs the FeatureStore it was built from")
        index.check(data, self.aligner, self.key)
        concepts = q.concepts()
        emb = bank.embeddings.double().numpy()
        cols = bank.indices(concepts)
        raw_w = emb[cols].T  # [dim, c]
        mean_w = emb.mean(0)
        cen_w = raw_w - mean_w[:, None] if centre else raw_w
        n_cand = int(candidates or max(50 * k, 2000))
        positive = list(dict.fromkeys(t.text for t in _positive_terms(q)))
        by_term: dict[str, np.ndarray] = {}
        for text in positive:
            j = concepts.index(text)
            term_kinds = {(t.threshold or defaults[text]).kind for t in q.terms() if t.text == text}
            for kind in term_kinds:
                by_term[f"{text}:{kind}"] = (raw_w if kind in ("cosine", "contrast") else cen_w)[:, j]
        directions = np.stack(list(by_term.values())).astype(np.float32)
        _, found = index.search(directions, n_cand)
        ids = np.unique(found[found >= 0])
        vectors = index.reconstruct(ids).astype(np.float64)
        raw = vectors @ raw_w
        scores = vectors @ cen_w
        stats = {}
        cen_mean, cen_std = index.moments(cen_w)
        raw_mean, raw_std = index.moments(raw_w)
        kinds = {(t.threshold or defaults[t.text]).kind for t in q.terms()}
        sample = np.asarray(index.sample, dtype=np.float64)
        sampled = sample @ cen_w if "quantile" in kinds else None
        contrasted = _contrasted(q, defaults)
        rivals: dict[str, np.ndarray] = {}
        contrast_std: dict[str, float] = {}
        for c in contrasted:
            alt_w = emb[bank.indices(bank.alternatives(c))].T  # [dim, a]
            rivals[c] = (vectors @ alt_w).max(1)
            diff = sample @ emb[bank.index(c)] - (sample @ alt_w).max(1)
            contrast_std[c] = float(diff.std()) if diff.size else 0.0
        for j, c in enumerate(concepts):
            stats[c] = {"mean": cen_mean[j], "std": cen_std[j], "raw_std": raw_std[j],
                        "raw_mean": raw_mean[j], "sample": None if sampled is None else sampled[:, j],
                        "contrast_std": contrast_std.get(c, 1.0)}
        margins = _margins_from_stats(q, scores, raw, concepts, stats, defaults, rivals)
        estimated = [w for w, used in (("quantile cut-offs", "quantile" in kinds),
                                       ("contrast standard deviations", bool(contrasted))) if used]
        return _ranked(
            q, ids, margins, raw, k, matching_only, n_searched=len(index),
            info={**self._info(bank, centre, defaults), "index": index.kind,
                  "candidates": int(ids.shape[0]), "n_matching_is_lower_bound": True,
                  **({"estimated_from_sample": f"{', '.join(estimated)} (from the index's sample "
                                               f"of {sample.shape[0]} rows)"} if estimated else {})},
        )

    def _rows_and_chunks(
        self, data: Any, bank: ConceptBank
    ) -> tuple[int, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        """The number of rows ``data`` holds, and its ``(indices, scores [n, K])`` chunks."""
        from ..concepts.scores import concept_scores, iter_store_scores
        from ..features import FeatureStore

        if isinstance(data, (str, os.PathLike)):
            data = FeatureStore(data)
        if isinstance(data, FeatureStore):
            return len(data), iter_store_scores(data, bank, self.aligner, key=self.key)
        from ..aligners.base import as_tensor_2d

        features = as_tensor_2d(data, "features")

        def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, features.shape[0], self.batch_size):
                chunk = features[start : start + self.batch_size]
                rows = torch.arange(start, start + chunk.shape[0])
                yield rows, concept_scores(chunk, bank, self.aligner, batch_size=self.batch_size)

        return features.shape[0], chunks()

    def _collect(
        self, data: Any, bank: ConceptBank, columns: list[int], rival_columns: Sequence[list[int]] = ()
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One pass over the data keeping only the query's columns, each row's mean score and, per
        entry of ``rival_columns``, each row's largest score over those columns (a contrast
        concept's alternatives): memory O(N × query concepts).

        The outputs are allocated once, before the pass: small arrays appended chunk by chunk
        between the chunks' large temporaries fragment the heap so badly that 200,000 rows of
        2048-d features held 1.3 GB (``benchmarks/stream_memory.py``)."""
        n, chunks = self._rows_and_chunks(data, bank)
        out = _RowBuffers(n, len(columns), len(rival_columns))
        for rows, scores in chunks:
            block = out.take(rows.shape[0])
            block[0][:] = rows.numpy()
            block[1][:] = scores[:, columns].numpy()
            block[2][:] = scores.mean(1, dtype=torch.float64).numpy()
            for j, alts in enumerate(rival_columns):
                block[3][:, j] = scores[:, alts].amax(1).numpy()
        if not out.filled:
            raise DataError("there are no images to search (empty features or an unfinished feature store)")
        return out.result()


class _RowBuffers:
    """Preallocated per-row outputs of a search pass (indices, query columns, mean, rivals), grown
    only if the data turns out to hold more rows than announced (a store still being written)."""

    def __init__(self, n: int, n_columns: int, n_rivals: int) -> None:
        self.arrays = [np.empty(n, np.int64), np.empty((n, n_columns)), np.empty(n),
                       np.empty((n, n_rivals))]
        self.filled = 0

    def take(self, rows: int) -> list[np.ndarray]:
        """Views of the next ``rows`` rows of every array."""
        end = self.filled + rows
        if end > len(self.arrays[0]):
            grown = max(end, 2 * len(self.arrays[0]))
            self.arrays = [np.resize(a, (grown, *a.shape[1:])) for a in self.arrays]
        views = [a[self.filled : end] for a in self.arrays]
        self.filled = end
        return views

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        idx, raw, mean, rival = (a[: self.filled] for a in self.arrays)
        return idx, raw, mean, rival


def _contrasted(q: Query, defaults: Mapping[str, Threshold]) -> list[str]:
    """The query's concepts with at least one contrast term, in query order."""
    used = {t.text for t in q.terms() if (t.threshold or defaults[t.text]).kind == "contrast"}
    return [c for c in q.concepts() if c in used]


def _positive_terms(q: Query, negated: bool = False) -> Iterator[Concept]:
    """The concept terms not under an odd number of NOTs."""
    if isinstance(q, Concept):
        if not negated:
            yield q
    elif isinstance(q, Not):
        yield from _positive_terms(q.item, not negated)
    elif isinstance(q, (And, Or)):
        for item in q.items:
            yield from _positive_terms(item, negated)


def _covered(q: Query) -> bool:
    """Whether every image satisfying ``q`` must exceed some positive concept's cut-off (so an
    index's candidates for those concepts can hold all the answers)."""
    if isinstance(q, Concept):
        return True
    if isinstance(q, And):
        return any(_covered(i) for i in q.items)
    if isinstance(q, Or):
        return all(_covered(i) for i in q.items)
    return False  # NOT: its images are those far from a concept, which no index lists
