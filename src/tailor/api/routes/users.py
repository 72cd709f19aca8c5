"""A user's consent, erasure and data export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from tailor.api.deps import AdminCaller, AppStateDep, IngestCaller
from tailor.api.schemas import ConsentIn, ConsentOut, ErasureOut, ExportOut
from tailor.errors import StoreUnavailable
from tailor.events.ingest import validate_batch

router = APIRouter(tags=["users"])
UserId = Annotated[str, Path(min_length=1, max_length=128, description="Your id of the user.")]


@router.put("/users/{user_id}/consent", response_model=ConsentOut)
def put_consent(
    user_id: UserId, consent: ConsentIn, caller: IngestCaller, state: AppStateDep
) -> ConsentOut:
    """Record a consent decision (scope ``ingest``: the site's consent banner sends it, or
    ``admin``). It is stored as a consent event, durably, before the answer; revoking
    personalization stops personal answers at once."""
    event = {
        "event_id": f"consent-{uuid.uuid4().hex}",
        "event_type": "consent",
        "subject_id": user_id,
        "occurred_at": (consent.occurred_at or datetime.now(UTC)).isoformat(),
        "purpose": consent.purpose,
        "granted": consent.granted,
        "policy_version": consent.policy_version,
    }
    events, rejected = validate_batch([event], max_events=1)
    if rejected:
        raise HTTPException(422, rejected[0].reason)
    tenant = caller.tenant
    try:
        result = tenant.writer.submit(events, rejected=rejected).result()
    except StoreUnavailable:
        raise HTTPException(503, "the store is unavailable", headers={"Retry-After": "1"}) from None
    if result.rejected:  # an erased subject
        raise HTTPException(409, result.rejected[0].reason)
    if consent.purpose == "personalization":
        tenant.serving.set_consent(tenant.pseudonym(user_id), consent.granted)
    state.metrics.count_events(tenant.name, result.accepted, result.duplicates, 0)
    return ConsentOut(event_id=event["event_id"], purpose=consent.purpose, granted=consent.granted)


@router.delete("/users/{user_id}", response_model=ErasureOut)
def delete_user(user_id: UserId, caller: AdminCaller) -> ErasureOut:
    """Erase the user: stored events and rows (a tombstone keeps re-imports out), every
    registered erasure hook, and this server's memory (sessions, caches, the model's row)."""
    report = caller.tenant.serving.erase_user(caller.tenant.pseudonym(user_id))
    c = report.counts
    return ErasureOut(
        events=c.events,
        users=c.users,
        devices=c.devices,
        hooks=report.hooks,
        complete=report.complete,
    )


@router.get("/users/{user_id}/data", response_model=ExportOut)
def export_user(user_id: UserId, caller: AdminCaller) -> Any:
    """Everything held about the user: stored events, consent records, the user row and
    what the server holds in memory (export for a data-access request)."""
    return caller.tenant.serving.export_user(caller.tenant.pseudonym(user_id))
