"""``tailor models ...``: the model registry (versions, aliases, promotion and rollback)."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tailor.cli_errors import fail

console = Console()

app = typer.Typer(
    help="The model registry: list versions, promote one to an alias, roll an alias back.",
    no_args_is_help=True,
    add_completion=False,
)

Engine = Annotated[str, typer.Argument(help="recommend, audience, budget or devices.")]
Alias = Annotated[str, typer.Option("--alias", help="The alias to move.")]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who moves it (default: the user name).", show_default=False),
]
Reason = Annotated[str, typer.Option("--reason", help="Why: kept in the alias history.")]


def _run(action):
    from tailor.cli import _workspace

    with _workspace() as ws:
        try:
            return action(ws.store)
        except ValueError as exc:
            raise fail(exc) from None


@app.command("list")
def list_versions(
    engine: Annotated[
        str | None, typer.Argument(help="Only this engine's versions.", show_default=False)
    ] = None,
) -> None:
    """Every registered version with its aliases, data window and metrics. Example:

    tailor models list recommend
    """
    from tailor.lifecycle import registry

    found, pointers = _run(lambda s: (registry.versions(s, engine), registry.aliases(s, engine)))
    table = Table(title=f"{len(found)} model version(s)")
    for column in ("engine", "version", "aliases", "created (UTC)", "data to", "metrics"):
        table.add_column(column, overflow="fold")
    for v in found:
        key = (v.engine, v.version)
        names = sorted(a for (e, a), version in pointers.items() if (e, version) == key)
        table.add_row(
            v.engine,
            v.version,
            ", ".join(names),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            str(v.data_window.get("to", "")),
            ", ".join(f"{k} {val:.4g}" for k, val in v.metrics.items()),
        )
    console.print(table)


@app.command("show")
def show(engine: Engine, version: str) -> None:
    """One version in full (JSON), with whether its files are unchanged since registration."""
    from dataclasses import asdict

    from tailor.lifecycle import registry

    found = _run(lambda s: registry.get(s, engine, version))
    console.print_json(
        json.dumps({**asdict(found), "files_unchanged": registry.verify(found)}, default=str)
    )


@app.command("promote")
def promote(
    engine: Engine, version: str, reason: Reason, alias: Alias = "production", by: By = None
) -> None:
    """Point an alias at a version (one transaction; recorded with who and why). A server
    started with `--model-alias` loads it within a second. Example:

    tailor models promote recommend ease-20240601T000000Z-1cc2e7 --reason "nDCG +2%"
    """
    from tailor.lifecycle import registry

    who = by or getpass.getuser()
    previous = _run(
        lambda s: registry.promote(s, engine, version, alias=alias, by=who, reason=reason)
    )
    console.print(f"{engine} {alias}: {previous or '(new alias)'} → {version}")


@app.command("rollback")
def rollback(engine: Engine, reason: Reason, alias: Alias = "production", by: By = None) -> None:
    """Point an alias back at the version it pointed at before its last move. Example:

    tailor models rollback recommend --reason "CTR fell 8% after the promotion"
    """
    from tailor.lifecycle import registry

    who = by or getpass.getuser()
    target = _run(lambda s: registry.rollback(s, engine, alias=alias, by=who, reason=reason))
    console.print(f"{engine} {alias} → {target}")


@app.command("history")
def history(engine: Engine, alias: Alias = "production") -> None:
    """Every move of an alias: when, to which version, from which, by whom and why."""
    from tailor.lifecycle import registry

    moves = _run(lambda s: registry.history(s, engine, alias))
    table = Table(title=f"{engine} {alias}: {len(moves)} move(s)")
    for column in ("moved (UTC)", "to", "from", "by", "reason"):
        table.add_column(column)
    for m in moves:
        table.add_row(
            f"{m.moved_at:%Y-%m-%d %H:%M:%S}", m.version, m.previous or "", m.moved_by, m.reason
        )
    console.print(table)
