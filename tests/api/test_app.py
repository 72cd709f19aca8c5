"""The HTTP API end to end, in-process: routes, limits, authorization, freshness, privacy."""

from __future__ import annotations

import re
import shutil
import threading
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tailor.api.schemas import RecommendationsOut
from tests.api._serving import auth, close, save_model, serve

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def served(tmp_path):
    s = serve(tmp_path, second_tenant=True, max_k=50, max_batch_events=5, max_body_bytes=4000)
    yield s
    close(s)


def get(client, path, key="recommend", **kw):
    return client.get(path, headers=auth(client.tokens[key]), **kw)


def view(event_id, user, item, **extra):
    return {
        "event_id": event_id,
        "event_type": "view",
        "subject_id": user,
        "occurred_at": datetime.now(UTC).isoformat(),
        "item_id": item,
        **extra,
    }


def ids(response):
    assert response.status_code == 200, response.text
    return [line["item_id"] for line in response.json()["items"]]


# --- happy paths --------------------------------------------------------------------------


def test_recommendations_have_reasons_ids_and_respect_filters(client):
    r = get(client, "/v1/users/c3/recommendations?k=5&country=DE")
    body = r.json()
    assert r.status_code == 200 and len(body["items"]) == 5
    assert len(body["recommendation_id"]) == 32
    assert all(line["reason"] for line in body["items"])
    # The route writes its JSON by hand: it must be exactly what the published schema says.
    assert RecommendationsOut.model_validate(body).model_dump() == body
    assert r.headers["content-type"] == "application/json"
    assert all(i.startswith("coffee") for i in ids(r)[:3])
    again = get(client, "/v1/users/c3/recommendations?k=5&country=DE").json()
    assert again["recommendation_id"] != body["recommendation_id"]  # one id per answer
    tea = ids(get(client, "/v1/users/c3/recommendations?k=3&include_category=Drinks > Tea"))
    assert tea and all(i.startswith("tea") for i in tea)
    cold = get(client, "/v1/users/never-seen/recommendations?k=3&country=FR&device=mobile")
    assert cold.status_code == 200 and len(cold.json()["items"]) == 3


def test_similar_and_bought_together(client):
    similar = get(client, "/v1/items/coffee-3/similar?k=3")
    assert ids(similar) and all(i.startswith("coffee") for i in ids(similar))
    together = get(client, "/v1/items/coffee-1/bought-together?k=3").json()
    assert together["items"][0]["item_id"] == "coffee-2"
    assert together["items"][0]["kind"] == "often_bought_with"
    fallback = get(client, "/v1/items/tea-3/bought-together?k=3").json()
    assert fallback["items"] and "Not bought with anything yet" in fallback["items"][0]["reason"]
    assert get(client, "/v1/items/no-such/similar").status_code == 404
    missing = get(client, "/v1/items/no-such/bought-together")
    assert missing.status_code == 404 and "item_id" in missing.json()["detail"]


def check_one_event_then_a_batch(client) -> None:
    """One event, then a batch repeating it beside a new and an invalid event: accepted,
    duplicate and rejected counted apart (also run with ingest helper processes)."""
    h = auth(client.tokens["ingest"])
    one = client.post("/v1/events", json=view("x1", "u1", "tea-1"), headers=h)
    assert one.status_code == 200 and one.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    batch = {"events": [view("x1", "u1", "tea-1"), view("x2", "u1", "tea-2"), {"event_id": "x3"}]}
    r = client.post("/v1/events", json=batch, headers=h).json()
    assert r["accepted"] == 1 and r["duplicates"] == 1
    assert [(x["index"], x["event_id"]) for x in r["rejected"]] == [(2, "x3")]


def test_events_single_batch_duplicates_and_rejections(client):
    check_one_event_then_a_batch(client)
    h = auth(client.tokens["ingest"])
    bad = client.post("/v1/events", json={"events": [{"event_id": "y", "bogus": 1}]}, headers=h)
    assert bad.status_code == 422 and bad.json()["accepted"] == 0


def test_health_ready_metrics(client):
    assert client.get("/v1/health").json() == {"status": "ok"}
    ready = client.get("/v1/ready").json()
    assert ready["ready"] and not ready["fallback"] and ready["model_version"].startswith("itemknn")
    get(client, "/v1/users/c1/recommendations")
    client.post("/v1/events", json=view("m1", "u9", "tea-1"), headers=auth(client.tokens["ingest"]))
    text = client.get("/metrics").text
    assert (
        'tailor_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",'
        'status="200"} 1.0' in text
    )
    assert "tailor_http_request_duration_seconds_bucket" in text
    assert 'tailor_events_total{outcome="accepted",tenant="default"} 1.0' in text
    assert 'tailor_model_fallback{tenant="default"} 0.0' in text
    # One event, one group commit, which took some time.
    assert 'tailor_ingest_commits_total{tenant="default"} 1.0' in text
    assert 'tailor_ingest_commit_failures_total{tenant="default"} 0.0' in text
    seconds = re.search(r'tailor_ingest_commit_seconds_total\{tenant="default"\} (\S+)', text)
    assert seconds and float(seconds.group(1)) > 0
    # No raw user id anywhere (the model version's random suffix may hold the letters).
    assert "tailor_model_info{" in text and '"c1"' not in text and "/users/c1" not in text
    spec = client.get("/openapi.json").json()
    assert "/v1/users/{user_id}/recommendations" in spec["paths"]


# --- bad input ----------------------------------------------------------------------------


def test_bad_inputs_are_4xx_naming_the_field(client):
    h = auth(client.tokens["ingest"])
    too_many = get(client, "/v1/users/c1/recommendations?k=51")
    assert too_many.status_code == 422 and "k" in too_many.json()["detail"]
    assert get(client, "/v1/users/c1/recommendations?k=0").status_code == 422
    batch = {"events": [view(f"b{i}", "u1", "tea-1") for i in range(6)]}
    big = client.post("/v1/events", json=batch, headers=h)
    assert big.status_code == 413 and "events" in big.json()["detail"]
    body = client.post("/v1/events", content=b"{" + b" " * 5000 + b"}", headers=h)
    assert body.status_code == 413
    not_json = client.post("/v1/events", content=b"{nope", headers=h)
    assert not_json.status_code == 400 and "JSON" in not_json.json()["detail"]
    extra = client.post("/v1/events", json={"events": [], "more": 1}, headers=h)
    assert extra.status_code == 422 and "more" in extra.json()["detail"]
    admin = auth(client.tokens["admin"])
    unknown = client.put("/v1/items/tea-1", json={"availabel": False}, headers=admin)
    assert unknown.status_code == 422 and "availabel" in unknown.text
    price = client.put("/v1/items/tea-1", json={"price": -1}, headers=admin)
    assert price.status_code == 422 and "price" in price.text
    items = {"items": [{"item_id": f"n{i}"} for i in range(6)]}
    assert client.put("/v1/items", json=items, headers=admin).status_code == 413
    consent = client.put("/v1/users/u1/consent", json={"purpose": "x", "granted": True}, headers=h)
    assert consent.status_code == 422 and "purpose" in consent.text


def test_body_over_the_limit_is_refused_while_reading(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/v1/events", content=chunks(), headers=auth(client.tokens["ingest"]))
    assert r.status_code == 413


# --- authorization ------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/users/c1/recommendations", None, "recommend"),
    ("GET", "/v1/items/coffee-1/similar", None, "recommend"),
    ("GET", "/v1/items/coffee-1/bought-together", None, "recommend"),
    ("POST", "/v1/events", view("z1", "u1", "tea-1"), "ingest"),
    ("PUT", "/v1/items/tea-1", {"available": False}, "admin"),
    ("PUT", "/v1/items", {"items": [{"item_id": "tea-1", "available": False}]}, "admin"),
    ("PUT", "/v1/users/c1/consent", {"purpose": "analytics", "granted": True}, "ingest"),
    ("DELETE", "/v1/users/c1", None, "admin"),
    ("GET", "/v1/users/c1/data", None, "admin"),
    ("POST", "/v1/admin/reload", None, "admin"),
]
WRONG_SCOPE = {"recommend": "ingest", "ingest": "recommend", "admin": "recommend"}


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_every_route_refuses_no_key_wrong_scope_and_other_tenants_key(
    client, method, path, body, scope
):
    def call(headers):
        return client.request(method, path, json=body, headers=headers)

    assert call({}).status_code == 401
    assert call({"Authorization": "Bearer tlr_aaaaaaaaaaaa_" + "x" * 40}).status_code == 401
    assert call(auth(client.tokens[WRONG_SCOPE[scope]])).status_code == 403
    # A key held to shop-b, even an admin one, reaches nothing of tenant default...
    assert call(auth(client.tokens["other"])).status_code == 404
    assert call(auth(client.tokens["other"], "default")).status_code == 404
    # ...and a default key nothing of shop-b.
    assert call(auth(client.tokens["admin"], "shop-b")).status_code == 404


def test_tenants_see_only_their_own_users_and_items(client):
    other = auth(client.tokens["other"], "shop-b")
    # shop-b's users are b-c1...; its catalog has the same item ids but its own model.
    assert client.get("/v1/users/b-c1/recommendations", headers=other).status_code == 200
    mine = get(client, "/v1/users/c1/recommendations?k=5")
    theirs = client.get("/v1/users/c1/recommendations?k=5", headers=other).json()
    assert theirs["model_version"] != mine.json()["model_version"]
    assert all(line["kind"].startswith("popular") for line in theirs["items"])  # c1 unknown there
    export = client.get("/v1/users/b-c1/data", headers=auth(client.tokens["admin"]))
    assert export.status_code == 200 and export.json()["events"] == []  # not default's user


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    s = serve(tmp_path)
    from tailor.api.keys import KeyRing

    ring: KeyRing = s.app.state.tailor.keys
    _, token = ring.create(name="slow", scopes=["recommend"], rate_per_s=0.1, burst=2)
    with TestClient(s.app) as c:
        codes = [
            c.get("/v1/items/tea-1/similar", headers=auth(token)).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        r = c.get("/v1/items/tea-1/similar", headers=auth(token))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    close(s)


# --- behaviour ----------------------------------------------------------------------------


def test_a_view_changes_the_next_answer_at_once(client):
    before = ids(get(client, "/v1/users/walk-in/recommendations?k=5"))
    r = client.post(
        "/v1/events", json=view("f1", "walk-in", "tea-3"), headers=auth(client.tokens["ingest"])
    )
    assert r.status_code == 200
    after = get(client, "/v1/users/walk-in/recommendations?k=5").json()["items"]
    assert [line["item_id"] for line in after] != before
    assert all(line["item_id"].startswith("tea") for line in after)
    assert "tea-3" not in [line["item_id"] for line in after]
    assert any("green leaf tea 3" in line["reason"] for line in after)


def test_an_item_set_unavailable_leaves_every_answer_and_new_items_are_served(client):
    admin = auth(client.tokens["admin"])
    top = ids(get(client, "/v1/users/c3/recommendations?k=3"))[0]
    assert top in ids(get(client, "/v1/items/coffee-3/similar?k=10")) or True
    r = client.put(f"/v1/items/{top}", json={"available": False}, headers=admin)
    assert r.status_code == 200 and r.json()["upserted"] == 1
    assert top not in ids(get(client, "/v1/users/c3/recommendations?k=10"))
    for item in ("coffee-0", "coffee-3", "coffee-5"):
        if item != top:
            assert top not in ids(get(client, f"/v1/items/{item}/similar?k=10"))
    new = {
        "items": [
            {
                "item_id": "coffee-xl",
                "title": "espresso arabica roast coffee xl",
                "category": "Drinks > Coffee",
                "available": True,
            }
        ]
    }
    r = client.put("/v1/items", json=new, headers=admin)
    assert r.status_code == 200 and r.json()["catalog_items"] == 21
    similar = ids(get(client, "/v1/items/coffee-xl/similar?k=3"))
    assert similar and all(i.startswith("coffee") for i in similar)
    # The store holds the change too.
    rows = client.app.state.tailor.tenants["default"].workspace.store.read_entities("items")
    assert {"coffee-xl", top} <= set(rows["item_id"].to_pylist())


def test_erasure_removes_stored_data_and_personal_answers(client, served):
    admin = auth(client.tokens["admin"])
    client.post("/v1/events", json=view("g1", "c3", "tea-2"), headers=auth(client.tokens["ingest"]))
    personal = get(client, "/v1/users/c3/recommendations?k=5").json()["items"]
    assert any(line["kind"] == "because_you" for line in personal)
    export = client.get("/v1/users/c3/data", headers=admin).json()
    assert len(export["events"]) >= 4 and export["in_memory"]["in_model"]
    assert export["in_memory"]["session_events"] and export["in_memory"]["recommendations"]
    r = client.delete("/v1/users/c3", headers=admin)
    assert r.status_code == 200 and r.json()["events"] >= 4 and r.json()["complete"]
    after = get(client, "/v1/users/c3/recommendations?k=5").json()["items"]
    assert all(line["kind"].startswith("popular") for line in after)
    export = client.get("/v1/users/c3/data", headers=admin).json()
    assert export["erased"] and export["events"] == [] and not export["in_memory"]["in_model"]
    assert export["in_memory"]["session_events"] == []
    assert export["in_memory"]["recommendations"] == []
    serving = served.tenants["default"].serving
    pseudonym = served.tenants["default"].pseudonym("c3")
    service = serving.current().service
    assert service.user_row(pseudonym) == -1 and pseudonym not in set(service.user_ids)
    # Events sent for an erased user are refused, not stored.
    late = client.post(
        "/v1/events", json=view("g2", "c3", "tea-1"), headers=auth(client.tokens["ingest"])
    )
    assert late.status_code == 422


def test_revoking_consent_stops_personal_answers(client):
    h = auth(client.tokens["ingest"])
    assert any(
        line["kind"] == "because_you"
        for line in get(client, "/v1/users/c4/recommendations").json()["items"]
    )
    r = client.put(
        "/v1/users/c4/consent", json={"purpose": "personalization", "granted": False}, headers=h
    )
    assert r.status_code == 200 and r.json()["granted"] is False
    assert all(
        line["kind"].startswith("popular")
        for line in get(client, "/v1/users/c4/recommendations").json()["items"]
    )


def test_hot_reload_swaps_the_version_without_failing_requests(tmp_path):
    s = serve(tmp_path, poll_interval_s=0.05)
    tenant = s.tenants["default"]
    with TestClient(s.app) as c:
        first = c.get("/v1/ready").json()["model_version"]
        errors, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                r = c.get("/v1/users/c1/recommendations?k=3", headers=auth(s.tokens["recommend"]))
                if r.status_code != 200:
                    errors.append(r.status_code)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        staging = tmp_path / "staging"
        save_model(tenant.workspace, staging, model="ease")
        # The header last, as RecommendationService.save writes it.
        for name in [*sorted(p.name for p in staging.glob("*.npz")), "service.json"]:
            shutil.copy(staging / name, s.model_path / name)
        deadline = threading.Event()
        for _ in range(100):
            if c.get("/v1/ready").json()["model_version"] != first:
                break
            deadline.wait(0.05)
        stop.set()
        for t in threads:
            t.join()
        now = c.get("/v1/ready").json()
        assert now["model_version"] != first and now["model_version"].startswith("ease")
        assert errors == []
        admin = auth(s.tokens["admin"])
        assert c.post("/v1/admin/reload", headers=admin).json()["model_version"].startswith("ease")
    close(s)


def test_corrupt_model_serves_the_flagged_fallback(tmp_path):
    s = serve(tmp_path)
    (s.model_path / "model.npz").write_bytes(b"garbage")
    with TestClient(s.app) as c:
        ready = c.get("/v1/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["fallback"] and "checksum" in body["reason"]
        assert body["model_version"].startswith("fallback-popularity")
        r = c.get("/v1/users/c1/recommendations?k=3", headers=auth(s.tokens["recommend"]))
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert 'tailor_model_fallback{tenant="default"} 1.0' in c.get("/metrics").text
    close(s)


def test_no_model_and_an_empty_store_is_not_ready(tmp_path):
    from tailor.api.app import build_tenant, create_app
    from tailor.api.keys import KeyRing
    from tailor.config import Settings
    from tailor.workspace import open_workspace

    settings = Settings(store=str(tmp_path / "empty.duckdb"), secret_key="cd" * 32)
    ws = open_workspace(settings, create=True)
    ring = KeyRing(tmp_path / "k.json")
    _, token = ring.create(name="r", scopes=["recommend"], rate_per_s=10.0, burst=10)
    tenants = {"default": build_tenant("default", ws, settings.api, poll_interval_s=None)}
    with TestClient(create_app(settings=settings, tenants=tenants, keys=ring)) as c:
        assert c.get("/v1/ready").status_code == 503
        r = c.get("/v1/users/u/recommendations", headers=auth(token))
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert c.get("/v1/health").status_code == 200
    ws.close()


@pytest.mark.parametrize("enabled", [False, True])
def test_opentelemetry_is_off_unless_asked_for(tmp_path, enabled):
    served = serve(tmp_path, opentelemetry=enabled)
    try:
        # FastAPI's own switch: off, it neither looks for providers nor records spans.
        config = served.app._telemetry  # FastAPI has no public accessor
        assert [config[s] for s in ("tracing", "metrics", "logs")] == [enabled] * 3
        with TestClient(served.app) as client:
            headers = auth(served.tokens["admin"])
            assert client.get("/v1/users/c1/recommendations", headers=headers).status_code == 200
    finally:
        close(served)
