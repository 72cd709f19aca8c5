"""Recommendations for a user, similar items and items bought together."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from tailor.api.deps import K, RecommendCaller
from tailor.api.schemas import RecommendationsOut, RecommendedItemOut, RelatedItemsOut
from tailor.api.state import TenantState
from tailor.recommend.service import RecommendedItem

router = APIRouter(tags=["recommendations"])

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 64
MAX_CATEGORIES = 20
UserId = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_CHARS, description="Your id of the user.")
]
ItemId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str | None, Query(max_length=MAX_TEXT_CHARS)]
Categories = Annotated[list[str] | None, Query(max_length=MAX_CATEGORIES)]


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommendations(
    user_id: UserId,
    caller: RecommendCaller,
    k: K,
    country: Text = None,
    device: Text = None,
    source: Annotated[str | None, Query(max_length=MAX_TEXT_CHARS, description="Channel.")] = None,
    include_category: Categories = None,
    exclude_category: Categories = None,
) -> Response:
    """The user's top ``k`` after business rules, each with its reason. Send the
    ``recommendation_id`` back with the events it leads to."""
    body = recommendations_json(
        caller.tenant,
        user_id,
        k=k,
        context={"country": country, "device_type": device, "channel": source},
        include_categories=include_category,
        exclude_categories=exclude_category,
    )
    return Response(body, media_type="application/json")


def recommendations_json(
    tenant: TenantState,
    user_id: str,
    *,
    k: int,
    context: dict[str, str | None],
    include_categories: list[str] | None,
    exclude_categories: list[str] | None,
) -> bytes:
    """The route's answer as JSON: shared with the fast path (:mod:`tailor.api.fastpath`).

    The items come written (:class:`~tailor.api.state.Served`), straight from the
    dataclasses without a pydantic round per item, and are spliced into the answer as they
    are; the schema the route declares is what they follow, and a test checks the two agree.
    """
    served = tenant.serving.recommend(
        tenant.pseudonym(user_id),
        k=k,
        context=context,
        include_categories=include_categories,
        exclude_categories=exclude_categories,
    )
    head = orjson.dumps(
        {
            "recommendation_id": served.recommendation_id,
            "model_version": served.version,
            "experiment": served.experiment,
            "arm": served.arm,
            "items": [],
        }
    )
    return b"".join((head[:-3], served.items_json, b"}"))  # head ends with `[]}`


@router.get("/items/{item_id}/similar", response_model=RelatedItemsOut)
async def similar(item_id: ItemId, caller: RecommendCaller, k: K) -> RelatedItemsOut:
    """Items like this one (the model's item similarity, or content for new items)."""
    serving = caller.tenant.serving
    return _related(item_id, serving.current().version, serving.similar, k)


@router.get("/items/{item_id}/bought-together", response_model=RelatedItemsOut)
async def bought_together(item_id: ItemId, caller: RecommendCaller, k: K) -> RelatedItemsOut:
    """Items bought or carted by the customers who bought or carted this one; similar
    items (and a reason that says so) when nobody has yet."""
    serving = caller.tenant.serving
    return _related(item_id, serving.current().version, serving.bought_together, k)


def _related(item_id: str, version: str, find, k: int) -> RelatedItemsOut:
    try:
        items = find(item_id, k)
    except KeyError:
        raise HTTPException(404, f"item_id: no item {item_id!r} in the catalog") from None
    return RelatedItemsOut(item_id=item_id, model_version=version, items=[_line(i) for i in items])


def _fields(item: RecommendedItem) -> dict[str, object]:
    return {name: getattr(item, name) for name in _ITEM_FIELDS}


_ITEM_FIELDS = tuple(RecommendedItemOut.model_fields)
if tuple(f.name for f in dataclass_fields(RecommendedItem)) != _ITEM_FIELDS:
    # orjson writes the dataclass's fields: they must be the published schema's.
    raise ImportError("RecommendedItem and RecommendedItemOut must have the same fields")


def _line(item: RecommendedItem) -> RecommendedItemOut:
    return RecommendedItemOut(**_fields(item))
