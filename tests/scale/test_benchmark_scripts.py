"""The prepared accelerator benchmark still runs (tiny, on CPU), so it does not rot before a GPU run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_gpu_throughput_smoke_runs_every_step_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("gpu_throughput", None)
    import gpu_throughput

    out = gpu_throughput.main(["--smoke", "--out", str(tmp_path / "gpu.json")])
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["pipeline_best_s"] == out["pipeline_best_s"]  # the file holds the last step too
    assert out["raw_pair_img_s"]["fp32"] > 0 and out["pipeline_img_s"] > 0 and out["share_of_raw_pair"] > 0
    assert out["fit_synthetic"]["n"] == 4096 and out["fit_synthetic"]["holdout_r2"] > 0.5
    assert out["fit_synthetic"]["weights_vs_cpu_solve_rel_diff"] < 1e-5
    assert out["split_preprocess_max_abs_diff"] == {"backbone": 0.0, "target": 0.0}
    assert out["backbone"] == "timm:resnet18" and out["n"] == 24 and len(out["pipeline_runs_s"]) == 2
    paper = out["paper_shape"]["fp32 (as the paper)"]
    assert set(paper["steps_s"]) == {"pass_source", "pass_target", "sgd"}
    assert paper["speedup_of_pipeline"] == pytest.approx(paper["seconds"] / out["pipeline_best_s"])
    assert -10 < paper["heldout_r2_sgd"] < 1 and -10 < paper["heldout_r2_closed_form"] < 1
    assert "paper shape fp32 (as the paper)" in capsys.readouterr().out


def test_gpu_throughput_keeps_its_other_figures_when_the_image_steps_fail(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("gpu_throughput", None)
    import gpu_throughput
    import pipeline_overhead

    def no_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline_overhead, "make_jpegs", no_disk)
    out = gpu_throughput.main(["--smoke", "--iters", "1", "--out", str(tmp_path / "gpu.json")])
    assert out["error"] == "OSError: No space left on device"
    assert json.loads((tmp_path / "gpu.json").read_text())["error"] == out["error"]
    assert out["fit_synthetic"]["holdout_r2"] > 0.5 and out["raw_pair_img_s"]["fp32"] > 0
    printed = capsys.readouterr().out
    assert "the image steps failed: OSError" in printed and "closed-form fit 4,096" in printed


def test_cpu_forward_options_prints_every_option(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("cpu_forward_options", None)
    import cpu_forward_options

    rows = cpu_forward_options.main(
        ["--models", "resnet18", "world-cnn", "--batch-size", "2", "--size", "64", "--repeat", "1",
         "--no-compile"]
    )
    assert [r["model"] for r in rows] == ["resnet18", "world-cnn"]
    assert all(r["fp32_s"] > 0 and r["channels_last"] > 0 and r["bf16"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "| resnet18 |" in printed and "| world-cnn |" in printed


def test_decode_throughput_compares_the_three_decoding_stages(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("decode_throughput", None)
    import decode_throughput

    rows = decode_throughput.main(["--n", "8", "--batch-size", "4", "--image-size", "60", "40",
                                   "--workers", "0", "--repeat", "1",
                                   "--models", "resnet18", "vit_tiny_patch16_224"])
    assert [r["workers"] for r in rows] == [0]
    assert all(rows[0][k] > 0 for k in ("whole_img_s", "split_here_img_s", "split_workers_img_s"))


def test_reduced_decode_compares_speed_pixels_and_meaning_with_a_full_decode(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("reduced_decode", None)
    import reduced_decode

    out = reduced_decode.main(["--n", "4", "--sizes", "300x200", "1600x1200", "--repeat", "1",
                               "--models", "resnet18", "--world-n", "16", "--world-size", "512"])
    small, large = out["photos"]
    assert small["draft"] == large["draft"] == [470, 470]  # timm resnet18: Resize(235), gap 2
    assert small["psnr_db"] == float("inf") and small["max_abs_grey_levels"] == 0  # too small to reduce
    assert 40 < large["psnr_db"] < float("inf") and large["speedup"] > 0
    full, reduced = out["world"]
    assert full["cosine_min"] == pytest.approx(1) and full["agreement_with_full"] == 1
    assert reduced["draft"] == [128, 128] and 0.9 < reduced["cosine_min"] < 1


@pytest.mark.slow
def test_stream_memory_measures_every_streaming_step_in_its_own_process(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("stream_memory", None)
    import stream_memory

    out = stream_memory.main(["--n", "300", "900", "--d", "24", "--D", "8", "--shard", "128",
                              "--concepts", "30", "--steps", "scores", "shift", "retrieve", "--repeat", "1"])
    rows = out["results"]
    assert list(rows) == ["fit", "scores", "shift", "retrieve"]  # fit first: the others use its aligner
    assert [r["images"] for r in rows["scores"]] == [300, 900]
    assert [r["searched"] for r in rows["retrieve"]] == [300, 900]
    assert [r["tests"] for r in rows["shift"]] == [30, 30]
    assert all(r["holdout_r2"] > 0.5 for r in rows["fit"])
    assert all(r["peak_rss_mib"] >= r["rss_after_import_mib"] > 0 for step in rows.values() for r in step)
    assert all(r["peak_rss_runs"] == [r["peak_rss_mib"]] for step in rows.values() for r in step)
    assert set(out["ratios"]) == set(rows) and all(v > 0 for v in out["ratios"].values())


@pytest.mark.slow
def test_pipeline_overhead_on_the_concept_world_times_the_shared_preprocessing_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("pipeline_overhead", None)
    import pipeline_overhead

    out = pipeline_overhead.main(["--world", "--n", "40", "--batch-size", "8", "--repeat", "1",
                                  "--workers", "0"])
    assert (out["backbone"], out["target"]) == ("world-cnn", "world-clip")
    assert out["shared_preprocessing"] and len(out["runs"]["pipeline_apart"]) == 1
    assert out["speedup"] == pytest.approx(out["best"]["paper"] / out["best"]["pipeline"])
    assert out["r2_sgd"] < 1 and out["r2_closed_form"] < 1 and out["n_heldout"] > 0


def test_bench_aligners_times_every_fitter_side_by_side(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_aligners", None)
    import bench_aligners

    (rows,) = bench_aligners.main(["--n", "1200", "--d", "40", "--D", "8"])
    assert set(rows) == {"LinearAligner.fit (alpha chosen)", "LinearAligner, streamed 8,192",
                         "sklearn Ridge(alpha=1, cholesky)", "sklearn RidgeCV (LOO, 9 alphas)",
                         "SGDAligner (paper recipe, 5 epochs)"}
    assert all(row["seconds"] > 0 for row in rows.values())
    ours, sklearn = rows["LinearAligner.fit (alpha chosen)"], rows["sklearn Ridge(alpha=1, cholesky)"]
    assert ours["r2"] > 0.8 and ours["r2"] >= sklearn["r2"] - 0.01
    assert rows["LinearAligner, streamed 8,192"]["r2"] == pytest.approx(ours["r2"], abs=1e-4)
    assert "1.00x" in capsys.readouterr().out  # ratios to scikit-learn's single-alpha fit


def test_cpu_precision_compares_fp32_and_bf16_through_the_pipeline(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("cpu_precision", None)
    import cpu_precision

    (row,) = cpu_precision.main(["--models", "world-ae", "--n", "300", "--batch-size", "50"])
    assert row["fp32"]["images_per_s"] > 0 and row["bf16"]["images_per_s"] > 0
    assert abs(row["r2_change"]) < 0.02
    printed = capsys.readouterr().out
    assert "torch kernels" in printed and "| world-ae |" in printed


def test_bench_aligners_alternates_the_fit_and_sklearn(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_aligners", None)
    import bench_aligners

    (seconds,) = bench_aligners.main(["--n", "1200", "--d", "40", "--D", "8", "--alternate", "2"])
    counts = {label: len(times) for label, times in seconds.items()}
    assert counts == {"LinearAligner.fit": 2, "sklearn Ridge": 2}
    assert all(t > 0 for times in seconds.values() for t in times)
    ratio = min(seconds["LinearAligner.fit"]) / min(seconds["sklearn Ridge"])
    printed = capsys.readouterr().out
    assert f"best against best: {ratio:.2f}x (their work, counted in flops: at least" in printed


def test_bench_aligners_work_ratio_counts_what_the_fit_adds_to_one_ridge_solve(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_aligners", None)
    import bench_aligners

    # many rows, few features, nothing held out: the products dominate and are the same on both sides
    assert bench_aligners.work_ratio(10**7, 0, 8, 4) == pytest.approx(1.0, abs=1e-3)
    # held-out rows add their products: 10% more rows, 10% more work
    assert bench_aligners.work_ratio(9 * 10**7, 10**7, 8, 4) == pytest.approx(10 / 9, abs=1e-3)
    # the benchmark's default shape (docs/results.md quotes it): 1.40x before any timing
    assert bench_aligners.work_ratio(44_949, 5_051, 2048, 512) == pytest.approx(1.396, abs=1e-3)


def _cpu_matrix(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent / "scripts"))
    sys.modules.pop("cpu_matrix", None)
    import cpu_matrix

    return cpu_matrix


def test_cpu_matrix_runs_each_capability_the_cpu_has_with_one_and_two_threads(monkeypatch):
    matrix = _cpu_matrix(monkeypatch)
    labels = [s.label for s in matrix.settings({"avx2", "fma"})]
    assert labels == [
        "ATEN_CPU_CAPABILITY=default, 1 thread(s)",
        "ATEN_CPU_CAPABILITY=default, 2 thread(s)",
        "ATEN_CPU_CAPABILITY=avx2, 1 thread(s)",
        "ATEN_CPU_CAPABILITY=avx2, 2 thread(s)",
        "ATEN_CPU_CAPABILITY=avx2, 2 thread(s), denormals flushed",
    ]
    wide = matrix.settings({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
    assert [s.capability for s in wide][-3:] == ["avx512", "avx512", "avx512"] and wide[-1].flush_denormal
    assert [s.capability for s in matrix.settings(set())] == ["default"] * 3
    env = wide[-1].environment()
    assert env["ATEN_CPU_CAPABILITY"] == "avx512" and env["OMP_NUM_THREADS"] == "2"
    assert env["T2C_FLUSH_DENORMAL"] == "1" and "T2C_FLUSH_DENORMAL" not in wide[0].environment()


def test_cpu_matrix_reports_a_failing_run_and_exits_1(tmp_path, monkeypatch, capsys):
    matrix = _cpu_matrix(monkeypatch)
    (tmp_path / "test_denormal.py").write_text(
        "import os, torch\n"
        "def test_flushed_only_when_asked():\n"
        "    tiny = torch.tensor([1e-40]) * 1.0\n"
        "    assert (tiny.item() == 0.0) == (os.environ.get('T2C_FLUSH_DENORMAL') == '1')\n"
        "def test_fails_without_simd():\n"
        "    assert os.environ['ATEN_CPU_CAPABILITY'] != 'default'\n"
    )
    shutil.copy(BENCH.parent / "tests" / "conftest.py", tmp_path)  # where the switch is read
    monkeypatch.setattr(matrix, "ROOT", tmp_path)
    monkeypatch.setattr(matrix, "settings", lambda flags: [matrix.Setting("default", 1),
                                                           matrix.Setting("avx2", 1, flush_denormal=True)])
    assert matrix.main([str(tmp_path / "test_denormal.py")]) == 1
    out = capsys.readouterr().out
    assert "| ATEN_CPU_CAPABILITY=default, 1 thread(s) | FAIL | 1 failed, 1 passed" in out
    assert "| ATEN_CPU_CAPABILITY=avx2, 1 thread(s), denormals flushed | pass | 2 passed" in out
