"""The ``tailor`` command line: one sub-app per domain, errors without tracebacks."""

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailor.cli_errors import fail as _fail
from tailor.cli_evaluate import app as evaluate_app
from tailor.config import ApiSettings, Settings, get_settings
from tailor.errors import ConfigError, ImportRejectedError, TailorError
from tailor.events.erasure import erase, parse_duration, purge
from tailor.events.importer import ImportReport, import_file, import_table
from tailor.events.mapping import load_mapping
from tailor.workspace import Workspace, open_workspace

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="tailor: one event log in, personalization decisions out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(
    help="Import events, entities or a public dataset into the store.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


def _simulate_app() -> typer.Typer:
    from tailor.cli_simulate import app as simulate

    return simulate


app.add_typer(_simulate_app(), name="simulate", help="Generate data with known ground truth.")
app.add_typer(evaluate_app, name="evaluate", help="Evaluate the engines offline.")


def _audience_app() -> typer.Typer:
    from tailor.cli_audience import app as audience

    return audience


app.add_typer(
    _audience_app(), name="audience", help="Customer segments, churn risk and lifetime value."
)


def _budget_app() -> typer.Typer:
    from tailor.cli_budget import app as budget

    return budget


app.add_typer(
    _budget_app(), name="budget", help="Advertising budget: media-mix model, plan, back-test."
)


def _devices_app() -> typer.Typer:
    from tailor.cli_devices import app as devices

    return devices


def _edge_app() -> typer.Typer:
    from tailor.cli_edge import edge_app

    return edge_app


app.add_typer(
    _devices_app(),
    name="devices",
    help="Connected devices: learned schedules, occupancy, insights, ONNX export, MQTT.",
)
app.add_typer(
    _edge_app(), name="edge", help="Run a home's exported decision model on the device, offline."
)


def _serve_command():
    from tailor.cli_serve import SERVE_HELP, serve

    return app.command("serve", help=SERVE_HELP)(serve)


_serve_command()


def _keys_app() -> typer.Typer:
    from tailor.cli_keys import app as keys

    return keys


app.add_typer(_keys_app(), name="keys", help="Create, list and revoke HTTP API keys.")


def _models_app() -> typer.Typer:
    from tailor.cli_models import app as models

    return models


app.add_typer(_models_app(), name="models", help="The model registry: versions and aliases.")


def _monitor_app() -> typer.Typer:
    from tailor.cli_monitor import app as monitor

    return monitor


app.add_typer(_monitor_app(), name="monitor", help="Drift of the features the engines learn from.")


def _lifecycle() -> tuple[typer.Typer, object]:
    from tailor.cli_lifecycle import experiments_app, worker

    return experiments_app, worker


_experiments_app, _worker = _lifecycle()
app.add_typer(_experiments_app, name="experiments", help="A/B tests, canaries and bandits.")
app.command("worker")(_worker)


@contextmanager
def _workspace(create: bool = False) -> Iterator[Workspace]:
    try:
        workspace = open_workspace(get_settings(), create=create)
    except (TailorError, ValueError) as exc:
        raise _fail(exc) from exc
    try:
        yield workspace
    finally:
        workspace.close()


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, rows: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], advance=rows, total=total)

        yield update


def _print_report(report: ImportReport) -> None:
    line = (
        f"{report.source} → {report.target}: {report.rows_read:,} read, {report.written:,} written"
    )
    if report.duplicates:
        line += f", {report.duplicates:,} already stored"
    if report.erased_skipped:
        line += f", {report.erased_skipped:,} of erased subjects skipped"
    if report.rejected:
        line += f", {report.rejected:,} rejected → {report.quarantine}"
    console.print(line + f" ({report.seconds:.1f}s)")


QuarantineOpt = Annotated[
    Path | None,
    typer.Option(
        "--quarantine",
        help="Import the valid rows and write rejected ones (line, reason, fields) to this CSV. "
        "Without it, one bad row rejects the whole file.",
        rich_help_panel="Bad rows",
    ),
]
MapOpt = Annotated[
    Path | None,
    typer.Option(
        "--map",
        help="TOML column mapping ([columns], [constants], [values], "
        "[options]); see README, 'Importing'.",
    ),
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from the suffix).")
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress.")]


def _import(
    file: Path,
    entity: str | None,
    mapping: Path | None,
    quarantine: Path | None,
    file_format: str | None,
    progress: bool,
) -> None:
    with _workspace() as ws:
        settings = ws.settings
        try:
            loaded = load_mapping(mapping) if mapping else None
            with _progress(progress) as update:
                report = import_file(
                    ws.store,
                    file,
                    pseudonymizer=ws.pseudonymizer,
                    entity=entity,
                    mapping=loaded,
                    quarantine=quarantine,
                    file_format=file_format,  # type: ignore[arg-type]
                    max_record_bytes=settings.imports.max_record_bytes,
                    batch_rows=settings.imports.batch_rows,
                    progress=update,
                )
        except ImportRejectedError as exc:
            err.print(f"[red]rejected:[/red] {exc}")
            raise typer.Exit(1) from exc
        except (TailorError, ValueError) as exc:
            raise _fail(exc) from exc
        _print_report(report)


@import_app.command("events")
def import_events(
    file: Annotated[Path, typer.Argument(help="A .csv, .jsonl or .parquet file of events.")],
    map: MapOpt = None,
    quarantine: QuarantineOpt = None,
    format: FormatOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Import events. Ids are pseudonymized; an event_id already stored is skipped."""
    _import(file, None, map, quarantine, format, progress)


def _entity_command(kind: str) -> None:
    def command(
        file: Annotated[Path, typer.Argument(help=f"A .csv, .jsonl or .parquet file of {kind}.")],
        map: MapOpt = None,
        quarantine: QuarantineOpt = None,
        format: FormatOpt = None,
        progress: ProgressOpt = True,
    ) -> None:
        _import(file, kind, map, quarantine, format, progress)

    command.__doc__ = (
        f"Insert or update {kind} by key; columns missing from the file keep their values."
    )
    import_app.command(kind)(command)


for _kind in ("users", "items", "devices"):
    _entity_command(_kind)


def import_dataset_into(ws: Workspace, name: str, progress: bool) -> list[ImportReport]:
    """Load a public dataset or the simulator's output and import it in one transaction."""
    from tailor.datasets.registry import load_dataset

    dataset = load_dataset(name)
    reports = []
    with _progress(progress) as update, ws.store.transaction():
        for kind, table in dataset.entities().items():
            reports.append(
                import_table(
                    ws.store,
                    table,
                    pseudonymizer=ws.pseudonymizer,
                    entity=kind,
                    label=f"{name}:{kind}",
                    progress=update,
                )
            )
        reports.append(
            import_table(
                ws.store,
                dataset.events,
                pseudonymizer=ws.pseudonymizer,
                label=f"{name}:events",
                progress=update,
            )
        )
    return reports


@import_app.command("dataset")
def import_dataset(
    name: Annotated[
        str,
        typer.Argument(
            help="movielens-100k, online-retail-ii, cdnow, "
            "cdnow-sample, open-bandit-random, open-bandit-bts, "
            "media-mix"
        ),
    ],
    progress: ProgressOpt = True,
) -> None:
    """Import a public dataset from ../shared/data (or $TAILOR_DATA) as events and entities."""
    with _workspace() as ws:
        try:
            reports = import_dataset_into(ws, name, progress)
        except ImportRejectedError as exc:
            err.print(f"[red]rejected:[/red] {exc}")
            raise typer.Exit(1) from exc
        except (TailorError, ValueError, FileNotFoundError) as exc:
            raise _fail(exc) from exc
        for report in reports:
            _print_report(report)


@app.command()
def init() -> None:
    """Create the store and, if none is set, a new pseudonymization key file."""
    with _workspace(create=True) as ws:
        console.print(
            f"store ready: {ws.settings.store}\nkey fingerprint: {ws.pseudonymizer.fingerprint} "
            f"(keep {ws.settings.secret_key_file} or TAILOR_SECRET_KEY safe and out of the store)"
        )


def print_status(ws: Workspace) -> None:
    summary = ws.store.event_summary()
    table = Table(title=f"events in {ws.settings.store}")
    for column in ("type", "rows", "events", "subjects", "first", "last"):
        table.add_column(
            column, justify="right" if column in ("rows", "events", "subjects") else "left"
        )
    for row in summary.to_pylist():
        table.add_row(
            row["event_type"],
            f"{row['rows']:,}",
            f"{row['events']:,}",
            f"{row['subjects']:,}",
            f"{row['first']:%Y-%m-%d}",
            f"{row['last']:%Y-%m-%d}",
        )
    console.print(table)
    entities = ", ".join(
        f"{k}: {ws.store.count_entities(k):,}" for k in ("users", "items", "devices")
    )
    console.print(f"{entities}; erased subjects: {ws.store.count_tombstones():,}")


@app.command()
def status() -> None:
    """Show what the store holds: events per type, entities, erased subjects."""
    with _workspace() as ws:
        print_status(ws)


def _subject(ws: Workspace, subject: str, pseudonym: bool) -> str:
    return subject if pseudonym else ws.pseudonymizer.pseudonymize("subject", subject)


PseudonymOpt = Annotated[
    bool, typer.Option("--pseudonym", help="SUBJECT is already the stored pseudonym.")
]


@app.command()
def consent(
    subject: Annotated[str, typer.Argument(help="The subject's id as your systems know it.")],
    pseudonym: PseudonymOpt = False,
) -> None:
    """Show a subject's consent ledger (latest record per purpose wins)."""
    with _workspace() as ws:
        records = ws.store.consent_records(_subject(ws, subject, pseudonym))
        if not records:
            console.print(
                "no consent records: the configured defaults apply "
                f"({ws.settings.privacy.consent_default})"
            )
        for r in records:
            state = "granted" if r.granted else "revoked"
            console.print(
                f"{r.occurred_at:%Y-%m-%d %H:%M} {r.purpose}: {state}"
                f" (policy {r.policy_version or '-'})"
            )


@app.command("erase")
def erase_command(
    subject: Annotated[str, typer.Argument(help="The subject's id as your systems know it.")],
    pseudonym: PseudonymOpt = False,
) -> None:
    """Erase a subject: events, entity rows, and everything registered hooks reach.

    A tombstone (the pseudonym and a time, nothing else) keeps re-imports of old files from
    bringing the subject back. Running it again re-runs the hooks.
    """
    with _workspace() as ws:
        report = erase(ws.store, _subject(ws, subject, pseudonym))
        c = report.counts
        console.print(
            f"erased: {c.events:,} event rows, {c.users} user rows, "
            f"{c.devices} devices; tombstone recorded"
        )
        for name, state in report.hooks.items():
            console.print(f"  hook {name}: {state}")
        if not report.complete:
            err.print("[red]some hooks failed:[/red] fix the cause and run the erasure again")
            raise typer.Exit(1)


@app.command("purge")
def purge_command(
    older_than: Annotated[str, typer.Option("--older-than", help="Age such as 365d, 52w, 72h.")],
) -> None:
    """Delete events older than a retention period (consent records are kept as proof)."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise _fail(exc) from exc
    with _workspace() as ws:
        console.print(f"purged {purge(ws.store, age):,} event rows older than {older_than}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo store, key and reports.")] = Path(
        "demo-out"
    ),
) -> None:
    """Import the bundled demo data, show what the store holds, then serve it over HTTP.

    The demo data: real Online Retail II rows (CC BY 4.0) and a simulated shop. Running it
    again imports nothing new: imports are idempotent. It ends by serving the demo shop on
    127.0.0.1:8000 (another free port if that one is taken) with a fresh admin key, and
    prints curl examples that work; Ctrl-C stops it. With TAILOR_DEMO_SMOKE=1 it calls
    each example once and exits.
    """
    from tailor.demo import run_demo

    smoke = os.environ.get("TAILOR_DEMO_SMOKE") == "1"
    settings = Settings(
        store=str(out / "tailor.duckdb"),
        secret_key_file=out / "secret.key",
        api=ApiSettings(keys_file=out / "api_keys.json"),
    )
    try:
        run_demo(settings, out, console=console, smoke=smoke)
    except (TailorError, ValueError) as exc:
        raise _fail(exc) from exc


def main() -> None:
    logging.basicConfig(level=os.environ.get("TAILOR_LOG_LEVEL", "WARNING"))
    try:
        app()
    except ConfigError as exc:  # any command reading the settings: no traceback
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise SystemExit(2) from None
