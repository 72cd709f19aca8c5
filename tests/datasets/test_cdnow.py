from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.compute as pc
import pytest

from tailor.datasets.base import Dataset, dataset_path
from tailor.datasets.cdnow import load_cdnow


@pytest.fixture(scope="module")
def master(load_or_skip) -> Dataset:
    return load_or_skip(load_cdnow)


@pytest.fixture(scope="module")
def sample(load_or_skip) -> Dataset:
    return load_or_skip(load_cdnow, sample=True)


def test_master_counts(master: Dataset) -> None:
    assert master.name == "cdnow"
    assert master.events.num_rows == 69_659
    assert len(pc.unique(master.events["subject_id"])) == 23_570
    assert master.users.num_rows == 23_570
    assert pc.unique(master.events["event_type"]).to_pylist() == ["purchase"]
    assert pc.unique(master.events["item_id"]).to_pylist() == ["cdnow-cd"]
    first = master.events["occurred_at"][0].as_py()
    assert first == datetime(1997, 1, 1, tzinfo=UTC)
    last = pc.max(master.events["occurred_at"]).as_py()
    assert last == datetime(1998, 6, 30, tzinfo=UTC)


def test_sample_counts(sample: Dataset) -> None:
    assert sample.name == "cdnow-sample"
    assert len(pc.unique(sample.events["subject_id"])) == 2_357
    assert sample.events.num_rows == 6_919


def test_amount_paid_is_kept(master: Dataset) -> None:
    # CDNOW_master.txt line 2: " 00001 19970101  1   11.77"; line 3: " 00002 19970112  1   12.00"
    rows = master.events.slice(0, 2).to_pylist()
    assert rows[0]["event_id"] == "cdnow-00001-0"
    assert rows[0]["subject_id"] == "cdnow-00001"
    assert (rows[0]["quantity"], rows[0]["price"], rows[0]["currency"]) == (1.0, 11.77, "USD")
    total = pc.sum(pc.multiply(master.events["quantity"], master.events["price"])).as_py()
    with dataset_path("cdnow", "CDNOW_master.txt").open() as handle:
        next(handle)
        expected = sum(float(line.split()[3]) for line in handle)
    assert total == pytest.approx(expected)


def test_events_are_valid(master: Dataset, sample: Dataset, check_events, check_entities) -> None:
    assert check_events(sample.events) == 6_919
    assert check_events(master.events, sample=5_000) == 5_000
    check_entities(master)


def test_sample_ids_match_master(master: Dataset, sample: Dataset) -> None:
    # the sample holds the master's rows of 2,357 customers, so a purchase keeps its id
    mine = master.events.filter(pc.is_in(master.events["event_id"], sample.events["event_id"]))
    assert mine.num_rows == sample.events.num_rows
    assert mine.sort_by("event_id").equals(sample.events.sort_by("event_id"))


def test_ids_are_deterministic(master: Dataset, load_or_skip) -> None:
    again = load_or_skip(load_cdnow)
    assert again.events["event_id"].equals(master.events["event_id"])
