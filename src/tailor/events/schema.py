"""Typed events (pydantic v2): the shape a caller sends, one model per event type.

These models are the reference definition of a valid event. The bulk import path validates
columnar data with SQL for speed (:mod:`tailor.events.validate`); a property test checks that
both accept and reject the same rows.

Examples
--------
>>> from tailor.events.schema import parse_event, to_flat_rows
>>> e = parse_event({"event_id": "e1", "event_type": "view", "subject_id": "u1",
...                  "occurred_at": "2024-05-01T10:00:00Z", "item_id": "sku-1"})
>>> to_flat_rows(e)[0]["item_id"]
'sku-1'
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    field_validator,
)

from tailor.events.columns import COLUMN_NAMES, COLUMNS_BY_NAME, EVENT_TYPES, ID_LENGTH, PURPOSES

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_LENGTH)
]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


def _utc(value: datetime) -> datetime:
    """``value`` in UTC (on ``datetime.UTC``), refusing a naive one and one before 1970.

    On the ingest hot path: pydantic parses ``...Z`` into its own ``TzInfo``, on which
    ``astimezone``, ``replace`` and comparisons go through slow offset calls (about 0.7 us
    each). So the offset is read once, subtracted from the wall time, and the result rebuilt on
    ``datetime.UTC`` with ``combine`` (about 0.25 us); the 1970 check is then the UTC year, with
    no aware comparison. The result equals ``astimezone(UTC)``.
    """
    tz = value.tzinfo
    if tz is not UTC:
        offset = None if tz is None else tz.utcoffset(value)
        if offset is None:  # naive, or a tzinfo that does not know its offset (naive too)
            raise ValueError("timestamp needs a time zone (e.g. 2024-05-01T10:00:00Z)")
        try:
            value = value - offset  # wall-time arithmetic; fold resets to 0 as in astimezone
        except OverflowError:  # beyond year 1 or 9999 once in UTC
            if value.year < 1970:
                raise ValueError("timestamp is before 1970-01-01") from None
            raise ValueError("timestamp is after 9999-12-31 in UTC") from None
        value = _combine(value.date(), value.time(), UTC)
    if value.year < 1970:
        raise ValueError("timestamp is before 1970-01-01")
    return value


_combine = datetime.combine  # bound once: the attribute lookup is a third of its cost


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Finite = Annotated[float, AfterValidator(_finite)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_finite)]
Count = Annotated[int, Field(ge=0)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class Context(BaseModel):
    """Where the event happened. All fields optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    session_id: Identifier | None = None
    device_type: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    channel: ShortText | None = None
    country: CountryCode | None = None


class EventBase(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    event_id: Identifier
    occurred_at: UtcDatetime
    received_at: UtcDatetime | None = Field(
        default=None, description="Set by tailor on receipt; a value sent by a client is replaced."
    )
    subject_id: Identifier = Field(description="The person's id; pseudonymized before storage.")
    context: Context = Context()
    properties: dict[str, JsonValue] | None = None

    @field_validator("properties")
    @classmethod
    def _properties_size(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        limit = COLUMNS_BY_NAME["properties"].max_length or 0
        if value is not None and len(json.dumps(value)) > limit:
            raise ValueError(f"properties exceed {limit} characters of JSON")
        return value


class ViewEvent(EventBase):
    event_type: Literal["view"]
    item_id: Identifier
    recommendation_id: Identifier | None = None


class ClickEvent(EventBase):
    event_type: Literal["click"]
    item_id: Identifier
    recommendation_id: Identifier | None = None


class AddToCartEvent(EventBase):
    event_type: Literal["add_to_cart"]
    item_id: Identifier
    quantity: Annotated[float, Field(gt=0), AfterValidator(_finite)] = 1.0
    price: NonNegative | None = None
    currency: CurrencyCode | None = None
    recommendation_id: Identifier | None = None


class RemoveFromCartEvent(EventBase):
    event_type: Literal["remove_from_cart"]
    item_id: Identifier
    quantity: Annotated[float, Field(gt=0), AfterValidator(_finite)] = 1.0
    price: NonNegative | None = None
    currency: CurrencyCode | None = None


class LineItem(BaseModel):
    """One basket line. A negative quantity records a return or cancellation."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    item_id: Identifier
    quantity: Finite
    price: NonNegative

    @field_validator("quantity")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("quantity must not be 0")
        return value


class PurchaseEvent(EventBase):
    event_type: Literal["purchase"]
    order_id: Identifier | None = None
    currency: CurrencyCode
    items: Annotated[list[LineItem], Field(min_length=1, max_length=1000)]
    recommendation_id: Identifier | None = None


class RatingEvent(EventBase):
    event_type: Literal["rating"]
    item_id: Identifier
    value: Finite


class ImpressionEvent(EventBase):
    """The list of items shown, in display order, and the recommendation that chose them."""

    event_type: Literal["impression"]
    item_ids: Annotated[list[Identifier], Field(min_length=1, max_length=500)]
    recommendation_id: Identifier


class AdSpendEvent(EventBase):
    """Money spent on a channel (and campaign) for the period starting at ``occurred_at``."""

    event_type: Literal["ad_spend"]
    subject_id: Identifier | None = None  # type: ignore[assignment]  # aggregate, no person
    channel: ShortText
    campaign: Identifier | None = None
    cost: NonNegative
    currency: CurrencyCode
    impressions: Count | None = None
    clicks: Count | None = None


class AdResultEvent(EventBase):
    """What a channel (and campaign) returned for the period starting at ``occurred_at``."""

    event_type: Literal["ad_result"]
    subject_id: Identifier | None = None  # type: ignore[assignment]  # aggregate, no person
    channel: ShortText
    campaign: Identifier | None = None
    impressions: Count | None = None
    clicks: Count | None = None
    conversions: NonNegative | None = None
    revenue: NonNegative | None = None
    currency: CurrencyCode | None = None


class TelemetryEvent(EventBase):
    event_type: Literal["telemetry"]
    device_id: Identifier
    metric: ShortText
    value: Finite
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    device_time: UtcDatetime | None = None


class DeviceAdjustmentEvent(EventBase):
    """A person changed a device setting by hand (the signal a learning thermostat learns from)."""

    event_type: Literal["device_adjustment"]
    device_id: Identifier
    metric: ShortText = Field(description="The setting, e.g. 'heat_setpoint'.")
    value: Finite
    previous_value: Finite | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None


class ConsentEvent(EventBase):
    event_type: Literal["consent"]
    purpose: Literal["personalization", "analytics", "advertising"]
    granted: bool
    policy_version: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None


Event = Annotated[
    ViewEvent
    | ClickEvent
    | AddToCartEvent
    | RemoveFromCartEvent
    | PurchaseEvent
    | RatingEvent
    | ImpressionEvent
    | AdSpendEvent
    | AdResultEvent
    | TelemetryEvent
    | DeviceAdjustmentEvent
    | ConsentEvent,
    Field(discriminator="event_type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

assert set(PURPOSES) == set(ConsentEvent.model_fields["purpose"].annotation.__args__)  # type: ignore[union-attr]


def parse_event(data: dict[str, Any]) -> Event:
    """Validate one event given as a dict (raises ``pydantic.ValidationError``)."""
    return EVENT_ADAPTER.validate_python(data)


_CONTEXT_FIELDS = ("session_id", "device_type", "channel", "country")


def to_flat_rows(event: EventBase) -> list[dict[str, Any]]:
    """Flatten a typed event into rows of the event table (see :mod:`tailor.events.columns`)."""
    base: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    data = event.model_dump(exclude={"context", "properties", "items", "item_ids"})
    for name in _CONTEXT_FIELDS:
        base[name] = getattr(event.context, name)
    for name, value in data.items():
        if name in base and value is not None:
            if name in _CONTEXT_FIELDS and base[name] not in (None, value):
                raise ValueError(f"{name} given twice with different values")
            base[name] = value
    if event.properties is not None:
        base["properties"] = json.dumps(event.properties, separators=(",", ":"))
    base["line"] = 0
    if isinstance(event, PurchaseEvent):
        return [
            base | {"line": i, "item_id": li.item_id, "quantity": li.quantity, "price": li.price}
            for i, li in enumerate(event.items)
        ]
    if isinstance(event, ImpressionEvent):
        return [base | {"line": i, "item_id": item} for i, item in enumerate(event.item_ids)]
    return [base]


def from_flat_rows(rows: list[dict[str, Any]]) -> Event:
    """Rebuild a typed event from its rows (the inverse of :func:`to_flat_rows`).

    Raises ``ValueError`` when rows of one event disagree or a single-line type has several.
    """
    if not rows:
        raise ValueError("no rows")
    rows = sorted(rows, key=lambda r: r.get("line") or 0)
    first = rows[0]
    event_type = first.get("event_type")
    rule = EVENT_TYPES.get(str(event_type))
    if rule is None:
        return parse_event({"event_type": event_type})  # raises a clear "unknown type" error
    if len(rows) > 1 and not rule.multi_line:
        raise ValueError(f"event type {event_type!r} is a single row, got {len(rows)}")
    lines = [r.get("line") or 0 for r in rows]
    if lines != list(range(len(rows))):
        raise ValueError(f"lines must be 0..{len(rows) - 1} without gaps, got {lines}")
    data: dict[str, Any] = {}
    per_line = {"line", "item_id", "quantity", "price"} if rule.multi_line else {"line"}
    own_fields = rule.required | rule.optional
    context_fields = [n for n in _CONTEXT_FIELDS if n not in own_fields]
    for name, value in first.items():
        if value is None or name in per_line or name in context_fields:
            continue
        data[name] = json.loads(value) if name == "properties" else value
    context = {n: first[n] for n in context_fields if first.get(n) is not None}
    if context:
        data["context"] = context
    if event_type == "purchase":
        data["items"] = [
            {"item_id": r.get("item_id"), "quantity": r.get("quantity"), "price": r.get("price")}
            for r in rows
        ]
    elif event_type == "impression":
        data["item_ids"] = [r.get("item_id") for r in rows]
    elif rule.multi_line and first.get("item_id") is not None:
        data["item_id"] = first["item_id"]
    return parse_event(data)


def check_flat_row(row: dict[str, Any]) -> None:
    """Validate one flat row on its own with the pydantic models (the slow reference path).

    A multi-line type's row is checked as a one-line event. Columns a type does not allow
    must be empty. Raises ``ValueError`` (or ``pydantic.ValidationError``) naming the field.
    """
    rule = EVENT_TYPES.get(str(row.get("event_type")))
    if rule is not None:
        extra = sorted(k for k, v in row.items() if v is not None and k not in rule.allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} not allowed on a {row['event_type']} event")
    from_flat_rows([dict(row, line=0)])
