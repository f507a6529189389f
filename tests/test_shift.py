"""Concept shift diagnosis: statistics on synthetic scores, errors, and the concept world's shift pairs."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from t2c_captum._exceptions import (
    DataError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    UnknownNameError,
)
from t2c_captum.shift import ConceptMoments, ShiftReport, shift_report

CONCEPTS = [f"c{i}" for i in range(12)]


def _scores(n: int, seed: int, shift: dict[int, float] | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.normal(0.2, 0.05, size=(n, len(CONCEPTS)))
    for col, delta in (shift or {}).items():
        s[:, col] += delta
    return s


# --------------------------------------------------------------------------- statistics


def test_shifted_column_ranks_first_with_direction():
    a, b = _scores(400, 0), _scores(300, 1, {3: 0.03, 7: -0.01})
    report = shift_report(a, b, CONCEPTS)
    top = report.top(2)
    assert [r.concept for r in top] == ["c3", "c7"]
    assert top[0].direction == "up" and top[1].direction == "down"
    assert top[0].q < 1e-6 and top[0].effect > 0.5
    assert report.rank("c3") == 1
    assert [r.concept for r in report.significant()][:2] == ["c3", "c7"]


@pytest.mark.parametrize("effect", ["glass", "hedges"])
def test_statistics_match_scipy_directly(effect):
    a, b = _scores(80, 2), _scores(50, 3, {0: 0.02, 5: 0.01})
    b[:, 1] = 0.2 + 0.5 * (b[:, 1] - 0.2)  # a spread that differs: Glass's delta != Hedges' g
    report = shift_report(torch.from_numpy(a), b, CONCEPTS, effect=effect)
    t, p = stats.ttest_ind(b, a, equal_var=False)
    q = stats.false_discovery_control(p, method="bh")
    if effect == "glass":
        g = (b.mean(0) - a.mean(0)) / a.std(0, ddof=1) * (1 - 3 / (4 * 79 - 1))
    else:
        pooled = np.sqrt((79 * a.var(0, ddof=1) + 49 * b.var(0, ddof=1)) / 128)
        g = (b.mean(0) - a.mean(0)) / pooled * (1 - 3 / (4 * 130 - 9))
    assert report.info["effect_size"] == effect
    for i, c in enumerate(CONCEPTS):
        row = report.row(c)
        assert row.t == pytest.approx(t[i]) and row.p == pytest.approx(p[i])
        assert row.q == pytest.approx(q[i]) and row.effect == pytest.approx(g[i])
        assert row.diff == pytest.approx(b[:, i].mean() - a[:, i].mean())
        assert (row.n_a, row.n_b) == (80, 50)


def test_streaming_moments_equal_one_pass():
    a = _scores(333, 4)
    whole, chunked = ConceptMoments(len(CONCEPTS)), ConceptMoments(len(CONCEPTS))
    whole.update(a)
    for start in range(0, 333, 50):
        chunked.update(torch.from_numpy(a[start : start + 50]))
    for x, y in zip(whole.stats(), chunked.stats(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-10)
    np.testing.assert_allclose(whole.stats()[2], a.var(0, ddof=1), rtol=1e-10)


def test_null_pair_has_no_discoveries():
    found = [len(shift_report(_scores(500, s), _scores(500, 100 + s), CONCEPTS).significant())
             for s in range(5)]
    assert sum(found) <= 1  # FDR 5% over 5 null repetitions


def test_too_few_samples_is_a_warning_in_the_report():
    with pytest.warns(UserWarning, match="too few images"):
        report = shift_report(_scores(6, 0), _scores(40, 1), CONCEPTS)
    assert report.warnings and "6 in a" in report.warnings[0]
    assert not any(r.tested for r in report.rows) and report.significant() == []
    assert all(math.isnan(r.q) for r in report.rows)
    assert report.as_dict()["rows"][0]["q"] is None


def test_constant_column_is_reported_untested():
    a, b = _scores(50, 0), _scores(50, 1)
    a[:, 5] = b[:, 5] = 0.3
    with pytest.warns(UserWarning, match="constant"):
        report = shift_report(a, b, CONCEPTS)
    assert not report.row("c5").tested and report.rank("c5") == len(CONCEPTS)
    assert sum(r.tested for r in report.rows) == len(CONCEPTS) - 1


def test_by_class_tests_within_classes_and_summarises():
    rng = np.random.default_rng(5)
    la, lb = rng.integers(0, 3, 600), rng.integers(0, 3, 600)
    a, b = _scores(600, 6), _scores(600, 7)
    b[lb == 2, 4] += 0.04  # c4 shifts only within class 2
    # a class-mix shift: class 1 is rare in b and scores high on c9 in both datasets
    a[la == 1, 9] += 0.1
    b[lb == 1, 9] += 0.1
    with pytest.warns(UserWarning, match="only in dataset"):
        report = shift_report(a, b, CONCEPTS, labels_a=np.where(la == 0, 3, la), labels_b=lb, by_class=True,
                              class_names=["x", "y", "z", "w"])
    assert report.warnings == ["classes only in dataset a (not tested): w",
                               "classes only in dataset b (not tested): x"]
    assert {r.class_name for r in report.rows} == {"y", "z"}
    assert len(report.rows) == 2 * len(CONCEPTS)
    assert (report.rows[0].concept, report.rows[0].class_name) == ("c4", "z")
    assert [r.label for r in report.significant()] == ["c4 | z"]
    assert report.top(1, summary=True)[0].concept == "c4"
    assert len(report.summary) == len(CONCEPTS)
    # BH runs over all class x concept tests together
    p = np.array([r.p for r in report.rows])
    np.testing.assert_allclose([r.q for r in report.rows], stats.false_discovery_control(p), rtol=1e-12)


def test_by_class_small_class_is_reported_untested():
    la, lb = np.array([0] * 50 + [1] * 4), np.array([0] * 50 + [1] * 30)
    with pytest.warns(UserWarning, match="class 'b'"):
        report = shift_report(_scores(54, 0), _scores(80, 1), CONCEPTS, labels_a=la, labels_b=lb,
                              by_class=True, class_names=["a", "b"])
    assert all(not r.tested for r in report.rows if r.class_name == "b")
    assert all(r.tested for r in report.rows if r.class_name == "a")


def test_outputs_csv_json_plot(tmp_path):
    report = shift_report(_scores(200, 0), _scores(200, 1, {2: 0.05}), CONCEPTS)
    csv_path = report.to_csv(tmp_path / "shift.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("rank,concept,class,direction") and lines[1].startswith("1,c2,,up,")
    assert len(lines) == 1 + len(CONCEPTS)
    data = json.loads(report.to_json(tmp_path / "shift.json"))
    assert data["rows"][0]["concept"] == "c2" and data["info"]["effect"].startswith("Glass's delta")
    assert json.loads((tmp_path / "shift.json").read_text()) == data
    fig = report.plot(tmp_path / "shift.png", k=5)
    assert (tmp_path / "shift.png").stat().st_size > 1000
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "c2" and len(labels) == 5
    assert isinstance(report, ShiftReport) and "c2" in repr(report)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("a", "b", "concepts", "error", "match"),
    [
        (np.zeros((0, 3)), np.ones((5, 3)), ["x", "y", "z"], DataError, "no rows"),
        (np.ones((5, 3)), np.ones((5, 4)), ["x", "y", "z"], DimensionMismatchError, "4 columns"),
        (np.ones((5, 3)), np.ones((5, 3)), [], DataError, "empty"),
        (np.ones((5, 3)), np.ones(5), ["x", "y", "z"], DimensionMismatchError, "matrix"),
        (np.full((5, 3), np.nan), np.ones((5, 3)), ["x", "y", "z"], DataError, "NaN"),
    ],
)
def test_bad_scores_raise(a, b, concepts, error, match):
    with pytest.raises(error, match=match):
        shift_report(a, b, concepts)


def test_bad_options_and_lookups_raise():
    a, b = _scores(20, 0), _scores(20, 1)
    with pytest.raises(DataError, match="labels for dataset a"):
        shift_report(a, b, CONCEPTS, by_class=True)
    with pytest.raises(DimensionMismatchError, match="labels"):
        shift_report(a, b, CONCEPTS, labels_a=[0] * 3, labels_b=[0] * 20, by_class=True)
    with pytest.raises(DataError, match="share no class"):
        shift_report(a, b, CONCEPTS, labels_a=[0] * 20, labels_b=[1] * 20, by_class=True)
    with pytest.raises(DataError, match="alpha"):
        shift_report(a, b, CONCEPTS, alpha=1.5)
    with pytest.raises(DataError, match="min_samples"):
        shift_report(a, b, CONCEPTS, min_samples=1)
    with pytest.raises(UnknownNameError, match="'hedges'"):
        shift_report(a, b, CONCEPTS, effect="hedge")
    report = shift_report(a, b, CONCEPTS)
    with pytest.raises(UnknownNameError, match="Did you mean 'c1"):
        report.row("c1x")


def test_stores_from_different_backbones_raise(tmp_path):
    from t2c_captum.concepts import ConceptBank
    from t2c_captum.features import extract_features
    from t2c_captum.shift import diagnose_shift
    from t2c_captum.testing import FakeBackbone, FakeSpace, make_images

    make_images(tmp_path / "imgs", n=12)
    space = FakeSpace(dim=8)
    bank = ConceptBank.build(space, ["x", "y", "z"], cache=False)
    one, two = (extract_features(tmp_path / "imgs", {"source": FakeBackbone(dim=d)}, store=tmp_path / f"s{d}",
                                 progress=False) for d in (6, 5))
    with pytest.raises(IncompatibleArtifactError, match="different encoders"):
        diagnose_shift(one, two, bank)
    with pytest.raises(DimensionMismatchError, match="space's own image embeddings"):
        diagnose_shift(one, one, bank)
    with pytest.raises(DataError, match="give the encoder"):
        diagnose_shift(tmp_path / "imgs", one, bank)
    with pytest.raises(UnknownNameError, match="concept"):
        diagnose_shift(one, one, bank, concepts=["x", "nope"])
    with pytest.raises(DataError, match="empty"):
        diagnose_shift(one, one, bank, concepts=[])


def test_aligner_mismatches_and_unlabelled_by_class_raise(tmp_path):
    from t2c_captum.aligners import make_aligner
    from t2c_captum.concepts import ConceptBank
    from t2c_captum.features import extract_features
    from t2c_captum.shift import diagnose_shift
    from t2c_captum.testing import FakeBackbone, FakeSpace, make_images

    make_images(tmp_path / "imgs", n=12)
    backbone, space = FakeBackbone(dim=6), FakeSpace(dim=8)
    bank = ConceptBank.build(space, ["x", "y", "z"], cache=False)
    store = extract_features(tmp_path / "imgs", {"source": backbone}, store=tmp_path / "s", progress=False)
    aligner = make_aligner("linear").fit(torch.randn(40, 6), torch.randn(40, 8))
    aligner.source_, aligner.target_ = dict(backbone.identity), {"id": "another-space"}
    with pytest.raises(DimensionMismatchError, match="embedded by"):
        diagnose_shift(store, store, bank, aligner)
    aligner.target_ = dict(space.identity)
    with pytest.warns(UserWarning, match="too few images"):
        assert len(diagnose_shift(store, store, bank, aligner, min_samples=20).rows) == 3
    with pytest.raises(DataError, match="no labels"):
        diagnose_shift(store, store, bank, aligner, by_class=True)
    aligner.source_ = dict(FakeBackbone(dim=6, name="other").identity)
    with pytest.raises(IncompatibleArtifactError, match="another backbone"):
        diagnose_shift(store, store, bank, aligner)


# --------------------------------------------------------------------------- the concept world


def _world_report(
    world_aligned, task_name: str | None, n: int = 600, by_class: bool = False, model: str = "world-ae"
):
    from t2c_captum.concepts import ConceptBank
    from t2c_captum.data import from_dataset
    from t2c_captum.shift import diagnose_shift
    from t2c_captum.world.tasks import SHIFT_TASKS, null_pair, shift_pair

    backbone, space, aligner = world_aligned(model, 3000)
    bank = ConceptBank.from_vocabulary(space, "world")
    if task_name is None:
        a, b = null_pair(n=n)
    else:
        task = next(t for t in SHIFT_TASKS if t.name == task_name)
        a, b = shift_pair(task.factor, task.value, task.strength, n=n, label_factor="shape")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n=600: no group may be too small
        return diagnose_shift(from_dataset(a, name=a.split), from_dataset(b, name=b.split), bank, aligner,
                              backbone, by_class=by_class)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "task", "first_overall"),
    [
        ("world-ae", "colour=red@0.5", True),
        # at 0.9 the other colours empty out: "green" drops as much as "red" rises
        ("world-ae", "colour=red@0.9", False),
        ("world-ae", "background=noisy@0.5", True),
        ("world-ae", "background=noisy@0.9", True),
        ("world-cnn", "shape=star@0.5", True),
        ("world-cnn", "shape=star@0.9", True),
    ],
)
def test_world_injected_concept_ranks_first(world_aligned, model, task, first_overall):
    from t2c_captum.world.tasks import SHIFT_TASKS, concept_term

    spec = next(t for t in SHIFT_TASKS if t.name == task)
    report = _world_report(world_aligned, task, model=model)
    term = concept_term(spec.factor, spec.value)
    up = report.top(1, direction="up")[0]
    assert up.concept == term and up.q < 0.01, report.top(3, direction="up")
    if first_overall:
        assert report.rows[0].concept == term, report.top(3)


@pytest.mark.slow
def test_world_effect_grows_with_strength(world_aligned):
    effects = [_world_report(world_aligned, f"background=noisy@{s}").row("noisy background").effect
               for s in ("0.25", "0.5", "0.9")]
    assert effects[0] < effects[1] < effects[2], effects


@pytest.mark.slow
def test_world_null_pair_has_no_discoveries(world_aligned):
    report = _world_report(world_aligned, None)
    assert report.significant(0.05) == [], report.top(3)


@pytest.mark.slow
def test_world_by_class_finds_shift_within_shapes(world_aligned):
    report = _world_report(world_aligned, "colour=red@0.9", by_class=True)
    assert report.top(1, summary=True)[0].concept == "red"
    assert {r.class_name for r in report.rows} == {"circle", "square", "triangle", "star", "cross", "hexagon"}


def test_top_filters_by_direction():
    report = shift_report(_scores(300, 0), _scores(300, 1, {3: 0.03, 7: -0.03}), CONCEPTS)
    assert report.top(1, direction="up")[0].concept == "c3"
    assert report.significant(direction="down")[0].concept == "c7"
    with pytest.raises(DataError, match="direction"):
        report.top(3, direction="sideways")


# --------------------------------------------------------------------------- the command


def _save_tree(dataset, folder):
    """Write a world dataset as an ImageFolder tree (class folders by the dataset's label factor)."""
    for i in range(len(dataset)):
        image, label = dataset[i]
        out = folder / dataset.class_names[label]
        out.mkdir(parents=True, exist_ok=True)
        image.save(out / f"{i:04d}.png")


@pytest.mark.slow
def test_cli_shift(world_aligned, tmp_path):
    from typer.testing import CliRunner

    from t2c_captum.cli import app
    from t2c_captum.world.tasks import shift_pair

    _, _, aligner = world_aligned("world-ae", 3000)
    aligner.save(tmp_path / "ae")
    a, b = shift_pair("colour", "red", 0.9, n=150, label_factor="shape")
    _save_tree(a, tmp_path / "a")
    _save_tree(b, tmp_path / "b")
    runner = CliRunner()
    args = ["shift", str(tmp_path / "ae"), "--source", str(tmp_path / "a"), "--target", str(tmp_path / "b"),
            "--vocabulary", "world"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    up = [r for r in data["rows"] if r["direction"] == "up"]
    assert up[0]["concept"] == "red" and up[0]["q"] < 0.01
    result = runner.invoke(app, [*args, "--top", "5", "--csv", str(tmp_path / "s.csv"),
                                 "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert "red" in result.output and (tmp_path / "s.png").is_file()
    result = runner.invoke(app, [*args, "--top", "1", "--direction", "up"])
    assert result.exit_code == 0, result.output
    assert "│ 1 │ red " in result.output, result.output
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 31
    result = runner.invoke(app, [*args, "--by-class", "--min-samples", "30"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "too few images" in result.output
    result = runner.invoke(app, [*args, "--by-class", "--alpha", "2"])
    assert result.exit_code == 2 and "alpha" in result.output
