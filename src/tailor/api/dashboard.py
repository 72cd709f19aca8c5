"""The lifecycle dashboard: ``GET /dashboard`` (one HTML page) and ``GET /v1/admin/dashboard``
(the same data as JSON, scope ``admin``), both from :func:`dashboard_data`.

The page is rendered on the server, charts as inline SVG (:mod:`tailor.api.charts`): no
script, font or CDN, so it works offline and under a content security policy that allows no
script at all. It refreshes itself every minute.

A browser cannot send a Bearer header, so the page also takes the key from an HttpOnly,
SameSite=Strict cookie that ``POST /dashboard/login`` sets after checking the key with the
API's own :func:`~tailor.api.deps.authorize` (admin scope); the tenant is the
``X-Tailor-Tenant`` header's or the one given at login. Without a valid key the page answers
with the login form and the status the API would (401, 403, 404, 429).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tailor.api.dashboard_page import MAX_KEY_CHARS, login_page, render_page
from tailor.api.deps import MAX_TENANT_CHARS, TENANT_HEADER, AdminCaller, AppStateDep, authorize
from tailor.api.state import TenantState
from tailor.lifecycle import attribution, journal, registry, rollouts
from tailor.store.base import Store

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["operations"])

COOKIE = "tailor_admin"
TENANT_COOKIE = "tailor_tenant"
MAX_FORM_BYTES = 2048
KPI_SNAPSHOTS = 500
RECENT = 20
ANALYSED = 10
"""Experiments analysed per page (running ones first): each analysis reads their events."""
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# --- data ------------------------------------------------------------------------------------


def dashboard_data(tenant: TenantState) -> dict[str, Any]:
    """What the dashboard shows of ``tenant``, as JSON-ready values (times as ISO text,
    undefined figures as None)."""
    store = tenant.workspace.store
    snapshots = journal.read(store, "kpi", limit=KPI_SNAPSHOTS)
    drift = journal.read(store, "drift", limit=1)
    return _plain(
        {
            "tenant": tenant.name,
            "generated_at": datetime.now(UTC),
            "kpis": {"snapshots": snapshots, "latest": snapshots[-1] if snapshots else None},
            "drift": drift[-1] if drift else None,
            "experiments": _experiments(store),
            "models": _models(store),
            "decisions": journal.read(store, "decision", limit=10)[::-1],
            "segments": _segments(tenant),
            "alerts": journal.read(store, "alert", limit=RECENT)[::-1],
            "jobs": store.jobs(),
        }
    )


def _experiments(store: Store) -> list[dict[str, Any]]:
    found, broken = [], []
    for name, spec, _ in store.experiments():
        try:  # one damaged spec must not hide the others
            found.append(rollouts.parse(spec, source=f"stored experiment {name}"))
        except ValueError as exc:
            broken.append({"name": name, "error": str(exc), "arms": [], "result": None})
    found.sort(key=lambda e: (not e.running, -e.started_at.timestamp()))
    out = []
    for n, experiment in enumerate(found):
        weights = experiment.weights()
        total = sum(weights) or 1.0
        entry = experiment.model_dump(
            include={"name", "kind", "status", "primary_metric", "started_at", "ended_at"}
        )
        entry["arms"] = [
            {"name": arm.name, "version": arm.version, "share": 100 * weight / total}
            for arm, weight in zip(experiment.arms, weights, strict=True)
        ]
        entry.update(history=experiment.history[-5:], result=None, error=None)
        if n < ANALYSED:
            try:
                entry["result"] = attribution.analyze(store, experiment).to_dict()
            except ValueError as exc:  # odd data: say so instead of failing the page
                entry["error"] = str(exc)
        out.append(entry)
    return out + broken


def _models(store: Store) -> dict[str, Any]:
    aliases = registry.aliases(store)
    named: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (engine, alias), version in sorted(aliases.items()):
        named[engine, version].append(alias)
    versions = [
        {
            "engine": m.engine,
            "version": m.version,
            "created_at": m.created_at,
            "aliases": named[m.engine, m.version],
            "metrics": m.metrics,
            "data_window": m.data_window,
            "config": m.config,
        }
        for m in reversed(registry.versions(store))
    ]
    moves = [
        {"engine": e, "alias": a, **asdict(move)}
        for e, a in sorted(aliases)
        for move in registry.history(store, e, a)[-5:]
    ]
    return {"versions": versions, "alias_moves": moves}


def _segments(tenant: TenantState) -> dict[str, Any] | None:
    """Customers per segment: the served audience scores' summary, else the stored scores."""
    service = tenant.extras.get("audience")
    if service is not None:
        summary = service.segments()
        rows = [{"segment": s["segment"], "customers": s["customers"]} for s in summary["segments"]]
        return {"source": "served", "as_of": summary["as_of"], "segments": rows}
    from tailor.audience.service import SCORE_KIND

    counts: Counter[str] = Counter()
    for _, payload, _ in tenant.workspace.store.read_scores(SCORE_KIND):
        try:
            counts[str(json.loads(payload).get("segment"))] += 1
        except (ValueError, AttributeError):
            continue
    if not counts:
        return None
    rows = [{"segment": s, "customers": n} for s, n in counts.most_common()]
    return {"source": "stored", "as_of": None, "segments": rows}


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO text; NaN and infinity (JSON has neither) as None."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):  # numpy scalars from the analysis
        return _plain(value.item())
    return str(value)


# --- routes ----------------------------------------------------------------------------------


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _login(
    request: Request,
    status: int,
    message: str = "",
    tenant: str = "",
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    return HTMLResponse(
        login_page(_root(request), message, tenant), status, headers={**HEADERS, **(headers or {})}
    )


def _refusal(exc: HTTPException, saved: bool) -> str:
    if exc.status_code == 401:
        return "The saved key is no longer valid: log in again." if saved else "Not a valid key."
    if exc.status_code == 403:
        return "This key lacks the admin scope: the dashboard needs an admin key."
    return str(exc.detail)


def _cookies(response: Response, request: Request, key: str | None, tenant: str | None) -> None:
    """Set (or, given None, clear) the key and tenant cookies, for the dashboard's paths only."""
    path = _root(request) + "/dashboard"
    secure = request.url.scheme == "https"
    for name, value in ((COOKIE, key), (TENANT_COOKIE, tenant)):
        if value is None:
            response.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="strict")
        else:
            response.set_cookie(
                name, value, path=path, secure=secure, httponly=True, samesite="strict"
            )


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, state: AppStateDep) -> Response:
    """The page, for an admin key in the Authorization header or the login cookie."""
    header = request.headers.get("authorization")
    token = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    else:
        token = request.cookies.get(COOKIE)
    if not token:
        return _login(request, 401, headers={"WWW-Authenticate": "Bearer"})
    tenant = request.headers.get(TENANT_HEADER) or request.cookies.get(TENANT_COOKIE)
    if tenant is not None and len(tenant) > MAX_TENANT_CHARS:
        return _login(request, 422, f"tenant: at most {MAX_TENANT_CHARS} characters")
    saved = header is None
    try:
        caller = authorize(state, token, tenant, "admin")
    except HTTPException as exc:
        response = _login(request, exc.status_code, _refusal(exc, saved), headers=exc.headers)
        if saved and exc.status_code != 429:
            _cookies(response, request, None, None)
        return response
    page = render_page(dashboard_data(caller.tenant), _root(request))
    return HTMLResponse(page, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """The login form's fields; 415, 413 or 400 for anything but a small URL-encoded form."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the login form (application/x-www-form-urlencoded)")
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise HTTPException(413, f"the login form is at most {MAX_FORM_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"the login form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=4, errors="strict")
    except ValueError:  # UnicodeDecodeError included
        raise HTTPException(400, "the login form is not URL-encoded UTF-8") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise HTTPException(400, "a field of the login form was given twice")
    return fields


@router.post("/dashboard/login")
async def login(request: Request, state: AppStateDep) -> Response:
    """Check the key (admin scope, the tenant's) and keep it in an HttpOnly cookie."""
    fields = await _form(request)
    key, tenant = fields.get("key", "").strip(), fields.get("tenant", "").strip()
    problem = ""
    if not key:
        problem = "key: enter an admin API key (tlr_...)"
    elif len(key) > MAX_KEY_CHARS:
        problem = f"key: at most {MAX_KEY_CHARS} characters"
    elif len(tenant) > MAX_TENANT_CHARS:
        problem = f"tenant: at most {MAX_TENANT_CHARS} characters"
    if problem:
        return _login(request, 422, problem, tenant[:MAX_TENANT_CHARS])
    try:
        authorize(state, key, tenant or None, "admin")
    except HTTPException as exc:
        return _login(request, exc.status_code, _refusal(exc, False), tenant, exc.headers)
    response = RedirectResponse(_root(request) + "/dashboard", 303, headers=HEADERS)
    _cookies(response, request, key, tenant or None)
    return response


@router.post("/dashboard/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(_root(request) + "/dashboard", 303, headers=HEADERS)
    _cookies(response, request, None, None)
    return response


@api_router.get("/admin/dashboard")
def dashboard_json(caller: AdminCaller) -> dict[str, Any]:
    """Everything the dashboard page at `/dashboard` shows, as JSON: KPI snapshots per model
    version, experiments with their analysis, the latest drift check, model versions with
    metrics and aliases, retraining decisions, segments, recent alerts and jobs."""
    return dashboard_data(caller.tenant)
