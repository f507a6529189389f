"""MkDocs hook: the command-line reference, generated from the ``t2c`` command itself.

A page holding the line ``<!-- t2c-cli-reference -->`` gets it replaced by one section per command
(nested groups included): its help text, usage line and a table of its arguments and options, read
from the click command that typer builds. ``tests/test_docs.py`` renders the same text to check that
every command is there.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- t2c-cli-reference -->"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else ""


def _param_rows(command: Any, ctx: Any) -> list[str]:
    """One table row per argument/option, from click's own help records (name + metavar, help)."""
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx) if not getattr(param, "hidden", False) else None
        if record is None or param.name == "help":
            continue
        names, help_text = record
        kind = "argument" if param.param_type_name == "argument" else "option"
        rows.append(f"| `{_cell(names)}` | {kind} | {_cell(help_text)} |")
    return rows


def iter_commands(command: Any = None, path: tuple[str, ...] = ("t2c",), parent: Any = None) -> Any:
    """``(path, click command, click context)`` of the ``t2c`` command and every subcommand, in order."""
    import typer.main

    if command is None:
        from t2c_captum.cli import app

        command = typer.main.get_command(app)
    # typer ships its own copy of click: take the context class from the command itself
    ctx = command.context_class(command, info_name=" ".join(path), parent=parent)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            yield from iter_commands(command.get_command(ctx, name), (*path, name), ctx)


def cli_markdown() -> str:
    """The reference, as Markdown."""
    out: list[str] = []
    for path, command, ctx in iter_commands():
        depth = min(len(path) + 1, 4)
        title = " ".join(path)
        out.append(f"{'#' * depth} `{title}`\n")
        help_text = (command.help or "").strip()
        if help_text:
            out.append(help_text.replace("\b\n", "") + "\n")
        pieces = " ".join(command.collect_usage_pieces(ctx))
        out.append(f"```text\n{title} {pieces}\n```\n")
        rows = _param_rows(command, ctx)
        if rows:
            out.append("| name | kind | help |\n| --- | --- | --- |")
            out.extend(rows)
            out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_markdown())
    return markdown
