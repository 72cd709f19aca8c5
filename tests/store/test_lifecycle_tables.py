"""The lifecycle's tables behave alike in DuckDB and PostgreSQL: leases, served answers,
experiments and the journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from tailor.store.lifecycle_sql import SERVED_SCHEMA

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def served(ids: list[str], subjects: list[str | None], experiment: str | None = "e") -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "recommendation_id": ids,
            "subject_id": subjects,
            "served_at": [NOW + timedelta(seconds=i) for i in range(n)],
            "engine": ["recommend"] * n,
            "model_version": ["v1"] * n,
            "experiment": [experiment] * n,
            "arm": ["control"] * n,
            "propensity": [0.5] * n,
        },
        schema=SERVED_SCHEMA,
    )


def test_a_lease_is_won_once_until_it_expires_or_is_freed(store):
    later = NOW + timedelta(minutes=10)
    assert store.lease_job("retrain", "w1", now=NOW, until=later)
    assert not store.lease_job("retrain", "w2", now=NOW + timedelta(minutes=1), until=later)
    assert store.lease_job("retrain", "w1", now=NOW, until=later)  # its own again
    assert store.lease_job("retrain", "w2", now=later, until=later + timedelta(minutes=10))
    assert not store.finish_job(
        "retrain", "w1", status="ok", message="late", finished_at=later, next_run_at=later
    )
    assert store.finish_job(
        "retrain",
        "w2",
        status="ok",
        message="done",
        finished_at=later,
        next_run_at=later + timedelta(days=1),
    )
    (job,) = store.jobs()
    assert job["lease_owner"] is None and job["runs"] == 1 and job["last_message"] == "done"
    assert job["next_run_at"] == later + timedelta(days=1)
    store.schedule_job("retrain", NOW)
    assert store.jobs()[0]["next_run_at"] == NOW


def test_served_answers_are_read_once_and_never_of_an_erased_subject(store):
    assert store.record_served(served(["r1", "r2", "r3"], ["alice", "bob", None])) == 3
    store.record_served(served(["r1", "r2", "r3"], ["alice", "bob", None]))  # written twice
    assert store.record_served(served(["r4"], ["carol"], "other")) == 1
    assert store.read_served(experiment="e")["recommendation_id"].to_pylist() == ["r1", "r2", "r3"]
    assert store.read_served()["recommendation_id"].to_pylist() == ["r1", "r4", "r2", "r3"]
    assert store.read_served(since=NOW + timedelta(seconds=1)).num_rows == 2  # r2, r3
    store.erase_subject("bob", erased_at=NOW)
    assert "bob" not in store.read_served()["subject_id"].to_pylist()
    assert store.record_served(served(["r9"], ["bob"])) == 0  # queued before the erasure


def test_experiments_and_the_journal(store):
    store.put_experiment("a", '{"v": 1}', NOW)
    store.put_experiment("a", '{"v": 2}', NOW + timedelta(seconds=1))
    assert [(n, s) for n, s, _ in store.experiments()] == [("a", '{"v": 2}')]
    for minute in range(5):
        store.add_log("kpi", NOW + timedelta(minutes=minute), f'{{"m": {minute}}}')
    store.add_log("alert", NOW, "{}")
    newest = store.read_log("kpi", limit=2)
    assert [payload for _, payload in newest] == ['{"m": 3}', '{"m": 4}']  # oldest first
    assert len(store.read_log("kpi", since=NOW + timedelta(minutes=3))) == 2


def test_retention_purges_the_served_answers_too(store):
    store.record_served(served(["r1", "r2", "r3"], ["alice", "bob", "carol"]))
    store.purge_events(NOW + timedelta(seconds=2))
    assert store.read_served()["recommendation_id"].to_pylist() == ["r3"]
