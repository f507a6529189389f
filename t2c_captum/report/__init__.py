"""Plots and the HTML report: one page about an aligned backbone on a dataset.

``build_report(aligner, data, out)`` (or ``t2c report``) writes ``out/index.html`` with its thumbnails
(``img/``) and figures (``fig/``) beside it: no scripts, fonts or styles are fetched from anywhere.
"""

from __future__ import annotations

from .assets import Assets, Figure, Thumbnail
from .build import MARKER, ReportResult, build_report, render_html
from .sections import SECTIONS, ReportContext, ReportOptions, Section, run_sections

__all__ = [
    "MARKER",
    "SECTIONS",
    "Assets",
    "Figure",
    "ReportContext",
    "ReportOptions",
    "ReportResult",
    "Section",
    "Thumbnail",
    "build_report",
    "render_html",
    "run_sections",
]
