"""``tailor monitor ...``: is the data the engines learn from still like what they learned?"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Monitor the event log: drift of the features the engines learn from.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("drift")
def drift(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Last day of the recent window (YYYY-MM-DD, UTC; default today).",
            show_default=False,
        ),
    ] = None,
    reference_days: Annotated[
        int, typer.Option("--reference-days", min=1, help="Days of the reference window.")
    ] = 28,
    recent_days: Annotated[
        int, typer.Option("--recent-days", min=1, help="Days of the recent window.")
    ] = 7,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0001, max=0.5, help="The KS test's level.")
    ] = 0.05,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the figures as JSON.", show_default=False),
    ] = None,
) -> None:
    """Check purchase value, basket lines, daily events and daily items per active customer
    of the recent window against the reference window before it (PSI, KS, Jensen-Shannon,
    Wasserstein). Exits 0 either way; `drifted` says which moved. Example:

        tailor monitor drift --reference-days 28 --recent-days 7 --out drift.json
    """
    from tailor.audience.rfm import as_day
    from tailor.cli import _workspace
    from tailor.lifecycle.monitor import MIN_VALUES, drift_report

    try:
        day = as_day(as_of) if as_of else date.today()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    with _workspace() as ws:
        report = drift_report(
            ws.store, day, reference_days=reference_days, recent_days=recent_days, alpha=alpha
        )
    title = f"drift: the {recent_days} days to {day} against the {reference_days} before"
    table = Table(title=title)
    for column in ("feature", "reference", "recent", "PSI", "KS p", "JS", "Wasserstein", "drifted"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    figures = []
    for row in report:
        c = row.check
        cells = (
            [f"{c.psi:.4f}", f"{c.ks_p_value:.3g}", f"{c.jensen_shannon:.4f}",
             f"{c.wasserstein:.4g}", "yes" if c.drifted else "no"]
            if c is not None
            else ["", "", "", "", f"not checked (< {MIN_VALUES} values)"]
        )  # fmt: skip
        table.add_row(row.feature, f"{row.reference_values:,}", f"{row.recent_values:,}", *cells)
        figures.append(
            {
                "feature": row.feature,
                "reference_values": row.reference_values,
                "recent_values": row.recent_values,
                **(
                    {}
                    if c is None
                    else {
                        "psi": c.psi, "ks": c.ks, "ks_p_value": c.ks_p_value,
                        "jensen_shannon": c.jensen_shannon, "wasserstein": c.wasserstein,
                        "drifted": c.drifted,
                    }
                ),
            }
        )  # fmt: skip
    console.print(table)
    if out is not None:
        try:
            out.write_text(json.dumps({"as_of": str(day), "features": figures}, indent=2))
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot write {out}: {exc.strerror or exc}")
            raise typer.Exit(1) from None
        console.print(f"wrote {out}")
