from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pyarrow.compute as pc
import pytest

from tailor.datasets.base import Dataset, dataset_path
from tailor.datasets.media_mix import load_media_mix


@pytest.fixture(scope="module")
def example(load_or_skip) -> Dataset:
    return load_or_skip(load_media_mix)


def _of_type(data: Dataset, event_type: str) -> list[dict]:
    return data.events.filter(pc.equal(data.events["event_type"], event_type)).to_pylist()


def test_weekly_spend_per_channel(example: Dataset) -> None:
    spend = _of_type(example, "ad_spend")
    assert len(spend) == 179 * 2
    assert {r["channel"] for r in spend} == {"x1", "x2"}
    assert len({r["occurred_at"] for r in spend}) == 179
    assert all(r["currency"] == "USD" for r in spend)
    assert any(r["cost"] == 0 for r in spend)  # zero-spend weeks are kept
    assert min(r["occurred_at"] for r in spend) == datetime(2018, 4, 2, tzinfo=UTC)
    assert max(r["occurred_at"] for r in spend) == datetime(2021, 8, 30, tzinfo=UTC)


def test_weekly_result_matches_the_file(example: Dataset) -> None:
    results = _of_type(example, "ad_result")
    assert len(results) == 179
    assert {r["channel"] for r in results} == {"all"}
    with dataset_path("mmm-pymc-marketing", "mmm_example.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["revenue"] for r in results] == [float(row["y"]) for row in rows]
    controls = [json.loads(r["properties"]) for r in results]
    assert [c["event_1"] for c in controls] == [float(row["event_1"]) for row in rows]
    assert sum(c["event_2"] for c in controls) == 1.0


def test_events_are_valid(example: Dataset, check_events) -> None:
    assert check_events(example.events) == 179 * 3


def test_roas_file(load_or_skip, check_events) -> None:
    data: Dataset = load_or_skip(load_media_mix, file="mmm_roas_data.csv")
    assert check_events(data.events) == 131 * 3
    assert len(_of_type(data, "ad_spend")) == 131 * 2
    first = data.events.slice(0, 1).to_pylist()[0]
    assert first["occurred_at"] == datetime(2021, 10, 2, tzinfo=UTC)
    assert first["event_id"] == "mmm-mmm_roas_data-2021-10-02-x1-spend"
    assert _of_type(data, "ad_result")[0]["properties"] is None


def test_ids_are_deterministic(example: Dataset, load_or_skip) -> None:
    again = load_or_skip(load_media_mix)
    assert again.events.equals(example.events)
