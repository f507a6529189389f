"""FAISS index backend: same answers as the exact search, identity checks, CLI flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2c_captum import DataError, IncompatibleArtifactError
from t2c_captum.aligners import LinearAligner
from t2c_captum.aligners.fit import fit_from_store
from t2c_captum.concepts import ConceptBank
from t2c_captum.retrieval import Retriever

faiss = pytest.importorskip(
    "faiss", reason="the FAISS backend needs faiss-cpu (pip install 't2c_captum[faiss]')"
)

from t2c_captum.retrieval.faiss_index import FaissIndex  # noqa: E402

from .conftest import write_store  # noqa: E402

NAMES = ["red", "blue", "green", "striped", "dotted", "large", "small", "star", "circle"]


@pytest.fixture
def aligned(synthetic_store):
    aligner = fit_from_store(synthetic_store, LinearAligner())
    aligner.source_, aligner.target_ = {"id": "bb"}, {"id": "sp"}
    emb = torch.randn(len(NAMES), 8, generator=torch.Generator().manual_seed(5))
    return synthetic_store, aligner, ConceptBank(NAMES, emb, "sp")


QUERIES = ['"red" & ~"blue">z1', '("red" | "green">0.2) & ~"striped"', "star>z1.5 & circle", "dotted>q0.8"]


@pytest.mark.parametrize("centre", [True, False])
def test_flat_index_with_every_row_as_candidate_equals_the_exact_search(aligned, centre):
    store, aligner, bank = aligned
    index = FaissIndex.build(store, aligner, kind="flat")
    for fast in _same_as_exact(Retriever(bank, aligner, centre=centre), store, index, QUERIES):
        assert fast.n_searched == 600
        assert fast.info["index"] == "flat" and fast.info["n_matching_is_lower_bound"]


def _same_as_exact(retriever, store, index, queries):
    """Search every query with the index (every row a candidate) and exactly; yield the index results
    after checking that they equal the exact ones."""
    for query in queries:
        exact = retriever.search(query, store, k=25)
        fast = retriever.search(query, store, k=25, index=index, candidates=len(store))
        assert fast.indices.tolist() == exact.indices.tolist(), query
        torch.testing.assert_close(fast.margins, exact.margins, rtol=1e-4, atol=1e-4)
        assert fast.n_matching == exact.n_matching and fast.info.get("defaults") == exact.info.get("defaults")
        yield fast


GROUPS = {
    **dict.fromkeys(["red", "blue", "green"], "colour"),
    **dict.fromkeys(["star", "circle"], "shape"),
    "dotted": "pattern",
    "striped": "pattern",
}
CONTRAST_QUERIES = [
    '"red" & ~"blue">z1',
    '("red" | "green">c0.02) & ~"striped"',
    "star>c-0.01 & circle>z0",
    '"dotted" & "large">q0.6',
]


@pytest.mark.parametrize("centre", [True, False])
def test_flat_index_contrast_search_equals_the_exact_search(aligned, centre):
    store, aligner, plain = aligned
    bank = plain.with_groups(GROUPS)
    index = FaissIndex.build(store, aligner, kind="flat")  # the sample holds every row: exact std
    retriever = Retriever(bank, aligner, centre=centre)
    for fast in _same_as_exact(retriever, store, index, CONTRAST_QUERIES):
        assert "contrast standard deviations" in fast.info["estimated_from_sample"]
    few = retriever.search('"red" & "circle"', store, k=5, index=index, candidates=120)
    assert few.info["candidates"] < len(store)
    assert few.indices.tolist() == retriever.search('"red" & "circle"', store, k=5).indices.tolist()


def test_few_candidates_still_find_the_top_results_and_negative_queries_fall_back(aligned):
    store, aligner, bank = aligned
    index = FaissIndex.build(store, aligner, kind="flat", sample_size=100)  # quantiles: estimated
    retriever = Retriever(bank, aligner)
    exact = retriever.search('"red">z1 & "green"', store, k=5)
    fast = retriever.search('"red">z1 & "green"', store, k=5, index=index, candidates=150)
    assert fast.info["candidates"] < len(store)
    assert fast.indices.tolist() == exact.indices.tolist()
    only_not = retriever.search('~"red"', store, k=5, index=index)
    assert only_not.indices.tolist() == retriever.search('~"red"', store, k=5).indices.tolist()
    assert only_not.info["index"].startswith("exact")


def test_ivf_index_recall_and_reopen(aligned):
    store, aligner, bank = aligned
    index = FaissIndex.build(store, aligner, kind="ivf", nlist=8, nprobe=8)  # every cell: exact
    assert index.info["nlist"] == 8 and len(index) == 600
    reopened = FaissIndex.open(store, aligner, kind="ivf", build=False)
    assert reopened.path == index.path and reopened.index.nprobe == 8
    retriever = Retriever(bank, aligner)
    exact = retriever.search(QUERIES[0], store, k=10)
    fast = retriever.search(QUERIES[0], store, k=10, index=reopened, candidates=600)
    assert fast.indices.tolist() == exact.indices.tolist()
    np.testing.assert_allclose(index.moments(np.eye(8))[0], index.sample.mean(0), atol=1e-5)


def test_ivf_training_rows_are_sampled_in_the_first_pass_and_nlist_is_checked_before_it(aligned, monkeypatch):
    """k-means needs more rows (64 a cell) than the statistics' sample keeps here: they are sampled
    while the store streams, not gathered by reading the whole store into memory a third time."""
    store, aligner, bank = aligned
    passes = []
    original = store.iter_shards

    def counted(*args, **kwargs):
        passes.append(1)
        yield from original(*args, **kwargs)

    monkeypatch.setattr(store, "iter_shards", counted)
    with pytest.raises(DataError, match="nlist=5000"):
        FaissIndex.build(store, aligner, kind="ivf", nlist=5000, save=False)
    assert passes == []  # refused before reading anything
    index = FaissIndex.build(store, aligner, kind="ivf", nlist=8, nprobe=8, sample_size=50, save=False)
    assert len(passes) == 2 and len(index) == 600 and index.sample.shape[0] == 50
    retriever = Retriever(bank, aligner)
    exact = retriever.search(QUERIES[1], store, k=10)
    fast = retriever.search(QUERIES[1], store, k=10, index=index, candidates=600)
    assert fast.indices.tolist() == exact.indices.tolist()

def test_an_index_built_for_other_features_is_refused(aligned, tmp_path):
    store, aligner, bank = aligned
    index = FaissIndex.build(store, aligner, kind="flat")
    other = LinearAligner(alpha=10.0)
    fit_from_store(store, other)
    other.source_, other.target_ = {"id": "bb"}, {"id": "sp"}
    with pytest.raises(IncompatibleArtifactError, match="weights"):
        Retriever(bank, other).search("red", store, index=index)
    second = write_store(tmp_path / "other", n=300, seed=1, key="other")
    with pytest.raises(IncompatibleArtifactError, match="store_key.*Rebuild"):
        Retriever(bank, aligner).search("red", second, index=index)
    loaded = FaissIndex.load(index.path)
    with pytest.raises(IncompatibleArtifactError, match="aligner"):
        loaded.check(store, None)
    with pytest.raises(DataError, match="no FAISS index"):
        FaissIndex.open(second, aligner, build=False)
    with pytest.raises(DataError, match="FeatureStore"):
        Retriever(bank, aligner).search("red", torch.randn(5, 12), index=index)


def test_bad_settings_are_clear_errors(aligned, tmp_path):
    store, aligner, _ = aligned
    with pytest.raises(DataError, match="kind must be one of"):
        FaissIndex.build(store, aligner, kind="hnsw")
    with pytest.raises(DataError, match="nlist=5000"):
        FaissIndex.build(store, aligner, kind="ivf", nlist=5000)
    partial = write_store(tmp_path / "p", n=300, seed=2, key="p")
    partial.manifest["n_shards"] += 1
    with pytest.raises(DataError, match="not complete"):
        FaissIndex.build(partial, aligner)


def test_cli_retrieve_with_a_faiss_index_matches_the_exact_search(labelled_images, tmp_path):
    import json

    from typer.testing import CliRunner

    from t2c_captum.cli import app
    from t2c_captum.plugins import temporary_plugin
    from t2c_captum.testing import FakePairPlugin

    runner = CliRunner()
    with temporary_plugin(FakePairPlugin("fake-idx-bb", "fake-idx-space"), "fakes-index"):
        fitted = runner.invoke(
            app,
            [
                "fit",
                "fake-idx-bb",
                "fake-idx-space",
                "--data",
                str(labelled_images),
                "--out",
                str(tmp_path / "al"),
                "--json",
            ],
        )
        assert fitted.exit_code == 0, fitted.output
        args = [
            "retrieve",
            str(tmp_path / "al"),
            '"red" & ~"blue">z1',
            "-d",
            str(labelled_images),
            "-k",
            "5",
            "--json",
        ]
        exact = json.loads(runner.invoke(app, args).output)
        for kind in ("faiss-flat", "faiss-ivf"):
            out = runner.invoke(app, [*args, "--index", kind, "--nprobe", "64"])
            assert out.exit_code == 0, out.output
            got = json.loads(out.output)
            assert got["index"] == kind.removeprefix("faiss-")
            assert [r["index"] for r in got["results"]] == [r["index"] for r in exact["results"]]
        bad = runner.invoke(app, [*args, "--index", "annoy"])
        assert bad.exit_code == 2 and "--index must be one of" in bad.output


def test_an_index_beside_a_store_of_other_encoders_is_refused(aligned, tmp_path):
    store, aligner, _ = aligned
    index = FaissIndex.build(store, aligner, kind="flat", save=False)
    twin = write_store(tmp_path / "twin")  # the same store key and rows, read by another encoder
    twin.manifest["encoders"]["source"]["id"] = "another-bb"
    index.check(store, aligner)
    refused = "encoder: index has .*'bb'.*features have .*'another-bb'"
    with pytest.raises(IncompatibleArtifactError, match=refused):
        index.check(twin, aligner)
