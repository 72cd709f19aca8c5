"""Connected devices: a device's learned schedule, the household's feedback, a home's insights.

The schedule and insights need scope ``recommend`` (the device or the household's app asks);
feedback writes a ``device_adjustment`` event through the ingest path, so it needs
``ingest``. A home without personalization consent (or erased) gets its own program back,
marked ``personalized: false``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tailor.api.deps import IngestCaller, RecommendCaller
from tailor.api.state import TenantState
from tailor.errors import StoreUnavailable
from tailor.events.ingest import validate_batch

router = APIRouter(tags=["devices"])
NO_MODEL = (
    "no device models are loaded: fit them with `tailor devices fit --model DIR` and start "
    "`tailor serve --devices DIR`"
)
Id = Annotated[str, Path(min_length=1, max_length=128, description="Your id of it.")]
Temperature = Annotated[float, Field(ge=5.0, le=35.0, allow_inf_nan=False)]
Mode = Literal["auto", "suggest", "off"]
Feature = Literal["schedule", "away", "preheat", "all"]


def _service(tenant: TenantState):
    return tenant.engine("devices", NO_MODEL)


def _home_of_device(tenant: TenantState, device_id: str) -> str:
    home = _service(tenant).home_of(
        tenant.workspace.pseudonymizer.pseudonymize("device", device_id)
    )
    if home is None:
        raise HTTPException(
            404, f"device {device_id!r} is not in the fitted homes; send its telemetry and refit"
        )
    return home


@router.get("/devices/{device_id}/schedule")
def get_schedule(
    device_id: Id,
    caller: RecommendCaller,
    hours: Annotated[int, Query(ge=1, le=168, description="How far ahead to plan.")] = 24,
) -> dict[str, Any]:
    """The setpoints the device should hold over the next ``hours``, one entry per change,
    each with why (the learned habit behind it, eco while the home is usually empty, or
    pre-heating), inside the household's comfort bounds and modes."""
    from tailor.devices.service import load_settings

    tenant = caller.tenant
    home = _home_of_device(tenant, device_id)
    settings = load_settings(tenant.workspace.store, home)
    personalized = tenant.serving.personalizes(home)
    plan = _service(tenant).schedule(
        home, settings, start=datetime.now(UTC), hours=hours, personalized=personalized
    )
    return {"device_id": device_id, **plan}


@router.get("/homes/{home_id}/insights")
def get_insights(home_id: Id, caller: RecommendCaller) -> dict[str, Any]:
    """What the home's model learned: habits with their evidence, how often the household is
    home, heat-up rates, what fell back to defaults, and the weekly learned schedule."""
    from tailor.devices.service import load_settings

    tenant = caller.tenant
    service = _service(tenant)  # first: a tenant without models is told how to load them
    home = tenant.pseudonym(home_id)
    if service.model(home) is None:
        raise HTTPException(
            404, f"home {home_id!r} has no fitted model; refit after its data arrives"
        )
    if not tenant.serving.personalizes(home):
        raise HTTPException(
            404, "no insights: the home has no personalization consent or was erased"
        )
    try:
        insights = service.insights(home, load_settings(tenant.workspace.store, home))
    except KeyError:  # forgotten (erased) meanwhile
        raise HTTPException(
            404, f"home {home_id!r} has no fitted model; refit after its data arrives"
        ) from None
    insights["home_id"] = home_id
    return insights


class Feedback(BaseModel):
    """What the household did or decided. ``setpoint_c`` is a manual adjustment (learned from:
    it becomes a habit once repeated); ``modes``, ``lower_c``, ``upper_c`` and ``away_c`` are
    settings the model must obey from now on. Send at least one."""

    model_config = ConfigDict(extra="forbid")

    home_id: str = Field(min_length=1, max_length=128, description="The device's home.")
    setpoint_c: Temperature | None = None
    previous_c: Temperature | None = None
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it was adjusted (default: now)."
    )
    modes: dict[Feature, Mode] | None = Field(default=None, min_length=1, max_length=4)
    lower_c: Temperature | None = None
    upper_c: Temperature | None = None
    away_c: Temperature | None = None

    @model_validator(mode="after")
    def _something(self) -> Feedback:
        fields = (self.setpoint_c, self.modes, self.lower_c, self.upper_c, self.away_c)
        if all(value is None for value in fields):
            raise ValueError("send setpoint_c, modes, lower_c, upper_c or away_c")
        return self


@router.post("/devices/{device_id}/feedback")
async def post_feedback(device_id: Id, body: Feedback, caller: IngestCaller) -> dict[str, Any]:
    """Record a manual adjustment (as a ``device_adjustment`` event) and/or change the home's
    bounds and modes. Answers with the settings now in force."""
    from tailor.devices.service import load_settings, save_settings, settings_with

    tenant = caller.tenant
    home = tenant.pseudonym(body.home_id)
    if _home_of_device(tenant, device_id) != home:
        raise HTTPException(422, f"home_id: device {device_id!r} does not belong to that home")
    store = tenant.workspace.store
    settings = load_settings(store, home)
    changes = body.model_dump(include={"modes", "lower_c", "upper_c", "away_c"})
    if any(value is not None for value in changes.values()):
        try:
            settings = settings_with(settings, changes)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        await run_in_threadpool(save_settings, store, home, settings)
    recorded = None
    if body.setpoint_c is not None:
        recorded = await _record_adjustment(tenant, device_id, body)
    return {"device_id": device_id, "recorded_event_id": recorded, "settings": settings.to_dict()}


async def _record_adjustment(tenant: TenantState, device_id: str, body: Feedback) -> str:
    if tenant.writer is None:
        raise HTTPException(503, "ingestion is not running", headers={"Retry-After": "5"})
    event_id = f"feedback-{uuid.uuid4()}"
    raw = {
        "event_id": event_id,
        "event_type": "device_adjustment",
        "occurred_at": (body.occurred_at or datetime.now(UTC)).isoformat(),
        "subject_id": body.home_id,
        "device_id": device_id,
        "metric": "setpoint",
        "value": body.setpoint_c,
        "previous_value": body.previous_c,
        "unit": "C",
    }
    events, rejected = validate_batch([raw], max_events=1)
    if rejected:
        raise HTTPException(422, rejected[0].reason)
    future = tenant.writer.submit(events, rejected=[])
    try:
        result = await asyncio.wrap_future(future)
    except StoreUnavailable:
        raise HTTPException(503, "the store is unavailable", headers={"Retry-After": "1"}) from None
    if result.rejected:  # the household was erased meanwhile
        raise HTTPException(409, result.rejected[0].reason)
    return event_id
