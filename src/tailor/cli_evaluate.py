"""``tailor evaluate ...``: offline evaluation of the engines from the command line.

The lead CLI mounts :data:`app` as ``tailor evaluate``. The engines are imported when a
command runs, not when the CLI starts, so ``tailor --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tailor.errors import TailorError

if TYPE_CHECKING:
    from tailor.recommend import InteractionLog, Recommender
    from tailor.recommend.evaluation import Evaluation

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Evaluate the engines offline: tune on validation data, score once on test data.",
    no_args_is_help=True,
    add_completion=False,
)

DEFAULT_MODELS = "popularity,itemknn,ease,als,bpr"
"""The candidate models (``tailor.recommend.evaluation.DEFAULT_MODELS``), spelled for --models;
kept here as text so the help needs no engine import."""

TABLE_METRICS = (
    ("ndcg", "nDCG"),
    ("map", "MAP"),
    ("precision", "prec."),
    ("recall", "recall"),
    ("hit_rate", "hits"),
    ("coverage", "cover."),
)
"""(metric, column label) of the printed table; the HTML report explains each."""


class Protocol(StrEnum):
    """How the interactions are split into training and test rows."""

    random = "random"
    temporal = "temporal"
    leave_last_out = "leave-last-out"


@app.callback()
def _evaluate() -> None:
    """Evaluate the engines offline: tune on validation data, score once on test data."""


_RECOMMEND_HELP = (
    "Evaluate the recommendation models offline and write an HTML report.\n\n"
    "The interactions (the store's events of subjects with personalization consent, or "
    "--interactions FILE) are split by --protocol into training and test rows. Each model is "
    "tuned on a validation split carved out of the training rows (at most --budget settings), "
    "refitted on all training rows with its best setting and scored once on the test rows, so "
    "the test data chooses nothing. With at least two of ease, itemknn and als, a LightGBM "
    "hybrid over them is tuned and scored too (--no-hybrid skips it), and so is their blend: "
    "each user's scores divided by their spread and added with weights tuned on validation "
    "(--no-blend skips it).\n\n"
    "The report (--report) shows the metrics table, nDCG and MAP per model, nDCG and recall "
    "at k = 1..20, the per-user nDCG distribution and every tuning trial; a JSON file with the "
    "same figures is written beside it. --save-model refits the model with the best "
    "validation nDCG (not test: the test rows choose nothing) with its tuned setting on ALL "
    "interactions and saves it, with its tuning record, for serving.\n\n"
    "Example: tailor evaluate recommend --interactions ratings.csv --user-col user "
    "--item-col movie --time-col ts --models ease,itemknn,als --save-model models/best.npz"
)


@app.command("recommend", help=_RECOMMEND_HELP)
def recommend(
    protocol: Annotated[
        Protocol,
        typer.Option(
            "--protocol",
            help="random: 25% of each user's interactions are the test; temporal: the latest "
            "20% in time are the test (as in production); leave-last-out: each user's "
            "latest interaction is the test.",
        ),
    ] = Protocol.temporal,
    interactions: Annotated[
        Path | None,
        typer.Option(
            "--interactions",
            help="A CSV or Parquet file with one interaction per row, instead of the "
            "store's events.",
            rich_help_panel="Data",
        ),
    ] = None,
    user_col: Annotated[
        str, typer.Option("--user-col", help="User id column.", rich_help_panel="Data")
    ] = "user_id",
    item_col: Annotated[
        str, typer.Option("--item-col", help="Item id column.", rich_help_panel="Data")
    ] = "item_id",
    time_col: Annotated[
        str,
        typer.Option(
            "--time-col",
            help="Time column: a timestamp or epoch number.",
            rich_help_panel="Data",
        ),
    ] = "timestamp",
    weight_col: Annotated[
        str | None,
        typer.Option(
            "--weight-col",
            help="Optional confidence column (numbers >= 0); without it every row counts 1.",
            rich_help_panel="Data",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of the ranked lists.")] = 10,
    budget: Annotated[
        int,
        typer.Option("--budget", min=1, help="Settings tried per model, at most, on validation."),
    ] = 24,
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated models to evaluate.")
    ] = DEFAULT_MODELS,
    no_hybrid: Annotated[
        bool, typer.Option("--no-hybrid", help="Do not tune and score the hybrid reranker.")
    ] = False,
    no_blend: Annotated[
        bool, typer.Option("--no-blend", help="Do not tune and score the blend of the models.")
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the random split and the hybrid's own splits.")
    ] = 42,
    report: Annotated[
        Path,
        typer.Option(
            "--report",
            help="HTML report to write; the JSON twin goes beside it with the suffix .json.",
            rich_help_panel="Output",
        ),
    ] = Path("reports/recommend.html"),
    save_model: Annotated[
        Path | None,
        typer.Option(
            "--save-model",
            help="Refit the model with the best validation nDCG, with its tuned setting, on "
            "ALL interactions and save it here (.npz; load it with "
            "tailor.recommend.load_model).",
            rich_help_panel="Output",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="No progress messages (the result table still prints)."),
    ] = False,
) -> None:
    """Evaluate the recommendation models offline (the help text is ``_RECOMMEND_HELP``)."""
    from tailor.recommend.tuning import GRIDS

    names = [name.strip() for name in models.split(",") if name.strip()]
    unknown = [name for name in names if name not in GRIDS]
    if not names or unknown:
        what = f"unknown model(s) {', '.join(unknown)}" if unknown else "no model named"
        _exit(f"--models: {what}; choose from {', '.join(GRIDS)} (comma-separated)")
    if report.suffix.lower() == ".json":
        _exit("--report: give the HTML file (e.g. reports/recommend.html); the JSON goes beside")
    # Checked before the evaluation, which can take minutes, rather than after it.
    _check_output("--report", report)
    if save_model is not None:
        _check_output("--save-model", save_model)
    if interactions is None:
        others = {
            "--user-col": user_col != "user_id",
            "--item-col": item_col != "item_id",
            "--time-col": time_col != "timestamp",
            "--weight-col": weight_col is not None,
        }
        given = [option for option, set_ in others.items() if set_]
        if given:
            _exit(
                f"{', '.join(given)}: name columns of --interactions FILE; the store's events "
                "have fixed columns (pass --interactions, or drop the option)"
            )

    with _steps(enabled=not quiet) as say:
        try:
            say("reading interactions")
            if interactions is not None:
                log, source = _read_file(interactions, user_col, item_col, time_col, weight_col)
            else:
                log, source = _read_store()
            evaluation = _evaluate_log(
                log,
                protocol=protocol.value,
                k=k,
                budget=budget,
                models=names,
                hybrid=not no_hybrid,
                blend=not no_blend,
                seed=seed,
                progress=say,
            )
            say("writing the report")
            html_path, json_path = _write(evaluation, report, source)
            saved = None
            if save_model is not None:
                say(f"refitting {evaluation.chosen} on all {len(log):,} interactions")
                saved = save_chosen(evaluation, log, save_model, seed=seed)
        except (TailorError, ValueError) as exc:
            _exit(str(exc))
        except OSError as exc:
            # Reading is covered above (read_interactions says which file); this is writing.
            _exit(f"cannot write the output ({exc}): check --report and --save-model")
    _print_table(evaluation)
    console.print(f"report: {html_path}\nfigures: {json_path}")
    if saved is not None:
        console.print(
            f"model: {saved} ({evaluation.chosen}, best on validation, trained on all interactions)"
        )


def _check_output(option: str, path: Path) -> None:
    """Exit with a message naming ``option`` unless ``path`` can be written as a file."""
    if path.name in ("", ".", "..") or path.is_dir():
        _exit(f"{option}: {path} is a folder; give a file path")
    parent = path.parent.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        _exit(f"{option}: cannot write {path}: {parent} is not a writable folder")


def _exit(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def _steps(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner on the current step; each finished step is printed with its duration."""
    if not enabled:
        yield lambda message: None
        return
    current: dict[str, Any] = {}
    with err.status("starting") as status:

        def say(message: str) -> None:
            finish()
            current.update(message=message, started=time.perf_counter())
            status.update(escape(message))

        def finish() -> None:
            if current:
                took = time.perf_counter() - current["started"]
                message = escape(current["message"])
                err.print(f"[green]✓[/green] {message} ({took:.1f}s)", highlight=False)
                current.clear()

        yield say
        finish()


def _read_file(
    path: Path, user_col: str, item_col: str, time_col: str, weight_col: str | None
) -> tuple[InteractionLog, dict[str, Any]]:
    from tailor.recommend.interaction_files import read_interactions

    log = read_interactions(
        path, user_col=user_col, item_col=item_col, time_col=time_col, weight_col=weight_col
    )
    return log, {"source": str(path)}


def _read_store() -> tuple[InteractionLog, dict[str, Any]]:
    # Imported here: tailor.cli imports this module to mount it.
    from tailor.cli import _workspace
    from tailor.recommend import EventWeights, InteractionLog
    from tailor.recommend.interactions import INTERACTION_TYPES

    with _workspace() as ws:
        # Only subjects who allow personalization may shape a model, evaluation included.
        events = ws.store.read_events(
            purpose="personalization",
            event_types=list(INTERACTION_TYPES),
            columns=["subject_id", "item_id", "event_type", "occurred_at", "value", "quantity"],
        )
        # The report travels: a password in the store's URL must not travel with it.
        store = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", str(ws.settings.store))
        source = {"source": f"store {store}"}
    log = InteractionLog.from_events(events, EventWeights())
    if len(log) == 0:
        raise ValueError(
            "the store holds no interactions (views, clicks, carts, purchases or ratings) of "
            "subjects with personalization consent: import events first with "
            "`tailor import events FILE`, or pass --interactions FILE"
        )
    return log, source


def _evaluate_log(log: InteractionLog, **options: Any) -> Evaluation:
    from tailor.recommend.evaluation import evaluate_recommenders

    return evaluate_recommenders(log, **options)


def _window(log: InteractionLog) -> dict[str, Any]:
    """The data a model or report was built from: rows and the first and last event time."""
    times = log.time
    window: dict[str, Any] = {"rows": len(log), "users": log.n_users, "items": log.n_items}
    if len(times) and times.max() > 0:
        for key, value in (("first_event", times.min()), ("last_event", times.max())):
            window[key] = datetime.fromtimestamp(int(value) / 1000, UTC).isoformat()
    return window


def _write(evaluation: Evaluation, report: Path, source: dict[str, Any]) -> tuple[Path, Path]:
    from tailor.evaluate.report import write_report

    figures = evaluation.figures() | {"data_window": source | _window(evaluation.splits.log)}
    return write_report(figures, evaluation.reports, report)


def save_chosen(evaluation: Evaluation, log: InteractionLog, path: Path, *, seed: int = 42) -> Path:
    """Refit the chosen model (:attr:`Evaluation.chosen`, best on validation) with its tuned
    setting on every interaction of ``log`` and save it.

    The test rows only scored the model; once it is chosen, they are worth training on. The
    hybrid's ranker must learn on rows its candidate models were not fitted on, so it gets a
    split of all rows by the evaluation's protocol (fit part, held-back part) and its
    candidate models are then refitted on everything.

    Parameters
    ----------
    evaluation : Evaluation
        The result of ``evaluate_recommenders`` on ``log``.
    log : InteractionLog
        All interactions (the same codes the evaluation used).
    path : Path
        The ``.npz`` file to write.
    seed : int
        Seed of the hybrid's split (the random protocol only).

    Returns
    -------
    Path
        The file written. The model's ``tuning_`` holds the tuning record: protocol, k, the
        validation and test figures, the number of settings tried and the data window.
    """
    from tailor.recommend import Recommender
    from tailor.recommend.evaluation import train_mask
    from tailor.recommend.hybrid import Hybrid

    name = evaluation.chosen
    chosen = evaluation.reports[name]
    model: Recommender
    if name == "hybrid":
        # With the features the evaluated hybrid had (the time features unless turned off).
        evaluated = evaluation.fitted.get("hybrid")
        model = Hybrid(**chosen.params).fit_split(
            log,
            train_mask(log, evaluation.protocol, seed),
            times=bool(getattr(evaluated, "uses_times_", False)),
        )
    else:
        model = Recommender._registry[name](**chosen.params)
        needs = {"log": log} if "log" in model.needs else {}
        model.fit(log.matrix(), **needs)
    model.tuning_ = _plain_json(
        {
            "model": name,
            "protocol": evaluation.protocol,
            "k": evaluation.k,
            "validation_ndcg": chosen.validation_ndcg,
            "settings_tried": len(chosen.trials),
            "test_metrics": chosen.metrics,
            "split": evaluation.splits.summary(),
            "data_window": _window(log),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return model.save(path)


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    # A round trip through JSON turns NumPy scalars into plain numbers (the header is JSON).
    return json.loads(json.dumps(value, default=lambda v: v.item()))


def _print_table(evaluation: Evaluation) -> None:
    k = evaluation.k
    data = evaluation.splits.summary()
    table = Table(
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        title=f"test metrics at k={k}, {evaluation.protocol} split",
        caption=f"{data['train']:,} train ({data['validation']:,} of them for validation) / "
        f"{data['test']:,} test interactions; valid. = validation nDCG; * best on test; "
        "+ chosen: best on validation (what --save-model saves)",
    )
    table.add_column("model", no_wrap=True)
    for _, label in TABLE_METRICS:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("valid.", justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    for name, report in evaluation.reports.items():
        best = name == evaluation.best
        marks = ("*" if best else "") + ("+" if name == evaluation.chosen else "")
        validation = report.validation_ndcg
        table.add_row(
            f"{name} {marks}" if marks else name,
            *(f"{report.metrics[metric]:.3f}" for metric, _ in TABLE_METRICS),
            "–" if validation is None else f"{validation:.3f}",
            f"{report.fit_s:.2f}",
            style="bold green" if best else None,
        )
    console.print(table)
