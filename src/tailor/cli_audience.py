"""``tailor audience ...``: segments, churn risk and lifetime value of the shop's customers.

The lead CLI mounts :data:`app` as ``tailor audience``. Customers are the store's
pseudonymous subjects with analytics consent; the engine is imported when a command runs.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Customer segments, churn risk and lifetime value from the purchase events.",
    no_args_is_help=True,
    add_completion=False,
)

PURCHASE_COLUMNS = ["subject_id", "occurred_at", "quantity", "price", "item_id", "event_type"]

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="The day (YYYY-MM-DD, UTC) the customer base is seen from; default: the day of "
        "the last purchase stored.",
        show_default=False,
    ),
]
ModelDir = Annotated[
    Path,
    typer.Option("--model", help="Folder of the audience model (written by `fit`)."),
]


def _purchases() -> pa.Table:
    from tailor.cli import _workspace

    with _workspace() as ws:
        purchases = ws.store.read_events(
            purpose="analytics", event_types=["purchase"], columns=PURCHASE_COLUMNS
        )
    if purchases.num_rows == 0:
        raise typer.BadParameter(
            "the store holds no purchases of customers with analytics consent: import "
            "purchase events first (`tailor import events FILE`)"
        )
    return purchases


def _as_of(value: str | None, purchases: pa.Table) -> date:
    import pyarrow.compute as pc

    from tailor.audience.rfm import as_day

    if value is None:
        return as_day(pc.max(purchases["occurred_at"]).as_py())
    try:
        return as_day(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None


def _scored(model: Path, as_of: str | None):
    """The saved model, the purchases, the day and every customer's scores."""
    from tailor.audience.model import AudienceModel

    try:
        fitted = AudienceModel.load(model)
    except (ValueError, OSError) as exc:
        raise _fail(exc) from None
    purchases = _purchases()
    day = _as_of(as_of, purchases)
    try:
        return fitted, purchases, day, fitted.score(purchases, day)
    except ValueError as exc:
        raise _fail(exc) from None


def segment_table(scores: pa.Table, title: str, risk_label: str = "mean churn risk") -> Table:
    """The segments of scored customers as a table for the terminal (the CLI and the demo)."""
    from tailor.audience.segments import segment_summary

    table = Table(title=title, title_justify="left")
    for column in ("segment", "customers", risk_label, "mean 12-month value"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for row in segment_summary(scores):
        table.add_row(
            row["segment"],
            f"{row['customers']:,}",
            f"{row['mean_churn_risk']:.0%}",
            f"{row['mean_clv']:,.2f}",
        )
    return table


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command("fit")
def fit(
    model: ModelDir = Path("models/audience"),
    as_of: AsOf = None,
    horizon: Annotated[
        int, typer.Option("--horizon", help="Churn horizon in days: no purchase in it = churned.")
    ] = 90,
    clv_months: Annotated[
        int, typer.Option("--clv-months", help="Months of lifetime value (30-day periods).")
    ] = 12,
    discount: Annotated[
        float, typer.Option("--discount", help="Discount rate per month for lifetime value.")
    ] = 0.01,
) -> None:
    """Fit the BG/NBD, Gamma-Gamma, churn and cluster models on the stored purchases.

    The churn model learns from the customers as they were HORIZON days before --as-of and
    whether they bought in the HORIZON days that followed. Example:

        tailor audience fit --model models/audience --horizon 90
    """
    from tailor.audience.model import AudienceConfig, AudienceModel

    purchases = _purchases()
    day = _as_of(as_of, purchases)
    try:
        config = AudienceConfig(
            horizon_days=horizon, clv_periods=clv_months, discount_rate=discount
        )
        fitted = AudienceModel(config).fit(purchases, day)
    except ValueError as exc:
        raise _fail(exc) from None
    try:
        fitted.save(model)
    except OSError as exc:
        raise _fail(OSError(f"cannot write the model to {model}: {exc.strerror or exc}")) from None
    described = fitted.describe()
    table = Table(title=f"audience model as of {day}: {described['customers']:,} customers")
    table.add_column("part")
    table.add_column("fitted")
    bgnbd = described["bgnbd"]
    table.add_row("BG/NBD", ", ".join(f"{k} = {v:.4g}" for k, v in bgnbd.items()))
    spend = described["gammagamma"]
    table.add_row("Gamma-Gamma", "-" if spend is None else ", ".join(
        f"{k} = {v:.4g}" for k, v in spend.items()))  # fmt: skip
    table.add_row("churn model", "LightGBM, calibrated" if described["churn_model"] else "-")
    for cluster in described["clusters"]["descriptions"]:
        table.add_row(
            f"cluster {cluster['cluster']}",
            f"{cluster['customers']:,} customers: {', '.join(cluster['distinguished_by'])}",
        )
    console.print(table)
    for note in described["notes"]:
        err.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"saved to {model}")


@app.command("score")
def score(
    model: ModelDir = Path("models/audience"),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also export for the CRM: .parquet or .csv, one row per customer.",
            show_default=False,
        ),
    ] = None,
    as_of: AsOf = None,
) -> None:
    """Score every customer (segment, cluster, churn risk with its reasons, P(alive),
    expected purchases and spend, lifetime value) and store the scores, replacing the
    previous ones; `tailor serve --audience` answers from them. Example:

        tailor audience score --model models/audience --out scores.csv
    """
    from datetime import UTC, datetime

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from tailor.audience.service import store_scores
    from tailor.cli import _workspace

    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise typer.BadParameter("write .parquet or .csv", param_hint="--out")
    _, _, day, scores = _scored(model, as_of)
    with _workspace() as ws:
        stored = store_scores(ws.store, scores, day, datetime.now(UTC))
    console.print(segment_table(scores, f"{scores.num_rows:,} customers as of {day}"))
    console.print(f"stored the scores of {stored:,} customers")
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix == ".csv":
                pacsv.write_csv(scores, out)
            else:
                pq.write_table(scores, out)
        except OSError as exc:
            raise _fail(OSError(f"cannot write {out}: {exc.strerror or exc}")) from None
        console.print(f"wrote {out}")


@app.command("report")
def report(
    model: ModelDir = Path("models/audience"),
    out: Annotated[
        Path,
        typer.Option("--out", help="The HTML page to write; its JSON twin goes beside it."),
    ] = Path("audience-report.html"),
    as_of: AsOf = None,
) -> None:
    """Write the audience report: segment sizes, the value distribution, the clusters and a
    back-test (churn calibration and gains, BG/NBD holdout) on the stored purchases. Example:

        tailor audience report --model models/audience --out reports/customers.html
    """
    from tailor.audience.evaluation import backtest
    from tailor.audience.report import audience_figures, write_audience_report

    if out.suffix != ".html":
        raise typer.BadParameter(
            "write an .html page (its .json twin goes beside it)", param_hint="--out"
        )
    fitted, purchases, day, scores = _scored(model, as_of)
    try:
        test = backtest(purchases, day, fitted.config.horizon_days)
    except ValueError as exc:
        err.print(f"[yellow]note:[/yellow] no back-test ({exc})")
        test = None
    try:
        page, twin = write_audience_report(audience_figures(scores, fitted.describe(), test), out)
    except OSError as exc:
        raise _fail(OSError(f"cannot write {out}: {exc.strerror or exc}")) from None
    console.print(f"wrote {page} and {twin}")
