"""GET /v1/users/{id}/profile and GET /v1/segments: scores served, consent and erasure obeyed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from tailor.api.app import build_tenant, create_app
from tailor.api.keys import KeyRing
from tailor.audience.model import AudienceConfig, AudienceModel
from tailor.config import Settings
from tailor.events.importer import import_table
from tailor.workspace import Workspace, open_workspace
from tests.api._serving import KEY, OPT_OUT, auth, raw_events
from tests.audience.test_churn import simulated_purchases


def purchase_log(customers: int = 200) -> list[dict]:
    """Simulated purchases and an analytics consent for every customer but c1."""
    events = [
        {"event_id": f"ok{k}", "event_type": "consent", "subject_id": f"c{k}",
         "occurred_at": "2023-12-01T00:00:00Z", "purpose": "analytics", "granted": True}
        for k in range(customers) if k != 1
    ]  # fmt: skip
    for n, row in enumerate(simulated_purchases(customers).to_pylist()):
        events.append(
            {
                "event_id": f"p{n}",
                "event_type": "purchase",
                "subject_id": row["subject_id"],
                "occurred_at": row["occurred_at"].isoformat(),
                "currency": "EUR",
                "items": [{"item_id": "i", "quantity": row["quantity"], "price": row["price"]}],
            }
        )
    return events


def buyers(customers: int = 200) -> list[str]:
    """Consenting customers with purchases, in id order."""
    bought = set(simulated_purchases(customers)["subject_id"].to_pylist())
    return [f"c{k}" for k in range(customers) if k != 1 and f"c{k}" in bought]


def shop(folder: Path, customers: int = 200) -> tuple[Settings, Workspace, AudienceModel]:
    """A store holding the purchase log, and the audience model fitted on it (saved)."""
    settings = Settings(
        store=str(folder / "tailor.duckdb"),
        secret_key=KEY,
        secret_key_file=folder / "secret.key",
        privacy={"consent_default": OPT_OUT},
    )
    ws = open_workspace(settings, create=True)
    import_table(ws.store, raw_events(purchase_log(customers)), pseudonymizer=ws.pseudonymizer)
    model = AudienceModel(AudienceConfig(horizon_days=60)).fit(ws.store, date(2024, 12, 31))
    model.save(folder / "audience")
    return settings, ws, model


@pytest.fixture
def served(tmp_path: Path):
    settings, ws, _ = shop(tmp_path)
    tenants = {
        "default": build_tenant(
            "default", ws, settings.api, poll_interval_s=None, audience_path=tmp_path / "audience"
        ),
        "plain": build_tenant("plain", ws, settings.api, poll_interval_s=None),
    }
    ring = KeyRing(tmp_path / "keys.json")
    _, admin = ring.create(name="admin", scopes=["admin"], rate_per_s=1000.0, burst=1000)
    _, plain = ring.create(
        name="plain", scopes=["admin"], tenant="plain", rate_per_s=1e3, burst=1000
    )
    _, reader = ring.create(name="reader", scopes=["recommend"], rate_per_s=1000.0, burst=1000)
    app = create_app(settings=settings, tenants=tenants, keys=ring)
    with TestClient(app) as client:
        yield client, {"admin": admin, "plain": plain, "reader": reader}, ws
    ws.close()


def test_a_customer_profile_and_the_segments(served):
    client, keys, _ = served
    profile = client.get(f"/v1/users/{buyers()[0]}/profile", headers=auth(keys["admin"]))
    assert profile.status_code == 200, profile.text
    body = profile.json()
    assert 0 <= body["churn_risk"] <= 1 and body["clv"] >= 0 and body["segment"]
    assert body["churn_reasons"] and {"feature", "contribution"} <= set(body["churn_reasons"][0])
    segments = client.get("/v1/segments", headers=auth(keys["admin"])).json()
    assert sum(s["customers"] for s in segments["segments"]) == segments["customers"]
    assert segments["clusters"] and segments["as_of"] <= str(datetime.now(UTC).date())


def test_no_consent_revoked_consent_and_erasure_each_end_the_profile(served):
    client, keys, _ = served
    admin = auth(keys["admin"])
    assert client.get("/v1/users/c1/profile", headers=admin).status_code == 404  # never consented
    before = client.get("/v1/segments", headers=admin).json()["customers"]
    revoking, erased = buyers()[:2]
    assert client.get(f"/v1/users/{revoking}/profile", headers=admin).status_code == 200
    revoked = client.put(
        f"/v1/users/{revoking}/consent", json={"purpose": "analytics", "granted": False},
        headers=admin,
    )  # fmt: skip
    assert revoked.status_code == 200, revoked.text
    assert client.get(f"/v1/users/{revoking}/profile", headers=admin).status_code == 404
    assert client.get(f"/v1/users/{erased}/profile", headers=admin).status_code == 200
    assert client.delete(f"/v1/users/{erased}", headers=admin).status_code == 200
    assert client.get(f"/v1/users/{erased}/profile", headers=admin).status_code == 404
    assert client.get("/v1/segments", headers=admin).json()["customers"] == before - 1


def test_scope_missing_model_and_bad_ids_are_client_errors(served):
    client, keys, _ = served
    assert client.get("/v1/segments", headers=auth(keys["reader"])).status_code == 403
    missing = client.get("/v1/segments", headers=auth(keys["plain"], "plain"))
    assert missing.status_code == 404 and "tailor serve --audience" in missing.json()["detail"]
    assert client.get("/v1/users/nobody/profile", headers=auth(keys["admin"])).status_code == 404
    long_id = "x" * 129
    assert (
        client.get(f"/v1/users/{long_id}/profile", headers=auth(keys["admin"])).status_code == 422
    )


def test_stored_scores_are_served_and_exported(tmp_path: Path):
    from tailor.audience.service import AudienceService, store_scores

    settings, ws, model = shop(tmp_path, customers=60)
    try:
        scores = model.score(ws.store)
        buyer = scores["customer_id"][0].as_py()
        marked = scores.set_column(
            scores.column_names.index("segment"), "segment", pa.array(["marked"] * scores.num_rows)
        )
        scored_at = datetime(2025, 1, 2, tzinfo=UTC)
        assert store_scores(ws.store, marked, date(2024, 12, 31), scored_at) == scores.num_rows
        service = AudienceService.from_store(tmp_path / "audience", ws.store)
        assert service.profile(buyer)["segment"] == "marked"  # the stored run, not a new one
        assert service.segments()["as_of"] == "2024-12-31"
        tenant = build_tenant("default", ws, settings.api, poll_interval_s=None)
        assert tenant.serving.export_user(buyer)["scores"]["audience"]["segment"] == "marked"
        tenant.serving.erase_user(buyer)
        assert ws.store.read_scores("audience", buyer) == []
    finally:
        ws.close()


def test_a_reload_serves_the_latest_stored_scores(served):
    from tailor.audience.service import store_scores

    client, keys, ws = served
    admin = auth(keys["admin"])
    buyer = buyers()[0]
    before = client.get(f"/v1/users/{buyer}/profile", headers=admin).json()
    folder = client.app.state.tailor.tenants["default"].extras["audience"].model_folder
    scores = AudienceModel.load(folder).score(ws.store)
    marked = scores.set_column(
        scores.column_names.index("segment"), "segment", pa.array(["marked"] * scores.num_rows)
    )
    store_scores(ws.store, marked, date(2024, 12, 30), datetime.now(UTC))
    assert client.get(f"/v1/users/{buyer}/profile", headers=admin).json() == before  # not yet
    assert client.post("/v1/admin/reload", headers=admin).status_code in (200, 503)
    assert client.get(f"/v1/users/{buyer}/profile", headers=admin).json()["segment"] == "marked"
    assert client.get("/v1/segments", headers=admin).json()["as_of"] == "2024-12-30"


def test_every_worker_follows_scores_stored_by_another_process(served):
    """Another process (a `tailor audience score`, another worker's reload) stores new
    scores: the poll listener of this worker picks them up without a request to it, once."""
    from tailor.audience.service import store_scores

    client, keys, ws = served
    admin = auth(keys["admin"])
    buyer = buyers()[0]
    tenant = client.app.state.tailor.tenants["default"]
    service = tenant.extras["audience"]
    follow = tenant.serving.poll_listeners
    assert len(follow) == 1
    assert service.reload_if_changed(ws.store) is False  # nothing new since start-up
    scores = AudienceModel.load(service.model_folder).score(ws.store)
    marked = scores.set_column(
        scores.column_names.index("segment"), "segment", pa.array(["marked"] * scores.num_rows)
    )
    store_scores(ws.store, marked, date(2024, 12, 29), datetime.now(UTC))
    follow[0]()  # what the poller thread does each second
    assert client.get(f"/v1/users/{buyer}/profile", headers=admin).json()["segment"] == "marked"
    assert service.reload_if_changed(ws.store) is False  # read once, not on every poll

    # A model folder written again (a new `tailor audience fit`) is followed too.
    AudienceModel.load(service.model_folder).save(service.model_folder)
    assert service.reload_if_changed(ws.store) is True
