"""``tailor keys ...``: create, list and revoke the HTTP API's keys.

The lead CLI mounts :data:`app` as ``tailor keys``. The keys file is the settings'
``api.keys_file`` (``TAILOR_API__KEYS_FILE``); a running server picks up changes within a
second or two, without a restart.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tailor.api.keys import SCOPES, KeyFileError, KeyRing, KeyValidationError
from tailor.config import get_settings

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Create, list and revoke the HTTP API's keys (stored as hashes, shown once).",
    no_args_is_help=True,
    add_completion=False,
)

# KeyRing's field -> the option that sets it, so an error names what the user typed.
_OPTIONS = {
    "name": "--name",
    "scopes": "--scope",
    "tenant": "--tenant",
    "rate_per_s": "--rate",
    "burst": "--burst",
    "key_id": "KEY_ID",
}


def _exit(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _load() -> KeyRing:
    try:
        return KeyRing.load(get_settings().api.keys_file)
    except KeyFileError as exc:
        _exit(str(exc))


def _save(ring: KeyRing) -> None:
    try:
        ring.save()
    except KeyFileError as exc:
        _exit(str(exc))


def _invalid(exc: KeyValidationError) -> NoReturn:
    option = _OPTIONS.get(exc.field, exc.field)
    _exit(f"{option}{str(exc).removeprefix(exc.field)}")


@app.command()
def create(
    name: Annotated[
        str, typer.Option("--name", help="Who or what uses the key, e.g. 'shop-1 website'.")
    ],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help=f"One of {', '.join(SCOPES)}; repeat for several. admin implies the others.",
        ),
    ],
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="The one tenant (shop) the key may reach. Without it the key reaches every "
            "tenant: give one to every per-shop client.",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Requests per second, sustained (default: settings api.default_rate_per_s, 200).",
            rich_help_panel="Rate limit",
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst",
            help="Requests at once before the rate bites "
            "(default: settings api.default_burst, 400).",
            rich_help_panel="Rate limit",
        ),
    ] = None,
) -> None:
    """Create a key and print its token, once: only a hash of it is kept.

    The token alone goes to standard output, the rest to standard error.
    """
    settings = get_settings().api
    ring = _load()
    try:
        key, token = ring.create(
            name=name,
            scopes=scope,  # type: ignore[arg-type]  # KeyRing checks the names
            tenant=tenant,
            rate_per_s=settings.default_rate_per_s if rate is None else rate,
            burst=settings.default_burst if burst is None else burst,
        )
    except KeyValidationError as exc:
        _invalid(exc)
    _save(ring)
    reach = f"tenant {key.tenant}" if key.tenant else "every tenant"
    err.print(
        f"created key [bold]{key.key_id}[/bold] ({escape(key.name)}): "
        f"{', '.join(s for s in SCOPES if s in key.scopes)}; {reach}; "
        f"{key.rate_per_s:g} requests/s, burst {key.burst}",
        highlight=False,
    )
    err.print(
        "[yellow]Store the token below now (e.g. in a secret manager): it is shown only "
        "this once and cannot be recovered; if lost, revoke the key and create another.[/yellow]"
    )
    # Plain echo, not rich: no wrapping or markup may alter a token someone will copy.
    typer.echo(token)
    err.print(
        'use it as:  curl -H "Authorization: Bearer $TAILOR_API_KEY" http://127.0.0.1:8000/v1/...',
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_keys() -> None:
    """List the keys: id, name, scopes, tenant, rate limit, created, revoked (never a secret)."""
    ring = _load()
    keys = ring.list()
    if not keys:
        console.print(
            f"no API keys in {ring.path}: create one with "
            "`tailor keys create --name NAME --scope SCOPE`",
            highlight=False,
        )
        return
    table = Table(
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        title=f"API keys in {ring.path}",
    )
    # Ids and scopes are copied from here: fold them if narrow, never cut them with "…".
    table.add_column("id", no_wrap=True, overflow="fold", min_width=12)
    table.add_column("name", overflow="fold")
    table.add_column("scopes", min_width=9)
    table.add_column("tenant", overflow="fold")
    table.add_column("rate/s", justify="right", no_wrap=True)
    table.add_column("burst", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("revoked", no_wrap=True)
    for key in keys:
        table.add_row(
            key.key_id,
            escape(key.name),
            " ".join(s for s in SCOPES if s in key.scopes),
            key.tenant or "(all)",
            f"{key.rate_per_s:g}",
            str(key.burst),
            f"{key.created_at:%Y-%m-%d}",
            "yes" if key.revoked else "",
            style="dim" if key.revoked else None,
        )
    console.print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `tailor keys list` shows it.")],
) -> None:
    """Revoke a key: requests with it fail from the server's next look at the file (~1 s)."""
    ring = _load()
    before = ring.get(key_id)
    if before is not None and before.revoked:
        console.print(f"key {key_id} ({escape(before.name)}) was already revoked", highlight=False)
        return
    try:
        key = ring.revoke(key_id)
    except KeyValidationError as exc:
        _invalid(exc)
    _save(ring)
    console.print(f"revoked key {key.key_id} ({escape(key.name)})", highlight=False)
