"""The flat event log: one row per event line, one column spec for every path.

Every event is stored as one or more rows of a single wide table. Most events are one row
(``line = 0``); a purchase stores one row per basket line and an impression one row per shown
item (``line`` = position), so engines read item interactions without unnesting anything.

This module is the single source of truth for that table. The pydantic models
(:mod:`tailor.events.schema`), the vectorized import validator (:mod:`tailor.events.validate`)
and both stores derive their columns, types and per-type rules from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

ColumnKind = Literal["string", "float", "int", "bool", "timestamp", "json"]

PURPOSES: tuple[str, ...] = ("personalization", "analytics", "advertising")
"""Consent purposes. Each engine reads only subjects who granted its purpose."""


@dataclass(frozen=True)
class Column:
    """One column of the flat event table.

    Parameters
    ----------
    name : column name, identical in files, Arrow, DuckDB and PostgreSQL.
    kind : logical type.
    max_length : longest accepted string (characters).
    pseudonym_namespace : if set, the value identifies a person or their property and is
        replaced by its keyed pseudonym (HMAC-SHA256) before it reaches the store.
    minimum : smallest accepted number (inclusive), if any.
    doc : one line for the README and ``tailor schema``.
    """

    name: str
    kind: ColumnKind
    max_length: int | None = None
    pseudonym_namespace: str | None = None
    minimum: float | None = None
    doc: str = ""


ID_LENGTH = 128

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("event_id", "string", ID_LENGTH, doc="idempotency key: the same id is stored once"),
    Column("line", "int", minimum=0, doc="basket line or impression position; 0 otherwise"),
    Column("event_type", "string", 32, doc="one of EVENT_TYPES"),
    Column("occurred_at", "timestamp", doc="when it happened (UTC)"),
    Column("received_at", "timestamp", doc="when tailor received it (UTC), set by tailor"),
    Column("subject_id", "string", ID_LENGTH, "subject", doc="the person (pseudonymized)"),
    Column("session_id", "string", ID_LENGTH, "session", doc="visit/session (pseudonymized)"),
    Column("device_type", "string", 32, doc="context: desktop, mobile, tablet, app, ..."),
    Column("channel", "string", 64, doc="traffic source, or the ad channel of ad events"),
    Column("country", "string", 2, doc="context: ISO 3166-1 alpha-2 country code"),
    Column("item_id", "string", ID_LENGTH, doc="catalog item"),
    Column("recommendation_id", "string", ID_LENGTH, doc="the recommendation that showed it"),
    Column("order_id", "string", ID_LENGTH, doc="groups purchase lines into an order"),
    Column("quantity", "float", doc="units; negative on a purchase line means a return"),
    Column("price", "float", minimum=0, doc="unit price in `currency`"),
    Column("currency", "string", 3, doc="ISO 4217 code"),
    Column("value", "float", doc="rating, telemetry reading or new device setting"),
    Column("campaign", "string", ID_LENGTH, doc="ad campaign"),
    Column("cost", "float", minimum=0, doc="ad spend in `currency`"),
    Column("impressions", "int", minimum=0, doc="ad impressions"),
    Column("clicks", "int", minimum=0, doc="ad clicks"),
    Column("conversions", "float", minimum=0, doc="ad conversions"),
    Column("revenue", "float", minimum=0, doc="ad-attributed revenue in `currency`"),
    Column("device_id", "string", ID_LENGTH, "device", doc="connected device (pseudonymized)"),
    Column("metric", "string", 64, doc="telemetry metric or adjusted setting name"),
    Column("unit", "string", 16, doc="unit of `value`"),
    Column("device_time", "timestamp", doc="the device's own clock for telemetry"),
    Column("previous_value", "float", doc="device setting before a manual adjustment"),
    Column("purpose", "string", 32, doc="consent purpose: " + ", ".join(PURPOSES)),
    Column("granted", "bool", doc="consent granted (true) or revoked (false)"),
    Column("policy_version", "string", 32, doc="privacy policy version the consent refers to"),
    Column("properties", "json", 16_384, doc="free-form JSON object, no direct identifiers"),
)

COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in EVENT_COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in EVENT_COLUMNS)

COMMON_REQUIRED = frozenset({"event_id", "line", "event_type", "occurred_at"})
CONTEXT_COLUMNS = frozenset({"session_id", "device_type", "channel", "country", "properties"})
SET_BY_TAILOR = frozenset({"received_at"})


@dataclass(frozen=True)
class EventTypeRule:
    """Which columns an event type must and may carry (besides the common ones)."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    subject_required: bool = True
    multi_line: bool = False
    """Purchases (basket lines) and impressions (positions) may span several rows."""

    @property
    def allowed(self) -> frozenset[str]:
        base = COMMON_REQUIRED | SET_BY_TAILOR | CONTEXT_COLUMNS | {"subject_id"}
        return base | self.required | self.optional


_SHOP_ITEM = frozenset({"item_id"})
EVENT_TYPES: dict[str, EventTypeRule] = {
    "view": EventTypeRule(_SHOP_ITEM, frozenset({"recommendation_id"})),
    "click": EventTypeRule(_SHOP_ITEM, frozenset({"recommendation_id"})),
    "add_to_cart": EventTypeRule(
        _SHOP_ITEM, frozenset({"quantity", "price", "currency", "recommendation_id"})
    ),
    "remove_from_cart": EventTypeRule(_SHOP_ITEM, frozenset({"quantity", "price", "currency"})),
    "purchase": EventTypeRule(
        frozenset({"item_id", "quantity", "price", "currency"}),
        frozenset({"order_id", "recommendation_id"}),
        multi_line=True,
    ),
    "rating": EventTypeRule(frozenset({"item_id", "value"})),
    "impression": EventTypeRule(frozenset({"item_id", "recommendation_id"}), multi_line=True),
    "ad_spend": EventTypeRule(
        frozenset({"channel", "cost", "currency"}),
        frozenset({"campaign", "impressions", "clicks"}),
        subject_required=False,
    ),
    "ad_result": EventTypeRule(
        frozenset({"channel"}),
        frozenset({"campaign", "impressions", "clicks", "conversions", "revenue", "currency"}),
        subject_required=False,
    ),
    "telemetry": EventTypeRule(
        frozenset({"device_id", "metric", "value"}), frozenset({"unit", "device_time"})
    ),
    "device_adjustment": EventTypeRule(
        frozenset({"device_id", "metric", "value"}), frozenset({"unit", "previous_value"})
    ),
    "consent": EventTypeRule(frozenset({"purpose", "granted"}), frozenset({"policy_version"})),
}

PSEUDONYMIZED_EVENT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in EVENT_COLUMNS if c.pseudonym_namespace
)

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "string": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}


def arrow_type(kind: ColumnKind) -> pa.DataType:
    return _ARROW_TYPES[kind]


EVENT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, arrow_type(c.kind), nullable=True) for c in EVENT_COLUMNS]
)
"""Arrow schema of the stored event table (and of every import-ready table)."""


# --- entities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntitySpec:
    """An entity table with upsert semantics keyed by ``key``."""

    name: str
    key: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, arrow_type(c.kind)) for c in self.columns])

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pseudonymized(self) -> dict[str, str]:
        return {c.name: c.pseudonym_namespace for c in self.columns if c.pseudonym_namespace}


ENTITIES: dict[str, EntitySpec] = {
    "users": EntitySpec(
        "users",
        "user_id",
        (
            Column("user_id", "string", ID_LENGTH, "subject", doc="the person (pseudonymized)"),
            Column("attributes", "json", 16_384, doc="JSON object, no direct identifiers"),
            Column("updated_at", "timestamp", doc="last upsert (UTC), set by tailor"),
        ),
    ),
    "items": EntitySpec(
        "items",
        "item_id",
        (
            Column("item_id", "string", ID_LENGTH),
            Column("title", "string", 1_000),
            Column("description", "string", 20_000),
            Column("category", "string", 500, doc="category path, levels joined by ' > '"),
            Column("brand", "string", 200),
            Column("price", "float", minimum=0),
            Column("currency", "string", 3),
            Column("available", "bool", doc="in stock / orderable now"),
            Column("active", "bool", doc="listed in the catalog at all"),
            Column("created_at", "timestamp"),
            Column("attributes", "json", 16_384),
            Column("updated_at", "timestamp", doc="last upsert (UTC), set by tailor"),
        ),
    ),
    "devices": EntitySpec(
        "devices",
        "device_id",
        (
            Column("device_id", "string", ID_LENGTH, "device"),
            Column("device_type", "string", 64, doc="thermostat, light, ..."),
            Column("home_id", "string", ID_LENGTH, "home"),
            Column("owner_id", "string", ID_LENGTH, "subject", doc="owner (pseudonymized)"),
            Column("attributes", "json", 16_384),
            Column("updated_at", "timestamp", doc="last upsert (UTC), set by tailor"),
        ),
    ),
}

ITEM_CATEGORY_SEPARATOR = " > "
