"""The label-free concept bottleneck: sparse head on concept activations, explanations, persistence, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2c_captum._exceptions import (
    CheckpointFormatError,
    DataError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    NotFittedError,
    UnknownNameError,
)
from t2c_captum.aligners import make_aligner
from t2c_captum.cbm import ConceptBottleneck
from t2c_captum.concepts import ConceptBank

FAST_CS = tuple(np.logspace(-2, 1, 7))


# ---------------------------------------------------------------- synthetic data (fast)
def _synthetic(n: int, seed: int, n_classes: int = 3, noise: float = 0.3):
    """Space embeddings of images of ``n_classes`` classes; class c lies along concept ``class-c``; the
    bank also holds distractor concepts in other directions."""
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16, generator=g))[0].contiguous()
    names = [f"class-{c}" for c in range(n_classes)] + [f"distractor-{i}" for i in range(5)]
    bank = ConceptBank(names, basis[: len(names)], "synthetic-space")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = basis[y].numpy() + noise * rng.standard_normal((n, 16)).astype(np.float32)
    return bank, torch.from_numpy(x), y


@pytest.fixture(scope="module")
def fitted():
    bank, xtr, ytr = _synthetic(600, seed=1)
    _, xv, yv = _synthetic(300, seed=2)
    cbm = ConceptBottleneck(bank, Cs=FAST_CS).fit(xtr, ytr, xv, yv, ["a", "b", "c"])
    return cbm, bank


def test_fit_is_accurate_sparse_and_picks_each_class_concept(fitted):
    cbm, bank = fitted
    _, xt, yt = _synthetic(400, seed=3)
    rep = cbm.report(k=1)
    assert cbm.score(xt, yt) > 0.9
    assert abs(cbm.score(xt, yt) - cbm.probe_score(xt, yt)) < 0.05
    for c, name in enumerate(["a", "b", "c"]):
        assert rep.top_concepts[name][0][0] == f"class-{c}"
    assert rep.nnz < len(bank) * 3  # the L1 path dropped some weights
    assert rep.nnz == sum(rep.nnz_per_class.values())
    assert [p.C for p in rep.path] == sorted(FAST_CS)
    assert rep.probe_val_accuracy is not None and rep.val_accuracy == cbm.val_accuracy_


def test_selection_rule_prefers_sparser_models_within_tolerance(fitted):
    cbm, _ = fitted
    best = max(p.val_accuracy for p in cbm.path_)
    chosen = next(p for p in cbm.path_ if p.C == cbm.C_)
    assert chosen.val_accuracy >= best - cbm.tolerance - 1e-12
    good = [p for p in cbm.path_ if p.val_accuracy >= best - cbm.tolerance - 1e-12]
    assert chosen.nnz == min(p.nnz for p in good)


def test_max_nonzero_per_class_is_respected():
    bank, xtr, ytr = _synthetic(400, seed=1)
    _, xv, yv = _synthetic(200, seed=2)
    cbm = ConceptBottleneck(bank, Cs=FAST_CS, max_nonzero_per_class=2, probe=False).fit(xtr, ytr, xv, yv)
    assert max(cbm.report().nnz_per_class.values()) <= 2
    assert cbm.probe_coef_ is None
    with pytest.raises(NotFittedError, match="probe"):
        cbm.probe_score(xv, yv)
    with pytest.raises(DataError, match="concepts per class"):
        ConceptBottleneck(bank, Cs=[100.0], max_nonzero_per_class=1, probe=False).fit(xtr, ytr, xv, yv)


def test_contributions_sum_to_the_logits(fitted):
    cbm, bank = fitted
    _, x, _ = _synthetic(50, seed=4)
    exp = cbm.explain(x)
    assert exp.contributions.shape == (50, 3, len(bank))
    logits = cbm.decision_function(x)
    np.testing.assert_allclose(exp.contributions.sum(-1) + exp.intercept, logits, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(exp.predictions, cbm.predict(x))
    np.testing.assert_allclose(cbm.predict_proba(x).sum(1), 1.0, atol=1e-12)
    top = exp.top(0, k=2)
    pred = exp.predicted()[0]
    assert abs(top[0][1]) == pytest.approx(np.abs(pred).max())
    assert top[0][0] == bank.concepts[int(np.abs(pred).argmax())]


def test_matches_scikit_learn_on_the_bottleneck(fitted):
    from sklearn.linear_model import LogisticRegression

    cbm, _ = fitted
    _, x, _ = _synthetic(30, seed=5)
    sk = LogisticRegression()
    sk.classes_, sk.coef_, sk.intercept_ = np.arange(3), cbm.coef_, cbm.intercept_
    np.testing.assert_allclose(sk.decision_function(cbm.transform(x)), cbm.decision_function(x), atol=1e-10)


def test_binary_task_keeps_one_weight_row_per_class():
    bank, xtr, ytr = _synthetic(300, seed=1, n_classes=2)
    _, xv, yv = _synthetic(100, seed=2, n_classes=2)
    cbm = ConceptBottleneck(bank, Cs=FAST_CS, probe=False).fit(xtr, ytr, xv, yv, ["no", "yes"])
    exp = cbm.explain(xv)
    np.testing.assert_allclose(exp.logits, cbm.decision_function(xv), atol=1e-12)
    assert cbm.coef_.shape == (2, len(bank))
    assert cbm.top_concepts("yes", 1)[0][0] == "class-1"
    assert cbm.top_concepts("no", 1)[0][0] == "class-0"


def test_with_an_aligner_backbone_features_go_through_it():
    bank, z, y = _synthetic(900, seed=1)
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((16, 24)).astype(np.float32)
    feats = z.numpy() @ mixing  # a "backbone" whose features determine the space embedding linearly
    aligner = make_aligner("linear").fit(feats, z)
    aligner.target_ = {"id": "synthetic-space"}
    cbm = ConceptBottleneck(bank, aligner, Cs=FAST_CS).fit(feats[:600], y[:600], feats[600:], y[600:])
    assert cbm.n_features_in == 24
    assert cbm.score(feats[600:], y[600:]) > 0.9
    with pytest.raises(DimensionMismatchError, match="16-d but this model takes 24-d"):
        cbm.predict(z)
    other = ConceptBank(bank.concepts, bank.embeddings, "another-space")
    with pytest.raises(DimensionMismatchError, match="rebuild the bank"):
        ConceptBottleneck(other, aligner)


def test_save_load_round_trip_and_mismatches(fitted, tmp_path):
    cbm, bank = fitted
    _, x, y = _synthetic(40, seed=6)
    json_path = cbm.save(tmp_path / "model")
    meta = json.loads(json_path.read_text())
    assert meta["bank"]["concepts"] == bank.concepts and meta["bank"]["space_id"] == "synthetic-space"
    back = ConceptBottleneck.load(tmp_path / "model")
    np.testing.assert_array_equal(back.decision_function(x), cbm.decision_function(x))
    assert back.probe_score(x, y) == cbm.probe_score(x, y)
    assert back.report().as_dict() == cbm.report().as_dict()
    assert ConceptBottleneck.load(json_path, bank=bank).class_names_ == ["a", "b", "c"]
    with pytest.raises(IncompatibleArtifactError, match="lacks"):
        ConceptBottleneck.load(json_path, bank=bank.subset(bank.concepts[:-1]))
    shuffled = bank.subset(list(reversed(bank.concepts)))
    with pytest.raises(IncompatibleArtifactError, match="orders them differently"):
        ConceptBottleneck.load(json_path, bank=shuffled)
    moved = ConceptBank(bank.concepts, bank.embeddings.roll(1, dims=1), "synthetic-space")
    with pytest.raises(IncompatibleArtifactError, match="embeddings differ"):
        ConceptBottleneck.load(json_path, bank=moved)
    elsewhere = ConceptBank(bank.concepts, bank.embeddings, "other-space")
    other_space = "space id: saved 'synthetic-space', given 'other-space'"
    with pytest.raises(IncompatibleArtifactError, match=other_space):
        ConceptBottleneck.load(json_path, bank=elsewhere)
    # a bank that records no space (bare embeddings) is compared by its embeddings alone
    unrecorded = ConceptBank(bank.concepts, bank.embeddings, "")
    assert ConceptBottleneck.load(json_path, bank=unrecorded).bank.space_id == ""
    with pytest.raises(IncompatibleArtifactError, match="embeddings differ"):
        ConceptBottleneck.load(json_path, bank=ConceptBank(bank.concepts, moved.embeddings, ""))
    with pytest.raises(IncompatibleArtifactError, match="without an aligner"):
        ConceptBottleneck.load(json_path, aligner=make_aligner("linear"))
    with pytest.raises(CheckpointFormatError, match="not a saved concept bottleneck"):
        ConceptBottleneck.load(tmp_path / "missing")


def test_saved_aligner_is_restored_and_checked(tmp_path):
    bank, z, y = _synthetic(600, seed=1)
    feats = z.numpy() @ np.random.default_rng(0).standard_normal((16, 20)).astype(np.float32)
    aligner = make_aligner("linear").fit(feats, z)
    aligner.source_, aligner.target_ = {"id": "bb", "feature_dim": 20}, {"id": "synthetic-space"}
    cbm = ConceptBottleneck(bank, aligner, Cs=FAST_CS, probe=False).fit(
        feats[:400], y[:400], feats[400:], y[400:]
    )
    cbm.save(tmp_path / "m")
    back = ConceptBottleneck.load(tmp_path / "m")
    assert back.aligner.source_["id"] == "bb"
    np.testing.assert_allclose(
        back.decision_function(feats[:10]), cbm.decision_function(feats[:10]), atol=1e-6
    )
    assert ConceptBottleneck.load(tmp_path / "m", aligner=aligner).aligner is aligner
    refit = make_aligner("linear").fit(feats[:300], z[:300])
    refit.source_, refit.target_ = dict(aligner.source_), dict(aligner.target_)
    with pytest.raises(IncompatibleArtifactError, match="weights differ"):
        ConceptBottleneck.load(tmp_path / "m", aligner=refit)
    refit.source_ = {"id": "other-bb", "feature_dim": 20}
    with pytest.raises(IncompatibleArtifactError, match="backbone.id"):
        ConceptBottleneck.load(tmp_path / "m", aligner=refit)


def test_bad_inputs_raise_clear_errors(fitted):
    cbm, bank = fitted
    _, x, y = _synthetic(60, seed=7)
    with pytest.raises(NotFittedError):
        ConceptBottleneck(bank).predict(x)
    with pytest.raises(DataError, match="at least 2 classes"):
        ConceptBottleneck(bank).fit(x, np.zeros(60, dtype=int), x, y)
    with pytest.raises(DataError, match="only 2 classes"):
        ConceptBottleneck(bank).fit(x, y, x, y, class_names=["a", "b"])
    with pytest.raises(DataError, match="negative labels"):
        ConceptBottleneck(bank).fit(x, np.full(60, -1), x, y)
    with pytest.raises(DataError, match="no training images"):
        ConceptBottleneck(bank).fit(x, y, x, y, class_names=["a", "b", "c", "d"])
    with pytest.raises(DimensionMismatchError, match="N = 60"):
        ConceptBottleneck(bank).fit(x, y[:10], x, y)
    with pytest.raises(DimensionMismatchError, match="X_val is 15-d"):
        ConceptBottleneck(bank).fit(x, y, x[:, :15], y)
    with pytest.raises(DataError, match="NaN"):
        cbm.predict(torch.full((2, 16), float("nan")))
    with pytest.raises(DataError, match="only 3 classes"):
        cbm.score(x, y + 1)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        cbm.top_concepts("aa")
    with pytest.raises(DataError, match="l1_ratio"):
        ConceptBottleneck(bank, l1_ratio=0)
    with pytest.raises(DataError, match="ConceptBank"):
        ConceptBottleneck(["red", "green"])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="empty"):
        ConceptBank([], torch.zeros(0, 16), "s")
    with pytest.raises(DataError, match="repeats"):
        ConceptBank(["red", "red"], torch.randn(2, 16), "s")


# ---------------------------------------------------------------- the concept world (slow)
def _world_split(bb, split, n, factor):
    from t2c_captum.features import extract_features
    from t2c_captum.world.adapters import world_source

    store = extract_features(world_source(split, n, factor), {"source": bb}, progress=False)
    return store


@pytest.fixture(scope="module")
def world_shape_cbm(world_aligned):
    from t2c_captum.cbm import labelled_features

    bb, space, aligner = world_aligned("world-cnn", 3000)
    bank = ConceptBank.from_vocabulary(space, "world")
    train, val = _world_split(bb, "train", 3000, "shape"), _world_split(bb, "val", 1000, "shape")
    cbm = ConceptBottleneck(bank, aligner).fit_stores(train, val)
    x, y, _ = labelled_features(_world_split(bb, "test", 2000, "shape"), aligner)
    return cbm, x, y


@pytest.mark.slow
def test_world_cbm_is_within_3_points_of_the_dense_probe(world_shape_cbm):
    cbm, x, y = world_shape_cbm
    acc, probe = cbm.score(x, y), cbm.probe_score(x, y)
    assert probe > 0.9
    assert acc >= probe - 0.03, f"CBM {acc:.3f} vs dense probe {probe:.3f} ({cbm.report().nnz} weights)"
    assert max(cbm.report().nnz_per_class.values()) <= 10  # a third of the 31 world concepts


@pytest.mark.slow
def test_world_shape_classes_rest_on_their_own_shape_word(world_shape_cbm):
    cbm, _, _ = world_shape_cbm
    missing = {c: cbm.top_concepts(c, 3) for c in cbm.class_names_ if c not in dict(cbm.top_concepts(c, 3))}
    assert not missing, f"classes whose top 3 concepts lack their own shape word: {missing}"


@pytest.mark.slow
def test_world_explanations_sum_to_logits_and_survive_saving(world_shape_cbm, tmp_path, world_aligned):
    cbm, x, _ = world_shape_cbm
    exp = cbm.explain(x[:200])
    np.testing.assert_allclose(
        exp.contributions.sum(-1) + exp.intercept, cbm.decision_function(x[:200]), rtol=0, atol=1e-12
    )
    cbm.save(tmp_path / "shape")
    back = ConceptBottleneck.load(tmp_path / "shape", aligner=cbm.aligner, bank=cbm.bank)
    np.testing.assert_allclose(back.decision_function(x[:200]), cbm.decision_function(x[:200]), atol=1e-9)
    _, _, ae_aligner = world_aligned("world-ae", 3000)
    with pytest.raises(IncompatibleArtifactError, match="world-ae"):
        ConceptBottleneck.load(tmp_path / "shape", aligner=ae_aligner)


@pytest.mark.slow
def test_world_stores_of_other_backbones_or_tasks_are_rejected(world_aligned):
    bb, space, aligner = world_aligned("world-cnn", 3000)
    ae, _, _ = world_aligned("world-ae", 3000)
    bank = ConceptBank.from_vocabulary(space, "world")
    train = _world_split(bb, "train", 300, "shape")
    with pytest.raises(IncompatibleArtifactError, match="another backbone"):
        ConceptBottleneck(bank, aligner).fit_stores(train, _world_split(ae, "val", 100, "shape"))
    with pytest.raises(DataError, match="differ from validation classes"):
        ConceptBottleneck(bank, aligner).fit_stores(train, _world_split(bb, "val", 100, "colour"))


@pytest.mark.slow
def test_cli_fit_eval_explain_round_trip(world_aligned, tmp_path):
    from t2c_captum.cli import app

    bb, _, aligner = world_aligned("world-ae", 3000)
    aligner.save(tmp_path / "ae")
    runner = CliRunner()
    fit = runner.invoke(
        app,
        [
            "cbm",
            "fit",
            str(tmp_path / "ae"),
            "--data",
            "world:train:colour:1500",
            "--val-data",
            "world:val:colour:500",
            "--out",
            str(tmp_path / "cbm"),
            "--json",
        ],
    )
    assert fit.exit_code == 0, fit.output
    report = json.loads(fit.output)
    assert report["class_names"][0] == "red" and report["val_accuracy"] > 0.8
    for cls, tops in report["top_concepts"].items():  # colour concepts are reliable: each class uses its word
        assert cls in [c for c, _ in tops[:3]], (cls, tops)
    assert (tmp_path / "cbm.json").is_file() and (tmp_path / "cbm.safetensors").is_file()
    ev = runner.invoke(
        app, ["cbm", "eval", str(tmp_path / "cbm"), "--data", "world:test:colour:500", "--json"]
    )
    assert ev.exit_code == 0, ev.output
    result = json.loads(ev.output)
    assert result["n"] == 500 and result["accuracy"] > 0.8 and result["probe_accuracy"] is not None
    ex = runner.invoke(
        app,
        ["cbm", "explain", str(tmp_path / "cbm"), "world:test:colour", "-k", "3", "--limit", "4", "--json"],
    )
    assert ex.exit_code == 0, ex.output
    rows = json.loads(ex.output)
    assert len(rows) == 4 and all(len(r["top"]) <= 3 for r in rows)
    cbm = ConceptBottleneck.load(tmp_path / "cbm")
    exp = cbm.explain(_world_split(bb, "test", 4, "colour").load(["source"])["source"])
    for r, row in enumerate(rows):  # the CLI shows the Python explanation of the same images
        assert row["prediction"] == exp.class_names[exp.predictions[r]]
        assert row["logit"] == pytest.approx(exp.logits[r, exp.predictions[r]], abs=1e-5)
        assert [(t["concept"], pytest.approx(t["contribution"], abs=1e-5)) for t in row["top"]] == exp.top(
            r, 3
        )
    text = runner.invoke(app, ["cbm", "explain", str(tmp_path / "cbm"), "world:test:colour", "--limit", "2"])
    assert text.exit_code == 0 and "world:test[0]" in text.output, text.output


@pytest.mark.slow
def test_cli_errors_are_clear(world_aligned, tmp_path):
    from t2c_captum.cli import app

    _, _, aligner = world_aligned("world-ae", 3000)
    aligner.save(tmp_path / "ae")
    runner = CliRunner()
    base = [
        "cbm",
        "fit",
        str(tmp_path / "ae"),
        "--val-data",
        "world:val:colour:100",
        "--out",
        str(tmp_path / "m"),
    ]
    dup = runner.invoke(app, [*base, "--data", "world:train:colour:200", "--concepts", "red,red"])
    assert dup.exit_code == 2 and "repeats" in dup.output
    empty = runner.invoke(app, [*base, "--data", "world:train:colour:200", "--concepts", " , "])
    assert empty.exit_code == 2 and "empty" in empty.output
    unlabelled = runner.invoke(app, [*base, "--data", "world:train::200"])
    assert unlabelled.exit_code == 2 and "no labels" in unlabelled.output
    missing = runner.invoke(app, ["cbm", "eval", str(tmp_path / "nope"), "--data", "world:test:colour:10"])
    assert missing.exit_code == 2 and "not a saved concept bottleneck" in missing.output


def test_probabilities_are_calibrated_on_validation_data_without_changing_predictions():
    from scipy.special import log_softmax

    bank, xtr, ytr = _synthetic(600, seed=1)
    _, xv, yv = _synthetic(300, seed=2)
    cbm = ConceptBottleneck(bank, Cs=FAST_CS, probe=False).fit(xtr, ytr, xv, yv)
    logits = cbm.decision_function(xv)

    def log_loss(scale: float) -> float:
        return float(-log_softmax(scale * logits, axis=1)[np.arange(len(yv)), np.asarray(yv)].mean())

    # the fitted scale is the best one: neither sharper nor flatter probabilities do better
    assert log_loss(1.0) <= min(log_loss(0.8), log_loss(1.25)) + 1e-9
    unscaled = (cbm.transform(xv) @ cbm.coef_.T + cbm.intercept_) / cbm.temperature_
    np.testing.assert_array_equal(unscaled.argmax(1), cbm.predict(xv))
    assert cbm.temperature_ != pytest.approx(1.0)
    assert cbm.report().extra["temperature"] == pytest.approx(cbm.temperature_)
