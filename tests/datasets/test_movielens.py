from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.compute as pc
import pytest

from tailor.datasets.base import Dataset
from tailor.datasets.movielens import load_movielens_100k


@pytest.fixture(scope="module")
def movielens(load_or_skip) -> Dataset:
    return load_or_skip(load_movielens_100k)


def test_counts_match_the_readme(movielens: Dataset) -> None:
    events = movielens.events
    assert events.num_rows == 100_000
    assert pc.unique(events["event_type"]).to_pylist() == ["rating"]
    assert len(pc.unique(events["subject_id"])) == 943
    assert len(pc.unique(events["item_id"])) == 1_682
    assert movielens.users.num_rows == 943
    assert movielens.items.num_rows == 1_682
    assert sorted(pc.unique(events["value"]).to_pylist()) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_first_rating_of_u_data(movielens: Dataset) -> None:
    # u.data line 1: "196\t242\t3\t881250949"
    first = movielens.events.slice(0, 1).to_pylist()[0]
    assert first["event_id"] == "ml100k-196-242"
    assert first["subject_id"] == "ml-u196"
    assert first["item_id"] == "ml-i242"
    assert first["value"] == 3.0
    assert first["occurred_at"] == datetime.fromtimestamp(881250949, UTC)


def test_events_are_valid(movielens: Dataset, check_events) -> None:
    assert check_events(movielens.events, sample=5_000) == 5_000


def test_entities(movielens: Dataset, check_entities) -> None:
    check_entities(movielens)
    items = {r["item_id"]: r for r in movielens.items.to_pylist()}
    toy_story = items["ml-i1"]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["category"] == "Animation|Children's|Comedy"
    assert toy_story["created_at"] == datetime(1995, 1, 1, tzinfo=UTC)
    assert json.loads(toy_story["attributes"])["genres"] == ["Animation", "Children's", "Comedy"]
    assert items["ml-i267"]["created_at"] is None  # "unknown" has no release date
    casablanca = items["ml-i483"]  # 01-Jan-1942: before tailor's earliest timestamp
    assert casablanca["title"] == "Casablanca (1942)"
    assert casablanca["created_at"] is None
    assert json.loads(casablanca["attributes"])["release_date"] == "1942-01-01"
    assert set(pc.unique(movielens.events["item_id"]).to_pylist()) <= set(items)
    assert set(pc.unique(movielens.events["subject_id"]).to_pylist()) <= set(
        movielens.users["user_id"].to_pylist()
    )


def test_zip_codes_are_dropped(movielens: Dataset) -> None:
    for text in movielens.users["attributes"].to_pylist():
        assert set(json.loads(text)) == {"age", "gender", "occupation"}
    first = json.loads(movielens.users["attributes"][0].as_py())
    assert first == {"age": 24, "gender": "M", "occupation": "technician"}
    assert any("zip" in note for note in movielens.notes)


def test_ids_are_deterministic(movielens: Dataset, load_or_skip) -> None:
    again = load_or_skip(load_movielens_100k)
    assert again.events.equals(movielens.events)
    assert again.items.equals(movielens.items)
