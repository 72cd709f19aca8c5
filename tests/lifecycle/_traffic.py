"""Live traffic for the experiment tests: a served shop with two registered model versions,
and simulated visitors who see recommendations and click at their arm's rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from tailor.lifecycle import registry, rollouts
from tailor.lifecycle.rollouts import Arm, Experiment
from tailor.store.base import Store
from tests.api._serving import Served, auth, save_model, serve

EVERYONE = {"personalization": "opt-out", "analytics": "opt-out", "advertising": "opt-out"}
"""Consent defaults under which every simulated visitor counts (the tests are not about
consent; tests/api covers it)."""


@dataclass
class Shop:
    served: Served
    client: TestClient
    store: Store
    control: str
    treatment: str

    @property
    def serving(self):
        return self.served.tenants["default"].serving


def open_shop(folder: Path) -> Shop:
    """A served shop whose itemknn model is ``production`` and a popularity model the
    ``candidate``; both registered."""
    served = serve(folder, consent=EVERYONE)
    tenant = served.tenants["default"]
    store = tenant.workspace.store
    versions = []
    for name, model in (("model", None), ("other", "popularity")):
        path = folder / name
        service = save_model(tenant.workspace, path, model) if model else None
        from tailor.recommend.service import RecommendationService

        service = service or RecommendationService.load(path)
        registry.register(
            store, "recommend", path, version=service.version, metrics={"ndcg_at_10": 0.1}
        )
        versions.append(service.version)
    registry.promote(store, "recommend", versions[0], by="test", reason="first model")
    client = TestClient(served.app)
    client.__enter__()
    return Shop(served, client, store, versions[0], versions[1])


def visit(
    shop: Shop,
    users: range | list[str],
    click_rate: Callable[[str | None], float],
    *,
    seed: int = 0,
    prefix: str = "v",
    purchase_rate: float = 0.0,
) -> list[dict]:
    """Each user asks for recommendations, sees them (an impression with the answer's id) and
    clicks the first item with ``click_rate(arm)``; returns the answers."""
    rng = np.random.default_rng(seed)
    token = shop.served.tokens["admin"]
    answers, events = [], []
    now = datetime.now(UTC) - timedelta(minutes=1)
    for user in users:
        subject = f"{prefix}{user}"
        answer = shop.client.get(
            f"/v1/users/{subject}/recommendations", params={"k": 3}, headers=auth(token)
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        answers.append({"subject": subject, **body})
        rid, items = body["recommendation_id"], [i["item_id"] for i in body["items"]]
        at = now.isoformat()
        events.append(
            {
                "event_id": f"imp-{rid}",
                "event_type": "impression",
                "subject_id": subject,
                "item_ids": items,
                "recommendation_id": rid,
                "occurred_at": at,
            }
        )
        if rng.random() < click_rate(body["arm"]):
            events.append(
                {
                    "event_id": f"clk-{rid}",
                    "event_type": "click",
                    "subject_id": subject,
                    "item_id": items[0],
                    "recommendation_id": rid,
                    "occurred_at": (now + timedelta(seconds=5)).isoformat(),
                }
            )
            if rng.random() < purchase_rate:
                events.append(
                    {
                        "event_id": f"buy-{rid}",
                        "event_type": "purchase",
                        "subject_id": subject,
                        "currency": "EUR",
                        "items": [{"item_id": items[0], "quantity": 1, "price": 9.0}],
                        "recommendation_id": rid,
                        "occurred_at": (now + timedelta(seconds=9)).isoformat(),
                    }
                )
    for start in range(0, len(events), 500):
        sent = shop.client.post(
            "/v1/events", json={"events": events[start : start + 500]}, headers=auth(token)
        )
        assert sent.status_code == 200, sent.text
        assert not sent.json().get("rejected"), sent.json()
    shop.serving.flush_served()
    return answers


def start_ab(shop: Shop, **extra) -> Experiment:
    """A 50/50 A/B test ``ranker-test`` of the shop's two versions (control first)."""
    arms = [
        Arm(name="control", version=shop.control),
        Arm(name="treatment", version=shop.treatment),
    ]
    return rollouts.start(
        shop.store, Experiment(name="ranker-test", arms=arms, **{"min_users": 100, **extra})
    )


def close_shop(shop: Shop) -> None:
    shop.client.__exit__(None, None, None)
    for tenant in shop.served.tenants.values():
        tenant.workspace.close()
