"""The store contract: every backend (DuckDB, PostgreSQL) must pass these same tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tailor.events.columns import EVENT_SCHEMA
from tailor.store import open_store
from tests.conftest import consent, events_table, view

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ids(table: pa.Table) -> list[tuple[str, int]]:
    return sorted(
        zip(table.column("event_id").to_pylist(), table.column("line").to_pylist(), strict=True)
    )


def test_append_is_idempotent_per_event_id(store):
    batch = events_table(view("e1", "a"), view("e2", "b"))
    first = store.append_events(batch)
    again = store.append_events(batch)
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert store.count_events() == 2


def test_duplicates_inside_one_batch_are_stored_once(store):
    batch = events_table(view("e1", "a"), view("e1", "a"), view("e2", "b"))
    result = store.append_events(batch)
    assert result.inserted == 2
    assert ids(store.read_events(purpose=None)) == [("e1", 0), ("e2", 0)]


def test_appends_of_distinct_rows_sort_new_stored_and_erased(store):
    """``unique=True`` (the HTTP writer, imports): PostgreSQL copies such rows straight into
    the events table and falls back to the staged insert when one is stored or erased."""
    store.append_events(events_table(view("e1", "a"), view("e2", "b")))
    store.erase_subject("gone", erased_at=T0)
    fresh = store.append_events(events_table(view("e3", "a"), view("e4", "b")), unique=True)
    assert (fresh.rows, fresh.inserted, fresh.duplicates, fresh.erased_skipped) == (2, 2, 0, 0)
    with store.transaction():
        mixed = store.append_events(
            events_table(view("e2", "b"), view("e5", "a"), view("e6", "gone")), unique=True
        )
        retried = store.append_events(events_table(view("e1", "a"), view("e7", "b")), unique=True)
        after = store.append_events(events_table(view("e9", "b")), unique=True)
    assert (mixed.rows, mixed.inserted, mixed.duplicates, mixed.erased_skipped) == (3, 1, 1, 1)
    assert (retried.rows, retried.inserted, retried.duplicates) == (2, 1, 1)
    assert after.inserted == 1
    stored = ids(store.read_events(purpose=None))
    assert stored == [(f"e{n}", 0) for n in (1, 2, 3, 4, 5, 7, 9)]
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.append_events(events_table(view("e8", "a")), unique=True)
        raise RuntimeError("boom")
    assert store.count_events() == 7


def test_multi_line_purchase_round_trips_every_type(store):
    purchase = {
        "event_id": "p1",
        "event_type": "purchase",
        "subject_id": "a",
        "occurred_at": "2024-05-01T10:00:00.123456Z",
        "currency": "EUR",
        "order_id": "o-1",
        "context": {
            "country": "DE",
            "session_id": "s1",
            "device_type": "mobile",
            "channel": "email",
        },
        "properties": {"coupon": 'SAVE "10", now\nplease', "n": [1, 2]},
        "items": [
            {"item_id": "x", "quantity": 2, "price": 9.99},
            {"item_id": "y", "quantity": -1, "price": 0.0},
        ],
    }
    consent_event = consent("c1", "a", True, "2024-04-01T00:00:00Z")
    store.append_events(events_table(purchase, consent_event))
    table = store.read_events(purpose=None)
    assert table.schema == EVENT_SCHEMA
    rows = {(r["event_id"], r["line"]): r for r in table.to_pylist()}
    line1 = rows[("p1", 1)]
    assert line1["item_id"] == "y" and line1["quantity"] == -1.0 and line1["price"] == 0.0
    assert line1["occurred_at"] == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert line1["country"] == "DE" and line1["channel"] == "email"
    import json

    assert json.loads(line1["properties"]) == purchase["properties"]
    assert rows[("c1", 0)]["granted"] is True
    assert rows[("c1", 0)]["item_id"] is None


def test_read_filters_types_and_time_window(store):
    store.append_events(
        events_table(
            view("e1", "a", at="2024-01-01T00:00:00Z"),
            view("e2", "a", at="2024-01-02T00:00:00Z"),
            consent("c1", "a", True, "2023-12-31T00:00:00Z"),
        )
    )
    window = store.read_events(
        purpose=None,
        event_types=["view"],
        start=datetime(2024, 1, 2, tzinfo=UTC),
        end=datetime(2024, 1, 3, tzinfo=UTC),
    )
    assert ids(window) == [("e2", 0)]
    with pytest.raises(ValueError, match="unknown event column"):
        store.read_events(purpose=None, columns=["nope"])
    with pytest.raises(ValueError, match="unknown purpose"):
        store.read_events(purpose="marketing")


def test_consent_latest_record_wins_and_absent_subjects_are_excluded(store):
    store.append_events(
        events_table(
            consent("c1", "granted", True, "2024-01-01T00:00:00Z"),
            consent("c2", "revoked", True, "2024-01-01T00:00:00Z"),
            consent("c3", "revoked", False, "2024-02-01T00:00:00Z"),
            # recorded later but about an earlier moment: the newer grant still wins
            consent("c4", "regranted", True, "2024-03-01T00:00:00Z"),
            consent("c5", "regranted", False, "2024-01-15T00:00:00Z"),
            consent("c6", "analytics-only", True, "2024-01-01T00:00:00Z", purpose="analytics"),
            view("v1", "granted"),
            view("v2", "revoked"),
            view("v3", "regranted"),
            view("v4", "nobody"),
            view("v5", "analytics-only"),
            {
                "event_id": "ad1",
                "event_type": "ad_spend",
                "occurred_at": "2024-05-01T00:00:00Z",
                "channel": "search",
                "cost": 10.0,
                "currency": "EUR",
            },
        )
    )
    usable = store.read_events(purpose="personalization", event_types=["view", "ad_spend"])
    assert ids(usable) == [("ad1", 0), ("v1", 0), ("v3", 0)]
    analytics = store.read_events(purpose="analytics", event_types=["view"])
    assert ids(analytics) == [("v5", 0)]
    records = store.consent_records("revoked")
    assert [(r.purpose, r.granted) for r in records] == [
        ("personalization", True),
        ("personalization", False),
    ]


def test_opt_out_purpose_includes_subjects_without_records(store_url):
    s = open_store(store_url, opt_out_purposes=["analytics"])
    try:
        s.append_events(
            events_table(
                view("v1", "silent"),
                consent("c1", "refuser", False, "2024-01-01T00:00:00Z", purpose="analytics"),
                view("v2", "refuser"),
            )
        )
        assert ids(s.read_events(purpose="analytics", event_types=["view"])) == [("v1", 0)]
        assert ids(s.read_events(purpose="personalization", event_types=["view"])) == []
    finally:
        s.close()


def test_upsert_merges_columns_and_last_row_wins(store):
    store.upsert_entities(
        "items",
        pa.table(
            {"item_id": ["x", "y", "x"], "title": ["old", "Y", "new"], "price": [1.0, 2.0, 3.0]}
        ),
    )
    store.upsert_entities("items", pa.table({"item_id": ["x"], "available": [False]}))
    rows = {r["item_id"]: r for r in store.read_entities("items").to_pylist()}
    assert rows["x"]["title"] == "new" and rows["x"]["price"] == 3.0
    assert rows["x"]["available"] is False
    assert rows["y"]["available"] is None
    assert store.count_entities("items") == 2
    with pytest.raises(ValueError, match="key column item_id"):
        store.upsert_entities("items", pa.table({"title": ["t"]}))
    with pytest.raises(ValueError, match="unknown entity"):
        store.read_entities("orders")


def test_erase_removes_subject_everywhere_and_blocks_reimport(store):
    batch = events_table(
        view("e1", "gone"),
        view("e2", "kept"),
        consent("c1", "gone", True, "2024-01-01T00:00:00Z"),
        {
            "event_id": "t1",
            "event_type": "telemetry",
            "subject_id": "other",
            "occurred_at": "2024-05-01T00:00:00Z",
            "device_id": "dev-gone",
            "metric": "temp",
            "value": 20.5,
        },
    )
    store.append_events(batch)
    store.upsert_entities("users", pa.table({"user_id": ["gone", "kept"]}))
    store.upsert_entities("devices", pa.table({"device_id": ["dev-gone"], "owner_id": ["gone"]}))
    counts = store.erase_subject("gone", erased_at=T0)
    assert (counts.events, counts.users, counts.devices) == (3, 1, 1)
    everything = store.read_events(purpose=None)
    assert "gone" not in everything.column("subject_id").to_pylist()
    assert "dev-gone" not in everything.column("device_id").to_pylist()
    assert store.consent_records("gone") == []
    assert store.is_erased("gone") and not store.is_erased("kept")
    again = store.append_events(batch)
    assert again.erased_skipped == 2 and again.inserted == 1  # only the other's telemetry
    upsert = store.upsert_entities("users", pa.table({"user_id": ["gone"]}))
    assert upsert.erased_skipped == 1
    assert [r["user_id"] for r in store.read_entities("users").to_pylist()] == ["kept"]
    store.erase_subject("gone", erased_at=T0)  # idempotent
    assert store.count_tombstones() == 1
    later = T0 + timedelta(minutes=10)
    store.erase_subject("gone-too", erased_at=later)
    assert {s for s, _ in store.erased_subjects()} == {"gone", "gone-too"}
    since = store.erased_subjects(later - timedelta(seconds=1))
    assert [s for s, _ in since] == ["gone-too"] and since[0][1] == later
    assert store.erased_subjects(later + timedelta(seconds=1)) == []


def test_purge_keeps_consent_records(store):
    store.append_events(
        events_table(
            view("old", "a", at="2020-01-01T00:00:00Z"),
            view("new", "a", at="2024-01-01T00:00:00Z"),
            consent("c-old", "a", True, "2020-01-01T00:00:00Z"),
        )
    )
    assert store.purge_events(datetime(2023, 1, 1, tzinfo=UTC)) == 1
    assert ids(store.read_events(purpose=None)) == [("c-old", 0), ("new", 0)]


def test_failed_transaction_leaves_store_unchanged(store):
    store.append_events(events_table(view("e1", "a")))
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.append_events(events_table(view("e2", "a")))
        store.upsert_entities("items", pa.table({"item_id": ["x"]}))
        raise RuntimeError("boom")
    assert store.count_events() == 1
    assert store.count_entities("items") == 0


def test_meta_and_summary(store):
    assert store.get_meta("schema_version") == "1"
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    assert store.get_meta("k") == "v2"
    store.append_events(events_table(view("e1", "a"), view("e2", "b")))
    summary = store.event_summary().to_pylist()
    assert summary[0]["event_type"] == "view" and summary[0]["subjects"] == 2


def test_empty_store_reads_empty_tables(store):
    assert store.read_events(purpose="personalization").num_rows == 0
    assert store.read_entities("devices").num_rows == 0
    assert store.count_events() == 0


def test_sparse_batches_keep_every_value_and_null(store):
    """PostgreSQL stages only the columns that hold a value: what is absent stays NULL and
    what is present (in a few rows only) arrives intact; the erasure finds device events."""
    telemetry = {
        "event_id": "t1",
        "event_type": "telemetry",
        "subject_id": "c",  # the erasure below reaches it through the device only
        "occurred_at": "2024-05-01T10:00:00Z",
        "device_id": "d1",
        "metric": "temp",
        "value": 21.5,
    }
    store.append_events(events_table(view("v1", "a"), view("v2", "b"), telemetry))
    rows = {r["event_id"]: r for r in store.read_events(purpose=None).to_pylist()}
    assert rows["t1"]["device_id"] == "d1" and rows["t1"]["value"] == 21.5
    assert rows["v1"]["device_id"] is None and rows["v1"]["item_id"] == "i1"
    assert all(rows[e]["price"] is None and rows[e]["properties"] is None for e in rows)
    store.upsert_entities("devices", pa.table({"device_id": ["d1"], "owner_id": ["a"]}))
    store.erase_subject("a", erased_at=T0)
    assert ids(store.read_events(purpose=None)) == [("v2", 0)]


def test_rows_whose_only_value_is_the_key_are_staged(store):
    store.upsert_entities("items", pa.table({"item_id": ["x", "y"], "title": [None, None]}))
    assert store.count_entities("items") == 2


def test_scores_are_replaced_whole_read_back_and_erased_with_their_subject(store):
    when = datetime(2024, 6, 1, tzinfo=UTC)
    stored = store.replace_scores(
        "audience", ["a", "b", "a"], ['{"v": 1}', '{"v": 2}', '{"v": 3}'], when
    )
    assert stored == 2  # "a" twice: the last payload wins
    assert [(s, p) for s, p, _ in store.read_scores("audience")] == [
        ("a", '{"v": 3}'),
        ("b", '{"v": 2}'),
    ]
    assert store.read_scores("audience", "b")[0][2] == when
    assert store.read_scores("other") == []
    store.replace_scores("audience", ["c"], ['{"v": 4}'], when)
    assert [s for s, _, _ in store.read_scores("audience")] == ["c"]  # replaced whole
    store.erase_subject("c", erased_at=when)
    assert store.read_scores("audience") == []
    assert store.replace_scores("audience", ["c", "d"], ["{}", "{}"], when) == 1  # erased: kept out
    with pytest.raises(ValueError, match="2 subject ids but 1 payloads"):
        store.replace_scores("audience", ["x", "y"], ["{}"], when)
