"""``tailor serve``: the HTTP API (uvicorn running :func:`tailor.api.app.app_from_env`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tailor.cli_errors import fail
from tailor.errors import TailorError

err = Console(stderr=True)
console = Console()
INGEST_PROCESSES_ENV = "TAILOR_API__INGEST_PROCESSES"

SERVE_HELP = (
    "Serve the HTTP API (/v1/..., OpenAPI at /openapi.json, Prometheus at /metrics).\n\n"
    "Locally: `tailor serve --model models/shop` answers on 127.0.0.1:8000 with the embedded "
    "DuckDB store (one process: DuckDB allows one writer). Create a key first with "
    "`tailor keys create`.\n\n"
    "Production: a PostgreSQL store (TAILOR_STORE=postgresql://...), --workers set to the "
    "number of cores, listening on 127.0.0.1 behind a TLS-terminating proxy (nginx, Caddy) "
    "that also keeps /metrics internal. Each worker holds the model in memory and follows "
    "the others' events, catalog changes and erasures through the store.\n\n"
    "--save-model DIR builds the recommendation service from the store (events of users who "
    "consented to personalization, and the items), computes every known user's best 100 "
    "items before the business rules (what makes a request a slice, not a scoring pass), "
    "and saves it for --model, then exits; a running server picks a rewritten DIR up "
    "within a second."
)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (PostgreSQL only for more than 1).")
    ] = 1,
    ingest_processes: Annotated[
        int | None,
        typer.Option(
            "--ingest-processes",
            min=0,
            max=64,
            help="Helper processes per worker that read, validate and pseudonymize "
            "POST /v1/events bodies (0: in the worker's threads). On a server that ingests "
            "heavily give the workers the cores between them. Default: the setting "
            "api.ingest_processes (TAILOR_API__INGEST_PROCESSES), 0 unless set.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A folder written by --save-model. Without one (or if it cannot be loaded) "
            "a popularity fallback is built from the store and flagged in /v1/ready.",
        ),
    ] = None,
    model_alias: Annotated[
        str | None,
        typer.Option(
            "--model-alias",
            help="Instead of --model: serve the recommendation version this registry alias "
            "names (e.g. production), and follow it when `tailor models promote` or "
            "`rollback` moves it.",
            show_default=False,
        ),
    ] = None,
    audience: Annotated[
        Path | None,
        typer.Option(
            "--audience",
            help="A folder written by `tailor audience fit`: every customer is scored at start-up "
            "for GET /v1/users/{id}/profile and GET /v1/segments.",
        ),
    ] = None,
    budget: Annotated[
        Path | None,
        typer.Option(
            "--budget",
            help="A folder written by `tailor budget fit`: POST /v1/budget/plan plans with it "
            "(and follows a re-fit that rewrites the folder).",
        ),
    ] = None,
    devices: Annotated[
        Path | None,
        typer.Option(
            "--devices",
            help="A folder written by `tailor devices fit`: GET /v1/devices/{id}/schedule, "
            "POST /v1/devices/{id}/feedback and GET /v1/homes/{id}/insights answer from it.",
        ),
    ] = None,
    save_model: Annotated[
        Path | None,
        typer.Option(
            "--save-model",
            help="Build the service from the store, save it to this folder and exit.",
            rich_help_panel="Model",
        ),
    ] = None,
    algorithm: Annotated[
        str,
        typer.Option(
            "--algorithm",
            help="Personal model for --save-model (ease, itemknn, als, bpr, popularity, blend, "
            "hybrid).",
            rich_help_panel="Model",
        ),
    ] = "ease",
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help="Its tuned settings as JSON, e.g. '{\"l2\": 500}' (see tailor evaluate).",
            rich_help_panel="Model",
        ),
    ] = None,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--with-worker",
            help="Also run the lifecycle's jobs (retraining, experiments, KPIs, drift; see "
            "`tailor worker`) in the server: the way with a DuckDB store, which no other "
            "process may open. With PostgreSQL, run `tailor worker` beside the server instead.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    if save_model is not None:
        _save(save_model, algorithm, params)
        return
    if model is not None and model_alias is not None:
        raise typer.BadParameter("give --model or --model-alias, not both", param_hint="--model")
    from tailor.config import get_settings
    from tailor.store import is_postgres_url

    if ingest_processes is not None:
        # The workers read their settings from the environment (and this process's
        # cached settings must see it too: one worker runs here).
        os.environ[INGEST_PROCESSES_ENV] = str(ingest_processes)
        get_settings.cache_clear()
    settings = get_settings()
    if workers > 1 and not is_postgres_url(settings.store):
        err.print(
            f"[red]error:[/red] --workers {workers} needs a PostgreSQL store: the DuckDB store "
            f"{settings.store} may be written by one process only. Use --workers 1, or set "
            "TAILOR_STORE=postgresql://... for production."
        )
        raise typer.Exit(1)
    import uvicorn

    from tailor.api.app import (
        AUDIENCE_ENV,
        BUDGET_ENV,
        DEVICES_ENV,
        MODEL_ALIAS_ENV,
        MODEL_ENV,
        WITH_WORKER_ENV,
        WORKERS_ENV,
    )

    if model is not None:
        os.environ[MODEL_ENV] = str(model)
    if model_alias is not None:
        os.environ[MODEL_ALIAS_ENV] = model_alias
    if audience is not None:
        os.environ[AUDIENCE_ENV] = str(audience)
    if budget is not None:
        os.environ[BUDGET_ENV] = str(budget)
    if devices is not None:
        os.environ[DEVICES_ENV] = str(devices)
    os.environ[WORKERS_ENV] = str(workers)
    os.environ[WITH_WORKER_ENV] = "1" if with_worker else "0"
    console.print(f"serving on http://{host}:{port}/v1 (OpenAPI: /openapi.json, docs: /docs)")
    uvicorn.run(
        "tailor.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,  # paths hold raw user ids: never log them
    )


serve.__doc__ = SERVE_HELP


@contextmanager
def _rows_progress(what: str, service) -> Iterator[Callable[[int], None]]:
    """A progress bar over the service's user rows (the candidates take minutes at scale)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=service.history.shape[0])
        yield lambda rows: bar.update(task, advance=rows)


def _save(path: Path, algorithm: str, params: str | None) -> None:
    from tailor.config import get_settings
    from tailor.recommend.service import RecommendationService
    from tailor.workspace import open_workspace

    try:
        try:
            parsed = json.loads(params) if params else None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"--params is not valid JSON ({exc}); e.g. '{{\"l2\": 500}}'"
            ) from None
        if parsed is not None and not isinstance(parsed, dict):
            raise ValueError("--params must be a JSON object")
        with open_workspace(get_settings()) as ws:
            service = RecommendationService.build(
                ws.store.read_events(purpose="personalization"),
                ws.store.read_entities("items"),
                model=algorithm,
                params=parsed,
            )
        with _rows_progress(f"candidates of {len(service.user_ids):,} users", service) as done:
            service = service.with_candidates(progress=done)
        service.save(path)
        with open_workspace(get_settings()) as ws:
            _register(ws.store, path, service, algorithm, parsed)
    except (TailorError, ValueError, OSError) as exc:
        raise fail(exc) from exc
    console.print(
        f"model {service.version}: {len(service.user_ids):,} users, {len(service.catalog):,} "
        f"items → {path} (serve it with `tailor serve --model {path}`, or promote it with "
        f"`tailor models promote recommend {service.version} --reason ...` and serve "
        "`--model-alias production`)"
    )


def _register(store, path: Path, service, algorithm: str, params: dict | None) -> None:
    """Record the saved service in the model registry (engine ``recommend``)."""
    from tailor.lifecycle import registry

    window = service.info.get("data_window") or [None, None]
    registry.register(
        store,
        "recommend",
        path,
        version=service.version,
        config={"model": algorithm, "params": params or {}},
        data_window={
            "from": window[0],
            "to": window[1],
            "users": len(service.user_ids),
            "items": len(service.catalog),
        },
    )
