"""The CLI's output and its one error boundary: every command runs inside :class:`ErrorBoundary`."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from .._exceptions import T2CError

__all__ = ["ErrorBoundary", "console", "fail"]

console = Console() if sys.stdout.isatty() else Console(width=120)  # logs and pipes: no wrapping


def fail(exc: BaseException) -> NoReturn:
    """Print ``error: MESSAGE`` and exit with status 2 (bad input; nothing already written is lost)."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


class ErrorBoundary(TyperGroup):
    """The ``t2c`` group: a :class:`~t2c_captum.T2CError` (or a file-system ``OSError``) raised by any
    command, nested groups included, becomes one ``error:`` line and exit status 2, here and only
    here (``t2c plugins`` alone catches one itself, to list a probe that fails to load as a row)."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except (T2CError, OSError) as exc:
            fail(exc)
