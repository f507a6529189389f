"""The redesign's seams: image sources by plugin scheme, shard summaries, the CLI's one error boundary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2c_captum import ConfigurationError, DataError, T2CError, hookimpl
from t2c_captum.aligners import FitStatistics, LinearAligner
from t2c_captum.aligners.linear import SufficientStats
from t2c_captum.cli import app
from t2c_captum.data import ImageSource, open_source
from t2c_captum.plugins import get_registries, temporary_plugin
from t2c_captum.testing import float32_tolerance


class ToySources:
    @hookimpl
    def register_sources(self, register):
        register("toy", lambda rest, **options: ImageSource(
            [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(int(rest))], fingerprint=f"toy-{rest}"
        ), description="toy:N: N grey images")


def test_a_plugin_scheme_opens_wherever_images_are_given():
    with temporary_plugin(ToySources(), "toy-sources"):
        source = open_source("toy:6")
        assert len(source) == 6 and source.fingerprint == "toy-6"
        assert get_registries().sources.entry("toy").plugin == "toy-sources"
        assert "world" in get_registries().sources  # the concept world comes through the same hook
        result = CliRunner().invoke(app, ["plugins"])
        assert result.exit_code == 0 and "toy:N: N grey images" in result.output
    with pytest.raises(DataError, match=r"registered SCHEME:\.\.\. spec \(world:\)"):
        open_source("toy:6")  # gone with its plugin


def test_world_specs_open_through_the_world_plugin():
    source = open_source("world:test:colour:5")
    assert len(source) == 5 and "colour" in source.fingerprint


def _shards(n_shards=3, rows=20, d=6, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    for s in range(n_shards):
        x = torch.randn(rows, d, generator=g)
        yield {"source": x, "target": x[:, :D] * 2 + 0.1 * torch.randn(rows, D, generator=g),
               "indices": torch.arange(s * rows, (s + 1) * rows), "labels": torch.full((rows,), -1)}


def test_fit_statistics_summaries_pickle_and_sum_to_the_direct_statistics():
    summary = FitStatistics(validation_fraction=0.2)
    assert pickle.loads(pickle.dumps(summary)) == summary  # Ray sends it to its workers
    shards = list(_shards())
    train, held = FitStatistics.combine(pickle.loads(pickle.dumps(summary(s))) for s in shards)
    direct = [SufficientStats(6, 4), SufficientStats(6, 4)]
    for s in shards:
        mask = LinearAligner(validation_fraction=0.2).holdout(s["indices"])
        direct[0].update(s["source"], s["target"], ~mask)
        direct[1].update(s["source"], s["target"], mask)
    assert (train.n, held.n) == (direct[0].n, direct[1].n) and train.n + held.n == 60 and held.n > 0
    for got, want in ((train, direct[0]), (held, direct[1])):
        for name in ("sxx", "sxy", "syy"):
            a = got.centered(want.mean_x, want.mean_y)[("sxx", "sxy", "syy").index(name)]
            b = want.centered(want.mean_x, want.mean_y)[("sxx", "sxy", "syy").index(name)]
            torch.testing.assert_close(a, b, **float32_tolerance(20, float(b.abs().max()) + 1))


def test_every_command_error_passes_the_one_boundary(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["concepts", str(tmp_path / "nope"), "--data", "world:test:shape:4"])
    nested = runner.invoke(app, ["cbm", "eval", str(tmp_path / "nope"), "--data", "world:test:shape:4"])
    flags = runner.invoke(app, ["shift", str(tmp_path / "nope"), "--source", "world:test:shape:4",
                                "--target", "world:test:shape:4", "--batch-size", "0"])
    for result in (missing, nested, flags):
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert "--batch-size" in flags.output and "nope" not in flags.output  # before the aligner is looked for


def test_bad_settings_are_t2c_errors_and_still_value_errors():
    with pytest.raises(ConfigurationError, match="alpha must be >= 0") as info:
        LinearAligner(alpha=-1.0)
    assert isinstance(info.value, T2CError) and isinstance(info.value, ValueError)


def test_extraction_settings_have_one_home_and_one_by_one_settings_apply_over_it():
    from t2c_captum import ExtractOptions, fit_aligner

    base = ExtractOptions(batch_size=16, precision="fp32")
    merged = ExtractOptions.from_settings(base, batch_size=8, progress=False)
    assert (merged.batch_size, merged.precision, merged.progress) == (8, "fp32", False)
    with pytest.raises(ConfigurationError, match=r"unknown extraction setting\(s\) 'batchsize'.*batch_size"):
        fit_aligner("world-cnn", "world-clip", "world:train:shape:8", batchsize=8)
    with pytest.raises(DataError, match="--batch-size"):
        fit_aligner("world-cnn", "world-clip", "world:train:shape:8", extraction=base, batch_size=0)


def test_the_extraction_functions_take_the_settings_as_one_object_not_as_copies_of_its_fields():
    import inspect
    from dataclasses import fields

    from t2c_captum import ExtractOptions
    from t2c_captum.features import extract_features
    from t2c_captum.features.ray_backend import extract_features_ray

    settings = {f.name for f in fields(ExtractOptions)}
    for function in (extract_features, extract_features_ray):
        parameters = inspect.signature(function).parameters
        assert parameters["options"].default is None and "settings" in parameters
        # no copies: the Ray function's old num_workers=/address= (its actors and cluster, i.e.
        # ray_workers/ray_address) now come through **settings, deprecated
        assert not settings & set(parameters), function.__name__
        assert not {"address", "ray_workers", "ray_address"} & set(parameters), function.__name__
