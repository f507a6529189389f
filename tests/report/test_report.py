"""The HTML report on the concept world: sections, notes for missing inputs, files, overwrite rules."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2c_captum import DataError
from t2c_captum.report import MARKER, SECTIONS, build_report

ALL_SECTIONS = ["alignment", "zeroshot", "samples", "cbm", "shift", "retrieval", "captions"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_full_report_has_every_section_with_its_figures(world_report):
    result = world_report
    assert result.present == ALL_SECTIONS and result.missing == {}
    html = result.index.read_text(encoding="utf-8")
    for sid in ALL_SECTIONS:
        assert f'<section id="{sid}"' in html
    figures = {f.src for s in result.sections for f in s.figures}
    assert {"fig/alpha-path.png", "fig/confusion.png", "fig/shift.png"} <= figures
    assert sum(src.startswith("fig/map-") for src in figures) == 4  # concept maps of 4 samples
    images = _tags(html, "img")
    assert len(images) >= 8 + 4 + 2 * 12 + 3 + 8  # samples, maps, two retrieval grids, figures, captions
    captions = next(s for s in result.sections if s.id == "captions").data["items"]
    assert len(captions) == 8 and all(c["aligned"] and c["space"] for c in captions)
    for img in images:
        assert img.get("alt") and len(img["alt"] or "") > 10, img
        assert (result.path / (img["src"] or "")).is_file(), img["src"]
        assert img.get("loading") == "lazy"
    # the CBM covers the shape classes; measured figures are plausible for world-cnn on shape
    cbm = next(s for s in result.sections if s.id == "cbm").data
    from t2c_captum.data import open_source

    assert [c["name"] for c in cbm["classes"]] == open_source("world:test:shape:4").class_names
    assert all(c["bars"] for c in cbm["classes"])
    facts = json.loads((result.path / "report.json").read_text())["facts"]
    assert 0.3 < facts["r2"] <= 1 and facts["aligned_top1"] > 0.6
    assert facts["shift_tests"] == 31


def test_report_fetches_nothing_from_the_network(world_report):
    html = world_report.index.read_text(encoding="utf-8")
    for tag, attr in (("img", "src"), ("script", "src"), ("link", "href"), ("a", "href")):
        for found in _tags(html, tag):
            value = found.get(attr) or ""
            assert not re.match(r"^(https?:)?//", value), f"<{tag} {attr}={value!r}> reaches the network"
    assert "@import" not in html and "url(" not in html  # no fonts or styles from elsewhere


def test_missing_inputs_leave_sections_out_with_notes(world_artifacts, tmp_path):
    result = build_report(world_artifacts["aligner"], "world:test::60", tmp_path / "r", n_samples=4, n_maps=0)
    assert result.present == ["alignment", "samples"]
    notes = result.missing
    assert "labels" in notes["zeroshot"]
    assert "--compare-data" in notes["shift"]
    assert "--cbm" in notes["cbm"]
    assert "--query" in notes["retrieval"]
    assert "--decoder" in notes["captions"]
    html = result.index.read_text(encoding="utf-8")
    assert html.count('class="note"') >= 6  # five left-out sections + "no concept maps"
    assert "no second dataset" in html


def test_existing_output_is_not_overwritten_silently(world_artifacts, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="--overwrite"):
        build_report(world_artifacts["aligner"], "world:test::20", out, n_samples=2, n_maps=0)
    # not a report folder: --overwrite refuses it too, and it is left as it was
    with pytest.raises(DataError, match="not a t2c report folder"):
        build_report(world_artifacts["aligner"], "world:test::20", out, n_samples=2, n_maps=0, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    report = tmp_path / "rep"
    build_report(world_artifacts["aligner"], "world:test::20", report, n_samples=2, n_maps=0)
    first = (report / "index.html").read_text()
    (report / "stale.txt").write_text("old")
    build_report(world_artifacts["aligner"], "world:test::20", report, n_samples=3, n_maps=0, overwrite=True)
    assert (report / MARKER).is_file() and not (report / "stale.txt").exists()
    assert (report / "index.html").read_text() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_failed_build_leaves_no_trace(world_artifacts, tmp_path):
    def broken(ctx):
        raise DataError("section failed")

    with pytest.raises(DataError, match="section failed"):
        build_report(world_artifacts["aligner"], "world:test::20", tmp_path / "r", n_maps=0,
                     sections=[*SECTIONS[:1], broken])
    assert list(tmp_path.iterdir()) == []


def test_cli_report_json_and_refusal(world_artifacts, tmp_path):
    from t2c_captum.cli import app

    out = tmp_path / "cli-report"
    args = ["report", world_artifacts["aligner"], "--data", "world:test:colour:40", "--out", str(out),
            "--samples", "2", "--maps", "0", "--json"]
    ran = CliRunner().invoke(app, args)
    assert ran.exit_code == 0, ran.output
    data = json.loads(ran.output)
    assert data["sections"] == ["alignment", "zeroshot", "samples"]
    assert Path(data["index"]).is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_demo_writes_its_report_and_never_fails_on_it(world_artifacts, tmp_path):
    import shutil

    from t2c_captum.demo import _demo_report

    stem = Path(world_artifacts["aligner"]).with_suffix("")
    for suffix in (".json", ".safetensors"):
        shutil.copyfile(stem.with_suffix(suffix), (tmp_path / "world-cnn").with_suffix(suffix))
    written = _demo_report(tmp_path, progress=False)
    assert Path(written["path"]).is_file() and "retrieval" in written["sections"]
    again = _demo_report(tmp_path, progress=False)  # a second demo run replaces its own report
    assert again["path"] == written["path"]
    blocked = tmp_path / "other"
    (blocked / "report").mkdir(parents=True)
    (blocked / "report" / "notes.txt").write_text("not a report")
    refused = _demo_report(blocked, progress=False)
    assert refused["path"] is None and "not a t2c report folder" in refused["error"]


def test_a_decoder_that_cannot_be_loaded_leaves_the_captions_out_with_its_reason(world_artifacts, tmp_path):
    result = build_report(world_artifacts["aligner"], "world:test:shape:40", tmp_path / "r", n_samples=2,
                          n_maps=0, decoder="no-such-decoder")
    assert "captions" not in result.present
    assert "no-such-decoder" in result.missing["captions"] and "decoder" in result.missing["captions"]


@pytest.mark.parametrize(
    ("extraction", "progress", "settings", "expected"),
    [
        (None, None, {}, {"progress": False}),  # a report shows no bars by default
        (None, True, {}, {"progress": True}),
        ("options", None, {}, {"progress": True, "batch_size": 7}),  # the options' own value
        ("options", False, {"batch_size": 3}, {"progress": False, "batch_size": 3}),  # given: applied over
    ],
)
def test_progress_and_settings_apply_over_the_extraction_options(
    monkeypatch, tmp_path, extraction, progress, settings, expected
):
    from t2c_captum import ExtractOptions
    from t2c_captum.report import build

    class Captured(Exception):
        pass

    def capture(**fields):
        raise Captured(fields["extraction"])

    monkeypatch.setattr(build, "ReportOptions", capture)
    options = ExtractOptions(batch_size=7, progress=True) if extraction else None
    with pytest.raises(Captured) as caught:
        build_report("unused", "world:test:shape:4", tmp_path / "r", extraction=options, progress=progress,
                     **settings)
    chosen = caught.value.args[0]
    assert {name: getattr(chosen, name) for name in expected} == expected
