"""The FastAPI app: ``create_app`` builds one from settings (or from ready-made tenants).

Everything lives under ``/v1``; ``/metrics`` (Prometheus) and ``/openapi.json`` at the root.
Client mistakes are 4xx with a message naming the field: pydantic's 422 for bodies and
queries, a ``ValueError`` from the service layer becomes 422 with its message, an unknown
item 404, a too-large body 413 (checked from Content-Length and while reading). A lost or
refused database connection is 503 with ``Retry-After`` (nothing was changed; retry the
request). Anything else is logged and answered 500 without internals.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tailor.api import dashboard
from tailor.api.fastpath import outermost
from tailor.api.keys import KeyRing
from tailor.api.limits import RateLimiter
from tailor.api.metrics import ApiMetrics, MetricsMiddleware
from tailor.api.routes import (
    audience,
    budget,
    devices,
    events,
    items,
    ops,
    recommend,
    users,
)
from tailor.api.state import AppState, NotReady, ServingState, TenantState
from tailor.config import ApiSettings, Settings, get_settings
from tailor.errors import StoreError, StoreUnavailable
from tailor.events.ingest import GroupCommitWriter
from tailor.workspace import Workspace, open_workspace

log = logging.getLogger(__name__)

DESCRIPTION = """\
tailor's personalization API: events in, recommendations out.

Authenticate with an API key (`tailor keys create`) as `Authorization: Bearer tlr_...`.
Keys carry scopes (`ingest`, `recommend`, `admin`; admin implies the others), may be held to
one tenant (`X-Tailor-Tenant`, default `default`) and have a rate limit (429 with
`Retry-After`). User ids are pseudonymized before any lookup and never logged.
"""

TAGS = [
    {"name": "events", "description": "Send events (scope `ingest`)."},
    {"name": "recommendations", "description": "Ask what to show (scope `recommend`)."},
    {"name": "items", "description": "Catalog changes (scope `admin`)."},
    {"name": "users", "description": "Consent, erasure and data export."},
    {"name": "customers", "description": "Profiles and segments (scope `admin`)."},
    {"name": "budget", "description": "Advertising budget plans (scope `admin`)."},
    {
        "name": "devices",
        "description": "Learned device schedules, household feedback and home insights.",
    },
    {"name": "operations", "description": "Health, readiness, metrics, model reloads."},
]

MODEL_ENV = "TAILOR_SERVE_MODEL"
MODEL_ALIAS_ENV = "TAILOR_SERVE_MODEL_ALIAS"
WITH_WORKER_ENV = "TAILOR_SERVE_WITH_WORKER"
AUDIENCE_ENV = "TAILOR_SERVE_AUDIENCE"
BUDGET_ENV = "TAILOR_SERVE_BUDGET"
DEVICES_ENV = "TAILOR_SERVE_DEVICES"
WORKERS_ENV = "TAILOR_SERVE_WORKERS"
TAIL_INTERVAL_S = 0.5
"""With several workers, how often each reads what the others stored (a view reaches the
other workers' sessions within about this much)."""


def _version() -> str:
    try:
        return package_version("tailor")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def build_tenant(
    name: str,
    workspace: Workspace,
    api: ApiSettings,
    *,
    model_path: str | Path | None = None,
    workers: int = 1,
    poll_interval_s: float | None = 1.0,
    audience_path: str | Path | None = None,
    model_alias: str | None = None,
    budget_path: str | Path | None = None,
    devices_path: str | Path | None = None,
) -> TenantState:
    """A tenant's serving state and ingest writer over ``workspace`` (not started yet).

    With several workers each process tails the store every 500 ms for what the others
    stored (events for the sessions, catalog changes, erasures).
    """
    serving = ServingState(
        workspace,
        model_path=model_path,
        model_alias=model_alias,
        poll_interval_s=poll_interval_s,
        tail_interval_s=TAIL_INTERVAL_S if workers > 1 else None,
    )
    writer = GroupCommitWriter(
        workspace.store,
        workspace.pseudonymizer,
        max_batch_events=max(20_000, api.max_batch_events),
        on_committed=serving.on_committed,
    )
    # An erased person's raw id must not wait in the pseudonym cache for its age limit.
    serving.forget_listeners.append(lambda users: writer.forget_raw_ids())
    extras = {}
    if audience_path is not None:
        extras = _audience(workspace, serving, audience_path)
    if budget_path is not None:
        extras.update(_budget(serving, budget_path))
    if devices_path is not None:
        extras.update(_devices(serving, devices_path))
    return TenantState(name, workspace, serving, writer, extras)


def _audience(workspace: Workspace, serving: ServingState, path: str | Path) -> dict[str, object]:
    """The scored customer base for the profile and segment routes; erasures reach it."""
    from tailor.audience.service import AudienceService

    try:
        service = AudienceService.from_store(path, workspace.store)
    except (ValueError, OSError) as exc:
        log.warning("audience model %s not loaded: %s", path, exc)
        return {"audience_error": str(exc)}
    serving.forget_listeners.append(service.forget)
    serving.poll_listeners.append(lambda: service.reload_if_changed(workspace.store))
    return {"audience": service}


def _budget(serving: ServingState, path: str | Path) -> dict[str, object]:
    """The budget model for the plan route; a rewritten folder (a re-fit) is picked up."""
    from tailor.budget.service import BudgetService

    try:
        service = BudgetService(path)
    except (ValueError, OSError, ImportError) as exc:
        log.warning("budget model %s not loaded: %s", path, exc)
        return {"budget_error": str(exc)}
    serving.poll_listeners.append(service.reload_if_changed)
    return {"budget": service}


def _devices(serving: ServingState, path: str | Path) -> dict[str, object]:
    """The homes' models for the device routes; a re-fit that rewrites the folder is picked up."""
    from tailor.devices.service import DevicesService

    try:
        service = DevicesService(path)
    except (ValueError, OSError) as exc:
        log.warning("device models %s not loaded: %s", path, exc)
        return {"devices_error": str(exc)}
    serving.poll_listeners.append(service.reload_if_changed)
    serving.forget_listeners.append(service.forget)
    return {"devices": service}


def create_app(
    *,
    settings: Settings | None = None,
    tenants: Mapping[str, TenantState] | None = None,
    keys: KeyRing | None = None,
    limiter: RateLimiter | None = None,
    model_path: str | Path | None = None,
    workers: int = 1,
    fast_path: bool = True,
    audience_path: str | Path | None = None,
    model_alias: str | None = None,
    with_worker: bool = False,
    budget_path: str | Path | None = None,
    devices_path: str | Path | None = None,
    worker_tick_s: float = 10.0,
) -> FastAPI:
    """The API app.

    Without ``tenants``, the configured workspace (``settings``) is opened as tenant
    ``default`` with the model at ``model_path`` and closed at shutdown; given tenants are
    started at startup and closed at shutdown too (tests build several in-process).
    ``fast_path=False`` leaves every recommendation request to FastAPI's route (the tests
    compare the two; see :mod:`tailor.api.fastpath`). ``with_worker`` runs the lifecycle's
    jobs (:class:`~tailor.lifecycle.worker.Worker`) in a thread of each server process, on
    each tenant's store: what a DuckDB store needs, as no other process may open it.
    """
    settings = settings or get_settings()
    api = settings.api
    if tenants is None:
        workspace = open_workspace(settings)
        tenants = {
            "default": build_tenant(
                "default",
                workspace,
                api,
                model_path=model_path,
                workers=workers,
                audience_path=audience_path,
                model_alias=model_alias,
                budget_path=budget_path,
                devices_path=devices_path,
            )
        }
        owned = [workspace]
    else:
        owned = []
    tenant_map = dict(tenants)
    metrics = ApiMetrics(lambda: tenant_map)
    state = AppState(
        tenants=tenant_map,
        keys=keys if keys is not None else KeyRing.load(api.keys_file),
        limiter=limiter or RateLimiter(),
        api=api,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for tenant in tenant_map.values():
            tenant.start()
        if api.ingest_processes:
            from tailor.api.ingest_pool import IngestPool

            state.ingest_pool = pool = IngestPool(api.ingest_processes)
            for tenant in tenant_map.values():
                tenant.serving.forget_listeners.append(lambda users: pool.forget_raw_ids())
        stop_workers = _start_workers(tenant_map, settings, worker_tick_s) if with_worker else None
        thresholds = _settle_gc()
        try:
            yield
        finally:
            if stop_workers is not None:
                stop_workers()
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            state.close()
            for workspace in owned:
                workspace.close()

    app = FastAPI(
        title="tailor",
        version=_version(),
        description=DESCRIPTION,
        openapi_tags=TAGS,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        max_body_size=api.max_body_bytes,
        # Off, FastAPI skips even the per-request look for configured providers.
        telemetry=None if api.opentelemetry else dict.fromkeys(_TELEMETRY_SIGNALS, False),
    )
    app.state.tailor = state
    for module in (events, recommend, items, users, audience, budget, devices, ops):
        app.include_router(module.router, prefix="/v1")
    app.include_router(ops.metrics_router)
    app.include_router(dashboard.api_router, prefix="/v1")
    app.include_router(dashboard.router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if fast_path:
        outermost(app, metrics)
    _add_error_handlers(app)
    return app


GC_GEN0_THRESHOLD = 20_000
_TELEMETRY_SIGNALS = ("tracing", "metrics", "logs")


def _settle_gc() -> tuple[int, int, int]:
    """Keep the cyclic garbage collector off the loaded state; returns the old thresholds.

    What start-up loaded (models, candidates, catalog) lives as long as the process, yet every
    full collection walked all of it, and ingestion makes full collections frequent: each
    request's events live until their group commit, so thousands reach the oldest generation
    per commit. Frozen, the loaded state is never walked again; a generation-0 threshold of
    20,000 (not 700) lets most of a request's objects die before a collection sees them.
    Measured over a ``bench.serve --quick`` server's life: 1.5 s in the collector unfrozen,
    0.9 s frozen, 0.5 s frozen with the larger threshold (full collections 12 -> 4).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], GC_GEN0_THRESHOLD), *thresholds[1:])
    return thresholds


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse(
            {"detail": f"no model is loaded yet: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not _store_outage(exc):
            raise exc  # a real bug: the 500 handler below logs it
        route = getattr(request.scope.get("route"), "path", "unmatched")
        log.warning("store unavailable on %s %s: %s", request.method, route, type(exc).__name__)
        return JSONResponse(
            {"detail": "the store is unavailable, nothing was changed; retry the request"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    app.add_exception_handler(StoreError, store_unavailable)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - without the postgres extra
        pass
    else:
        app.add_exception_handler(psycopg.OperationalError, store_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        log.error("unhandled error on %s %s", request.method, route, exc_info=exc)
        return JSONResponse({"detail": "internal error; it was logged"}, status_code=500)


def _store_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` or its cause is a lost or refused database connection: the
    PostgreSQL store raises psycopg's ``OperationalError``, or a ``StoreError`` caused by
    one when it cannot reconnect."""
    psycopg = sys.modules.get("psycopg")
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, StoreUnavailable) or (
            psycopg is not None and isinstance(exc, psycopg.OperationalError)
        ):
            return True
        exc = exc.__cause__
    return False


def _start_workers(
    tenants: Mapping[str, TenantState], settings: Settings, tick_s: float
) -> Callable[[], None]:
    """A lifecycle worker thread per tenant; returns what stops them (after the running job)."""
    from tailor.lifecycle.worker import Worker

    stop = threading.Event()
    threads = []
    for name, tenant in tenants.items():
        runner = Worker(tenant.workspace, settings.lifecycle)
        thread = threading.Thread(
            target=runner.run_forever,
            kwargs={"tick_s": tick_s, "stop": stop},
            name=f"tailor-lifecycle-{name}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)

    def stop_all() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    return stop_all


def app_from_env() -> FastAPI:
    """The app uvicorn's workers build (``tailor serve``): settings from ``tailor.toml`` and
    the environment, the model path from ``TAILOR_SERVE_MODEL``."""
    logging.basicConfig(level=os.environ.get("TAILOR_LOG_LEVEL", "WARNING"))
    return create_app(
        model_path=os.environ.get(MODEL_ENV) or None,
        workers=int(os.environ.get(WORKERS_ENV, "1")),
        audience_path=os.environ.get(AUDIENCE_ENV) or None,
        model_alias=os.environ.get(MODEL_ALIAS_ENV) or None,
        with_worker=os.environ.get(WITH_WORKER_ENV) == "1",
        budget_path=os.environ.get(BUDGET_ENV) or None,
        devices_path=os.environ.get(DEVICES_ENV) or None,
    )
