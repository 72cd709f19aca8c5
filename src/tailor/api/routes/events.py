"""``POST /v1/events``: one event or a batch, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tailor.api.deps import AppStateDep, IngestCaller
from tailor.api.schemas import EVENTS_BODY_SCHEMA, IngestOut, Rejection
from tailor.api.state import TenantState
from tailor.errors import StoreUnavailable
from tailor.events.ingest import (
    BatchTooLarge,
    IngestResult,
    validate_batch,
    validate_batch_json,
)

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
    body = await request.body()
    result, sent = await ingest(caller.tenant, body, state.api.max_batch_events)
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
    nothing_valid = sent and len(result.rejected) == sent
    return JSONResponse(body.model_dump(), status_code=422 if nothing_valid else 200)


def parse_json(body: bytes) -> Any:
    """The request body as JSON (400 naming the problem); the app's body limit applies."""
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


async def ingest(tenant: TenantState, body: bytes, max_events: int) -> tuple[IngestResult, int]:
    """Validate and submit in a worker thread, then wait for the durable commit. Returns the
    result and the number of events the body held."""
    if tenant.writer is None:
        raise HTTPException(503, "ingestion is not running", headers={"Retry-After": "5"})
    try:
        future, sent = await run_in_threadpool(_submit, tenant, body, max_events)
        return await asyncio.wrap_future(future), sent
    except BatchTooLarge as exc:
        raise HTTPException(413, f"events: {exc}") from None
    except StoreUnavailable:
        raise HTTPException(
            503,
            "the store is unavailable, nothing was stored; retry with the same event_ids",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None


def _submit(tenant: TenantState, body: bytes, max_events: int):
    events = validate_batch_json(body, max_events=max_events)
    rejected = []
    if events is None:  # something is wrong: the per-event path names every problem
        raw = _events_of(parse_json(body))
        events, rejected = validate_batch(raw, max_events=max_events)
    return tenant.writer.submit(events, rejected=rejected), len(events) + len(rejected)
