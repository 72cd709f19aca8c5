"""The serving layer beneath the routes: artifacts, erasure and catalog changes in memory,
the CLI, PostgreSQL, and generated requests against the OpenAPI spec."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tailor.recommend.service import RecommendationService
from tests.api._serving import KEY, OPT_OUT, auth, close, save_model, serve, workspace

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def shop(tmp_path):
    ws = workspace(tmp_path)
    yield ws
    ws.close()


def test_saved_service_loads_and_answers_the_same(shop, tmp_path):
    service = save_model(shop, tmp_path / "m", model="ease")
    loaded = RecommendationService.load(tmp_path / "m")
    user = str(service.user_ids[3])
    assert loaded.version == service.version
    assert [(r.item_id, r.reason) for r in loaded.recommend(user, k=5)] == [
        (r.item_id, r.reason) for r in service.recommend(user, k=5)
    ]
    assert loaded.bought_together("coffee-1", k=2) == service.bought_together("coffee-1", k=2)
    header = json.loads((tmp_path / "m" / "service.json").read_text())
    assert set(header["files"]) == {
        "model.npz",
        "trending.npz",
        "content.npz",
        "arrays.npz",
        "candidates.npz",
    }
    (tmp_path / "m" / "arrays.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="checksum"):
        RecommendationService.load(tmp_path / "m")
    with pytest.raises(ValueError, match=r"service\.json"):
        RecommendationService.load(tmp_path / "nothing")


def test_without_user_forgets_history_and_co_purchases(shop, tmp_path):
    service = save_model(shop, tmp_path / "m")
    buyers = [shop.pseudonymizer.pseudonymize("subject", f"buyer{u}") for u in range(5)]
    for buyer in buyers[:4]:
        service = service.without_user(buyer)
    assert service.bought_together("coffee-1", k=1)[0].score == 1.0
    service = service.without_user(buyers[4])
    assert "Not bought with anything yet" in service.bought_together("coffee-1", k=1)[0].reason
    user = shop.pseudonymizer.pseudonymize("subject", "t2")
    row = service.user_row(user)
    assert service.history[row].nnz > 0
    forgotten = service.without_user(user)
    assert forgotten.user_row(user) == -1 and forgotten.history[row].nnz == 0
    assert len(forgotten.user_ids) == len(service.user_ids) - 1
    # Every other user keeps their own row.
    other = str(forgotten.user_ids[0])
    assert forgotten.user_row(other) == service.user_row(other)
    assert [r.item_id for r in forgotten.recommend(other, k=3)] == [
        r.item_id for r in service.recommend(other, k=3)
    ]


def test_without_users_forgets_many_at_once_as_one_by_one(shop, tmp_path):
    save_model(shop, tmp_path / "m", model="als")
    # Erasure zeroes the candidates and the model's factors in place: separate copies.
    service, one_by_one = (RecommendationService.load(tmp_path / "m") for _ in range(2))
    users = [shop.pseudonymizer.pseudonymize("subject", u) for u in ("t2", "c5", "buyer1")]
    rows = [service.user_row(u) for u in users]
    assert min(rows) >= 0 and service.model.user_factors_[rows].any()
    for user in users:
        one_by_one = one_by_one.without_user(user)
    at_once = service.without_users([*users, "never-seen", users[0]])
    assert list(at_once.user_ids) == list(one_by_one.user_ids)
    assert all(at_once.user_row(u) == -1 for u in users)
    for name in ("history", "purchased", "strongest", "co_purchase"):
        assert (getattr(at_once, name) != getattr(one_by_one, name)).nnz == 0, name
        assert all(getattr(at_once, name)[r].nnz == 0 for r in rows if name != "co_purchase")
    assert not at_once.model.user_factors_[rows].any()
    assert (at_once.candidates.items[rows] == -1).all()
    other = str(at_once.user_ids[0])
    assert at_once.user_row(other) == service.user_row(other)
    assert service.without_users(["never-seen"]) is service


def _personal(client, token: str, user: str) -> bool:
    answer = client.get(f"/v1/users/{user}/recommendations?k=5", headers=auth(token)).json()
    return any(line["kind"] == "because_you" for line in answer["items"])


def test_a_model_saved_before_an_erasure_never_serves_the_erased_user(tmp_path):
    """``tailor erase`` runs while no server holds the DuckDB file; the artifact saved
    before it still holds the user's history, factors and candidates. Loading it must not
    bring them back."""
    from tailor.events.erasure import erase

    s = serve(tmp_path)
    tenant = s.tenants["default"]
    erase(tenant.workspace.store, tenant.pseudonym("c1"))  # what `tailor erase c1` does
    with TestClient(s.app) as c:
        admin = s.tokens["admin"]
        assert not _personal(c, admin, "c1") and _personal(c, admin, "c2")
        export = c.get("/v1/users/c1/data", headers=auth(admin)).json()
        assert export["erased"] and not export["in_memory"]["in_model"]
        assert tenant.serving.current().service.user_row(tenant.pseudonym("c1")) == -1
        # A reload of the same artifact (a new version appearing) applies it again.
        tenant.serving.reload(s.model_path)
        assert not _personal(c, admin, "c1")
    close(s)


def test_a_running_server_follows_erasures_made_elsewhere(tmp_path):
    """Another worker's DELETE or ``tailor erase`` against a PostgreSQL store: the poller
    reads the new tombstones and forgets those users within a poll."""
    from tailor.events.erasure import erase

    s = serve(tmp_path)
    tenant = s.tenants["default"]
    with TestClient(s.app) as c:
        admin = s.tokens["admin"]
        assert _personal(c, admin, "c3") and _personal(c, admin, "t3")  # and now cached
        for user in ("c3", "t3"):
            erase(tenant.workspace.store, tenant.pseudonym(user))
        assert _personal(c, admin, "c3")  # not followed yet
        forgotten = tenant.serving.follow_erasures()
        assert set(forgotten) == {tenant.pseudonym("c3"), tenant.pseudonym("t3")}
        assert not _personal(c, admin, "c3") and not _personal(c, admin, "t3")
        assert _personal(c, admin, "c4")
        version = tenant.serving.generation
        assert tenant.serving.follow_erasures() == []  # met again in the overlap: no work
        assert tenant.serving.generation == version
        assert c.delete("/v1/users/c4", headers=auth(admin)).status_code == 200
        assert tenant.serving.follow_erasures() == []  # its own erasure is already applied
    close(s)


def test_sessions_are_pruned_when_a_new_model_arrives_not_on_other_swaps(tmp_path):
    """Session events the loaded model learned nothing about must last until a model that
    learned them arrives; a catalog change or an erasure swaps in the same model."""
    from datetime import timedelta

    s = serve(tmp_path)
    tenant = s.tenants["default"]
    admin = auth(s.tokens["admin"])

    def view(event_id: str, when: datetime) -> dict:
        return {
            "event_id": event_id,
            "event_type": "view",
            "subject_id": "late-visitor",
            "occurred_at": when.isoformat(),
            "item_id": "tea-3",
        }

    with TestClient(s.app) as c:
        window_end = tenant.serving.current().service.info["data_window"][1]
        late = datetime.fromisoformat(window_end) - timedelta(hours=1)  # an offline app's view
        now = datetime.now(UTC).replace(microsecond=0)  # the data window is kept in seconds
        for event in (view("late-1", late), view("now-1", now)):
            assert c.post("/v1/events", json=event, headers=admin).json()["accepted"] == 1
        visitor = tenant.pseudonym("late-visitor")
        assert len(tenant.serving.sessions.events(visitor)) == 2
        assert c.put("/v1/items/tea-4", json={"available": False}, headers=admin).status_code == 200
        assert c.delete("/v1/users/c1", headers=admin).status_code == 200
        assert len(tenant.serving.sessions.events(visitor)) == 2  # same model: both kept
        before = tenant.serving.current().version
        save_model(tenant.workspace, s.model_path)  # a new version, trained on both events
        tenant.serving.reload()
        assert tenant.serving.current().version != before
        assert tenant.serving.current().service.user_row(visitor) >= 0  # it learned them
        assert tenant.serving.sessions.events(visitor) == []
    close(s)


def test_with_items_flags_and_new_items(shop, tmp_path):
    service = save_model(shop, tmp_path / "m")
    user = shop.pseudonymizer.pseudonymize("subject", "t2")
    top = service.recommend(user, k=1)[0].item_id
    hidden = service.with_items(pa.table({"item_id": [top], "active": [False]}))
    assert top not in [r.item_id for r in hidden.recommend(user, k=10)]
    assert (
        hidden.catalog.title[hidden.item_code(top)] == service.catalog.title[service.item_code(top)]
    )  # fields not given keep their values
    grown = service.with_items(
        pa.table(
            {"item_id": ["tea-xl"], "title": ["green leaf tea xl"], "category": ["Drinks > Tea"]}
        )
    )
    assert len(grown.catalog) == len(service.catalog) + 1
    # Re-encoded with the fitted vocabulary, not refitted: the other items keep their rows.
    assert grown.content.text_vocabulary_ is service.content.text_vocabulary_
    n = len(service.catalog)
    assert (grown.content.item_features_[:n] != service.content.item_features_).nnz == 0
    answer = grown.recommend(user, k=10, session_events=[("tea-xl", "view")])
    assert all(r.item_id != "tea-xl" for r in answer)  # seen items are not shown again
    assert any(r.item_id.startswith("tea") for r in answer)
    assert grown.similar_items("tea-xl", k=3)[0].item_id.startswith("tea")
    new_user = grown.recommend(None, k=3)
    assert len(new_user) == 3


def test_session_cache_is_invalidated_by_new_events(tmp_path):
    s = serve(tmp_path)
    tenant = s.tenants["default"]
    with TestClient(s.app):
        serving = tenant.serving
        user = tenant.pseudonym("walk-in")
        first = serving.recommend(user, k=5)
        assert serving.recommend(user, k=5).items is not None and serving.cache.hits == 1
        serving.on_committed(
            pa.table(
                {
                    "event_id": ["s1"],
                    "subject_id": [user],
                    "item_id": ["coffee-3"],
                    "event_type": ["view"],
                }
            )
        )
        after = serving.recommend(user, k=5)
        assert [i.item_id for i in after.items] != [i.item_id for i in first.items]
    close(s)


def test_cli_save_model_and_worker_check(tmp_path, monkeypatch):
    from tailor.cli import app
    from tailor.config import get_settings

    workspace(tmp_path).close()
    monkeypatch.setenv("TAILOR_STORE", str(tmp_path / "tailor.duckdb"))
    monkeypatch.setenv("TAILOR_SECRET_KEY", KEY)
    monkeypatch.setenv("TAILOR_PRIVACY__CONSENT_DEFAULT", json.dumps(OPT_OUT))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        out = tmp_path / "served"
        result = runner.invoke(
            app,
            [
                "serve",
                "--save-model",
                str(out),
                "--algorithm",
                "itemknn",
                "--params",
                '{"neighbors": 10}',
            ],
        )
        assert result.exit_code == 0, result.output
        saved = RecommendationService.load(out)
        assert saved.info["model"] == "itemknn"
        from tailor.lifecycle import registry
        from tailor.store import open_store

        store = open_store(str(tmp_path / "tailor.duckdb"))
        try:
            [version] = registry.versions(store, "recommend")
        finally:
            store.close()
        assert version.version == saved.version and registry.verify(version)
        assert version.config == {"model": "itemknn", "params": {"neighbors": 10}}
        assert version.data_window["users"] == len(saved.user_ids)
        result = runner.invoke(app, ["serve", "--model", str(out), "--model-alias", "production"])
        assert result.exit_code == 2 and "not both" in result.output
        # A hybrid serves too, but only over candidate models it is told of.
        result = runner.invoke(
            app, ["serve", "--save-model", str(tmp_path / "h"), "--algorithm", "hybrid"]
        )
        assert result.exit_code == 1 and "generators must name" in result.output
        assert not (tmp_path / "h").exists()
        result = runner.invoke(app, ["serve", "--workers", "2"])
        assert result.exit_code == 1 and "PostgreSQL" in result.output
        result = runner.invoke(app, ["serve", "--save-model", str(out), "--params", "[1]"])
        assert result.exit_code == 1 and "--params" in result.output
        result = runner.invoke(app, ["serve", "--save-model", str(out), "--params", "{bad"])
        assert result.exit_code == 1 and "--params is not valid JSON" in result.output
        result = runner.invoke(
            app, ["serve", "--save-model", str(out), "--params", '{"neighbours": 10}']
        )
        assert result.exit_code == 1, result.output
        assert "ease: unknown setting(s) neighbours; it takes l2" in result.output
    finally:
        get_settings.cache_clear()


def test_cli_ingest_processes_reach_the_served_settings(tmp_path, monkeypatch):
    import uvicorn

    from tailor.cli import app
    from tailor.config import get_settings

    monkeypatch.setenv("TAILOR_STORE", str(tmp_path / "tailor.duckdb"))
    monkeypatch.setenv("TAILOR_API__INGEST_PROCESSES", "0")  # restored after the test
    seen = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **kw: seen.update(api=get_settings().api, workers=kw["workers"])
    )
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["serve", "--ingest-processes", "2"])
        assert result.exit_code == 0, result.output
        assert seen["api"].ingest_processes == 2 and seen["workers"] == 1
        result = runner.invoke(app, ["serve", "--ingest-processes", "-1"])
        assert result.exit_code == 2 and "--ingest-processes" in result.output
    finally:
        get_settings.cache_clear()


@pytest.mark.postgres
def test_serving_on_postgresql(tmp_path, postgres_schema_url):
    from tailor.api.state import CATALOG_META, ServingState

    s = serve(tmp_path, store=postgres_schema_url)
    tenant = s.tenants["default"]
    # A second worker on the same store: it tails what the first one changes.
    other = ServingState(tenant.workspace, model_path=s.model_path, tail_interval_s=0.25)
    with TestClient(s.app) as c:
        other._load_consent()
        other.reload()
        other._tail_received = datetime.now(UTC)
        other._tail_meta = {CATALOG_META: tenant.workspace.store.get_meta(CATALOG_META)}
        other._erasures_checked = datetime.now(UTC)
        h = auth(s.tokens["admin"])
        assert c.get("/v1/users/c1/recommendations?k=3", headers=h).status_code == 200
        event = {
            "event_id": "pg1",
            "event_type": "view",
            "subject_id": "walk-in",
            "occurred_at": datetime.now(UTC).isoformat(),
            "item_id": "tea-3",
        }
        assert c.post("/v1/events", json=event, headers=h).json()["accepted"] == 1
        answer = c.get("/v1/users/walk-in/recommendations?k=3", headers=h).json()["items"]
        assert all(line["item_id"].startswith("tea") for line in answer)
        assert c.put("/v1/items/tea-4", json={"available": False}, headers=h).status_code == 200
        c1 = tenant.pseudonym("c1")
        assert other.current().service.user_row(c1) >= 0
        assert c.delete("/v1/users/c1", headers=h).status_code == 200
        other.tail_once()
        service = other.current().service
        assert service.user_row(c1) == -1  # the first worker's erasure reached this one
        assert not service.catalog.available[service.item_code("tea-4")]  # and the catalog
        assert [e[0] for e in other.sessions.events(tenant.pseudonym("walk-in"))] == ["tea-3"]
    close(s)


def test_top_cache_serves_only_current_entries_and_keeps_no_tracked_objects():
    import gc

    from tailor.api.state import Served, TopCache, answer_of
    from tailor.recommend.service import RecommendedItem

    cache = TopCache(max_entries=2)
    items = [
        RecommendedItem("i1", 0.5, "Because you viewed X", "because_you", "als", "x"),
        RecommendedItem("i2", 1 / 3, "Popular right now", "popular", "als", None),
    ]
    key = ("u1", (("country", "DE"),), None, ("Tea",))
    cache.put(key, generation=1, session=0, k=10, answer=answer_of(items))
    ids, items_json = cache.get(key, 1, 0, 10)
    assert ids == ("i1", "i2")
    assert Served("r", ids, items_json, "v").items == items  # exactly, scores included
    assert cache.get(key, 1, 0, 11) is None  # computed for fewer
    assert cache.get(key, 2, 0, 5) is None and cache.get(key, 1, 1, 5) is None  # stale
    assert cache.hits == 1 and cache.misses == 3
    gc.collect(0)  # the collector's first look at an entry is its last
    assert not any(gc.is_tracked(entry) for entry in cache._entries.values())
    cache.put(("u2", (), None, None), 1, 0, 10, answer_of(items))
    cache.put(("u3", (), None, None), 1, 0, 10, answer_of(items))
    assert len(cache) == 2 and cache.get(key, 1, 0, 10) is None  # least recent dropped
    cache.drop_user("u2")
    assert len(cache) == 1 and cache.get(("u3", (), None, None), 1, 0, 10) == answer_of(items)


def test_a_shorter_answer_is_cut_between_items_whatever_their_text():
    from tailor.api.state import Served, answer_of, first_of
    from tailor.recommend.service import RecommendedItem

    tricky = 'Similar to Mug },{"item_id":"x" you viewed'  # a title can hold anything
    items = [
        RecommendedItem(f"i{n}", 1.0 / (n + 1), tricky, "similar_item", "als", '},{"item_id":')
        for n in range(5)
    ]
    answer = answer_of(items)
    for k in range(1, 7):
        ids, items_json = first_of(answer, k)
        assert ids == tuple(f"i{n}" for n in range(min(k, 5)))
        assert Served("r", ids, items_json, "v").items == items[:k]
    assert first_of(answer, 5) is answer  # nothing to cut: nothing copied


def test_answer_ids_are_random_hex_unique_and_not_shared_with_a_forked_child() -> None:
    import os
    import re

    from tailor.api.state import AnswerIds

    ids = AnswerIds()
    drawn = [ids.next() for _ in range(3 * AnswerIds.BATCH + 5)]  # several refills
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)
    assert len(set(drawn)) == len(drawn)
    ids.next()  # the pool holds ids the parent has not handed out yet
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes the ids it draws, and exits at once
        os.write(writer, "".join(ids.next() for _ in range(4)).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    theirs = os.read(reader, 4096).decode()
    os.close(reader)
    parents = {ids.next() for _ in range(AnswerIds.BATCH)}
    assert len(theirs) == 4 * 32
    assert not {theirs[i : i + 32] for i in range(0, len(theirs), 32)} & parents
