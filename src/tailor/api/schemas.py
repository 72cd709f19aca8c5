"""Request and response bodies of the HTTP API (pydantic v2).

Request bodies refuse unknown fields (``extra="forbid"``): a misspelt field is a 422 naming
it, not a silently ignored value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from tailor.events.columns import ID_LENGTH

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_LENGTH)
]


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- recommendations ------------------------------------------------------------------------


class RecommendedItemOut(BaseModel):
    item_id: str
    score: float
    reason: str = Field(description="Why the item is there, in words for the visitor.")
    kind: str = Field(description="because_you, often_bought_with, similar_content, popular_in, …")
    source: str = Field(description="The model that put the item there.")
    evidence_item: str | None = Field(description="The history item the reason names.")


class RecommendationsOut(BaseModel):
    recommendation_id: str = Field(
        description="Send it back with the view, click or purchase it led to (attribution)."
    )
    model_version: str
    experiment: str | None = Field(
        default=None, description="The running experiment that chose the model, if any."
    )
    arm: str | None = Field(default=None, description="The experiment's arm that answered.")
    items: list[RecommendedItemOut]


class RelatedItemsOut(BaseModel):
    item_id: str
    model_version: str
    items: list[RecommendedItemOut]


# --- events ---------------------------------------------------------------------------------


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request (0 for a single one).")
    event_id: str | None
    reason: str


class IngestOut(BaseModel):
    accepted: int = Field(description="Events stored now (durably, before this answer).")
    duplicates: int = Field(description="Events whose event_id was stored before.")
    rejected: list[Rejection]


EVENTS_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "description": "One event (see the README, 'The event log')."},
        {
            "type": "object",
            "properties": {"events": {"type": "array", "items": {"type": "object"}}},
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
}


# --- items ----------------------------------------------------------------------------------


class ItemIn(Body):
    """Catalog fields of an item; fields left out keep their stored values."""

    title: Annotated[str, StringConstraints(max_length=1_000)] | None = None
    description: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    category: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="Category path, levels joined by ' > '."
    )
    brand: Annotated[str, StringConstraints(max_length=200)] | None = None
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    available: bool | None = Field(default=None, description="In stock / orderable now.")
    active: bool | None = Field(default=None, description="Listed in the catalog at all.")
    created_at: AwareDatetime | None = None
    attributes: dict[str, JsonValue] | None = None


class ItemUpsert(ItemIn):
    item_id: Identifier


class ItemsIn(Body):
    items: Annotated[list[ItemUpsert], Field(min_length=1)]


class ItemsOut(BaseModel):
    upserted: int
    catalog_items: int = Field(description="Items the served catalog holds now.")


# --- users ----------------------------------------------------------------------------------


class ConsentIn(Body):
    purpose: Literal["personalization", "analytics", "advertising"]
    granted: bool
    policy_version: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the person decided (default: now)."
    )


class ConsentOut(BaseModel):
    event_id: str
    purpose: str
    granted: bool


class ErasureOut(BaseModel):
    events: int
    users: int
    devices: int
    hooks: dict[str, str]
    complete: bool


class ExportOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    subject: str = Field(description="The stored pseudonym of the user.")
    erased: bool
    events: list[dict[str, Any]]
    consent: list[dict[str, Any]]
    user: dict[str, Any] | None
    in_memory: dict[str, Any]


# --- operations -----------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    ready: bool
    tenant: str
    model_version: str | None
    fallback: bool
    reason: str | None = Field(description="Why the fallback (or nothing) is served.")
    loaded_at: str | None


class ErrorOut(BaseModel):
    detail: Any
