"""``POST /v1/events``: one event or a batch, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tailor.api.deps import AppStateDep, IngestCaller
from tailor.api.ingest import BatchTooLarge, IngestResult, validate_batch
from tailor.api.schemas import EVENTS_BODY_SCHEMA, IngestOut, Rejection
from tailor.api.state import TenantState
from tailor.errors import StoreUnavailable

router = APIRouter(tags=["events"])
RETRY_AFTER_S = "1"


@router.post(
    "/events",
    response_model=IngestOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENTS_BODY_SCHEMA}},
        }
    },
    responses={
        413: {"description": "Body or batch too large."},
        422: {"description": "Not one event was valid.", "model": IngestOut},
        503: {"description": "The store is unavailable; nothing stored, retry the same ids."},
    },
)
async def post_events(request: Request, caller: IngestCaller, state: AppStateDep) -> Any:
    """Validate, pseudonymize and store events; answer after the commit. Duplicate
    ``event_id``s are acknowledged once (``duplicates``)."""
    raw = _events_of(await read_json(request))
    result = await ingest(caller.tenant, raw, state.api.max_batch_events)
    state.metrics.count_events(
        caller.tenant_name, result.accepted, result.duplicates, len(result.rejected)
    )
    body = IngestOut(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            Rejection(index=r.index, event_id=r.event_id, reason=r.reason) for r in result.rejected
        ],
    )
    nothing_valid = raw and len(result.rejected) == len(raw)
    return JSONResponse(body.model_dump(), status_code=422 if nothing_valid else 200)


async def read_json(request: Request) -> Any:
    """The request body as JSON (400 naming the problem); the app's body limit applies."""
    body = await request.body()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"body: not valid JSON ({exc})") from None


def _events_of(body: Any) -> list[Any]:
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            extra = sorted(set(body) - {"events"})
            raise HTTPException(422, f"body: a batch is {{'events': [...]}} only; unknown {extra}")
        if not isinstance(body["events"], list):
            raise HTTPException(422, "events: must be a list of event objects")
        return body["events"]
    if isinstance(body, dict):
        return [body]
    raise HTTPException(422, "body: send one event object or {'events': [...]}")


async def ingest(tenant: TenantState, raw: list[Any], max_events: int) -> IngestResult:
    """Validate and submit in a worker thread, then wait for the durable commit."""
    if tenant.writer is None:
        raise HTTPException(503, "ingestion is not running", headers={"Retry-After": "5"})
    try:
        future = await run_in_threadpool(_submit, tenant, raw, max_events)
        return await asyncio.wrap_future(future)
    except BatchTooLarge as exc:
        raise HTTPException(413, f"events: {exc}") from None
    except StoreUnavailable:
        raise HTTPException(
            503,
            "the store is unavailable, nothing was stored; retry with the same event_ids",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None


def _submit(tenant: TenantState, raw: list[Any], max_events: int):
    events, rejected = validate_batch(raw, max_events=max_events)
    return tenant.writer.submit(events, rejected=rejected)
