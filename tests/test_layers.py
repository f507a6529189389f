"""The redesign's seams: image sources by plugin scheme, shard summaries, the CLI's one error boundary."""

from __future__ import annotations

import ast
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


_BARE = {"T2CError", "ValueError", "TypeError", "RuntimeError", "KeyError"}


def _library_trees():
    from pathlib import Path

    import t2c_captum

    root = Path(t2c_captum.__file__).parent
    for path in sorted(root.rglob("*.py")):
        yield path.relative_to(root).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def test_errors_are_raised_as_their_subclass_and_defined_in_one_module():
    bare, elsewhere = [], []
    for name, tree in _library_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(raised, ast.Name) and raised.id in _BARE:
                    bare.append(f"{name}:{node.lineno} raise {raised.id}")
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and name != "_exceptions.py":
                elsewhere.append(f"{name}:{node.lineno} class {node.name}")
    assert not bare, f"raise a T2CError subclass from _exceptions.py instead: {bare}"
    assert not elsewhere, f"define error classes in _exceptions.py (and import them back): {elsewhere}"


def test_moved_error_classes_keep_their_old_import_paths():
    import t2c_captum
    from t2c_captum import _exceptions
    from t2c_captum.features.ray_backend import RayClusterError
    from t2c_captum.retrieval import QuerySyntaxError
    from t2c_captum.retrieval.query import QuerySyntaxError as FromQuery

    assert RayClusterError is _exceptions.RayClusterError is t2c_captum.RayClusterError
    assert QuerySyntaxError is FromQuery is _exceptions.QuerySyntaxError is t2c_captum.QuerySyntaxError
    assert issubclass(QuerySyntaxError, DataError) and issubclass(RayClusterError, T2CError)
    exported = {n for n in dir(_exceptions) if n.endswith("Error")}
    assert exported <= set(_exceptions.__all__) <= set(t2c_captum.__all__)


# __init__ files allowed more than re-exports, with why. None today: every package's logic lives in
# its modules (the package root's version comes from _version.py, its plugins from plugins.py).
INIT_EXCEPTIONS: dict[str, str] = {}


def _allowed_in_init(node: ast.stmt, first: bool) -> bool:
    """A docstring, imports, ``__all__``, or a module ``__getattr__``/``__dir__`` (deprecation shims:
    old names that warn and forward)."""
    if first and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return isinstance(node.value.value, str)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
    return isinstance(node, ast.FunctionDef) and node.name in {"__getattr__", "__dir__"}


def test_package_init_files_only_re_export():
    from pathlib import Path

    import t2c_captum

    root = Path(t2c_captum.__file__).parent
    files = sorted(root.rglob("__init__.py"))
    assert len(files) > 10
    offences = []
    for path in files:
        name = path.relative_to(root.parent).as_posix()
        if name in INIT_EXCEPTIONS:
            continue
        body = ast.parse(path.read_text(encoding="utf-8")).body
        offences += [f"{name}:{node.lineno}: {ast.unparse(node).splitlines()[0]}"
                     for i, node in enumerate(body) if not _allowed_in_init(node, i == 0)]
    assert not offences, "package __init__ files hold only imports and __all__:\n" + "\n".join(offences)


def test_moved_names_keep_their_old_import_paths():
    from t2c_captum import aligners, backbones, decoders, explain, probes, spaces
    from t2c_captum.aligners import directions, loading
    from t2c_captum.backbones.loading import load_backbone
    from t2c_captum.decoders import loading as decoder_loading
    from t2c_captum.explain import naming
    from t2c_captum.spaces.loading import load_space

    assert naming.align_directions is explain.align_directions is decoders.align_directions \
        is aligners.align_directions is directions.align_directions
    assert aligners.make_aligner is loading.make_aligner
    assert probes.recorded_backbone is aligners.recorded_backbone is loading.recorded_backbone
    assert decoders.load_decoder is decoder_loading.load_decoder
    assert decoders.list_decoders is decoder_loading.list_decoders
    assert backbones.load_backbone is load_backbone and spaces.load_space is load_space
