"""``build_report``: a self-contained static HTML page about one aligned backbone on one dataset."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._exceptions import DataError
from ..features.options import ExtractOptions
from .assets import Assets
from .sections import Builder, ReportContext, ReportOptions, Section, run_sections

__all__ = ["ReportResult", "build_report", "render_html"]

#: written into every report folder; ``overwrite=True`` replaces only folders that carry it (or empty ones)
MARKER = ".t2c-report"


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: ``index`` (the page), its sections and measured figures."""

    path: Path
    index: Path
    sections: list[Section]
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def present(self) -> list[str]:
        return [s.id for s in self.sections if s.present]

    @property
    def missing(self) -> dict[str, str]:
        return {s.id: s.note or "" for s in self.sections if not s.present}


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{str(out)!r} exists and is not a folder; choose another --out")
    contents = list(out.iterdir())
    if not overwrite:
        if contents:
            raise DataError(
                f"output folder {str(out)!r} already exists; pass --overwrite (overwrite=True) to replace "
                "it, or choose another --out"
            )
        return
    if contents and not (out / MARKER).is_file():
        raise DataError(
            f"{str(out)!r} is not empty and is not a t2c report folder (no {MARKER} file), so --overwrite "
            "will not replace it; choose another --out"
        )


def _swap_in(staging: Path, out: Path) -> None:
    """Put the finished report in place; an old report is replaced only once the new one is complete."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def render_html(sections: list[Section], meta: dict[str, Any]) -> str:
    """The page's HTML (jinja2, autoescaped) for ``sections``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("t2c_captum.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.1f}%"
    env.filters["num"] = lambda v, spec=".3f": "–" if v is None else format(float(v), spec)
    return env.get_template("report.html.j2").render(sections=sections, meta=meta)


def build_report(
    aligner: str | os.PathLike[str],
    data: str,
    out: str | os.PathLike[str] = "report",
    *,
    compare_data: str | None = None,
    cbm: str | None = None,
    queries: list[str] | tuple[str, ...] = (),
    decoder: str | None = None,
    vocabulary: str | None = None,
    concepts: str | None = None,
    n_samples: int = 8,
    n_maps: int = 4,
    map_method: str = "integrated_gradients",
    top_k: int = 5,
    backbone: str | None = None,
    checkpoint: str | None = None,
    extraction: ExtractOptions | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    sections: list[Builder] | None = None,
    **settings: Any,
) -> ReportResult:
    """Write a static HTML report (``OUT/index.html`` with ``img/`` and ``fig/`` beside it).

    The page shows the alignment quality, zero-shot results with a confusion matrix (labelled images),
    sample images with their top concepts and concept maps, a CBM's top concepts per class (``cbm``), a
    shift report against ``compare_data``, retrieval results for ``queries``, and the sample images
    decoded into captions (``decoder``). A section whose input
    is missing is replaced by a note that says which input would enable it.

    Args:
        aligner (str): a saved aligner (``NAME``, ``NAME.json``, a folder or ``hf-hub:ORG/REPO``).
        data (str): the images: a folder, an ImageFolder tree (labelled), a CSV/TXT list or
            ``world:SPLIT[:FACTOR[:N]]``.
        out (str, optional): the report folder. Default: ``"report"``
        compare_data (str, optional): a second dataset, for the shift section. Default: ``None``
        cbm (str, optional): a saved concept bottleneck model (``t2c cbm fit``). Default: ``None``
        queries (list of str, optional): retrieval queries, e.g. ``'"red" & ~"star"'``. Default: none
        decoder (str, optional): a caption decoder (``world-decoder``, a saved one, ``clipcap:PATH``):
            the sample images' aligned features as captions. Default: ``None``
        vocabulary / concepts (str, optional): the concepts (as ``t2c concepts`` takes them).
        n_samples (int, optional): sample images shown with their concepts. Default: ``8``
        n_maps (int, optional): how many of them get a concept map (0: none). Default: ``4``
        map_method (str, optional): the Captum method of the maps. Default: ``"integrated_gradients"``
        top_k (int, optional): concepts per image and per class. Default: ``5``
        extraction (ExtractOptions, optional): every extraction setting (workers, precision, Ray
            backend...), for the report's images and ``compare_data``. Default: ``ExtractOptions()``
            without a progress bar
        overwrite (bool, optional): replace an existing report folder. Default: ``False``
        progress (bool, optional): show extraction progress bars; given, it applies over
            ``extraction`` like the other settings. Default: ``extraction``'s, or none without it
        sections (list, optional): the section builders. Default: :data:`~t2c_captum.report.SECTIONS`
        **settings: :class:`~t2c_captum.ExtractOptions` fields one by one (``batch_size=32``,
            ``device="cpu"``), applied over ``extraction``.

    Returns:
        ReportResult: the paths, the sections and the measured figures (also in ``OUT/report.json``).

    Raises:
        DataError: ``out`` exists (without ``overwrite``), or the images cannot be read.

    Examples::

        >>> result = build_report("runs/demo/world-cnn", "world:test:shape:300", "report",
        ...                       compare_data="world:val:shape:300", queries=['"red" & "star"'])
        >>> result.index
        PosixPath('report/index.html')
    """
    from ..alignment import evaluate_store
    from ..concepts.bank import make_bank
    from ..data import open_source
    from ..probes import load_aligned

    start = time.perf_counter()
    target = Path(out)
    _check_out(target, overwrite)
    options = ReportOptions(compare_data=compare_data, cbm=cbm, queries=list(queries), decoder=decoder,
                            n_samples=n_samples,
                            n_maps=n_maps, map_method=map_method, top_k=top_k,
                            extraction=ExtractOptions.from_settings(
                                ExtractOptions.for_task(extraction, progress=progress), **settings))
    pair = load_aligned(os.fspath(aligner), backbone, checkpoint)
    bank = make_bank(pair.space, vocabulary, concepts, pair.vocabulary)
    source = open_source(data)
    store = options.extraction.extract(data, {"source": pair.backbone, "target": pair.space})
    evaluation = evaluate_store(pair.aligner, store, pair.backbone, pair.space, split=str(data))
    loaded = store.load(["source"])
    order = torch.argsort(loaded["indices"])
    features, indices, raw_labels = loaded["source"][order], loaded["indices"][order], loaded["labels"][order]
    class_names = store.manifest["dataset"].get("class_names") or getattr(source, "class_names", None)
    labels = raw_labels.numpy().astype(np.int64) if class_names and bool((raw_labels >= 0).any()) else None
    from ..concepts import concept_scores

    scores = concept_scores(features, bank, pair.aligner)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        ctx = ReportContext(
            aligned=pair, data=str(data), source=source, store=store, features=features, indices=indices,
            labels=labels, class_names=list(class_names) if class_names else None, bank=bank,
            scores=scores, assets=Assets(staging, source), options=options, evaluation=evaluation,
        )
        built = run_sections(ctx, sections)
        seconds = time.perf_counter() - start
        from .._version import __version__

        meta = {
            "title": f"{pair.aligner.source_.get('id', 'backbone')} → {pair.space.name} on {data}",
            "backbone": pair.aligner.source_.get("id", "?"), "space": pair.space.name, "data": str(data),
            "aligner": str(aligner), "n_images": ctx.n, "n_concepts": len(bank),
            "vocabulary": bank.info.get("vocabulary") if isinstance(bank.info, dict) else None,
            "version": __version__, "seconds": round(seconds, 1),
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        (staging / "index.html").write_text(render_html(built, meta), encoding="utf-8")
        summary = {"meta": meta, "facts": ctx.facts, "sections": {s.id: s.note or "present" for s in built}}
        (staging / "report.json").write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
        (staging / MARKER).write_text("written by t2c report; --overwrite may replace this folder\n")
        staging.chmod(0o755)
        _check_out(target, overwrite)  # still true after the minutes spent building?
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ReportResult(target, target / "index.html", built, ctx.facts, time.perf_counter() - start)
