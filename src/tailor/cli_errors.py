"""How every ``tailor`` command reports a user's mistake: one red line on standard error,
exit status 1, no traceback."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def fail(exc: BaseException | str) -> typer.Exit:
    """Print ``error: ...`` and return the exit to raise. The message is escaped: errors name
    settings such as ``[lifecycle]`` or values a user typed, which rich would read as markup."""
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(1)
