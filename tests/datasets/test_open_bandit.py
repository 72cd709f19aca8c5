from __future__ import annotations

import csv
import json

import pyarrow.compute as pc
import pytest

from tailor.datasets.base import Dataset, dataset_path
from tailor.datasets.open_bandit import CAMPAIGNS, POLICIES, load_open_bandit

COMBINATIONS = [(p, c) for p in POLICIES for c in CAMPAIGNS]


def _clicks_in_file(policy: str, campaign: str) -> int:
    path = dataset_path("open-bandit-sample", policy, campaign, f"{campaign}.csv")
    with path.open(newline="") as handle:
        return sum(int(row["click"]) for row in csv.DictReader(handle))


@pytest.mark.parametrize(("policy", "campaign"), COMBINATIONS)
def test_impressions_and_clicks(policy: str, campaign: str, load_or_skip, check_events) -> None:
    data: Dataset = load_or_skip(load_open_bandit, policy=policy, campaign=campaign)
    types = pc.value_counts(data.events["event_type"]).to_pylist()
    counts = {t["values"]: t["counts"] for t in types}
    assert counts["impression"] == 10_000
    assert counts["click"] == _clicks_in_file(policy, campaign)
    check_events(data.events, sample=None if campaign == "all" else 1_000)
    items = set(data.items["item_id"].to_pylist())
    assert set(pc.unique(data.events["item_id"]).to_pylist()) <= items


@pytest.fixture(scope="module")
def random_all(load_or_skip) -> Dataset:
    return load_or_skip(load_open_bandit)


def test_first_log_row(random_all: Dataset) -> None:
    # random/all/all.csv row 0: 2019-11-24 00:00:34.762830+00:00, item 14, position 3, no click
    first = random_all.events.slice(0, 1).to_pylist()[0]
    assert first["event_id"] == "obd-random-all-0-impression"
    assert first["recommendation_id"] == first["subject_id"] == "obd-random-all-0"
    assert first["item_id"] == "obd-all-item14"
    assert first["occurred_at"].isoformat() == "2019-11-24T00:00:34.762830+00:00"
    properties = json.loads(first["properties"])
    assert properties["policy"] == "random" and properties["campaign"] == "all"
    assert properties["position"] == 3
    assert properties["propensity_score"] == 0.0125
    assert len(properties["user_features"]) == 4
    assert ", " not in first["properties"]  # compact JSON


def test_clicks_follow_an_impression(random_all: Dataset) -> None:
    events = random_all.events
    clicks = events.filter(pc.equal(events["event_type"], "click")).to_pylist()
    shown = {
        r["recommendation_id"]: r
        for r in events.filter(pc.equal(events["event_type"], "impression")).to_pylist()
    }
    assert clicks
    for click in clicks:
        impression = shown[click["recommendation_id"]]
        assert click["item_id"] == impression["item_id"]
        assert click["occurred_at"] == impression["occurred_at"]
        assert click["event_id"] == click["recommendation_id"] + "-click"


def test_items(random_all: Dataset, check_entities) -> None:
    check_entities(random_all)
    assert random_all.items.num_rows == 80
    first = json.loads(random_all.items["attributes"][0].as_py())
    assert set(first) == {f"item_feature_{i}" for i in range(4)}
    assert random_all.users is None
    assert any("no user id" in n for n in random_all.notes)


def test_ids_are_deterministic(random_all: Dataset, load_or_skip) -> None:
    again = load_or_skip(load_open_bandit)
    assert again.events.equals(random_all.events)


def test_unknown_policy_or_campaign() -> None:
    with pytest.raises(ValueError, match="bts"):
        load_open_bandit(policy="greedy")
    with pytest.raises(ValueError, match="women"):
        load_open_bandit(campaign="kids")


def test_a_log_without_the_expected_columns_is_named(tmp_path):
    folder = tmp_path / "random" / "all"
    folder.mkdir(parents=True)
    (folder / "all.csv").write_text(",timestamp,item_id\n0,2019-11-24 00:00:17+00:00,3\n")
    with pytest.raises(ValueError, match=r"all\.csv is not an Open Bandit log"):
        load_open_bandit(tmp_path)
