"""Text-constrained retrieval: the query syntax, margins, chunked search, grids, CLI, concept world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2c_captum import DataError, UnknownNameError
from t2c_captum.concepts import ConceptBank
from t2c_captum.retrieval import (
    And,
    C,
    Concept,
    Not,
    Or,
    QuerySyntaxError,
    Retriever,
    contrast,
    cosine,
    evaluate_query,
    parse_query,
    parse_threshold,
    quantile,
    zscore,
)
from t2c_captum.testing import FakeBackbone, FakePairPlugin, FakeSpace

runner = CliRunner()


# ---------------------------------------------------------------- the syntax
def test_precedence_is_not_then_and_then_or_like_python():
    parsed = parse_query('"a" | "b" & ~"c"')
    assert parsed == Or((Concept("a"), And((Concept("b"), Not(Concept("c"))))))
    assert parsed == (C("a") | C("b") & ~C("c"))
    assert parse_query("~a & b") == And((Not(Concept("a")), Concept("b")))


def test_parentheses_group_and_chains_flatten():
    assert parse_query("(a | b) & c") == And((Or((Concept("a"), Concept("b"))), Concept("c")))
    assert parse_query("a & b & c") == And((Concept("a"), Concept("b"), Concept("c")))
    assert parse_query("~(a & b)") == Not(And((Concept("a"), Concept("b"))))
    assert (C("a") & "b") & C("c") == parse_query("a & b & c")


def test_thresholds_and_quoting():
    parsed = parse_query("\"red\">z1.5 & 'striped background'>q0.9 | \"say \\\"hi\\\"\">0.25 & c>z-1")
    terms = list(parsed.terms())
    assert [t.text for t in terms] == ["red", "striped background", 'say "hi"', "c"]
    assert [t.threshold for t in terms] == [zscore(1.5), quantile(0.9), cosine(0.25), zscore(-1)]
    assert (C("red") > zscore(1.5)) == terms[0] and (C("x") > 0.3).threshold == cosine(0.3)
    assert parse_threshold(" q0.5 ") == quantile(0.5)


def test_contrast_thresholds_parse_and_write_back():
    assert parse_threshold("c0") == contrast(0) and parse_threshold("C0.02") == contrast(0.02)
    assert str(contrast(0.1)) == "c0.1" and str(parse_query('"red">c0.1')) == '"red">c0.1'
    assert parse_query('red>c0.1 & c>c-1') == (C("red", contrast(0.1)) & C("c", contrast(-1)))
    assert (C("red") > contrast(0.1)).threshold == contrast(0.1)
    with pytest.raises(QuerySyntaxError, match="c0 \\(contrast\\)"):
        parse_query("red>c")
    with pytest.raises(DataError, match="finite"):
        contrast(float("inf"))


@pytest.mark.parametrize(
    "text",
    ['"red" & ("circle" | "star">z1) & ~"striped background">q0.8', 'a | ~~b & c>0.1', '~("a" | "b")',
     '"red">c0.1 & ~"blue">c-0.05 | c>c0'],
)
def test_str_writes_the_syntax_back(text):
    query = parse_query(text)
    assert parse_query(str(query)) == query


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ('"red" & & "blue"', 8, "quoted concept"),
        ('"red" & "blue', 13, 'closing " for the concept opened at position 8'),
        ("(red & blue", 11, "')' to close the '(' at position 0"),
        ("red blue", 4, "'&', '|' or the end"),
        ("red)", 3, "'&', '|' or the end"),
        ("red>q1.5", 4, "quantile threshold must lie in [0, 1]"),
        ("red > zz", 6, "a threshold"),
        ("", 0, "quoted concept"),
        ('"  " & red', 0, "non-empty concept"),
        ("(a|b)>z1", 5, "'&', '|' or the end"),
    ],
)
def test_syntax_errors_point_at_the_position(text, position, expected):
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)
    err = info.value
    assert isinstance(err, DataError) and err.position == position and expected in str(err)
    lines = str(err).splitlines()
    assert lines[1] == f"    {text}" and lines[2].index("^") - 4 == position


def test_bad_thresholds_and_terms_are_data_errors():
    for make in (lambda: quantile(1.5), lambda: cosine(2.0), lambda: zscore(float("nan")), lambda: C("  ")):
        with pytest.raises(DataError):
            make()
    with pytest.raises(QuerySyntaxError, match="end of the threshold"):
        parse_threshold("0.3x")
    with pytest.raises(DataError, match="not int"):
        C("a") & 3  # type: ignore[operator]
    with pytest.raises(DataError, match="with parentheses"):
        _ = C("a") > zscore(1) & C("b")  # type: ignore[operator]


# ---------------------------------------------------------------- margins on known scores
def _known_scores(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    facts = {"red": rng.random(n) < 0.3, "circle": rng.random(n) < 0.5, "striped": rng.random(n) < 0.2}
    scores = {c: f * 1.0 + rng.normal(0, 0.1, n) for c, f in facts.items()}
    return facts, scores


def test_margins_select_exactly_the_known_answer():
    facts, scores = _known_scores()
    margins = evaluate_query('"red" & "circle" & ~"striped"', scores, default_threshold=zscore(0.5))
    truth = facts["red"] & facts["circle"] & ~facts["striped"]
    np.testing.assert_array_equal(margins > 0, truth)
    margins = evaluate_query("red | striped", scores, default_threshold=cosine(0.5))
    np.testing.assert_array_equal(margins > 0, facts["red"] | facts["striped"])
    assert (evaluate_query('"circle">q0.9', scores) > 0).sum() == 40


def test_margins_are_min_max_and_negation_of_term_margins():
    _, scores = _known_scores()
    z = {c: (s - s.mean()) / s.std() for c, s in scores.items()}
    r = z["red"] - 1.0
    c = (scores["circle"] - np.quantile(scores["circle"], 0.8)) / scores["circle"].std()
    s = (scores["striped"] - 0.3) / scores["striped"].std()
    got = evaluate_query('("red">z1 | "circle">q0.8) & ~"striped">0.3', scores)
    np.testing.assert_allclose(got, np.minimum(np.maximum(r, c), -s))
    raw = {k: v + 5.0 for k, v in scores.items()}  # cosine thresholds read the raw scores
    got = evaluate_query('"red">0.3', scores, raw=raw)
    np.testing.assert_allclose(got, (raw["red"] - 0.3) / raw["red"].std())


def test_missing_or_mismatched_scores_are_clear_errors():
    _, scores = _known_scores()
    with pytest.raises(DataError, match="no scores for the query's concepts"):
        evaluate_query("red & blue", scores)
    with pytest.raises(DataError, match="same, non-zero number"):
        evaluate_query("red & circle", {"red": np.zeros(3), "circle": np.zeros(4)})


def test_contrast_margins_use_the_best_alternatives_score():
    _, scores = _known_scores()
    rng = np.random.default_rng(3)
    rival = {"red": scores["red"] + rng.normal(0, 0.3, 400), "circle": rng.normal(0.5, 0.2, 400)}
    got = evaluate_query('"red">c0.1 & "circle"', scores, rivals=rival,
                         default_threshold={"circle": contrast(0)})
    diff_red, diff_circle = scores["red"] - rival["red"], scores["circle"] - rival["circle"]
    expected = np.minimum((diff_red - 0.1) / diff_red.std(), diff_circle / diff_circle.std())
    np.testing.assert_allclose(got, expected)
    raw = {k: v + 5.0 for k, v in scores.items()}  # contrast reads the raw (uncentred) cosines
    got = evaluate_query('"red">c0', scores, raw=raw, rivals=rival)
    np.testing.assert_allclose(got, (raw["red"] - rival["red"]) / (raw["red"] - rival["red"]).std())
    with pytest.raises(DataError, match="contrast threshold of 'circle'.*rivals="):
        evaluate_query('"red">c0 & circle>c0', scores, rivals={"red": rival["red"]})
    with pytest.raises(DataError, match="rivals="):
        evaluate_query("red", scores, default_threshold=contrast(0))
    with pytest.raises(DataError, match="same, non-zero number"):
        evaluate_query("red>c0", scores, rivals={"red": np.zeros(3)})


# ---------------------------------------------------------------- contrast on a grouped bank
COLOURS, SHAPES = ["red", "orange", "pink", "blue"], ["circle", "square", "star"]


@pytest.fixture
def grouped():
    """A bank whose warm colours share a direction (a red cosine is high for orange and pink
    objects too), with colour and shape groups, plus images of known colour and shape."""
    rng = np.random.default_rng(0)
    warm = np.zeros(9)
    warm[8] = 1.0
    emb = np.eye(9)[:8].copy()
    for j in range(3):  # red, orange, pink lean on the shared warm axis
        emb[j] = emb[j] + 1.2 * warm
    names = [*COLOURS, *SHAPES, "large"]
    groups = {**dict.fromkeys(COLOURS, "colour"), **dict.fromkeys(SHAPES, "shape")}
    bank = ConceptBank(names, torch.tensor(emb, dtype=torch.float32), "grouped", groups=groups)
    n = 240
    colour, shape = rng.integers(0, 4, n), rng.integers(0, 3, n)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    x = unit[colour] + unit[4 + shape] + rng.normal(0, 0.08, (n, 9))
    return bank, torch.tensor(x, dtype=torch.float32), colour, shape


def test_contrast_finds_what_z_scores_confuse(grouped):
    bank, x, colour, shape = grouped
    truth = set(np.flatnonzero((colour == 0) & (shape == 0)).tolist())
    by_z = Retriever(bank, default_threshold=zscore(0)).search('"red" & "circle"', x, k=240,
                                                               matching_only=True)
    assert set(by_z.indices.tolist()) > truth  # orange and pink circles pass z > 0 on "red"
    assert colour[by_z.indices.numpy()].tolist().count(0) < len(by_z)
    by_contrast = Retriever(bank).search('"red" & "circle"', x, k=240, matching_only=True)
    assert set(by_contrast.indices.tolist()) == truth
    assert by_contrast.info["defaults"] == {"red": "c0", "circle": "c0"}
    top = Retriever(bank).search('"red" & ~"circle"', x, k=10).indices.numpy()
    assert (colour[top] == 0).all() and (shape[top] != 0).all()


def test_default_is_contrast_only_for_concepts_with_alternatives(grouped):
    bank, x, *_ = grouped
    retriever = Retriever(bank, centre=False)
    result = retriever.search('"red" & ~"large" | "star">z1', x, k=240)
    assert result.info["defaults"] == {"red": "c0", "large": "z0", "star": "c0"}
    assert result.info["default_threshold"].startswith("auto")
    cos = torch.nn.functional.normalize(x, dim=1) @ bank.embeddings.T
    col = {c: cos[:, bank.index(c)].double().numpy() for c in bank}
    rivals = {"red": np.max([col[c] for c in bank.alternatives("red")], axis=0)}
    expected = evaluate_query('"red" & ~"large" | "star">z1', col, rivals=rivals,
                              default_threshold={"red": contrast(0), "large": zscore(0)})
    np.testing.assert_allclose(result.margins.numpy(), np.sort(expected)[::-1], rtol=1e-4, atol=1e-5)
    assert result.indices.tolist() == np.lexsort((np.arange(240), -expected)).tolist()
    explicit = Retriever(bank, default_threshold=zscore(0), centre=False).search("red", x, k=3)
    assert explicit.info["defaults"] == {"red": "z0"} and explicit.info["default_threshold"] == "z0"


def test_contrast_without_alternatives_is_a_clear_error(grouped, axis_bank):
    bank, x, *_ = grouped
    with pytest.raises(DataError, match="contrast threshold on 'large'.*no group for it.*groups.*z0"):
        Retriever(bank).search('"red" & "large">c0', x)
    with pytest.raises(DataError, match="'red'.*the bank has no groups at all"):
        Retriever(axis_bank, default_threshold=contrast(0)).search("red", torch.randn(5, 9))
    alone = bank.with_groups({"red": "colour", "circle": "shape", "square": "shape"})
    with pytest.raises(DataError, match="only concept of group 'colour'"):
        Retriever(alone).bank_for("red>c0.1")
    assert Retriever(alone).thresholds("red & circle") == {"red": zscore(0), "circle": contrast(0)}
    with pytest.raises(DataError, match="default_threshold must be None"):
        Retriever(bank, default_threshold="c0")  # type: ignore[arg-type]


def test_chunked_contrast_search_equals_the_in_memory_search(grouped, tmp_path):
    from t2c_captum.features import FeatureStore

    bank, x, *_ = grouped
    store = FeatureStore.create(
        tmp_path / "s", key="grouped", encoders={"source": {"id": "grouped", "dim": 9}},
        dataset={"name": "grouped", "fingerprint": "g240", "n": 240, "class_names": None},
        shard_size=50, n_shards=5,
    )
    for shard in range(5):
        idx = torch.arange(shard * 50, min(shard * 50 + 50, 240))
        store.write_shard(shard, {"source": x[idx], "labels": idx % 2, "indices": idx}, [])
    query = '("red" | "pink">c0.05) & ~"star" & "large">q0.3'
    memory = Retriever(bank, batch_size=17).search(query, x, k=30)
    chunked = Retriever(bank).search(query, store, k=30)
    assert chunked.indices.tolist() == memory.indices.tolist()
    torch.testing.assert_close(chunked.margins, memory.margins)


def test_a_pass_with_more_rows_than_announced_grows_its_buffers_and_loses_none(grouped, monkeypatch):
    """The per-row outputs are allocated once from the announced row count (a store's manifest); a
    store that finished more shards meanwhile must still be searched whole."""
    bank, x, *_ = grouped
    query = '"red" & ~"star"'
    whole = Retriever(bank, batch_size=17).search(query, x, k=30)
    announced = Retriever._rows_and_chunks

    def fewer(self, data, bank):
        n, chunks = announced(self, data, bank)
        return 20, chunks

    monkeypatch.setattr(Retriever, "_rows_and_chunks", fewer)
    grown = Retriever(bank, batch_size=17).search(query, x, k=30)
    assert grown.n_searched == x.shape[0] == 240
    assert grown.indices.tolist() == whole.indices.tolist()
    torch.testing.assert_close(grown.margins, whole.margins)


# ---------------------------------------------------------------- the retriever
@pytest.fixture
def axis_bank():
    names = ["red", "circle", "striped", "dotted", "blue", "green", "star", "large", "small"]
    return ConceptBank(names, torch.eye(len(names)), "axes")


def test_search_ranks_by_margin_and_reports_matches(axis_bank):
    x = torch.randn(300, 9, generator=torch.Generator().manual_seed(0))
    result = Retriever(axis_bank, centre=False).search('"red" & ~"striped"', x, k=7)
    cos = torch.nn.functional.normalize(x, dim=1).numpy()
    margins = evaluate_query('"red" & ~"striped"', {"red": cos[:, 0], "striped": cos[:, 2]})
    assert result.indices.tolist() == np.argsort(-margins, kind="stable")[:7].tolist()
    np.testing.assert_allclose(result.margins.numpy(), np.sort(margins)[::-1][:7], rtol=1e-5)
    assert result.n_matching == int((margins > 0).sum()) and result.n_searched == 300
    torch.testing.assert_close(result.scores["red"], torch.from_numpy(cos[result.indices.numpy(), 0]))
    only = Retriever(axis_bank).search("red>q0.99", x, k=50, matching_only=True)
    assert len(only) == only.n_matching == 3 and bool(only.matching.all())


def test_centring_subtracts_each_images_mean_over_the_bank(axis_bank):
    x = torch.randn(200, 9, generator=torch.Generator().manual_seed(1))
    cos = torch.nn.functional.normalize(x, dim=1).numpy()
    centred = cos - cos.mean(1, keepdims=True)
    result = Retriever(axis_bank).search("red & circle", x, k=5)
    assert result.info["centred"] is True
    expected = evaluate_query("red & circle", {"red": centred[:, 0], "circle": centred[:, 1]})
    assert result.indices.tolist() == np.argsort(-expected, kind="stable")[:5].tolist()


def test_unknown_concepts_and_bad_arguments(axis_bank):
    x = torch.randn(10, 9)
    with pytest.raises(UnknownNameError, match="Did you mean 'striped'"):
        Retriever(axis_bank).search('"red" & "stripped"', x)
    with pytest.raises(QuerySyntaxError):
        Retriever(axis_bank).search('"red" &', x)
    with pytest.raises(DataError, match="k must be a positive"):
        Retriever(axis_bank).search("red", x, k=0)
    with pytest.raises(DataError, match="ConceptBank or a Space"):
        Retriever(["red"])
    with pytest.raises(DataError, match="no images to search"):
        Retriever(axis_bank).search("red", torch.zeros(0, 9))


def test_a_space_embeds_the_querys_own_concepts():
    space = FakeSpace(dim=6)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    result = Retriever(space, centre=False).search('"a red thing" | "a blue thing"', x, k=4)
    bank = ConceptBank.build(space, ["a red thing", "a blue thing"])
    cos = (torch.nn.functional.normalize(x, dim=1) @ bank.embeddings.T).numpy()
    expected = np.maximum(*(((cos[:, j] - cos[:, j].mean()) / cos[:, j].std()) for j in range(2)))
    assert result.indices.tolist() == np.argsort(-expected, kind="stable")[:4].tolist()


def test_chunked_store_search_equals_the_in_memory_search(labelled_images, tmp_path):
    from t2c_captum.features import extract_features

    space = FakeSpace(dim=6)
    bank = ConceptBank.build(space, ["red", "blue", "green", "striped", "dotted", "large", "small", "star"])
    store = extract_features(labelled_images, {"source": space}, store=tmp_path / "s", shard_size=5,
                             progress=False)
    assert store.manifest["n_shards"] == 5
    features = store.load(["source"])
    query = '("red" | "blue">q0.7) & ~"striped">0.1'
    for centre in (True, False):
        retriever = Retriever(bank, centre=centre, batch_size=7)
        chunked = retriever.search(query, store, k=24)
        memory = retriever.search(query, features["source"][features["indices"].argsort()], k=24)
        assert chunked.indices.tolist() == memory.indices.tolist()
        torch.testing.assert_close(chunked.margins, memory.margins)
        by_path = retriever.search(query, str(tmp_path / "s"), k=3)
        assert by_path.indices.tolist() == chunked.indices[:3].tolist()


def test_grid_is_written(labelled_images, tmp_path, axis_bank):
    from PIL import Image

    from t2c_captum.data import open_source

    source = open_source(labelled_images)
    x = torch.randn(len(source), 9, generator=torch.Generator().manual_seed(3))
    result = Retriever(axis_bank).search("red & ~blue", x, k=6)
    path = result.grid(source, tmp_path / "out" / "grid.png", cols=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height > 0
    everything = Retriever(axis_bank).search("red", x, k=len(source))
    with pytest.raises(DataError, match="same images that were searched"):
        everything.grid(open_source(labelled_images / "cat"), tmp_path / "bad.png")
    empty = Retriever(axis_bank).search("red>q1", x, k=3, matching_only=True)
    with pytest.raises(DataError, match="no grid"):
        empty.grid(source, tmp_path / "empty.png")


# ---------------------------------------------------------------- the CLI

def test_cli_retrieve_matches_the_library(labelled_images, tmp_path):
    from t2c_captum.aligners import load_aligner
    from t2c_captum.cli import app
    from t2c_captum.features import extract_features
    from t2c_captum.plugins import temporary_plugin

    with temporary_plugin(FakePairPlugin("fake-ret-bb", "fake-ret-space"), "fakes-retrieval"):
        fitted = runner.invoke(app, ["fit", "fake-ret-bb", "fake-ret-space", "--data", str(labelled_images),
                                     "--out", str(tmp_path / "al"), "--json"])
        assert fitted.exit_code == 0, fitted.output
        query = '"red" & ~"blue">z1'
        args = ["retrieve", str(tmp_path / "al"), query, "--data", str(labelled_images), "-k", "5"]
        out = runner.invoke(app, [*args, "--json", "--grid", str(tmp_path / "g.png")])
        assert out.exit_code == 0, out.output
        got = json.loads(out.output)
        aligner = load_aligner(str(tmp_path / "al"))
        store = extract_features(labelled_images, {"source": FakeBackbone(dim=10, name="fake-ret-bb")},
                                 progress=False)
        expected = Retriever(FakeSpace(dim=6, name="fake-ret-space"), aligner).search(query, store, k=5)
        assert [r["index"] for r in got["results"]] == expected.indices.tolist()
        assert got["n_searched"] == 24 and (tmp_path / "g.png").is_file() and got["centred"] is False
        human = runner.invoke(app, args)
        assert human.exit_code == 0 and "images match" in human.output
        data = ["-d", str(labelled_images)]
        bad = runner.invoke(app, ["retrieve", str(tmp_path / "al"), '"red" & | "blue"', *data])
        assert bad.exit_code == 2 and "position 8" in bad.output and "^" in bad.output
        listed = runner.invoke(app, [*args, "--concepts", "red,blue,green", "--json"])
        assert listed.exit_code == 0 and json.loads(listed.output)["bank"] == 3, listed.output
        al = str(tmp_path / "al")
        unknown = runner.invoke(app, ["retrieve", al, "red & bleu", *data, "-c", "red,blue"])
        assert unknown.exit_code == 2 and "Did you mean 'blue'" in unknown.output
        bad_threshold = runner.invoke(app, [*args, "--threshold", "q2"])
        assert bad_threshold.exit_code == 2 and "quantile threshold" in bad_threshold.output
        assert got["default_threshold"].startswith("auto") and got["defaults"] == {"red": "z0", "blue": "z0"}
        z1 = json.loads(runner.invoke(app, [*args, "--threshold", "z1", "--json"]).output)
        assert z1["default_threshold"] == "z1" and z1["defaults"]["red"] == "z1"
        no_groups = runner.invoke(app, [*args, "--threshold", "c0"])
        assert no_groups.exit_code == 2 and "contrast threshold on 'red'" in no_groups.output


# ---------------------------------------------------------------- the concept world (slow)
#: Queries of reliable factors (colour, background, size, position) that the aligned world-ae
#: supports with today's tiny CLIP; the issue's queries also need shapes and patterns.
RELIABLE_QUERIES = ['"red" & "dark background"', '"large" & "on the left"']


@pytest.fixture(scope="module")
def world_precision(world_aligned, tmp_path_factory):
    """``get(backbone, query text) -> (precision@10, |answers|)`` on world:test (2000 images)."""
    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import world_source
    from t2c_captum.world.tasks import answer_set

    source, searches = world_source("test", n=2000), {}

    def get(backbone: str, text: str) -> tuple[float, int]:
        if backbone not in searches:
            bb, space, aligner = world_aligned("world-ae" if backbone == "world-clip" else backbone, 3000)
            if backbone == "world-clip":  # the reference: the tiny CLIP's own image embeddings
                bb, aligner = space, None
            store = extract_features(source, {"source": bb}, store=tmp_path_factory.mktemp(backbone),
                                     progress=False)
            searches[backbone] = (Retriever(ConceptBank.from_vocabulary(space, "world"), aligner), store)
        retriever, store = searches[backbone]
        answers = answer_set(text, source.items)
        ranked = retriever.search(text, store, k=10).indices.tolist()
        return float(np.mean([i in answers for i in ranked])), len(answers)

    return get


@pytest.mark.slow
@pytest.mark.parametrize("text", RELIABLE_QUERIES)
def test_world_ae_retrieves_reliable_factor_queries(world_precision, text):
    precision, n = world_precision("world-ae", text)
    assert precision >= 0.9, f"precision@10 {precision:.2f} for {text} ({n} answers)"


#: Some of the issue's known-answer queries with the tiny CLIP's own embeddings (with contrast
#: scoring, the default on the world vocabulary, it answers all 8 at precision@10 1.0; world-vit
#: aligned is checked over all 8 below; docs/retrieval.md has the benchmark's tables).
SUPPORTED_ISSUE_QUERIES = [
    ("world-clip", '"blue" & "striped"'),
    ("world-clip", '"yellow" & ~"square"'),
    ("world-clip", '"triangle" & "dark background" & ~"small"'),
]


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "text"), SUPPORTED_ISSUE_QUERIES)
def test_world_issue_queries_reach_precision_0_9(world_precision, backbone, text):
    from t2c_captum.world.tasks import RETRIEVAL_QUERIES

    assert text in [q.text for q in RETRIEVAL_QUERIES]
    precision, n = world_precision(backbone, text)
    assert precision >= 0.9, f"precision@10 {precision:.2f} for {text} with {backbone} ({n} answers)"


@pytest.mark.slow
def test_world_vit_with_contrast_scoring_answers_the_known_answer_queries(world_precision):
    """Contrast scoring (the default with the world vocabulary's factor groups) on world-vit aligned
    to the tiny CLIP: mean precision@10 over every known-answer query (0.64 with z > 0)."""
    from t2c_captum.world.tasks import RETRIEVAL_QUERIES

    got = {q.text: world_precision("world-vit", q.text)[0] for q in RETRIEVAL_QUERIES}
    assert np.mean(list(got.values())) >= 0.9, got
