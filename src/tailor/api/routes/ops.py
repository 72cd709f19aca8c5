"""Liveness, readiness, metrics and model reloads."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from tailor.api.deps import AdminCaller, AppStateDep, ProbeTenant
from tailor.api.schemas import HealthOut, ReadyOut
from tailor.api.state import TenantState

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """Liveness: the process answers (no auth)."""
    return HealthOut()


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "No model could be loaded."}},
)
async def ready(tenant: ProbeTenant) -> JSONResponse:
    """Readiness of the tenant in ``X-Tailor-Tenant`` (no auth): the model version and
    whether it is the popularity fallback, with the reason."""
    body = readiness(tenant)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.post("/admin/reload", response_model=ReadyOut)
def reload(caller: AdminCaller) -> JSONResponse:
    """Load the model at the configured path now (the server also polls it), and the
    audience scores when the server has an audience model (``tailor serve --audience``)."""
    caller.tenant.serving.reload()
    audience = caller.tenant.extras.get("audience")
    if audience is not None:
        try:
            audience.reload(caller.tenant.workspace.store)
        except (ValueError, OSError) as exc:  # the scores served so far stay
            log.warning("audience scores not reloaded: %s", exc)
    body = readiness(caller.tenant)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@metrics_router.get("/metrics", response_class=Response)
async def metrics(state: AppStateDep) -> Response:
    """Prometheus text format (no auth: keep it behind the proxy)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def readiness(tenant: TenantState) -> ReadyOut:
    serving = tenant.serving
    loaded = serving.loaded
    return ReadyOut(
        ready=loaded is not None,
        tenant=tenant.name,
        model_version=loaded.version if loaded else None,
        fallback=loaded is None or loaded.fallback,
        reason=(loaded.reason if loaded and loaded.reason else serving.last_error),
        loaded_at=loaded.loaded_at.isoformat(timespec="seconds") if loaded else None,
    )
