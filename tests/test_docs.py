"""The documentation stays true: every hook and CLI command is documented, every page is in the site,
the tutorial quotes the example plugin exactly, and the Python examples in docs/ run.

Convention: every ```python block in docs/ runs, in page order, in one namespace per page, in a fresh
folder, on the concept world; a block right after a line ``<!-- no-run: REASON -->`` is skipped.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
NO_RUN = re.compile(r"<!--\s*no-run(?::\s*(?P<reason>.*?))?\s*-->\s*$")


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def _blocks(page: Path) -> list[dict]:
    """Fenced blocks of a page: language, code, line, and the no-run reason (None: runs)."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NO_RUN.search(before)
        out.append({"lang": m.group(1), "code": m.group(2), "line": text[: m.start()].count("\n") + 1,
                    "skip": (marker.group("reason") or "") if marker else None})
    return out


def _cli_hook():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "_hooks" / "cli_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    rest = markdown[start + len(heading):]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


# ------------------------------------------------------------------------------------ hooks and CLI
def _hookspecs() -> list[str]:
    from t2c_captum import hookspecs

    names = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")]
    assert len(names) >= 5, names
    return names


def test_every_hook_has_a_documented_section():
    page = (DOCS / "reference" / "hooks.md").read_text(encoding="utf-8")
    missing, thin = [], []
    for name in _hookspecs():
        heading = f"## `{name}`"
        if heading not in page:
            missing.append(name)
            continue
        body = _section(page, heading)
        prose = re.sub(r"```.*?```", "", body, flags=re.S)
        directive = f"::: t2c_captum.hookspecs.{name}"
        if directive not in body or "```python" not in body or len(prose.split()) < 40:
            thin.append(name)
    assert not missing, f"hooks without a section in docs/reference/hooks.md: {missing}"
    assert not thin, f"hook sections without their spec directive, an example or an explanation: {thin}"


def test_every_cli_command_is_in_the_generated_reference():
    hook = _cli_hook()
    assert hook.MARKER in (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert "docs/_hooks/cli_reference.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    markdown = hook.cli_markdown()
    paths = [" ".join(path) for path, _, _ in hook.iter_commands()]
    for expected in ("t2c fit", "t2c report", "t2c cbm fit", "t2c shift", "t2c demo"):
        assert expected in paths
    for path in paths:
        found = re.search(rf"^#+ `{re.escape(path)}`$", markdown, re.M)
        assert found, f"{path} missing from the CLI reference"
    report = _section(markdown, "## `t2c report`")
    assert "--compare-data" in report and "--overwrite" in report  # options come from the command itself


def test_every_page_is_in_the_site_navigation():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:"):]
    absent = [str(p.relative_to(DOCS)) for p in _pages() if f": {p.relative_to(DOCS).as_posix()}" not in nav]
    assert not absent, f"pages missing from mkdocs.yml nav: {absent}"


def test_skipped_examples_say_why():
    for page in _pages():
        for block in _blocks(page):
            if block["skip"] is not None:
                where = f"{page.name}:{block['line']}"
                assert len(block["skip"]) > 10, f"{where}: <!-- no-run: REASON --> needs a reason"


def test_tutorial_quotes_the_example_plugin_exactly():
    quoted = 0
    for block in _blocks(DOCS / "plugin-tutorial.md"):
        first, _, rest = block["code"].partition("\n")
        m = re.match(r"# (plugins/t2c-procrustes/\S+)$", first)
        if m:
            source = (ROOT / m.group(1)).read_text(encoding="utf-8")
            assert rest.strip() in source, f"plugin-tutorial.md:{block['line']} differs from {m.group(1)}"
            quoted += 1
    assert quoted >= 5


# ------------------------------------------------------------------------------------- the examples
RUNNABLE = [p for p in _pages() if any(b["lang"] == "python" and b["skip"] is None for b in _blocks(p))]
SLOW_PAGES = {"getting-started.md", "trust.md", "report.md", "plugin-tutorial.md"}


def test_most_python_examples_run():
    blocks = [b for p in _pages() for b in _blocks(p) if b["lang"] == "python"]
    running = [b for b in blocks if b["skip"] is None]
    assert len(running) >= 10 and len(running) > len(blocks) / 2, (len(running), len(blocks))


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=str(p.relative_to(DOCS)), marks=[pytest.mark.slow] if p.name in SLOW_PAGES else [])
     for p in RUNNABLE],
)
def test_python_examples_run(page, tmp_path, monkeypatch):
    from t2c_captum import plugins

    monkeypatch.chdir(tmp_path)
    # the tutorial registers the example plugin's hooks itself: keep the installed copy from loading
    monkeypatch.setenv("T2C_BLOCK_PLUGINS", "procrustes")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plugins._reset_for_tests()
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for block in _blocks(page):
            if block["lang"] != "python" or block["skip"] is not None:
                continue
            code = compile(block["code"], f"{page.relative_to(ROOT)}:{block['line']}", "exec")
            exec(code, namespace)
    finally:
        plugins._reset_for_tests()
