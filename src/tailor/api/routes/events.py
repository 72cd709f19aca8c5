"""``POST /v1/events``: one event or a batch, acknowledged only once durable."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tailor.api.deps import AppStateDep, IngestCaller
from tailor.api.ingest_pool import HelperLost
from tailor.api.schemas import EVENTS_BODY_SCHEMA, IngestOut, Rejection
from tailor.api.state import AppState, TenantState
from tailor.errors import StoreUnavailable
from tailor.events.ingest import BatchTooLarge, IngestResult, RequestBodyError, read_request

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
    result, sent = await ingest(state, caller.tenant, body, state.api.max_batch_events)
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


async def ingest(
    state: AppState, tenant: TenantState, body: bytes, max_events: int
) -> tuple[IngestResult, int]:
    """Read, validate and prepare the body (in a helper process when the app has them, else
    in a worker thread), then wait for the durable commit. Returns the result and the number
    of events the body held."""
    if tenant.writer is None:
        raise HTTPException(503, "ingestion is not running", headers={"Retry-After": "5"})
    try:
        if state.ingest_pool is not None:
            prepared, sent = await state.ingest_pool.prepare(
                body, max_events, tenant.workspace.pseudonymizer
            )
            future = tenant.writer.submit_prepared(prepared)
        else:
            future, sent = await run_in_threadpool(_submit, tenant, body, max_events)
        return await asyncio.wrap_future(future), sent
    except RequestBodyError as exc:
        raise HTTPException(exc.status, exc.message) from None
    except BatchTooLarge as exc:
        raise HTTPException(413, f"events: {exc}") from None
    except StoreUnavailable:
        raise HTTPException(
            503,
            "the store is unavailable, nothing was stored; retry with the same event_ids",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from None
    except HelperLost as exc:
        raise HTTPException(
            503, f"{exc}; retry with the same event_ids", headers={"Retry-After": RETRY_AFTER_S}
        ) from None


def _submit(tenant: TenantState, body: bytes, max_events: int):
    events, rejected = read_request(body, max_events=max_events)
    return tenant.writer.submit(events, rejected=rejected), len(events) + len(rejected)
