"""The PostgreSQL store opens its connection again after losing it between transactions."""

from __future__ import annotations

import time
import uuid

import pytest

from tailor.store import open_store

pytestmark = pytest.mark.postgres


def _terminate(admin_url: str, application: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application],
        )


def test_a_lost_connection_fails_one_call_then_reconnects(postgres_url, postgres_schema_url):
    application = f"tailor_reconnect_{uuid.uuid4().hex[:8]}"
    store = open_store(f"{postgres_schema_url}&application_name={application}")
    try:
        store.set_meta("probe", "before")
        _terminate(postgres_url, application)
        # The call that meets the dead connection fails: the store cannot know it died.
        with pytest.raises(Exception, match=r"(?i)connection|terminat|server"):
            store.get_meta("probe")
        assert store.get_meta("probe") == "before"
        store.set_meta("probe", "after")
        assert store.get_meta("probe") == "after"
    finally:
        store.close()


def test_a_connection_lost_inside_a_transaction_rolls_back_its_work(
    postgres_url, postgres_schema_url
):
    application = f"tailor_reconnect_{uuid.uuid4().hex[:8]}"
    store = open_store(f"{postgres_schema_url}&application_name={application}")
    try:
        with pytest.raises(Exception, match=r"(?i)connection|terminat|server"):  # noqa: SIM117
            with store.transaction():
                store.set_meta("half", "written")
                _terminate(postgres_url, application)
                store.set_meta("other", "written")
        assert store.get_meta("half") is None
    finally:
        store.close()


def test_a_bulk_append_refreshes_the_planners_statistics(postgres_schema_url, monkeypatch):
    import tailor.store.postgres_store as postgres_store
    from tests.conftest import events_table, view

    monkeypatch.setattr(postgres_store, "ANALYZE_AFTER_ROWS", 20)
    store = open_store(postgres_schema_url)
    try:

        def analyzed() -> int:
            (count,) = store._run(
                "SELECT analyze_count FROM pg_stat_user_tables "
                "WHERE relname = 'events' AND schemaname = current_schema()"
            )[0]
            return count

        store.append_events(events_table(*(view(f"s{i}", "u1") for i in range(5))))
        small = analyzed()
        store.append_events(events_table(*(view(f"b{i}", "u1") for i in range(25))))
        # The statistics collector reports asynchronously: give it a moment.
        for _ in range(50):
            if analyzed() > small:
                break
            time.sleep(0.1)
        assert analyzed() == small + 1
    finally:
        store.close()
