"""``tailor simulate ...``: generate synthetic data with known ground truth.

The lead CLI mounts :data:`app` as ``tailor simulate``. Standalone, for testing::

    python -c "from tailor.cli_simulate import app; app()" shop --help
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from tailor.datasets.simulate.shop import ShopConfig, ShopConfigError, write_shop

app = typer.Typer(
    help="Generate synthetic event data with known ground truth (for tests and benchmarks).",
    no_args_is_help=True,
    add_completion=False,
)

_DEFAULTS = {f.name: f.default for f in fields(ShopConfig)}
# ShopConfig field -> the option that sets it, so a config error names what the user typed.
_OPTIONS = {
    "users": "--users",
    "items": "--items",
    "events": "--events",
    "days": "--days",
    "seed": "--seed",
}


@app.callback()
def _simulate() -> None:
    """Generate synthetic event data with known ground truth (for tests and benchmarks)."""


_SHOP_HELP = (
    "Simulate an online shop: users with hidden tastes browse, cart, buy and rate items.\n\n"
    "Writes the event log (views, cart additions and removals, purchases with one row per "
    "basket line, ratings, consent grants and revocations) as Parquet in the import schema, "
    "plus the items and users entity tables, the item availability changes and the ground "
    "truth. Same options and seed give identical files."
)


@app.command("shop", help=_SHOP_HELP)
def shop(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help=(
                "Events Parquet file to write, e.g. bench-out/shop.parquet. Beside it go "
                "<stem>.items.parquet, <stem>.users.parquet, <stem>.item_changes.parquet "
                "(availability log) and <stem>.truth.npz (true user/item factors)."
            ),
            show_default=False,
        ),
    ],
    users: Annotated[
        int, typer.Option("--users", help="Number of simulated users (at least 1).")
    ] = _DEFAULTS["users"],
    items: Annotated[
        int,
        typer.Option(
            "--items",
            help=f"Number of catalog items (at least the {_DEFAULTS['categories']} categories).",
        ),
    ] = _DEFAULTS["items"],
    events: Annotated[
        int,
        typer.Option(
            "--events",
            help=(
                "Target number of event rows (a purchase has one row per basket line). "
                "Generated and written in chunks, so any size fits in bounded memory."
            ),
        ),
    ] = _DEFAULTS["events"],
    days: Annotated[
        int,
        typer.Option("--days", help="Length of the simulated period in days, from 2024-01-01 UTC."),
    ] = _DEFAULTS["days"],
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Random seed (>= 0): the same options and seed give identical files."
        ),
    ] = _DEFAULTS["seed"],
    progress: Annotated[
        bool,
        typer.Option("--progress/--no-progress", help="Show a progress bar of rows written."),
    ] = True,
) -> None:
    """Simulate an online shop (see ``_SHOP_HELP``)."""
    config = ShopConfig(
        users=users,
        items=items,
        events=events,
        days=days,
        seed=seed,
        # A tiny catalog gets fewer categories (each category needs an item).
        categories=min(_DEFAULTS["categories"], max(items, 1)),
        top_categories=min(_DEFAULTS["top_categories"], max(items, 1)),
    )
    try:
        config.validate()
    except ShopConfigError as exc:
        option = _OPTIONS.get(exc.field, f"--{exc.field.replace('_', '-')}")
        typer.echo(f"Error: invalid value for {option}: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        summary = write_shop(config, out, progress=progress)
    except OSError as exc:
        typer.echo(f"Error: cannot write {out}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Wrote {summary.rows:,} event rows ({summary.users:,} users, {summary.items:,} items) "
        f"in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s)."
    )
    for name, path in summary.paths.items():
        typer.echo(f"  {name:<13} {path}")
