from __future__ import annotations

import numpy as np
import pytest
import torch

from t2c_captum import (
    CheckpointFormatError,
    DataError,
    DimensionMismatchError,
    IncompatibleArtifactError,
    LinearAligner,
    NotFittedError,
    SGDAligner,
    load_aligner,
)
from t2c_captum.testing import FakeBackbone, FakeSpace, check_aligner, float32_tolerance


def _data(n=3000, d=40, D=12, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * torch.linspace(0.1, 3, d) + 5
    W = torch.randn(d, D, generator=g)
    Y = X @ W + 1.5 + noise * torch.randn(n, D, generator=g)
    return X, Y, W


def test_recovers_known_linear_map():
    X, Y, W = _data(noise=0.0)
    aligner = LinearAligner(alpha=0.0).fit(X, Y)
    torch.testing.assert_close(aligner.weight_.T, W, atol=2e-3, rtol=1e-3)
    assert aligner.bias_.shape == (12,)
    assert aligner.score(X, Y) > 0.9999


def test_partial_fit_over_batches_equals_one_fit():
    X, Y, _ = _data()
    whole = LinearAligner().fit(X, Y)
    streamed = LinearAligner()
    for start in range(0, len(X), 377):
        streamed.partial_fit(X[start : start + 377], Y[start : start + 377])
    torch.testing.assert_close(streamed.transform(X), whole.transform(X), atol=1e-4, rtol=1e-4)
    # the same rows on each side, exactly
    for count in ("n_train", "n_holdout"):
        assert streamed.fit_stats_[count] == whole.fit_stats_[count]
    # the strengths 1e-6…2e-5 score within 1e-10 of each other here, so which one wins depends on
    # float32 rounding in the statistics (batches of 377 or one of 3,000, each centred on its own
    # shift): compare the fits, not it. The held-out R² is 1 - SSE / variance with SSE a difference
    # of held-out sums as large as the variance, so it carries their float32 error bound (measured
    # on an AMD EPYC with AVX2: 1.8e-8 apart; bound 7.5e-5)
    bound = float32_tolerance(whole.fit_stats_["n_holdout"])["rtol"]
    assert streamed.fit_stats_["holdout_r2_from_stats"] == pytest.approx(
        whole.fit_stats_["holdout_r2_from_stats"], abs=bound
    )


def test_holdout_r2_from_statistics_matches_direct_evaluation():
    X, Y, _ = _data(noise=2.0)
    aligner = LinearAligner().fit(X, Y)
    held = aligner.holdout(torch.arange(len(X)))
    assert 200 < int(held.sum()) < 400  # about 10%
    direct = aligner.evaluate(X[held], Y[held]).r2
    assert aligner.fit_stats_["holdout_r2_from_stats"] == pytest.approx(direct, abs=1e-6)


def test_alpha_is_chosen_larger_when_data_is_scarce_and_noisy():
    X, Y, _ = _data(n=120, d=80, noise=5.0)
    noisy = LinearAligner(validation_fraction=0.3).fit(X, Y)
    X2, Y2, _ = _data(n=5000, d=80, noise=0.01)
    clean = LinearAligner().fit(X2, Y2)
    assert noisy.fit_stats_["alpha"] > clean.fit_stats_["alpha"]


def test_contract_helper_passes_for_builtin_kinds():
    check_aligner(LinearAligner())
    check_aligner(SGDAligner(epochs=30))


def test_sgd_recipe_reaches_reasonable_r2():
    X, Y, _ = _data(n=4000, noise=0.5)
    aligner = SGDAligner().fit(X, Y)
    held = aligner.holdout(torch.arange(len(X)))
    assert aligner.evaluate(X[held], Y[held]).r2 > 0.9
    assert len(aligner.fit_stats_["epoch_losses"]) == 5


def test_sgd_device_option_trains_there_and_keeps_the_map_on_the_cpu():
    X, Y, _ = _data(n=600, noise=0.5)
    default = SGDAligner(epochs=2).fit(X, Y)
    placed = SGDAligner(epochs=2, device="cpu").fit(X, Y)
    assert placed.weight_.device.type == "cpu" and placed.get_params()["device"] == "cpu"
    torch.testing.assert_close(placed.weight_, default.weight_)
    torch.testing.assert_close(placed.transform(X), default.transform(X))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(NotFittedError, match="fit"):
        LinearAligner().transform(torch.randn(2, 3))
    X, Y, _ = _data(n=100)
    bad = X.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(DataError, match="NaN/Inf"):
        LinearAligner().fit(bad, Y)
    with pytest.raises(DimensionMismatchError, match="rows"):
        LinearAligner().fit(X, Y[:50])
    aligner = LinearAligner().fit(X, Y)
    with pytest.raises(DimensionMismatchError, match="40-d"):
        aligner.transform(torch.randn(2, 7))
    with pytest.raises(DimensionMismatchError):
        aligner.partial_fit(torch.randn(4, 7), torch.randn(4, 12))


def test_gradients_flow_through_the_aligner():
    X, Y, W = _data(noise=0.0)
    aligner = LinearAligner(alpha=0.0).fit(X, Y)
    x = X[:1].clone().requires_grad_(True)
    aligner(x)[0, 0].backward()
    torch.testing.assert_close(x.grad[0], W[:, 0], atol=2e-3, rtol=1e-3)


def test_save_load_round_trip_is_exact(tmp_path):
    X, Y, _ = _data()
    aligner = LinearAligner().fit(X, Y)
    aligner.source_ = FakeBackbone(dim=40).identity
    aligner.target_ = FakeSpace(dim=12).identity
    path = aligner.save(tmp_path / "a")
    assert path.name == "a.json" and (tmp_path / "a.safetensors").is_file()
    for spec in (tmp_path / "a", path, tmp_path / "a.safetensors"):
        loaded = load_aligner(spec)
        assert torch.equal(loaded.transform(X), aligner.transform(X))
        assert loaded.fit_stats_["alpha"] == aligner.fit_stats_["alpha"]
        assert isinstance(loaded, LinearAligner)
    sgd = SGDAligner(epochs=1).fit(X, Y)
    sgd.save(tmp_path / "folder")
    assert isinstance(load_aligner(tmp_path / "folder"), SGDAligner)


def test_load_checks_backbone_and_space(tmp_path):
    X, Y, _ = _data(d=12, D=6)
    aligner = LinearAligner().fit(X, Y)
    aligner.source_ = FakeBackbone(dim=12, name="fake-a").identity
    aligner.target_ = FakeSpace(dim=6).identity
    aligner.save(tmp_path / "a")
    load_aligner(tmp_path / "a", backbone=FakeBackbone(dim=12, name="fake-a"), space=FakeSpace(dim=6))
    with pytest.raises(IncompatibleArtifactError, match=r"backbone.id: saved 'fake-a', given 'fake-b'"):
        load_aligner(tmp_path / "a", backbone=FakeBackbone(dim=12, name="fake-b"))
    with pytest.raises(IncompatibleArtifactError, match="embed_dim"):
        load_aligner(tmp_path / "a", space=FakeSpace(dim=8))


def test_non_safetensors_and_corrupt_artifacts_are_refused(tmp_path):
    X, Y, _ = _data(n=100)
    LinearAligner().fit(X, Y).save(tmp_path / "a")
    (tmp_path / "a.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointFormatError, match="safetensors"):
        load_aligner(tmp_path / "a")
    with pytest.raises(CheckpointFormatError, match="no aligner metadata"):
        load_aligner(tmp_path / "missing")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        load_aligner(tmp_path / "b")


def test_accepts_numpy_inputs():
    X, Y, _ = _data(n=200)
    aligner = LinearAligner().fit(X.numpy(), Y.numpy().astype(np.float64))
    assert aligner.transform(X.numpy()).shape == (200, 12)


def test_merged_worker_statistics_equal_one_pass():
    from t2c_captum.aligners import SufficientStats

    X, Y, _ = _data(n=1000)
    whole = SufficientStats(40, 12)
    whole.update(X, Y)
    a, b = SufficientStats(40, 12), SufficientStats(40, 12)
    a.update(X[:300], Y[:300])
    b.update(X[300:] * 1.0, Y[300:])
    merged = SufficientStats(40, 12).merge(a).merge(b)
    # float32 products of rows centred near the mean, summed over 300 + 700 rows or 1,000 at once:
    # equal to the float32 bound of a 1,000-term sum relative to its Σ|products|
    xc, yc = (X - X.mean(0)).abs().double(), (Y - Y.mean(0)).abs().double()
    magnitudes = (float((xc.T @ xc).max()), float((xc.T @ yc).max()), float((yc * yc).sum()))
    means = (whole.mean_x, whole.mean_y)
    for m, w, magnitude in zip(merged.centered(*means), whole.centered(*means), magnitudes, strict=True):
        torch.testing.assert_close(m, w, **float32_tolerance(1000, magnitude))
    torch.testing.assert_close(merged.mean_x, X.double().mean(0))


def test_explicit_alpha_grid_and_fixed_alpha():
    X, Y, _ = _data(n=800)
    grid = LinearAligner(alphas=[1e-3, 1.0]).fit(X, Y)
    assert [a for a, _ in grid.fit_stats_["alpha_path"]] == [1e-3, 1.0]
    fixed = LinearAligner(alpha=0.5).fit(X, Y)
    assert fixed.fit_stats_["alpha"] == 0.5 and len(fixed.fit_stats_["alpha_path"]) == 1


def test_holdout_split_is_about_the_fraction_and_ignores_periodic_orderings():
    from t2c_captum.aligners import holdout_mask

    idx = torch.arange(60_000)
    held = holdout_mask(idx, 0.1)
    assert abs(float(held.float().mean()) - 0.1) < 0.005
    for period in (2, 3, 5, 6, 7, 8, 13, 21, 34):
        share = torch.bincount(idx[held] % period, minlength=period).float() / held.sum()
        assert share.max() - share.min() < 0.03, period
    assert torch.equal(holdout_mask(idx[:10], 0.1), held[:10])  # independent of the batch


def _rank_deficient(n=2000, seed=0):
    """96 features spanning 47 directions (46 signals and one component all of them share strongly),
    the other 49 at variance ~1e-10, plus a constant column: as an autoencoder's features can be.
    Rounding in the statistics makes eigenvalues near -1e-6 here, so ``alpha=1e-6`` alone is not
    positive definite (the case that raised "singular for every alpha tried")."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 46, generator=g) * torch.linspace(0.2, 2, 46)
    mix = torch.randn(46, 49, generator=g)
    near = z @ mix + 1e-5 * torch.randn(n, 49, generator=g)  # variance ~1e-10 off the 46-d span
    X = torch.cat([z, near, torch.full((n, 1), 3.0)], dim=1) + 1.0
    X[:, :95] += 3 * torch.randn(n, 1, generator=g) * X[:, :95].std(0)  # the shared component
    W = torch.randn(46, 12, generator=g)
    Y = z @ W + 0.2 * torch.randn(n, 12, generator=g)
    return X, Y, z


@pytest.mark.parametrize("float32_from", [10_000, 0], ids=["float64 spectrum", "float32 spectrum"])
@pytest.mark.parametrize("alpha", [1e-6, 0.0, None])
def test_rank_deficient_features_fit_for_any_alpha(alpha, float32_from, monkeypatch):
    from t2c_captum.aligners import linear

    monkeypatch.setattr(linear, "FLOAT32_SPECTRUM_DIM", float32_from)
    X, Y, z = _rank_deficient()
    aligner = LinearAligner(alpha=alpha).fit(X, Y)
    assert torch.isfinite(aligner.weight_).all() and torch.isfinite(aligner.bias_).all()
    held = aligner.holdout(torch.arange(len(X)))
    # as good as a fit on the 46 independent columns alone
    reference = LinearAligner(alpha=alpha).fit(z, Y).evaluate(z[held], Y[held]).r2
    assert aligner.evaluate(X[held], Y[held]).r2 == pytest.approx(reference, abs=0.01)
    assert reference > 0.9


def test_exactly_collinear_and_constant_columns_give_the_minimum_norm_solution():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1500, 8, generator=g)
    X = torch.cat([base, base[:, :3] * 2 - base[:, 3:6], torch.ones(1500, 2)], dim=1)  # rank 8 of 13
    Y = base @ torch.randn(8, 5, generator=g)
    for alpha in (0.0, 1e-9):
        aligner = LinearAligner(alpha=alpha, validation_fraction=0.0).fit(X, Y)
        torch.testing.assert_close(aligner.transform(X), Y, atol=1e-3, rtol=1e-3)
        # no weight on the constant columns, and on the standardised features (where the penalty
        # acts) the smallest coefficients that fit: the pseudo-inverse's solution
        assert aligner.weight_[:, -2:].abs().max() < 1e-4
        scale = aligner.x_scale_.double()
        standardised = (X.double() - X.double().mean(0)) / scale
        pinv = torch.linalg.pinv(standardised, rtol=1e-5) @ (Y.double() - Y.double().mean(0))
        torch.testing.assert_close(aligner.weight_.double().T * scale[:, None], pinv, atol=1e-3, rtol=1e-3)


def test_sharded_statistics_fit_rank_deficient_features_as_one_pass():
    from t2c_captum.aligners.streaming import shard_stats

    X, Y, _ = _rank_deficient(n=3000)
    indices = torch.arange(len(X))
    for alpha in (1e-6, None):
        whole = LinearAligner(alpha=alpha).fit(X, Y, indices)
        summed = LinearAligner(alpha=alpha)
        for start in range(0, len(X), 700):
            shard = {"x": X[start : start + 700], "y": Y[start : start + 700],
                     "indices": indices[start : start + 700]}
            summed.add_stats(*shard_stats(shard, ("x", "y"), summed.validation_fraction))
        summed.solve()
        # float32 products summed over other row splits: the predictions agree to float32 precision
        # (the strength the search picks may differ where the held-out R² is flat to 1e-6 in it)
        torch.testing.assert_close(summed.transform(X), whole.transform(X), atol=2e-3, rtol=1e-3)
        assert summed.fit_stats_["holdout_r2_from_stats"] == pytest.approx(
            whole.fit_stats_["holdout_r2_from_stats"], abs=1e-5
        )


@pytest.mark.parametrize("float32_from", [10_000, 0], ids=["float64 spectrum", "float32 spectrum"])
def test_alpha_search_scores_equal_direct_solves(monkeypatch, float32_from):
    """The search scores each strength from one eigendecomposition (float32 on the CPU from
    FLOAT32_SPECTRUM_DIM features up: as precise as the float32 products of the statistics); a
    fixed-strength fit solves directly (float64 Cholesky). Every strength's score agrees with its
    direct solve (to float64 rounding, or float32's), and the chosen strength is then solved exactly
    as a fixed-strength fit is."""
    from t2c_captum.aligners import linear

    monkeypatch.setattr(linear, "FLOAT32_SPECTRUM_DIM", float32_from)
    tolerance = 1e-9 if float32_from else 1e-6
    X, Y, _ = _data(n=1500, d=60, noise=3.0)
    searched = LinearAligner().fit(X, Y)
    assert len(searched.fit_stats_["alpha_path"]) == 13
    for alpha, r2 in searched.fit_stats_["alpha_path"]:
        direct = LinearAligner(alpha=alpha).fit(X, Y).fit_stats_["holdout_r2_from_stats"]
        assert r2 == pytest.approx(direct, abs=tolerance)
    fixed = LinearAligner(alpha=searched.fit_stats_["alpha"]).fit(X, Y)
    assert torch.equal(searched.weight_, fixed.weight_)
    best = max(r2 for _, r2 in searched.fit_stats_["alpha_path"])
    assert searched.fit_stats_["holdout_r2_from_stats"] == pytest.approx(best, abs=tolerance)


def test_cholesky_pivots_at_rounding_level_count_as_rank_deficient():
    from t2c_captum.aligners.linear import _at_rounding_level

    eps = torch.finfo(torch.float32).eps
    # a column equal to the first up to float32 rounding: Cholesky succeeds, its pivot is rounding
    nearly = torch.tensor([[1.0, 1.0], [1.0, 1.0 + 4 * eps]], dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(nearly)
    assert int(info) == 0
    assert _at_rounding_level(factor.diagonal(), nearly.diagonal(), eps)
    # a correlated but independent column is not
    distinct = torch.tensor([[1.0, 0.999], [0.999, 1.0]], dtype=torch.float64)
    assert not _at_rounding_level(torch.linalg.cholesky(distinct).diagonal(), distinct.diagonal(), eps)


@pytest.mark.parametrize("chunk_rows", [16384, 256], ids=["one chunk", "many chunks"])
def test_a_row_mask_gives_exactly_the_statistics_of_the_rows_it_keeps(monkeypatch, chunk_rows):
    """Kept rows are gathered across the batch and multiplied CHUNK_ROWS at a time: the same
    kernels on the same rows as a batch of only those rows, so the sums are bitwise equal."""
    from t2c_captum.aligners import linear

    monkeypatch.setattr(linear, "CHUNK_ROWS", chunk_rows)
    X, Y, _ = _data(n=2000)
    keep = torch.rand(len(X), generator=torch.Generator().manual_seed(3)) < 0.3
    masked, gathered = linear.SufficientStats(40, 12), linear.SufficientStats(40, 12)
    masked.update(X, Y, keep)
    gathered.update(X[keep], Y[keep])
    assert masked.n == gathered.n == int(keep.sum())
    for name in ("shift_x", "shift_y", "sx", "sy", "sxx", "sxy", "syy"):
        assert torch.equal(getattr(masked, name), getattr(gathered, name)), name
    # the shift the rows were centred on is the one kept (float32 on the CPU), so the means are exact
    assert torch.equal(masked.shift_x, masked.shift_x.float().double())
    # half-precision features: only the picked rows are converted, to the same values
    half = linear.SufficientStats(40, 12)
    half.update(X.bfloat16(), Y.bfloat16(), keep)
    reference = linear.SufficientStats(40, 12)
    reference.update(X.bfloat16().float()[keep], Y.bfloat16().float()[keep])
    assert torch.equal(half.sxx, reference.sxx) and torch.equal(half.sxy, reference.sxy)


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 10.0])
def test_train_r2_equals_the_fitting_rows_direct_r2(alpha):
    X, Y, _ = _data(noise=2.0)
    X = torch.cat([X, X[:, :2] * 3, torch.ones(len(X), 1)], dim=1)  # collinear and constant columns
    aligner = LinearAligner(alpha=alpha).fit(X, Y)
    train = ~aligner.holdout(torch.arange(len(X)))
    direct = aligner.evaluate(X[train], Y[train]).r2
    assert aligner.fit_stats_["train_r2"] == pytest.approx(direct, abs=1e-5)
