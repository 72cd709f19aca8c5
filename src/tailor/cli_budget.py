"""``tailor budget ...``: fit a media-mix model, plan a budget, back-test the plans.

The lead CLI mounts :data:`app` as ``tailor budget``. Data come from the ``ad_spend`` and
``ad_result`` events of the store, or from a CSV with one row per period (``--csv``); every
command calls :mod:`tailor.budget.service`, which the API and the worker share.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tailor.cli_errors import fail as _fail

if TYPE_CHECKING:
    from tailor.budget.data import MediaData
    from tailor.budget.lift import LiftTests
    from tailor.budget.model import MediaMixModel, MMMConfig

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Advertising budget: what each channel's spend brings (a Bayesian media-mix model), "
    "how to split the next budget, and how that split would have done.",
    no_args_is_help=True,
    add_completion=False,
)

DATA = "Data (default: the ad_spend and ad_result events of the store)"
ModelDir = Annotated[
    Path,
    typer.Option("--model", help="Folder of the budget model (written by `tailor budget fit`)."),
]
Csv = Annotated[
    Path | None,
    typer.Option(
        "--csv",
        help="Read a CSV with one row per period instead of the store's events.",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
DateCol = Annotated[
    str | None,
    typer.Option(
        "--date-col",
        help="The CSV's date column (2024-01-29 or 1/29/2024).",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
TargetCol = Annotated[
    str | None,
    typer.Option(
        "--target-col",
        help="The CSV's target column (conversions or revenue per period).",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
SpendCols = Annotated[
    str | None,
    typer.Option(
        "--spend-cols",
        help="The CSV's spend columns, one per channel, comma-separated: search,social,tv.",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
ControlCols = Annotated[
    str | None,
    typer.Option(
        "--control-cols",
        help="Other regressors (promotions, holidays), comma-separated: the CSV's columns, or "
        "numeric properties of the ad_result events.",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
TargetScale = Annotated[
    float,
    typer.Option(
        "--target-scale",
        help="Divide the CSV's target by this (1000 for data kept in thousands).",
        rich_help_panel=DATA,
    ),
]
Target = Annotated[
    str,
    typer.Option(
        "--target",
        help="From the events: sum 'conversions' or 'revenue' of the ad_result events.",
        rich_help_panel=DATA,
    ),
]
Frequency = Annotated[
    str,
    typer.Option(
        "--frequency",
        help="From the events: weekly (W) or daily (D) periods. A CSV's is read from its dates.",
        rich_help_panel=DATA,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the answer as JSON only.")]


def _columns(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _load(
    csv: Path | None,
    date_col: str | None,
    target_col: str | None,
    spend_cols: str | None,
    control_cols: str | None,
    target_scale: float,
    target: str,
    frequency: str,
) -> MediaData:
    """The media data from ``--csv`` or from the store's events (a user's mistake: one line,
    exit 1)."""
    from tailor.budget.service import CsvSource, load_data

    try:
        if csv is not None:
            missing = [
                name
                for name, value in (
                    ("--date-col", date_col),
                    ("--target-col", target_col),
                    ("--spend-cols", spend_cols),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"--csv needs {', '.join(missing)} too (the columns to read)")
            source = CsvSource(
                path=csv,
                date_col=str(date_col),
                target_col=str(target_col),
                spend_cols=_columns(spend_cols),
                control_cols=_columns(control_cols),
                target_scale=target_scale,
            )
            return load_data(csv=source)
        if frequency not in ("W", "D"):
            raise ValueError(f"--frequency: {frequency!r}; use W (weeks) or D (days)")
        from tailor.cli import _workspace

        with _workspace() as ws:
            return load_data(
                store=ws.store,
                target=target,
                frequency=frequency,
                control_keys=_columns(control_cols),
            )
    except (ValueError, OSError) as exc:
        raise _fail(exc) from None


def _model(folder: Path) -> MediaMixModel:
    from tailor.budget.service import load_model

    try:
        return load_model(folder)
    except (ValueError, OSError, ImportError) as exc:
        raise _fail(exc) from None


@app.command("fit")
def fit(
    model: ModelDir = Path("models/budget"),
    csv: Csv = None,
    date_col: DateCol = None,
    target_col: TargetCol = None,
    spend_cols: SpendCols = None,
    control_cols: ControlCols = None,
    target_scale: TargetScale = 1.0,
    target: Target = "conversions",
    frequency: Frequency = "W",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="map: the posterior mode and a Laplace approximation (seconds; for frequent "
            "re-plans). nuts: the full posterior by NUTS, with R-hat and effective draws "
            "(tens of seconds).",
        ),
    ] = "map",
    warm_start: Annotated[
        bool,
        typer.Option(
            "--warm-start",
            help="MAP only: start from the model already in --model (a re-fit on a few more "
            "weeks takes a fraction of the time).",
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write the HTML report (its .json twin beside it): parameters, "
            "contributions, response curves, a plan and a back-test.",
            show_default=False,
        ),
    ] = None,
    beta_prior: Annotated[
        str,
        typer.Option(
            "--beta-prior",
            help="equal: every channel's effect gets the same prior (PyMC-Marketing's "
            "default). spend_share: a prior in proportion to the channel's share of the "
            "spend, as PyMC-Marketing's guide recommends for many channels.",
        ),
    ] = "equal",
    lift_tests: Annotated[
        Path | None,
        typer.Option(
            "--lift-tests",
            help="A CSV of experiments (channel,x,delta_x,delta_y,sigma: spend per period "
            "before, its change, the measured change of the target per period and its "
            "standard error) that calibrate the channels' curves; delta_y and sigma are "
            "divided by --target-scale like the target. A warm start keeps the saved "
            "model's tests unless new ones are given.",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        bool,
        typer.Option(
            "--select",
            help="First choose the carry-over length (4, 8 or 12 periods) and the trend's "
            "flexibility (0 or 5 changepoints) by the out-of-sample error of 3 rolling "
            "8-period forecasts (MAP fits; a minute or two).",
        ),
    ] = False,
) -> None:
    """Fit the media-mix model (adstock and saturation per channel, trend, season, controls)
    and save it to --model; the folder is replaced only once the new model is written.

    Examples:

        tailor budget fit --model models/budget --report budget.html

        tailor budget fit --csv mmm.csv --date-col date_week --target-col y
        --spend-cols x1,x2 --control-cols event_1,event_2 --method nuts --model models/mmm

        tailor budget fit --model models/budget --lift-tests geo-holdouts.csv --method nuts
    """
    from tailor.budget.lift import read_lift_tests
    from tailor.budget.model import MMMConfig
    from tailor.budget.service import fit_model, write_report

    if report is not None and report.suffix != ".html":
        raise _fail(f"--report: {report} must end in .html (its .json twin goes beside it)")
    if select and warm_start:
        raise _fail("--select and --warm-start: a warm start keeps the saved structure; use one")
    data = _load(csv, date_col, target_col, spend_cols, control_cols, target_scale, target,
                 frequency)  # fmt: skip
    tests = None
    if lift_tests is not None:
        try:
            tests = read_lift_tests(lift_tests, target_scale=target_scale)
            tests.codes(data.channels)
        except ValueError as exc:
            raise _fail(f"--lift-tests: {exc}") from None
    try:
        base = MMMConfig(beta_prior=beta_prior)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _fail(f"--beta-prior: {exc}") from None
    config = _selected(data, base, tests) if select else (None if beta_prior == "equal" else base)
    try:
        with err.status(f"fitting the media-mix model ({method}) on {data.periods} periods ..."):
            fitted = fit_model(
                data,
                model,
                method=method,  # type: ignore[arg-type]
                warm_start=warm_start,
                config=config,
                lift_tests=tests,
            )
    except (ValueError, OSError, ImportError) as exc:
        raise _fail(exc) from None
    if fitted.note:
        err.print(f"[yellow]note:[/yellow] {fitted.note}")
    console.print(roi_table(fitted.model, data))
    lifts = lift_table(fitted.model)
    if lifts is not None:
        console.print(lifts)
    for problem in fitted.model.problems():
        err.print(f"[yellow]warning:[/yellow] {problem}")
    how = "warm-started, " if fitted.warm_started else ""
    console.print(
        f"saved to {model} ({method}, {how}{fitted.model.fit_seconds_:.1f} s); plan with "
        f"`tailor budget plan --model {model} --budget AMOUNT --horizon 4`"
    )
    if report is not None:
        try:
            with err.status("writing the report (a plan and a back-test) ..."):
                page, twin = write_report(fitted.model, data, report)
        except (ValueError, OSError) as exc:
            raise _fail(exc) from None
        console.print(f"wrote {page} and {twin}")


def _selected(data: MediaData, base: MMMConfig, lift_tests: LiftTests | None) -> MMMConfig:
    """The structure chosen by rolling-origin forecasts (fitted with the lift tests, as the
    final fit is), its table printed."""
    from tailor.budget.evaluation import select_config

    try:
        with err.status("choosing the carry-over length and trend by rolling forecasts ..."):
            config, scores = select_config(base, data, lift_tests=lift_tests)
    except (ValueError, ImportError) as exc:
        raise _fail(exc) from None
    table = Table(
        title="structure chosen by out-of-sample MAPE (the simplest within one standard error "
        "of the best)",
        title_justify="left",
    )
    for column in ("l_max", "trend changepoints", "rolling MAPE", "standard error", ""):
        table.add_column(column, justify="right")
    for score in scores:
        chosen = (score["l_max"], score["trend_changepoints"]) == (
            config.l_max,
            config.trend_changepoints,
        )
        table.add_row(
            str(score["l_max"]),
            str(score["trend_changepoints"]),
            f"{score['cv_mape']:.4f}",
            f"{score['cv_se']:.4f}",
            "chosen" if chosen else "",
        )
    console.print(table)
    return config


@app.command("evaluate")
def evaluate(
    model: ModelDir = Path("models/budget"),
    csv: Csv = None,
    date_col: DateCol = None,
    target_col: TargetCol = None,
    spend_cols: SpendCols = None,
    control_cols: ControlCols = None,
    target_scale: TargetScale = 1.0,
    target: Target = "conversions",
    frequency: Frequency = "W",
    holdout: Annotated[
        int, typer.Option("--holdout", min=1, help="Periods held out at the end.")
    ] = 8,
    folds: Annotated[
        int,
        typer.Option("--folds", min=1, help="Rolling origins (each forecasts --holdout periods)."),
    ] = 3,
    as_json: AsJson = False,
) -> None:
    """Out-of-sample error of the saved model's structure: MAP fits on the data up to each of
    --folds rolling origins, each forecasting the next --holdout periods with the spend that
    was made, against ridge regression on the same transforms (the peer an analyst would
    build). The fits take the saved model's lift tests, as it was fitted. The saved model
    itself is not changed. Example:

        tailor budget evaluate --model models/budget --holdout 8 --folds 3
    """
    from tailor.budget.evaluation import rolling_origin

    fitted = _model(model)
    data = _load(csv, date_col, target_col, spend_cols,
                 control_cols or ",".join(fitted.control_names_), target_scale, target,
                 frequency)  # fmt: skip
    try:
        with err.status(f"{folds} rolling forecasts of {holdout} periods ..."):
            results = rolling_origin(
                fitted.config, data, folds=folds, horizon=holdout, lift_tests=fitted.lift_tests_
            )
    except (ValueError, ImportError) as exc:
        raise _fail(exc) from None
    rows = [
        {
            "fold": i + 1,
            "mape": r.mape,
            "ridge_mape": r.ridge_mape,
            "coverage94": r.coverage,
        }
        for i, r in enumerate(results)
    ]
    if as_json:
        typer.echo(json.dumps({"folds": rows}, indent=1))
        return
    table = Table(title=f"forecasts of {holdout} periods, out of sample", title_justify="left")
    for column in ("fold", "MAPE", "ridge MAPE", "in 94% interval"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["fold"]),
            f"{row['mape']:.2%}",
            f"{row['ridge_mape']:.2%}",
            f"{row['coverage94']:.0%}",
        )
    console.print(table)


def roi_table(model: MediaMixModel, data: MediaData) -> Table:
    """Each channel's spend, contribution, ROI and carry-over (the CLI and the demo)."""
    summary = model.summary()
    table = Table(
        title=f"{data.target_name} from {data.dates[0]} to {data.dates[-1]} "
        f"({data.periods} periods)",
        title_justify="left",
    )
    for column in ("channel", "spend", "contribution", "ROI (94% interval)", "carry-over alpha"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    alpha = summary["alpha"]["mean"]
    for i, (name, r) in enumerate(model.roi(data).items()):
        table.add_row(
            name,
            f"{r['spend']:,.0f}",
            f"{r['contribution']:,.1f}",
            f"{r['roi']:.4g} [{r['roi_lo']:.3g}, {r['roi_hi']:.3g}]",
            f"{alpha[i]:.2f}",  # type: ignore[index]
        )
    return table


def lift_table(model: MediaMixModel) -> Table | None:
    """The lift tests against the fitted curves (None without tests)."""
    checks = model.lift_check()
    if not checks:
        return None
    table = Table(
        title="lift tests: measured change per period against the fitted curves",
        title_justify="left",
    )
    for column in ("channel", "spend", "measured ± se", "model (94% interval)", "z"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for t in checks:
        z = f"{t['z']:+.1f}"
        table.add_row(
            str(t["channel"]),
            f"{t['x']:,.0f} → {t['x'] + t['delta_x']:,.0f}",
            f"{t['measured']:,.4g} ± {t['sigma']:,.3g}",
            f"{t['model']:,.4g} [{t['model_lo']:,.3g}, {t['model_hi']:,.3g}]",
            f"[red]{z}[/red]" if abs(t["z"]) > 2 else z,
        )
    return table


def _pair(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{option} {text!r}: write CHANNEL=VALUE, e.g. {option} search=500:2000")
    return name.strip(), value.strip()


def _number(text: str, option: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{option}: {text!r} is not a finite number")
    return value


def _range(text: str, option: str) -> tuple[float | None, float | None]:
    low, sep, high = text.partition(":")
    if not sep:
        raise ValueError(f"{option}: {text!r}; write MIN:MAX (either may be empty), e.g. 500:2000")
    return _number(low.strip(), option), _number(high.strip(), option)


def plan_options(
    bound: list[str] | None, fixed: list[str] | None, relative_bounds: str | None
) -> dict[str, Any]:
    """``--bound``, ``--fixed`` and ``--relative-bounds`` as :func:`make_plan`'s options."""
    bounds = {}
    for text in bound or []:
        name, value = _pair(text, "--bound")
        bounds[name] = _range(value, f"--bound {name}")
    fixes = {}
    for text in fixed or []:
        name, value = _pair(text, "--fixed")
        number = _number(value, f"--fixed {name}")
        if number is None:
            raise ValueError(f"--fixed {name}: give the spend per period, e.g. {name}=1000")
        fixes[name] = number
    relative = None
    if relative_bounds is not None:
        low, high = _range(relative_bounds, "--relative-bounds")
        relative = (0.0 if low is None else low, math.inf if high is None else high)
    return {"bounds": bounds or None, "fixed": fixes or None, "relative_bounds": relative}


@app.command("plan")
def plan(
    model: ModelDir = Path("models/budget"),
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget", help="Total spend over the horizon, all channels.", show_default=False
        ),
    ] = None,
    horizon: Annotated[
        int, typer.Option("--horizon", help="Periods (the model's weeks or days) to plan.")
    ] = 4,
    bound: Annotated[
        list[str] | None,
        typer.Option(
            "--bound",
            help="CHANNEL=MIN:MAX spend per period, either may be empty (search=500:2000, "
            "tv=:10000); repeat for each channel.",
            rich_help_panel="Constraints",
            show_default=False,
        ),
    ] = None,
    fixed: Annotated[
        list[str] | None,
        typer.Option(
            "--fixed",
            help="CHANNEL=SPEND per period, not optimized (tv=5000); repeatable.",
            rich_help_panel="Constraints",
            show_default=False,
        ),
    ] = None,
    relative_bounds: Annotated[
        str | None,
        typer.Option(
            "--relative-bounds",
            help="LOW:HIGH times each channel's recent average spend per period (0.5:1.5 keeps "
            "every channel within half and one and a half times its current level).",
            rich_help_panel="Constraints",
            show_default=False,
        ),
    ] = None,
    target_cpa: Annotated[
        float | None,
        typer.Option(
            "--target-cpa",
            help="The most a conversion may cost on average: the budget becomes a cap, and less "
            "is spent where the full budget would cost more.",
            rich_help_panel="Constraints",
            show_default=False,
        ),
    ] = None,
    target_roas: Annotated[
        float | None,
        typer.Option(
            "--target-roas",
            help="The least return on ad spend (value / spend); instead of --target-cpa.",
            rich_help_panel="Constraints",
            show_default=False,
        ),
    ] = None,
    value_per_conversion: Annotated[
        float,
        typer.Option(
            "--value-per-conversion",
            help="Revenue per conversion, for --target-roas (1 when the target is revenue).",
            rich_help_panel="Constraints",
        ),
    ] = 1.0,
    quantile: Annotated[
        float | None,
        typer.Option(
            "--quantile",
            help="Maximize this quantile of the posterior's outcomes instead of the mean "
            "(0.1: a plan that holds up in a bad case).",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Split --budget over the channels for the next --horizon periods to get the most
    incremental conversions, counting the carry-over still in flight from recent spend.

    Bounds and fixed spends are per period. Example:

        tailor budget plan --model models/budget --budget 80000 --horizon 4
        --bound search=2000:8000 --fixed tv=5000 --target-cpa 60
    """
    from tailor.budget.service import make_plan

    if budget is None:
        raise _fail("--budget: give the total spend to plan over the horizon, e.g. --budget 50000")
    fitted = _model(model)
    try:
        options = plan_options(bound, fixed, relative_bounds)
        answer = make_plan(
            fitted,
            budget=budget,
            horizon=horizon,
            target_cpa=target_cpa,
            target_roas=target_roas,
            value_per_conversion=value_per_conversion,
            quantile=quantile,
            **options,
        )
    except (ValueError, ImportError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(answer, indent=1))
        return
    console.print(_plan_table(answer))
    reference, uplift = answer.get("reference"), answer.get("uplift")
    line = (
        f"expected {answer['conversions']:,.1f} incremental {answer['target']} for "
        f"{answer['spend']:,.2f}"
    )
    if answer["cpa"] is not None:
        line += f" (CPA {answer['cpa']:,.2f})"
    if reference is not None and uplift is not None:
        line += f"; the recent split would bring {reference['conversions']:,.1f} ({uplift:+.1%})"
    console.print(line)
    if answer["note"]:
        err.print(f"[yellow]note:[/yellow] {answer['note']}")
    if answer["status"] not in ("optimal", "fixed", "zero_budget"):
        err.print(f"[yellow]warning:[/yellow] solver status {answer['status']}")


def _plan_table(answer: dict[str, Any]) -> Table:
    unit = "week" if answer["frequency"] == "W" else "day"
    table = Table(
        title=f"plan for {answer['horizon']} {unit}s from {answer['first_period']}",
        title_justify="left",
    )
    reference = answer.get("reference")
    columns = ["channel", *([f"recent split per {unit}"] if reference else [])]
    columns += [f"plan per {unit}", "total", "incremental effect", "marginal ROI"]
    for column in columns:
        table.add_column(column, justify="left" if column == "channel" else "right")
    for i, name in enumerate(answer["channels"]):
        marginal = answer["marginal_roi"][i]
        table.add_row(
            name,
            *([f"{reference['per_period'][i]:,.2f}"] if reference else []),
            f"{answer['per_period'][i]:,.2f}",
            f"{answer['totals'][i]:,.2f}",
            f"{answer['contributions'][i]:,.1f}",
            "-" if marginal is None else f"{marginal:.4g}",
        )
    return table


@app.command("backtest")
def backtest(
    model: ModelDir = Path("models/budget"),
    csv: Csv = None,
    date_col: DateCol = None,
    target_col: TargetCol = None,
    spend_cols: SpendCols = None,
    control_cols: ControlCols = None,
    target_scale: TargetScale = 1.0,
    start: Annotated[
        int | None,
        typer.Option(
            "--start", help="First period to replay (0 is the data's first).", show_default=False
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", help="Replay the last N periods instead.", show_default=False),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Replay past periods with the optimizer's split of what was actually spent in each
    (each channel within 0.5 to 1.5 times its recent share) and compare the total channel
    effect under the model with the split actually used.

    An uplift under the model is what the model believes, not proof: a model that is wrong
    about a channel finds an uplift by moving money to it. Example:

        tailor budget backtest --model models/budget --last 13
    """
    from tailor.budget.service import events_target, run_backtest

    fitted = _model(model)
    data = _load(csv, date_col, target_col, spend_cols,
                 control_cols or ",".join(fitted.control_names_), target_scale,
                 events_target(fitted), fitted.frequency_)  # fmt: skip
    try:
        result = run_backtest(fitted, data, start=start, last=last)
    except (ValueError, ImportError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    table = Table(
        title=f"{len(result['actual'])} periods from {result['dates'][0]} replayed",
        title_justify="left",
    )
    for column in ("channel", "actual spend", "optimized spend"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    actual = [sum(row[i] for row in result["actual"]) for i in range(len(result["channels"]))]
    optimized = [
        sum(row[i] for row in result["allocations"]) for i in range(len(result["channels"]))
    ]
    for name, a, o in zip(result["channels"], actual, optimized, strict=True):
        table.add_row(name, f"{a:,.2f}", f"{o:,.2f}")
    console.print(table)
    uplift = result["predicted_uplift"]
    console.print(
        f"total channel effect under the model: {result['predicted_actual']:,.1f} as spent, "
        f"{result['predicted_optimized']:,.1f} optimized"
        + ("" if uplift is None else f" ({uplift:+.1%})")
    )
