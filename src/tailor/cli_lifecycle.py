"""``tailor worker`` (scheduled and triggered jobs) and ``tailor experiments ...`` (A/B tests,
canaries and bandits on live traffic)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tailor.cli_errors import fail as _fail

console = Console()

experiments_app = typer.Typer(
    help="A/B tests, canary rollouts and bandits between model versions on live traffic.",
    no_args_is_help=True,
    add_completion=False,
)

Name = Annotated[str, typer.Argument(help="The experiment's name.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Run the due jobs once, then exit (for cron).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --once: run every job now, due or not.")
    ] = False,
    job: Annotated[
        list[str] | None,
        typer.Option(
            "--job",
            help="Only this job (repeatable): retrain-recommend, experiments, kpis, drift.",
            show_default=False,
        ),
    ] = None,
    tick: Annotated[
        float, typer.Option("--tick", min=0.5, help="Seconds between looks for due jobs.")
    ] = 10.0,
) -> None:
    """Run the lifecycle's jobs on their cadence (the \\[lifecycle] table of tailor.toml):
    retrain each engine and promote only what is not worse on the latest holdout, step or roll
    back canaries, teach bandits, compute KPIs and alert, check drift (which triggers
    retraining).

    Several workers may run against one store: each job runs under a lease in the store, so
    never twice at once, and its schedule survives restarts. Example:

    tailor worker --once --job retrain-recommend
    """
    from tailor.cli import _workspace
    from tailor.config import get_settings
    from tailor.lifecycle.worker import JobRun, Worker

    def show(run: JobRun) -> None:
        colour = "green" if run.status == "ok" else "red"
        console.print(f"[{colour}]{run.job}[/{colour}] ({run.seconds:.1f} s): {run.message}")

    with _workspace() as ws:
        try:
            runner = Worker(ws, get_settings().lifecycle, only=job)
        except ValueError as exc:
            raise _fail(exc) from None
        if once:
            with console.status("running the due jobs"):
                runs = runner.run_due(force=force)
            for run in runs:
                show(run)
            if not runs:
                console.print("no job is due (see `tailor experiments jobs`; --force runs all)")
            raise typer.Exit(1 if any(r.status != "ok" for r in runs) else 0)
        stop = threading.Event()
        for sign in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sign, lambda *_: stop.set())
        console.print(
            f"worker {runner.owner}: jobs {', '.join(j.name for j in runner.jobs)}; "
            "Ctrl-C stops it after the running job"
        )
        runner.run_forever(tick_s=tick, stop=stop, on_run=show)


@experiments_app.command("start")
def start(
    spec: Annotated[
        Path,
        typer.Argument(
            help="A JSON file: {name, kind: ab|canary|bandit, arms: [{name, version, weight}], "
            "primary_metric, guardrails, window_days, min_users, steps}.",
            exists=True,
            dir_okay=False,
        ),
    ],
) -> None:
    """Start an experiment. The first arm is the control; versions are registry versions
    (`tailor models list`). Servers route traffic to it within a second. Example spec:

    {"name": "ease-vs-knn", "arms": [{"name": "control", "version": "itemknn-..."},
    {"name": "ease", "version": "ease-..."}], "primary_metric": "ctr"}
    """
    from tailor.cli import _workspace
    from tailor.lifecycle import rollouts

    if spec.stat().st_size > 100_000:
        raise _fail(ValueError(f"{spec}: an experiment spec is at most 100 kB"))
    with _workspace() as ws:
        try:
            experiment = rollouts.start(
                ws.store, rollouts.parse(spec.read_bytes(), source=str(spec))
            )
        except ValueError as exc:
            raise _fail(exc) from None
    arms = ", ".join(f"{a.name}={a.version}" for a in experiment.arms)
    console.print(
        f"started {experiment.kind} {experiment.name}: {arms}; weights {experiment.weights()}"
    )


@experiments_app.command("list")
def list_experiments(as_json: AsJson = False) -> None:
    """Every experiment with its kind, status, split and arms."""
    from tailor.cli import _workspace
    from tailor.lifecycle import rollouts

    with _workspace() as ws:
        try:
            found = rollouts.load_all(ws.store)
        except ValueError as exc:
            raise _fail(exc) from None
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in found], indent=2))
        return
    table = Table(title=f"{len(found)} experiment(s)")
    for column in ("name", "kind", "status", "split %", "arms", "started (UTC)"):
        table.add_column(column, overflow="fold")
    for e in found:
        weights = e.weights()
        split = "/".join(f"{100 * w / sum(weights):.0f}" for w in weights) if sum(weights) else "-"
        arms = ", ".join(f"{a.name}: {a.version}" for a in e.arms)
        table.add_row(e.name, e.kind, e.status, split, arms, f"{e.started_at:%Y-%m-%d %H:%M}")
    console.print(table)


@experiments_app.command("results")
def results(name: Name, as_json: AsJson = False) -> None:
    """The experiment's results so far: users per arm, each metric per arm, treatment against
    control (difference, 95% interval, p-value, probability to beat), the sample-ratio check,
    guardrails, warnings and the verdict."""
    from tailor.cli import _workspace
    from tailor.lifecycle import attribution, rollouts

    with _workspace() as ws:
        try:
            result = attribution.analyze(ws.store, rollouts.get(ws.store, name))
        except ValueError as exc:
            raise _fail(exc) from None
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    table = Table(title=f"{name}: {result.verdict}")
    for column in ("metric", "arm", "control", "treatment", "difference (95% CI)", "p", "P(beat)"):
        table.add_column(column, overflow="fold")
    for m in result.comparisons:
        c = m.comparison
        beat = "" if m.probability_to_beat is None else f"{m.probability_to_beat:.3f}"
        table.add_row(
            m.metric,
            m.arm,
            f"{c.control:.4g}",
            f"{c.treatment:.4g}",
            f"{c.difference:+.4g} [{c.low:+.4g}, {c.high:+.4g}]",
            f"{c.p_value:.3g}",
            beat,
        )
    console.print(table)
    console.print("users: " + ", ".join(f"{a} {n}" for a, n in result.users.items()))
    if result.srm_p_value is not None:
        state = "[red]ALARM[/red]" if result.srm_alarm else "ok"
        console.print(f"sample ratio: p = {result.srm_p_value:.3g} ({state})")
    for guardrail in result.guardrails:
        mark = "[red]broken[/red]" if guardrail["broken"] else "holds"
        console.print(
            f"guardrail {guardrail['metric']} ({guardrail['arm']}): {mark}: {guardrail['reason']}"
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@experiments_app.command("stop")
def stop(
    name: Name,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in its history.")] = "",
) -> None:
    """Stop routing traffic by this experiment (every user gets the served model again); its
    results stay readable."""
    from tailor.cli import _workspace
    from tailor.lifecycle import rollouts

    with _workspace() as ws:
        try:
            rollouts.stop(ws.store, name, reason=reason or "stopped by hand")
        except ValueError as exc:
            raise _fail(exc) from None
    console.print(f"stopped {name}")


@experiments_app.command("jobs")
def jobs(as_json: AsJson = False) -> None:
    """The worker's jobs: when each runs next, who holds it, how its last run ended."""
    from tailor.cli import _workspace

    with _workspace() as ws:
        rows = ws.store.jobs()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} job(s)")
    for column in ("job", "next run (UTC)", "held by", "last status", "runs", "last message"):
        table.add_column(column, overflow="fold")
    for row in rows:
        nxt = row["next_run_at"]
        table.add_row(
            row["name"],
            f"{nxt:%Y-%m-%d %H:%M}" if nxt else "now",
            row["lease_owner"] or "",
            row["last_status"] or "",
            str(row["runs"]),
            row["last_message"] or "",
        )
    console.print(table)
