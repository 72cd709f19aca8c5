"""``tailor audience ...``: segments, churn risk and lifetime value of the shop's customers.

The lead CLI mounts :data:`app` as ``tailor audience``. Customers are the store's
pseudonymous subjects with analytics consent; the engine is imported when a command runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tailor.cli_errors import fail as _fail

if TYPE_CHECKING:
    import pyarrow as pa

    from tailor.store.base import Store

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Customer segments, churn risk and lifetime value from the purchase events.",
    no_args_is_help=True,
    add_completion=False,
)

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


@contextmanager
def _purchase_store(as_of: str | None) -> Iterator[tuple[Store, date]]:
    """The store, open while the command works (its SQL engine summarizes the purchases),
    and the day to work as of: ``--as-of`` or the day of the latest purchase."""
    from tailor.audience.rfm import as_day, last_purchase_day
    from tailor.cli import _workspace

    with _workspace() as ws:
        latest = last_purchase_day(ws.store)
        if latest is None:
            raise typer.BadParameter(
                "the store holds no purchases of customers with analytics consent: import "
                "purchase events first (`tailor import events FILE`)"
            )
        if as_of is None:
            day = latest
        else:
            try:
                day = as_day(as_of)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--as-of") from None
        yield ws.store, day


def _load_model(model: Path):
    from tailor.audience.model import AudienceModel

    try:
        return AudienceModel.load(model)
    except (ValueError, OSError) as exc:
        raise _fail(exc) from None


def _score(fitted, store: Store, day: date) -> pa.Table:
    try:
        return fitted.score(store, day)
    except ValueError as exc:
        raise _fail(exc) from None


def _register(store: Store, model: Path, fitted, described: dict):
    """Record the saved model in the registry (engine ``audience``)."""
    from tailor.lifecycle import registry

    return registry.register(
        store,
        "audience",
        model,
        config=described["config"],
        data_window={"to": described["as_of"], "customers": described["customers"]},
        metrics={"bgnbd_log_likelihood": fitted.bgnbd_.log_likelihood_},
    )


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
    intervals: Annotated[
        bool,
        typer.Option(
            "--intervals",
            help="Also fit the Bayesian BG/NBD and Gamma-Gamma (NumPyro; pip install "
            "'tailor[bayes]'): scores then carry 90% credible intervals of P(alive), expected "
            "purchases and lifetime value. Adds about a minute.",
        ),
    ] = False,
) -> None:
    """Fit the BG/NBD, Gamma-Gamma, churn and cluster models on the stored purchases.

    The churn model learns from the customers as they were HORIZON days before --as-of and
    whether they bought in the HORIZON days that followed. Example:

        tailor audience fit --model models/audience --horizon 90 --intervals
    """
    from tailor.audience.model import AudienceConfig, AudienceModel

    try:
        config = AudienceConfig(
            horizon_days=horizon,
            clv_periods=clv_months,
            discount_rate=discount,
            intervals=intervals,
        )
        work = "the audience models" + (" and their posteriors (NUTS)" if intervals else "")
        with _purchase_store(as_of) as (store, day):
            with err.status(f"fitting {work} ..."):
                fitted = AudienceModel(config).fit(store, day)
            try:
                fitted.save(model)
            except OSError as exc:
                raise _fail(
                    OSError(f"cannot write the model to {model}: {exc.strerror or exc}")
                ) from None
            described = fitted.describe()
            version = _register(store, model, fitted, described)
    except (ValueError, ImportError) as exc:
        raise _fail(exc) from None
    table = Table(title=f"audience model as of {day}: {described['customers']:,} customers")
    table.add_column("part")
    table.add_column("fitted")
    bgnbd = described["bgnbd"]
    table.add_row("BG/NBD", ", ".join(f"{k} = {v:.4g}" for k, v in bgnbd.items()))
    spend = described["gammagamma"]
    table.add_row("Gamma-Gamma", "-" if spend is None else ", ".join(
        f"{k} = {v:.4g}" for k, v in spend.items()))  # fmt: skip
    table.add_row("churn model", "LightGBM, calibrated" if described["churn_model"] else "-")
    for name, posterior in described["posteriors"].items():
        table.add_row(
            f"Bayesian {name}",
            ", ".join(
                f"{k} 90% in [{v['q05']:.4g}, {v['q95']:.4g}] (R-hat {v['r_hat']:.3f})"
                for k, v in posterior["parameters"].items()
            ),
        )
    for cluster in described["clusters"]["descriptions"]:
        table.add_row(
            f"cluster {cluster['cluster']}",
            f"{cluster['customers']:,} customers: {', '.join(cluster['distinguished_by'])}",
        )
    console.print(table)
    for note in described["notes"]:
        err.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"saved to {model}, registered as {version.version}")


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

    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise typer.BadParameter("write .parquet or .csv", param_hint="--out")
    fitted = _load_model(model)
    with _purchase_store(as_of) as (store, day):
        scores = _score(fitted, store, day)
        stored = store_scores(store, scores, day, datetime.now(UTC))
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
    fitted = _load_model(model)
    with _purchase_store(as_of) as (store, day):
        scores = _score(fitted, store, day)
        try:
            test = backtest(store, day, fitted.config.horizon_days)
        except ValueError as exc:
            err.print(f"[yellow]note:[/yellow] no back-test ({exc})")
            test = None
    try:
        page, twin = write_audience_report(audience_figures(scores, fitted.describe(), test), out)
    except OSError as exc:
        raise _fail(OSError(f"cannot write {out}: {exc.strerror or exc}")) from None
    console.print(f"wrote {page} and {twin}")
