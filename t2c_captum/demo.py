"""The main job on the built-in offline default: align the concept world's backbones to its tiny CLIP and
report what they can and cannot say, next to what the CLIP and their own heads say."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._io import atomic_write_json
from .aligners import make_aligner
from .aligners.fit import fit_from_store
from .alignment import evaluate_store
from .backbones import load_backbone
from .features import extract_features
from .spaces import load_space

__all__ = ["DEMO_BACKBONES", "DEMO_FACTORS", "run_demo"]

DEMO_BACKBONES = ("world-cnn", "world-ae", "world-vit")
DEMO_FACTORS = ("shape", "colour", "pattern", "background")
SPACE = "world-clip"


def _acceptance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def get(bb: str, factor: str, key: str) -> float:
        for r in rows:
            if r["backbone"] == bb and r["task"] == factor and r["split"] == "test":
                return float(r.get(key, float("nan")))
        return float("nan")

    head, clip = get("world-cnn", "shape", "own_head_top1"), get("world-cnn", "shape", "space_top1")
    cnn_shape = get("world-cnn", "shape", "aligned_top1")
    ae_gap = get("world-ae", "colour", "space_top1") - get("world-ae", "colour", "aligned_top1")
    vit_gap = max(
        get("world-vit", f, "space_top1") - get("world-vit", f, "aligned_top1") for f in DEMO_FACTORS
    )
    return [
        {
            "check": "world-cnn aligned shape within 5 pts of its own head",
            "gap_pts": 100 * (head - cnn_shape),
            "passed": head - cnn_shape <= 0.05,
        },
        {
            "check": "world-cnn aligned shape within 5 pts of min(own head, tiny CLIP) (text-side bound)",
            "gap_pts": 100 * (min(head, clip) - cnn_shape),
            "passed": min(head, clip) - cnn_shape <= 0.05,
        },
        {
            "check": "world-ae aligned colour within 10 pts of the tiny CLIP",
            "gap_pts": 100 * ae_gap,
            "passed": ae_gap <= 0.10,
        },
        {
            "check": f"world-vit aligned {', '.join(DEMO_FACTORS)} each within 5 pts of the tiny CLIP",
            "gap_pts": 100 * vit_gap,
            "passed": vit_gap <= 0.05,
        },
    ]


def run_demo(
    n_train: int = 8000,
    n_test: int = 2000,
    out: str | Path = "runs/demo",
    progress: bool = True,
    console: Console | None = None,
    with_capabilities: bool = True,
    write_report: bool | None = None,
) -> dict[str, Any]:
    """Fit ``world-cnn``, ``world-ae`` and ``world-vit`` → ``world-clip`` and evaluate them per factor.

    Each split is decoded and encoded once for all four models. With ``with_capabilities`` the
    capabilities built on the aligners (concept scores, CBM, shift diagnosis, retrieval, Captum maps)
    are checked against the world's truth too. With ``write_report`` (default: as ``with_capabilities``)
    the concept report of world-cnn on the test split is written to ``OUT/report/index.html``.
    Returns a summary dict (also written to ``OUT/summary.json``) and prints tables to ``console``.
    """
    from .world.adapters import world_source, world_task

    out = Path(out)
    cache = out / "features"
    start = time.perf_counter()
    space = load_space(SPACE)
    backbones = {name: load_backbone(name) for name in DEMO_BACKBONES}
    encoders: dict[str, Any] = {**backbones, SPACE: space}
    train = extract_features(
        world_source("train", n=n_train, factor="shape"),
        encoders,
        store=cache / f"train-{n_train}",
        progress=progress,
    )
    fits, aligners = [], {}
    for name, backbone in backbones.items():
        t0 = time.perf_counter()
        aligner = fit_from_store(train, make_aligner("linear"), source_key=name, target_key=SPACE)
        aligner.source_, aligner.target_ = dict(backbone.identity), dict(space.identity)
        fit_seconds = time.perf_counter() - t0
        held = evaluate_store(
            aligner,
            train,
            backbone,
            space,
            split="holdout",
            holdout_only=True,
            source_key=name,
            target_key=SPACE,
        )
        aligner.fit_stats_["evaluations"] = [held.as_dict()]
        aligner.save(out / name)
        aligners[name] = aligner
        fits.append(
            {
                "backbone": name,
                "n_train": aligner.fit_stats_["n_train"],
                "alpha": aligner.fit_stats_["alpha"],
                **{f"holdout_{k}": v for k, v in held.metrics.as_dict().items()},
                "fit_seconds": fit_seconds,
            }
        )
    rows, stores = [], {}
    for split in ("test", "compositional"):
        source = world_source(split, n=n_test, factor="shape")
        store = extract_features(source, encoders, store=cache / f"{split}-{n_test}", progress=progress)
        stores[split] = (store, source)
        for name, backbone in backbones.items():
            for factor in DEMO_FACTORS:
                report = evaluate_store(
                    aligners[name],
                    store,
                    backbone,
                    space,
                    split=split,
                    task=world_task(source, factor),
                    source_key=name,
                    target_key=SPACE,
                )
                rows.append({"backbone": name, **report.as_dict()})
    capabilities = []
    if with_capabilities:
        from ._demo_stages import capability_checks

        test_store, test_source = stores["test"]
        capabilities = capability_checks(space, backbones, aligners, train, test_store, test_source)
    summary = {
        "fits": fits,
        "evaluations": rows,
        "acceptance": _acceptance(rows),
        "capabilities": capabilities,
        "seconds": time.perf_counter() - start,
    }
    if with_capabilities if write_report is None else write_report:
        summary["report"] = _demo_report(out, progress)
        summary["seconds"] = time.perf_counter() - start
    atomic_write_json(out / "summary.json", summary)
    if console is not None:
        _print(console, summary, out)
    return summary


def _demo_report(out: Path, progress: bool) -> dict[str, Any]:
    """The HTML concept report of world-cnn (``OUT/report/``); a problem becomes a note, not a failure."""
    from ._exceptions import T2CError
    from .report import build_report

    t0 = time.perf_counter()
    try:
        result = build_report(out / "world-cnn", "world:test:shape:200", out / "report",
                              compare_data="world:compositional:shape:200",
                              queries=['"star" & ~"small"', '"circle" & "large"'], decoder="world-decoder",
                              n_samples=8, n_maps=4, overwrite=True, progress=progress)
    except T2CError as exc:
        return {"path": None, "error": str(exc), "seconds": time.perf_counter() - t0}
    return {"path": str(result.index), "sections": result.present, "seconds": time.perf_counter() - t0}


def _print(console: Console, summary: dict[str, Any], out: Path) -> None:
    fits = Table(title=f"alignment to {SPACE} (held-out training images)", title_justify="left")
    for col in ("backbone", "n_train", "alpha", "R²", "mean cos", "fit s"):
        fits.add_column(col, justify="right" if col != "backbone" else "left")
    for f in summary["fits"]:
        fits.add_row(
            f["backbone"],
            str(f["n_train"]),
            f"{f['alpha']:.2g}",
            f"{f['holdout_r2']:.3f}",
            f"{f['holdout_mean_cosine']:.3f}",
            f"{f['fit_seconds']:.2f}",
        )
    console.print(fits)
    table = Table(
        title="zero-shot top-1 per factor: own head | tiny CLIP | aligned backbone", title_justify="left"
    )
    for col in ("backbone", "split", "factor", "own head", "CLIP", "aligned", "R²", "cos"):
        table.add_column(
            col, justify="left" if col in ("backbone", "split", "factor") else "right", no_wrap=True
        )
    for r in summary["evaluations"]:
        own = r.get("own_head_top1")
        table.add_row(
            r["backbone"],
            r["split"],
            r["task"],
            "-" if own is None else f"{100 * own:.1f}%",
            f"{100 * r['space_top1']:.1f}%",
            f"{100 * r['aligned_top1']:.1f}%",
            f"{r['r2']:.3f}",
            f"{r['mean_cosine']:.3f}",
        )
    console.print(table)
    for a in summary["acceptance"]:
        mark = "[green]PASS[/]" if a["passed"] else "[red]FAIL[/]"
        console.print(f"{mark} {a['check']} (gap {a['gap_pts']:+.1f} pts)")
    if summary["capabilities"]:
        caps = Table(
            title="what the aligned backbones can do (concept world, test split)", title_justify="left"
        )
        for col in ("", "capability", "measured", "target", "s"):
            caps.add_column(col, justify="right" if col == "s" else "left")
        for c in summary["capabilities"]:
            mark = "[green]PASS[/]" if c["passed"] else "[red]FAIL[/]"
            caps.add_row(mark, c["capability"], c["measured"], c["target"], f"{c['seconds']:.0f}")
        console.print(caps)
    rep = summary.get("report")
    if rep:
        where = rep["path"] or f"not written: {rep['error']}"
        console.print(f"concept report of world-cnn: {where} ({rep['seconds']:.0f} s)", highlight=False)
    console.print(f"done in {summary['seconds']:.0f} s; aligners and summary.json in {out}/")
