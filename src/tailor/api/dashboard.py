"""The lifecycle dashboard: ``GET /dashboard`` (one HTML page) and ``GET /v1/admin/dashboard``
(the same data as JSON, scope ``admin``), both from :func:`dashboard_data`.

With the devices engine loaded (``tailor serve --devices DIR``) a Homes section lists the
fitted homes and draws, for the first few (or the one ``?home=`` names), the last week's
indoor temperature and setpoint against the learned schedule.

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
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tailor.api.charts import short
from tailor.api.dashboard_page import MAX_KEY_CHARS, login_page, render_page
from tailor.api.deps import MAX_TENANT_CHARS, TENANT_HEADER, AdminCaller, AppStateDep, authorize
from tailor.api.state import TenantState
from tailor.lifecycle import attribution, journal, registry, rollouts
from tailor.store.base import Store

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["operations"])

COOKIE = "tailor_admin"
TENANT_COOKIE = "tailor_tenant"
MAX_FORM_BYTES = 2048
KPI_SNAPSHOTS = 500
RECENT = 20
ANALYSED = 10
"""Experiments analysed per page (running ones first): each analysis reads their events."""
HOMES_LISTED = 50
"""Homes in the Homes table (each loads its model)."""
HOMES_CHARTED = 3
"""Homes drawn per page (the first ones, or the one asked for): each reads a week of readings."""
HOME_DAYS = 7
MAX_HOME_CHARS = 128
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# --- data ------------------------------------------------------------------------------------


def dashboard_data(tenant: TenantState, home: str | None = None) -> dict[str, Any]:
    """What the dashboard shows of ``tenant``, as JSON-ready values (times as ISO text,
    undefined figures as None). ``home``: the home to chart (its id, its pseudonym or the
    start of the pseudonym) instead of the first few; ``homes`` is None without the devices
    engine."""
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
            "homes": _homes(tenant, home) if "devices" in tenant.extras else None,
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


# --- homes (the devices engine) --------------------------------------------------------------


def _homes(tenant: TenantState, wanted: str | None) -> dict[str, Any]:
    """The fitted homes (what each learned) and, for the charted ones, a week of readings
    against the learned schedule. A damaged model or an unreadable store becomes a note."""
    service = tenant.extras["devices"]
    homes = service.homes
    rows, models = [], {}
    for home in homes[:HOMES_LISTED]:
        row: dict[str, Any] = {"home": home, "personalized": tenant.serving.personalizes(home)}
        try:
            model = service.model(home)
        except ValueError as exc:  # a damaged folder: say so, keep the others
            rows.append({**row, "error": str(exc)})
            continue
        if model is None:  # erased since the list was taken
            continue
        models[home] = model
        rows.append({**row, **_learned(model), "error": None})
    charted, note = _pick(tenant, homes, wanted)
    charts = []
    for home in charted:
        model = models.get(home)
        if model is None:
            try:
                model = service.model(home)
            except ValueError as exc:
                note = str(exc)
                continue
            if model is None:
                continue
        models[home] = model
        charts.append(_chart_frame(home, model))
    try:
        weeks = _home_weeks(tenant.workspace.store, {c["home"]: models[c["home"]] for c in charts})
    except Exception as exc:  # whatever the store raises, the rest of the page still shows
        log.warning("dashboard: the homes' readings could not be read", exc_info=True)
        note = f"The homes' readings could not be read: {exc}"
        weeks = {}
    for chart in charts:
        grid = weeks.get(chart["home"])
        if grid is None:
            chart["note"] = "no readings in the week up to now nor in the last week it learned from"
        else:
            chart.update(_series(grid, models[chart["home"]]))
    return {
        "total": len(homes),
        "homes": rows,
        "charts": charts,
        "selected": charted[0] if wanted and charted else None,
        "days": HOME_DAYS,
        "note": note,
    }


def _learned(model: Any) -> dict[str, Any]:
    import numpy as np

    return {
        "habits": len(model.schedule_.rules_),
        "one_offs_ignored": int(model.schedule_.rejected_),
        "adjustments": int(model.n_adjustments_),
        "home_share": float(np.mean(model.home_profile_)),
        "timezone": model.timezone,
        "learned_from": model.window_[0].to_pydatetime(),
        "learned_until": model.window_[1].to_pydatetime(),
    }


def _pick(
    tenant: TenantState, homes: list[str], wanted: str | None
) -> tuple[list[str], str | None]:
    """The homes to chart: the one ``wanted`` names (its raw id, its pseudonym or the start
    of the pseudonym, as the table shows it), else the first consenting ones."""
    if not wanted:
        return [h for h in homes if tenant.serving.personalizes(h)][:HOMES_CHARTED], None
    if len(wanted) > MAX_HOME_CHARS:
        return [], f"home: at most {MAX_HOME_CHARS} characters"
    prefix = wanted.strip().rstrip("…")
    found = [wanted] if wanted in homes else [tenant.pseudonym(wanted)]
    if found[0] not in homes:
        found = [h for h in homes if prefix and h.startswith(prefix)]
    if len(found) != 1:
        which = "several fitted homes" if found else "no fitted home"
        return [], f"home {short(wanted)!r} names {which}: give its id or more of its pseudonym"
    if not tenant.serving.personalizes(found[0]):
        return [], "That home has no personalization consent (or was erased): nothing to show."
    return found, None


def _chart_frame(home: str, model: Any) -> dict[str, Any]:
    habits = model.insights()["habits"]
    return {
        "home": home,
        "timezone": model.timezone,
        "slot_minutes": model.slot_minutes,
        "habits": [habit["explanation"] for habit in habits],
        "note": None,
        "t": [],
    }


def _home_weeks(store: Store, models: dict[str, Any]) -> dict[str, Any]:
    """Each home's last week of clean readings (a grid): the week up to now, else (nothing
    that recent: an old import, a home gone quiet) the last week the model learned from."""
    import pandas as pd

    week = pd.Timedelta(days=HOME_DAYS)
    now = pd.Timestamp(_now())
    grids: dict[str, Any] = {}
    for minutes in sorted({m.slot_minutes for m in models.values()}):
        homes = {h for h, m in models.items() if m.slot_minutes == minutes}
        grids.update(_grids(store, homes, now - week, now, minutes))
    for home in sorted(set(models) - set(grids)):
        model = models[home]
        until = model.window_[1]
        grids.update(_grids(store, {home}, until - week, until, model.slot_minutes))
    return {home: grid[grid.index > grid.index[-1] - week] for home, grid in grids.items()}


def _now() -> datetime:
    return datetime.now(UTC)


def _grids(store: Store, homes: set[str], start: Any, end: Any, minutes: int) -> dict[str, Any]:
    from tailor.devices.data import DeviceDataError, read_device_events
    from tailor.devices.quality import QualityError, clean

    try:
        readings, _ = read_device_events(
            store,
            start=start.to_pydatetime(),
            end=end.to_pydatetime(),
            homes=homes,
        )
        if readings.empty:
            return {}
        grids, _ = clean(readings, freq=f"{minutes}min")
    except (DeviceDataError, QualityError):  # nothing in the window: try the next one
        return {}
    return {home: grid for home, grid in grids.items() if len(grid)}


def _series(grid: Any, model: Any) -> dict[str, Any]:
    """The grid's slots (epoch seconds) with the actual indoor temperature and setpoint (None
    where missing), the setpoint the learned schedule prefers, and whether the home was
    expected occupied."""
    import numpy as np
    import pandas as pd

    from tailor.devices.features import slot_of_week

    index = grid.index
    step = pd.Timedelta(minutes=model.slot_minutes)

    def column(name: str) -> list[float | None]:
        if name not in grid:
            return [None] * len(index)
        return [None if np.isnan(v) else round(float(v), 2) for v in grid[name].to_numpy(float)]

    slots = slot_of_week(index, model.slot_minutes, model.timezone)
    return {
        "from": index[0].to_pydatetime(),
        "until": (index[-1] + step).to_pydatetime(),
        "t": (index.as_unit("ns").asi8 // 1_000_000_000).tolist(),
        "indoor_temp": column("indoor_temp"),
        "setpoint": column("setpoint"),
        "learned_schedule": [round(float(v), 2) for v in model.schedule_.predict(index)],
        "expected_occupied": [bool(v) for v in model.params_.expected_occupied[slots]],
    }


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
    """The page, for an admin key in the Authorization header or the login cookie;
    ``?home=`` charts that home in the Homes section."""
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
    home = request.query_params.get("home") or None
    page = render_page(dashboard_data(caller.tenant, home), _root(request))
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
def dashboard_json(
    caller: AdminCaller,
    home: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_HOME_CHARS,
            description="The home to chart (its id or pseudonym) instead of the first few.",
        ),
    ] = None,
) -> dict[str, Any]:
    """Everything the dashboard page at `/dashboard` shows, as JSON: KPI snapshots per model
    version, experiments with their analysis, the latest drift check, model versions with
    metrics and aliases, retraining decisions, segments, recent alerts and jobs, and (with
    the devices engine) the homes: what each learned and a week of readings against the
    learned schedule (`t` in epoch seconds)."""
    return dashboard_data(caller.tenant, home)
