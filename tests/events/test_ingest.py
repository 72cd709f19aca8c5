"""Ingestion behind POST /v1/events: validation, conversion, group commit (both stores)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tailor.errors import StoreUnavailable
from tailor.events.columns import PSEUDONYMIZED_EVENT_COLUMNS
from tailor.events.importer import raw_event_table
from tailor.events.ingest import (
    ERASED_REASON,
    BatchTooLarge,
    GroupCommitWriter,
    IngestResult,
    PseudonymCache,
    WriterClosedError,
    ingest_batch,
    to_event_table,
    validate_batch,
    validate_batch_json,
)
from tailor.events.privacy import Pseudonymizer
from tailor.events.schema import parse_event, to_flat_rows
from tailor.store import open_store
from tests.conftest import consent, view

WAIT = 30  # seconds a future may take before a test fails


def purchase(event_id: str, subject: str, lines: int = 3) -> dict:
    return {
        "event_id": event_id,
        "event_type": "purchase",
        "subject_id": subject,
        "occurred_at": "2024-05-01T11:00:00Z",
        "currency": "EUR",
        "items": [{"item_id": f"i{n}", "quantity": 1, "price": 2.5} for n in range(lines)],
    }


def events(*raw: dict) -> list:
    valid, rejected = validate_batch(list(raw), max_events=10_000)
    assert rejected == []
    return valid


def stored_ids(store) -> list[tuple[str, int]]:
    table = store.read_events(purpose=None, columns=["event_id", "line"])
    return sorted(zip(table["event_id"].to_pylist(), table["line"].to_pylist(), strict=True))


def counts(result: IngestResult) -> tuple[int, int, list[int]]:
    return result.accepted, result.duplicates, [r.index for r in result.rejected]


@pytest.fixture
def writer(store, pseudonymizer):
    w = GroupCommitWriter(store, pseudonymizer, max_wait_ms=1.0).start()
    yield w
    w.close(timeout=WAIT)


# --- validation -----------------------------------------------------------------------------


def test_reasons_name_the_field_and_valid_events_pass():
    raw = [
        view("e0", "u"),
        {k: v for k, v in view("e1", "u").items() if k != "item_id"},
        view("e2", "u") | {"colour": "red"},
        purchase("e3", "u") | {"items": [{"item_id": "a", "quantity": 0, "price": 1}]},
        view("e4", "u") | {"event_type": "teleport"},
        {"event_id": "e5", "subject_id": "u"},
        "not an object",
        view("e7", "u") | {"occurred_at": "2024-05-01T10:00:00", "context": {"zz": 1}},
    ]
    valid, rejected = validate_batch(raw, max_events=10)
    assert [e.event_id for e in valid] == ["e0"]
    reasons = {r.index: r.reason for r in rejected}
    assert reasons[1] == "events[1].item_id: field required"
    assert reasons[2] == "events[2].colour: extra inputs are not permitted"
    assert reasons[3] == "events[3].items[0].quantity: quantity must not be 0"
    assert reasons[4].startswith("events[4].event_type: unknown event type 'teleport'")
    assert reasons[5] == "events[5].event_type: field required"
    assert reasons[6].startswith("events[6]: input should be a valid dictionary")
    assert "events[7].occurred_at: timestamp needs a time zone" in reasons[7]
    assert "events[7].context.zz: extra inputs are not permitted" in reasons[7]
    assert [r.event_id for r in rejected] == ["e1", "e2", "e3", "e4", "e5", None, "e7"]


def test_too_many_events_is_a_value_error():
    with pytest.raises(BatchTooLarge, match="at most 2") as info:
        validate_batch([view("a", "u")] * 3, max_events=2)
    assert isinstance(info.value, ValueError)
    assert validate_batch([], max_events=2) == ([], [])


# --- conversion -----------------------------------------------------------------------------

EVERY_TYPE = [
    view("v1", "alice") | {"context": {"session_id": "s1", "device_type": "mobile"}},
    view("v2", "bob") | {"properties": {"page": "home", "n": [1, 2]}, "recommendation_id": "r"},
    {"event_type": "click", "event_id": "c1", "subject_id": "alice", "item_id": "x",
     "occurred_at": "2024-05-01T12:00:00+02:00", "received_at": "2020-01-01T00:00:00Z"},
    {"event_type": "add_to_cart", "event_id": "a1", "subject_id": "bob", "item_id": "x",
     "occurred_at": "2024-05-01T10:00:00.123456Z", "price": 3.5, "currency": "EUR"},
    {"event_type": "remove_from_cart", "event_id": "r1", "subject_id": "bob", "item_id": "x",
     "occurred_at": "2024-05-01T10:00:00Z", "quantity": 2},
    purchase("p1", "carol", lines=3) | {"order_id": "o1", "context": {"country": "DE"}},
    {"event_type": "rating", "event_id": "g1", "subject_id": "carol", "item_id": "x",
     "occurred_at": "2024-05-01T10:00:00Z", "value": 4.5},
    {"event_type": "impression", "event_id": "m1", "subject_id": "carol", "item_ids": ["a", "b"],
     "recommendation_id": "r9", "occurred_at": "2024-05-01T10:00:00Z"},
    {"event_type": "ad_spend", "event_id": "s1", "channel": "search", "cost": 10,
     "currency": "EUR", "occurred_at": "2024-05-01T00:00:00Z", "impressions": 100},
    {"event_type": "ad_result", "event_id": "s2", "channel": "social", "clicks": 3,
     "occurred_at": "2024-05-01T00:00:00Z", "context": {"channel": "social"}},
    {"event_type": "telemetry", "event_id": "t1", "subject_id": "dave", "device_id": "d1",
     "metric": "temp", "value": 20.5, "occurred_at": "2024-05-01T00:00:00Z",
     "device_time": "2024-05-01T00:00:01Z"},
    {"event_type": "telemetry", "event_id": "t2", "subject_id": "dave", "device_id": "d1",
     "metric": "temp", "value": 20.7, "occurred_at": "2024-05-01T00:01:00Z"},
    {"event_type": "device_adjustment", "event_id": "j1", "subject_id": "dave",
     "device_id": "d1", "metric": "heat_setpoint", "value": 21, "previous_value": 20,
     "occurred_at": "2024-05-01T00:00:00Z"},
    consent("k1", "erin", True, "2024-05-01T00:00:00Z") | {"policy_version": "v2"},
    view("v3", "erin"),
]  # fmt: skip


def reference_table(raw: list[dict], pseudonymizer: Pseudonymizer, at: datetime) -> pa.Table:
    """The slow path: to_flat_rows + raw_event_table, then the Pseudonymizer column by column."""
    from tailor.events.columns import COLUMNS_BY_NAME

    rows = [row | {"received_at": at} for d in raw for row in to_flat_rows(parse_event(d))]
    table = raw_event_table(rows)
    for name in PSEUDONYMIZED_EVENT_COLUMNS:
        index = table.schema.get_field_index(name)
        namespace = COLUMNS_BY_NAME[name].pseudonym_namespace or ""
        column = table.column(index)
        if column.null_count < len(column):
            table = table.set_column(
                index, name, pseudonymizer.pseudonymize_array(namespace, column)
            )
    return table


@pytest.mark.parametrize("order", ["as given", "reversed", "interleaved"])
def test_fast_flatten_agrees_with_to_flat_rows(pseudonymizer, order):
    raw = list(EVERY_TYPE)
    if order == "reversed":
        raw.reverse()
    elif order == "interleaved":
        raw = raw[::2] + raw[1::2]
    at = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    fast = to_event_table(events(*raw), pseudonymizer, received_at=at)
    assert fast.equals(reference_table(raw, pseudonymizer, at))


def test_conversion_errors_name_the_event(pseudonymizer):
    conflicting = EVERY_TYPE[8] | {"context": {"channel": "tv"}}
    with pytest.raises(ValueError, match=r"events\[1\]: channel given twice"):
        to_event_table(events(view("v", "u"), conflicting), pseudonymizer)


def test_pseudonym_cache_agrees_with_the_pseudonymizer(pseudonymizer):
    cache = PseudonymCache(pseudonymizer, max_entries=3)
    values = pa.array(["a", None, "b", "a", "c", "d", None, "e"])
    for _ in range(3):  # fills, overflows and refills the cache
        cached = cache.pseudonymize_array("subject", values)
        assert cached.equals(pseudonymizer.pseudonymize_array("subject", values))
    assert cache.pseudonymize_array("device", pa.nulls(2, pa.string())).null_count == 2


# --- group commit ---------------------------------------------------------------------------


def test_a_submission_is_stored_when_its_future_resolves(store, pseudonymizer, writer):
    before = datetime.now(UTC)
    future = writer.submit(events(view("e1", "alice"), purchase("e2", "alice"), view("e3", "bob")))
    result = future.result(WAIT)
    assert counts(result) == (3, 0, [])
    assert stored_ids(store) == [("e1", 0), ("e2", 0), ("e2", 1), ("e2", 2), ("e3", 0)]
    table = store.read_events(purpose=None)
    subjects = set(table["subject_id"].to_pylist())
    assert subjects == {pseudonymizer.pseudonymize("subject", s) for s in ("alice", "bob")}
    text = " ".join(str(v) for column in table.columns for v in column.to_pylist())
    assert "alice" not in text and "bob" not in text
    assert min(table["received_at"].to_pylist()) >= before
    assert (writer.events_accepted, writer.commits) == (3, 1)


def test_invalid_events_are_rejected_and_the_rest_stored(store, writer):
    raw = [
        view("e0", "u"),
        view("e1", "u") | {"item_id": ""},
        view("e2", "u"),
        EVERY_TYPE[8] | {"event_id": "e3", "context": {"channel": "tv"}},
        view("e4", "u"),
    ]
    result = ingest_batch(writer, raw, max_events=10).result(WAIT)
    assert counts(result) == (3, 0, [1, 3])
    assert result.rejected[0].reason.startswith("events[1].item_id: ")
    assert result.rejected[1].reason == "events[3]: channel given twice with different values"
    assert [i for i, _ in stored_ids(store)] == ["e0", "e2", "e4"]
    assert writer.events_rejected == 2


def test_duplicates_inside_and_across_submissions(store, writer):
    first = writer.submit(events(view("e1", "a"), view("e2", "a"), view("e1", "a")))
    assert counts(first.result(WAIT)) == (2, 1, [])
    second = writer.submit(events(view("e2", "a"), view("e3", "b"), view("e3", "b")))
    assert counts(second.result(WAIT)) == (1, 2, [])
    assert stored_ids(store) == [("e1", 0), ("e2", 0), ("e3", 0)]
    assert (writer.events_accepted, writer.events_duplicate) == (3, 3)


def test_a_retry_mixed_with_new_multi_line_events_is_attributed_per_event(store, pseudonymizer):
    committed: list[pa.Table] = []
    with GroupCommitWriter(store, pseudonymizer, on_committed=committed.append) as writer:
        old = [view("v1", "a"), purchase("p1", "a", 3), view("v2", "b"), purchase("p2", "b", 2)]
        assert counts(writer.submit(events(*old)).result(WAIT)) == (4, 0, [])
        mixed = [
            view("n1", "c"),
            purchase("p1", "a", 3),
            purchase("n2", "c", 2),
            view("v1", "a"),
            purchase("n3", "c", 4),
            view("v2", "b"),
            purchase("p2", "b", 2),
            view("n4", "c"),
        ]
        assert counts(writer.submit(events(*mixed)).result(WAIT)) == (4, 4, [])
    last = committed[-1]
    rows = sorted(zip(last["event_id"].to_pylist(), last["line"].to_pylist(), strict=True))
    assert rows == [("n1", 0), ("n2", 0), ("n2", 1), *[("n3", i) for i in range(4)], ("n4", 0)]
    assert len(stored_ids(store)) == 1 + 3 + 1 + 2 + 1 + 2 + 4 + 1
    assert writer.commits == 2


def test_merged_submissions_get_their_own_counts(store, pseudonymizer):
    writer = GroupCommitWriter(store, pseudonymizer, max_wait_ms=400).start()
    try:
        assert counts(writer.submit(events(view("old", "a"))).result(WAIT)) == (1, 0, [])
        commits = writer.commits
        futures = [
            writer.submit(events(view("e1", "a"), view("e2", "a"))),
            writer.submit(events(view("e2", "b"), view("e3", "b"), purchase("p", "b"))),
            writer.submit(events(view("old", "a"), view("e4", "c"), view("e3", "c"))),
            writer.submit(events(purchase("p", "b"), view("old", "a"))),
        ]
        results = [counts(f.result(WAIT)) for f in futures]
    finally:
        writer.close(WAIT)
    assert results == [(2, 0, []), (2, 1, []), (1, 2, []), (0, 2, [])]
    assert writer.commits == commits + 1  # one group, one commit
    assert len(stored_ids(store)) == 1 + 4 + 3


def test_concurrent_submitters_get_exact_counts(store, pseudonymizer):
    threads, batches, own, shared = 8, 12, 30, 10
    results: dict[tuple[int, int], IngestResult] = {}
    writer = GroupCommitWriter(store, pseudonymizer, max_wait_ms=1.0).start()

    def client(t: int) -> None:
        for b in range(batches):
            raw = [view(f"u{t}-{b}-{i}", f"user{t}") for i in range(own)]
            raw += [view(f"s{b}-{i}", f"user{i}") for i in range(shared)]  # every thread sends
            results[t, b] = writer.submit(events(*raw)).result(WAIT)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.close(WAIT)
    assert len(results) == threads * batches
    for b in range(batches):
        won = [results[t, b].accepted - own for t in range(threads)]
        assert all(0 <= w <= shared for w in won)
        assert sum(won) == shared  # each shared event is acknowledged as new exactly once
        for t in range(threads):
            r = results[t, b]
            assert (r.accepted + r.duplicates, r.rejected) == (own + shared, [])
    assert store.count_events() == threads * batches * own + batches * shared
    assert len(set(stored_ids(store))) == store.count_events()
    assert writer.events_accepted == store.count_events()


def test_erased_subjects_events_are_rejected_with_a_reason(store, pseudonymizer, writer):
    first = writer.submit(events(view("old", "gone"), view("seen", "kept")))
    assert counts(first.result(WAIT)) == (2, 0, [])
    pseudonym = pseudonymizer.pseudonymize("subject", "gone")
    store.erase_subject(pseudonym, erased_at=datetime.now(UTC))
    raw = [view("e0", "gone"), view("seen", "kept"), view("e2", "kept"), view("e0", "gone")]
    result = writer.submit(events(*raw)).result(WAIT)
    assert counts(result) == (1, 1, [0, 3])
    assert {r.reason for r in result.rejected} == {ERASED_REASON}
    assert [r.event_id for r in result.rejected] == ["e0", "e0"]
    assert stored_ids(store) == [("e2", 0), ("seen", 0)]
    alone = writer.submit(events(view("e5", "gone"), view("e6", "kept"))).result(WAIT)
    assert counts(alone) == (1, 0, [0])  # no duplicate: settled without a second round


class FlakyStore:
    """A store whose writes fail while ``down`` is set, as when the database goes away."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False

    def append_events(self, *args, **kwargs):
        if self.down:
            raise ConnectionError("server closed the connection unexpectedly")
        return self.inner.append_events(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_failing_store_acknowledges_nothing_then_recovers(store, pseudonymizer, caplog):
    flaky = FlakyStore(store)
    writer = GroupCommitWriter(flaky, pseudonymizer, max_wait_ms=20).start()
    try:
        flaky.down = True
        batches = [[view(f"e{b}-{i}", f"secret-user-{i}") for i in range(5)] for b in range(4)]
        futures = [writer.submit(events(*raw)) for raw in batches]
        for future in futures:
            with pytest.raises(StoreUnavailable, match="retry it with the same event_ids"):
                future.result(WAIT)
        assert store.count_events() == 0
        assert writer.events_accepted == 0 and writer.commit_failures >= 1
        assert "secret-user" not in caplog.text
        flaky.down = False
        retried = [writer.submit(events(*raw)).result(WAIT) for raw in batches]
    finally:
        writer.close(WAIT)
    assert [counts(r) for r in retried] == [(5, 0, [])] * 4
    assert store.count_events() == 20


def test_close_drains_then_refuses(store, pseudonymizer):
    writer = GroupCommitWriter(store, pseudonymizer, max_wait_ms=50, max_batch_events=7)
    with pytest.raises(WriterClosedError, match="not started"):
        writer.submit(events(view("x", "u")))
    writer.start()
    futures = [writer.submit(events(view(f"e{i}", "u"), view(f"f{i}", "u"))) for i in range(10)]
    assert writer.close(WAIT) is True
    assert all(f.done() for f in futures)
    assert sum(f.result().accepted for f in futures) == store.count_events() == 20
    assert writer.commits >= 3  # at most 7 events per commit
    with pytest.raises(WriterClosedError, match="closed"):
        writer.submit(events(view("late", "u")))
    assert store.count_events() == 20


def test_a_request_without_valid_events_needs_no_store(store, pseudonymizer):
    flaky = FlakyStore(store)
    flaky.down = True
    with GroupCommitWriter(flaky, pseudonymizer) as writer:
        future = ingest_batch(writer, [{"event_type": "view"}], max_events=5)
        assert counts(future.result(WAIT)) == (0, 0, [0])


def test_a_failing_callback_keeps_the_acknowledgement(store, pseudonymizer, caplog):
    def broken(table: pa.Table) -> None:
        raise RuntimeError("session cache is broken")

    with GroupCommitWriter(store, pseudonymizer, on_committed=broken) as writer:
        result = writer.submit(events(view("e1", "u"))).result(WAIT)
    assert counts(result) == (1, 0, [])
    assert "on_committed callback failed" in caplog.text


def test_a_future_can_be_awaited(store, pseudonymizer):
    import asyncio

    async def post() -> IngestResult:
        future: Future[IngestResult] = writer.submit(events(view("e1", "u")))
        return await asyncio.wrap_future(future)

    with GroupCommitWriter(store, pseudonymizer) as writer:
        assert counts(asyncio.run(post())) == (1, 0, [])


# --- PostgreSQL going away ------------------------------------------------------------------


def _kill(postgres_url: str, application: str) -> int:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as con:
        rows = con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application],
        ).fetchall()
    return len(rows)


@pytest.fixture
def killable(postgres_url, postgres_schema_url):
    """A PostgreSQL store whose connection a test can terminate, and that kill."""
    application = f"tailor_ingest_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_schema_url}&application_name={application}"
    store = open_store(url)
    yield store, url, lambda: _kill(postgres_url, application)
    store.close()


@pytest.mark.postgres
def test_a_killed_connection_answers_unavailable_mid_stream_then_recovers(killable, pseudonymizer):
    store, url, kill = killable
    acked: list[str] = []
    failed_at: list[int] = []  # len(acked) when each failure came
    stop = threading.Event()
    writer = GroupCommitWriter(store, pseudonymizer, max_wait_ms=1.0).start()

    def client() -> None:
        b = 0
        while not stop.is_set() and b < 5000:
            raw = [view(f"e{b}-{i}", f"user{i}") for i in range(20)]
            try:
                writer.submit(events(*raw)).result(WAIT)
                acked.extend(d["event_id"] for d in raw)
            except StoreUnavailable:
                failed_at.append(len(acked))
            b += 1

    def wait_for(condition) -> None:
        deadline = time.monotonic() + WAIT
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(lambda: len(acked) >= 200)
    assert kill() == 1
    wait_for(lambda: bool(failed_at))
    wait_for(lambda: bool(failed_at) and len(acked) >= failed_at[0] + 200)
    stop.set()
    thread.join()
    writer.close(WAIT)
    assert failed_at, "no request failed after the connection was terminated"
    assert len(acked) >= failed_at[0] + 200, "ingestion did not recover"
    survivor = open_store(url)
    try:
        stored = survivor.read_events(purpose=None, columns=["event_id"])["event_id"]
    finally:
        survivor.close()
    assert set(acked) <= set(stored.to_pylist())  # every acknowledged event is durable


@pytest.mark.postgres
def test_a_request_after_the_connection_was_killed_is_retried_safely(killable, pseudonymizer):
    store, _url, kill = killable
    with GroupCommitWriter(store, pseudonymizer) as writer:
        assert counts(writer.submit(events(view("e1", "u"))).result(WAIT)) == (1, 0, [])
        kill()
        request = events(view("e1", "u"), view("e2", "u"))
        with pytest.raises(StoreUnavailable):
            writer.submit(request).result(WAIT)
        assert counts(writer.submit(request).result(WAIT)) == (1, 1, [])  # the client's retry
    assert stored_ids(store) == [("e1", 0), ("e2", 0)]


def test_one_pass_json_validation_agrees_with_the_per_event_path() -> None:
    import json

    raw = [
        view("j1", "u1"),
        purchase("j2", "u2"),
        consent("j3", "u3", True, "2024-05-01T10:00:00Z"),
    ]
    body = json.dumps({"events": raw}).encode()
    fast = validate_batch_json(body, max_events=10)
    slow, rejected = validate_batch(raw, max_events=10)
    assert rejected == [] and fast == slow
    with pytest.raises(BatchTooLarge):
        validate_batch_json(body, max_events=2)


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [{"event_type": "view", "event_id": "x"}]}',  # a field missing
        b'{"events": [], "extra": 1}',  # an unknown top-level field
        b'{"event_type": "view"}',  # one event, not a batch
        b'{"events": [',  # not JSON
        b"[]",
    ],
)
def test_one_pass_json_validation_hands_anything_wrong_to_the_per_event_path(body) -> None:
    assert validate_batch_json(body, max_events=10) is None


# --- the commit hook's bulk path ------------------------------------------------------------


def test_session_add_many_agrees_with_add():
    from tailor.api.state import SessionStore

    rows = [(f"u{i % 7}", f"i{i}", "view" if i % 3 else "add_to_cart", i) for i in range(40)]
    one, bulk = SessionStore(max_events=4), SessionStore(max_events=4)
    for row in rows:
        one.add(*row)
    bulk.add_many(*map(list, zip(*rows, strict=True)))
    assert len(one) == len(bulk) == 7
    for user in {u for u, *_ in rows}:
        assert one.events(user) == bulk.events(user)
    few = SessionStore(max_users=5)  # past the limit, the least recently active go
    few.add_many(*map(list, zip(*rows, strict=True)))
    assert {u for u in map("u{}".format, range(7)) if few.events(u)} == {
        "u0",
        "u1",
        "u2",
        "u3",
        "u4",
    }
    version = bulk.get("u0")[1]
    bulk.add_many(["u0"], ["i99"], ["view"], [99])
    assert bulk.get("u0")[1] > version  # a change invalidates cached answers


def test_on_committed_keeps_consent_and_interactions_in_order(tmp_path):
    from tailor.api.state import ServingState, SessionStore

    state = ServingState.__new__(ServingState)  # only what the hook touches
    state._erased, state.tail_interval_s, state._tail_seen = {"gone"}, None, None
    state.sessions, state._consent = SessionStore(), {}
    state.cache = type("NoCache", (), {"drop_user": lambda self, user: None})()
    at = pa.array([1_700_000_000_000_000] * 5, pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "event_id": ["a", "b", "c", "d", "e"],
            "subject_id": ["u1", "u1", "u2", "gone", None],
            "event_type": ["view", "consent", "view", "view", "view"],
            "item_id": ["i1", None, "i2", "i3", "i4"],
            "purpose": [None, "personalization", None, None, None],
            "granted": [None, False, None, None, None],
            "occurred_at": at,
        }
    )
    state.on_committed(table)  # u1's view, then its consent withdrawn: nothing kept of u1
    assert state.sessions.events("u1") == [] and state._consent == {"u1": False}
    assert [i for i, *_ in state.sessions.events("u2")] == ["i2"]
    assert state.sessions.events("gone") == []
    state.on_committed(table.filter(pa.array([False, False, True, True, True])))
    assert [i for i, *_ in state.sessions.events("u2")] == ["i2", "i2"]


def test_start_up_freezes_the_loaded_state_and_shutdown_restores_the_collector():
    import gc

    from tailor.api.app import GC_GEN0_THRESHOLD, _settle_gc

    before = gc.get_threshold()
    old = _settle_gc()
    try:
        assert old == before
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == max(before[0], GC_GEN0_THRESHOLD)
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
    assert gc.get_threshold() == before
