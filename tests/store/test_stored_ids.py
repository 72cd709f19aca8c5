"""The DuckDB store's filter of stored event ids: it lets appends of new ids skip the probe
of the whole log, and must never let a stored id through as new."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.store import open_store
from tailor.store.stored_ids import PROBE_ABOVE, StoredIdFilter
from tests.conftest import events_table, view


def hashes(*values: int) -> np.ndarray:
    return np.asarray(values, np.uint64)


def test_filter_knows_what_was_loaded_and_added_before_and_after_loading():
    known = StoredIdFilter()
    known.add(hashes(7))  # an append running while another connection loads
    assert not known.loaded
    assert known.may_hold_any(hashes(1, 2), lambda: hashes(5, 3)) is False
    assert known.loaded
    assert known.may_hold_any(hashes(2, 3), lambda: pytest.fail("loaded twice"))
    assert known.may_hold_any(hashes(7), lambda: hashes())
    known.add(hashes(11, 9))
    assert known.may_hold_any(hashes(9), lambda: hashes())
    assert not known.may_hold_any(hashes(10, 12, 2**64 - 1, 0), lambda: hashes())
    assert not known.may_hold_any(hashes(), lambda: hashes())


def test_filter_folds_many_additions_without_losing_any():
    rng = np.random.default_rng(0)
    known = StoredIdFilter()
    known.load(lambda: hashes())
    added = [rng.integers(0, 2**63, 5_000, dtype=np.uint64) for _ in range(30)]
    for chunk in added:  # 150,000 ids: folded into the main array at least once
        known.add(chunk)
    every = np.concatenate(added)
    for value in every[::997]:
        assert known.may_hold_any(np.asarray([value], np.uint64), lambda: hashes())
    fresh = np.setdiff1d(rng.integers(0, 2**63, 1_000, dtype=np.uint64), every)
    assert not known.may_hold_any(fresh, lambda: hashes())


def test_a_bulk_append_is_always_probed():
    known = StoredIdFilter()
    many = np.arange(PROBE_ABOVE + 1, dtype=np.uint64)
    assert known.may_hold_any(many, lambda: hashes())


def probes(store, monkeypatch) -> list[str]:
    """The duplicate probes the store runs from now on."""
    seen: list[str] = []
    run = store._run

    def recording(sql, params=()):
        if sql.startswith("SELECT count(*) FROM events e WHERE e.event_id IN"):
            seen.append(sql)
        return run(sql, params)

    monkeypatch.setattr(store, "_run", recording)
    return seen


def test_new_ids_skip_the_probe_and_a_repeat_is_still_found(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "s.duckdb"))
    try:
        store.append_events(events_table(view("e1", "a"), view("e2", "b")))
        ran = probes(store, monkeypatch)
        new = store.append_events(events_table(view("e3", "a")))
        assert (new.inserted, new.duplicates, ran) == (1, 0, [])
        repeat = store.append_events(events_table(view("e2", "b"), view("e4", "c")))
        assert (repeat.inserted, repeat.duplicates, len(ran)) == (1, 1, 1)
        assert store.count_events() == 4
    finally:
        store.close()


def test_ids_stored_before_the_store_was_opened_are_found(tmp_path):
    """The filter starts from what the file holds (written by an earlier process)."""
    path = str(tmp_path / "s.duckdb")
    first = open_store(path)
    first.append_events(events_table(view("e1", "a")))
    first.close()
    again = open_store(path)
    try:
        again.prepare_appends()
        result = again.append_events(events_table(view("e1", "a"), view("e2", "a")))
        assert (result.inserted, result.duplicates) == (1, 1)
    finally:
        again.close()


def test_two_stores_on_one_file_in_one_process_share_what_they_wrote(tmp_path):
    path = str(tmp_path / "s.duckdb")
    one, two = open_store(path), open_store(path)
    try:
        one.prepare_appends()
        two.prepare_appends()
        one.append_events(events_table(view("e1", "a")))
        result = two.append_events(events_table(view("e1", "a")))
        assert (result.inserted, result.duplicates) == (0, 1)
    finally:
        one.close()
        two.close()


def test_reopening_after_every_store_closed_reads_the_file_afresh(tmp_path):
    """Another process may write while this one has the file closed: the filter of the
    earlier opening must not be reused."""
    path = str(tmp_path / "s.duckdb")
    store = open_store(path)
    store.prepare_appends()
    store.close()
    import duckdb

    with duckdb.connect(path) as other:  # as another process would, behind the store's back
        other.execute(
            "INSERT INTO events (event_id, line, event_type, occurred_at, received_at) "
            "VALUES ('e9', 0, 'view', now(), now())"
        )
    reopened = open_store(path)
    try:
        result = reopened.append_events(events_table(view("e9", "a")))
        assert (result.inserted, result.duplicates) == (0, 1)
    finally:
        reopened.close()
