"""A small shop served in-process: store, model artifact, tenants, keys (for the API tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from tailor.api.app import build_tenant, create_app
from tailor.api.keys import KeyRing
from tailor.api.state import TenantState
from tailor.config import Settings
from tailor.events.importer import import_table
from tailor.events.schema import parse_event, to_flat_rows
from tailor.recommend.service import RecommendationService
from tailor.workspace import Workspace, open_workspace

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
KEY = "ab" * 32
OPT_OUT = {"personalization": "opt-out", "analytics": "opt-in", "advertising": "opt-in"}


def shop_events(prefix: str = "") -> list[dict]:
    """Coffee lovers (c*) view coffee items, tea lovers (t*) tea items; a few coffee buyers
    buy coffee-1 with coffee-2, so the two are bought together."""
    rng = np.random.default_rng(0)
    out = []
    n = 0

    def add(user: str, item: str, kind: str = "view", hours: float = 24.0, **extra) -> None:
        nonlocal n
        n += 1
        event = {
            "event_id": f"{prefix}e{n}",
            "event_type": kind,
            "subject_id": f"{prefix}{user}",
            "occurred_at": (NOW - timedelta(hours=hours)).isoformat(),
            **extra,
        }
        if kind == "purchase":
            event["currency"] = "EUR"
            event["items"] = [{"item_id": i, "quantity": 1, "price": 3.0} for i in item]
        else:
            event["item_id"] = item
        out.append(event)

    for group, country in (("coffee", "DE"), ("tea", "FR")):
        for u in range(20):
            for i in rng.choice(8, size=4, replace=False):
                add(
                    f"{group[0]}{u}",
                    f"{group}-{i}",
                    hours=float(rng.integers(2, 200)),
                    context={"country": country},
                )
    for u in range(5):
        add(f"buyer{u}", ["coffee-1", "coffee-2"], kind="purchase", hours=5)
    return out


def shop_items() -> pa.Table:
    ids, titles, categories, available = [], [], [], []
    for group, words in (("coffee", "espresso arabica roast coffee"), ("tea", "green leaf tea")):
        for i in [*range(8), "new", "gone"]:
            ids.append(f"{group}-{i}")
            titles.append(f"{words} {i}")
            categories.append(f"Drinks > {group.title()}")
            available.append(i != "gone")
    return pa.table(
        {"item_id": ids, "title": titles, "category": categories, "available": available}
    )


def raw_events(events: list[dict]) -> pa.Table:
    from tailor.events.importer import raw_event_table

    rows = []
    for data in events:
        for row in to_flat_rows(parse_event(data)):
            row["received_at"] = NOW
            rows.append(row)
    return raw_event_table(rows)


def workspace(
    folder: Path, store: str | None = None, prefix: str = "", consent: dict | None = None
) -> Workspace:
    """A store holding the shop (personalization opt-out, so every event feeds the model)."""
    settings = Settings(
        store=store or str(folder / "tailor.duckdb"),
        secret_key=KEY,
        secret_key_file=folder / "secret.key",
        privacy={"consent_default": consent or OPT_OUT},
    )
    ws = open_workspace(settings, create=True)
    import_table(ws.store, shop_items(), pseudonymizer=ws.pseudonymizer, entity="items")
    import_table(ws.store, raw_events(shop_events(prefix)), pseudonymizer=ws.pseudonymizer)
    return ws


def save_model(ws: Workspace, path: Path, model: str = "itemknn") -> RecommendationService:
    service = RecommendationService.build(
        ws.store.read_events(purpose="personalization"),
        ws.store.read_entities("items"),
        model=model,
        params={"neighbors": 20} if model == "itemknn" else None,
    ).with_candidates()  # as `tailor serve --save-model` saves it
    service.save(path)
    return service


@dataclass
class Served:
    app: object
    tenants: dict[str, TenantState]
    tokens: dict[str, str]
    model_path: Path


def serve(
    folder: Path,
    *,
    store: str | None = None,
    second_tenant: bool = False,
    model: bool = True,
    poll_interval_s: float | None = None,
    fast_path: bool = True,
    consent: dict | None = None,
    **api,
) -> Served:
    """An app with tenant ``default`` (and ``shop-b`` with its own store) and keys:
    admin, ingest, recommend (tenant default), other (recommend+ingest+admin, shop-b only)."""
    settings = Settings(store=str(folder / "unused.duckdb"), secret_key=KEY)
    settings.api = settings.api.model_copy(update=api)
    ws = workspace(folder, store, consent=consent)
    model_path = folder / "model"
    if model:
        save_model(ws, model_path)
    tenants = {
        "default": build_tenant(
            "default", ws, settings.api, model_path=model_path, poll_interval_s=poll_interval_s
        ),
    }
    if second_tenant:
        other = folder / "b"
        other.mkdir()
        ws_b = workspace(other, prefix="b-")
        save_model(ws_b, other / "model")
        tenants["shop-b"] = build_tenant(
            "shop-b", ws_b, settings.api, model_path=other / "model", poll_interval_s=None
        )
    ring = KeyRing(folder / "keys.json")
    tokens = {}
    for name, scopes, tenant in (
        ("admin", ["admin"], "default"),
        ("ingest", ["ingest"], "default"),
        ("recommend", ["recommend"], "default"),
        ("other", ["admin"], "shop-b"),
    ):
        _, tokens[name] = ring.create(
            name=name, scopes=scopes, tenant=tenant, rate_per_s=1000.0, burst=1000
        )
    app = create_app(settings=settings, tenants=tenants, keys=ring, fast_path=fast_path)
    return Served(app, tenants, tokens, model_path)


def auth(token: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant:
        headers["X-Tailor-Tenant"] = tenant
    return headers


def close(served: Served) -> None:
    for tenant in served.tenants.values():
        tenant.workspace.close()
