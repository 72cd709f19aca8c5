"""Catalog changes: ``PUT /v1/items/{item_id}`` and the batch ``PUT /v1/items``."""

from __future__ import annotations

import json
from typing import Annotated

import pyarrow as pa
from fastapi import APIRouter, HTTPException, Path

from tailor.api.deps import AdminCaller, AppStateDep
from tailor.api.schemas import ItemIn, ItemsIn, ItemsOut, ItemUpsert
from tailor.api.state import TenantState

router = APIRouter(tags=["items"])


@router.put("/items/{item_id}", response_model=ItemsOut)
def put_item(
    item_id: Annotated[str, Path(min_length=1, max_length=128)], item: ItemIn, caller: AdminCaller
) -> ItemsOut:
    """Insert or update one item; fields left out keep their values. An item set
    unavailable or inactive leaves every answer at once."""
    return upsert_items(
        caller.tenant, [ItemUpsert(item_id=item_id, **item.model_dump(exclude_unset=True))]
    )


@router.put("/items", response_model=ItemsOut)
def put_items(body: ItemsIn, caller: AdminCaller, state: AppStateDep) -> ItemsOut:
    """Insert or update up to ``api.max_batch_events`` items in one request."""
    if len(body.items) > state.api.max_batch_events:
        raise HTTPException(
            413, f"items: at most {state.api.max_batch_events} per request, got {len(body.items)}"
        )
    return upsert_items(caller.tenant, body.items)


def upsert_items(tenant: TenantState, items: list[ItemUpsert]) -> ItemsOut:
    """Store the items, then update the served catalog; rows that give the same fields are
    written together (a field left out of a row is not overwritten)."""
    groups: dict[frozenset[str], list[dict]] = {}
    for item in items:
        row = item.model_dump(exclude_unset=True)
        row["item_id"] = item.item_id
        if "attributes" in row and row["attributes"] is not None:
            row["attributes"] = json.dumps(row["attributes"], separators=(",", ":"))
        groups.setdefault(frozenset(row), []).append(row)
    upserted = 0
    for fields, rows in groups.items():
        names = ["item_id", *sorted(fields - {"item_id"})]
        table = pa.table({name: [row[name] for row in rows] for name in names})
        upserted += tenant.serving.upsert_items(table)
    loaded = tenant.serving.loaded
    return ItemsOut(upserted=upserted, catalog_items=len(loaded.service.catalog) if loaded else 0)
