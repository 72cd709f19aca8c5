"""The seeded shop simulator: determinism, validity, ground truth and the CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tailor.cli_simulate import app
from tailor.datasets.simulate.shop import (
    ShopConfig,
    ShopConfigError,
    iter_shop_events,
    load_truth,
    shop_item_changes,
    shop_items,
    shop_truth,
    shop_users,
    simulate_shop,
    write_shop,
)
from tailor.events.columns import ENTITIES, EVENT_SCHEMA, ITEM_CATEGORY_SEPARATOR
from tailor.events.schema import PurchaseEvent, from_flat_rows

# Several chunks, so cross-chunk state (consent once, pending revocations, ids) is exercised.
SMALL = ShopConfig(
    users=300,
    items=200,
    events=20_000,
    categories=12,
    top_categories=4,
    days=30,
    seed=7,
    chunk_rows=4_000,
    revoke_share=0.1,
    availability_change_share=0.2,
)


@pytest.fixture(scope="module")
def dataset():
    return simulate_shop(SMALL)


@pytest.fixture(scope="module")
def rows(dataset) -> list[dict[str, Any]]:
    return dataset.events.to_pylist()


def _index(ids: list[str], prefix: str) -> np.ndarray:
    return np.array([int(x[len(prefix) :]) for x in ids], dtype=np.int64)


def test_same_seed_same_tables_other_seed_different(dataset) -> None:
    again = simulate_shop(SMALL)
    assert again.events.equals(dataset.events)
    assert again.items.equals(dataset.items)
    assert again.users.equals(dataset.users)
    other = simulate_shop(replace(SMALL, seed=8))
    assert not other.events.equals(dataset.events)
    assert other.events.column("event_id")[0].as_py().startswith("sim8-")
    assert not np.array_equal(
        shop_truth(SMALL).user_factors, shop_truth(replace(SMALL, seed=8)).user_factors
    )


def test_row_count_close_to_target(dataset) -> None:
    assert abs(dataset.events.num_rows - SMALL.events) <= 0.01 * SMALL.events
    tiny = simulate_shop(ShopConfig(users=5, items=3, events=50, categories=2, top_categories=1))
    assert 30 <= tiny.events.num_rows <= 80


def test_chunks_conform_to_event_schema() -> None:
    chunks = list(iter_shop_events(SMALL))
    assert len(chunks) == 5
    for chunk in chunks:
        assert chunk.schema.equals(EVENT_SCHEMA)
        chunk.validate(full=True)
    assert pc.all(pc.is_null(chunks[0].column("received_at"))).as_py()


def test_every_event_is_valid_under_the_pydantic_reference(rows) -> None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["event_id"]].append(row)
    types = defaultdict(int)
    for group in groups.values():
        event = from_flat_rows(group)
        types[event.event_type] += 1
        if isinstance(event, PurchaseEvent):
            assert 1 <= len(event.items) <= SMALL.basket_max
            assert event.order_id is not None and event.currency == "EUR"
            assert all(line.quantity > 0 for line in event.items)
    assert set(types) == {
        "consent", "view", "add_to_cart", "remove_from_cart", "purchase", "rating",
    }  # fmt: skip
    assert types["view"] > types["add_to_cart"] > types["purchase"]


def test_passes_the_shared_dataset_checks(dataset, check_events, check_entities) -> None:
    assert check_events(dataset.events, sample=500) == 500
    check_entities(dataset)


def test_event_id_and_line_unique(dataset) -> None:
    keys = {
        (r["event_id"], r["line"]) for r in dataset.events.select(["event_id", "line"]).to_pylist()
    }
    assert len(keys) == dataset.events.num_rows
    assert all(k[0].startswith("sim7-") for k in keys)


def test_context_ids_and_prices(dataset, rows) -> None:
    items = {r["item_id"]: r for r in dataset.items.to_pylist()}
    for row in rows:
        assert row["subject_id"].startswith("u")
        assert row["country"] in dict(SMALL.countries)
        if row["event_type"] in ("view", "add_to_cart", "remove_from_cart", "purchase", "rating"):
            assert row["session_id"].startswith("s")
            assert row["device_type"] in ("desktop", "mobile", "tablet", "app")
            assert row["channel"] in ("direct", "organic", "paid_search", "email", "social")
        if row["event_type"] in ("add_to_cart", "remove_from_cart", "purchase"):
            assert row["price"] == items[row["item_id"]]["price"]
            assert row["currency"] == "EUR"
        if row["event_type"] == "rating":
            assert row["value"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert row["occurred_at"].tzinfo is not None
        assert SMALL.start <= row["occurred_at"] < datetime(2024, 1, 31, tzinfo=SMALL.start.tzinfo)


def test_events_in_time_order_so_also_per_user(dataset) -> None:
    times = dataset.events.column("occurred_at").cast(pa.int64()).to_numpy()
    assert (np.diff(times) >= 0).all()  # chunks are time slices, each sorted


def test_consent_granted_first_and_some_revoked_later(rows) -> None:
    first_seen: dict[str, datetime] = {}
    grants: dict[tuple[str, str], datetime] = {}
    revokes: dict[str, datetime] = {}
    for row in rows:
        user = row["subject_id"]
        first_seen.setdefault(user, row["occurred_at"])
        if row["event_type"] != "consent":
            continue
        assert row["policy_version"] == SMALL.policy_version
        if row["granted"]:
            assert (user, row["purpose"]) not in grants  # granted once
            grants[(user, row["purpose"])] = row["occurred_at"]
        else:
            assert row["purpose"] == "personalization"
            revokes[user] = row["occurred_at"]
    for user, seen in first_seen.items():
        assert grants[(user, "personalization")] == seen
        assert grants[(user, "analytics")] == seen
    assert len(revokes) >= 5
    for user, at in revokes.items():
        assert at > grants[(user, "personalization")]


def test_no_view_cart_or_purchase_while_unavailable(rows) -> None:
    changes = shop_item_changes(SMALL).to_pylist()
    assert any(not c["available"] for c in changes)
    assert any(c["available"] for c in changes)
    history: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for change in changes:  # ordered by time
        history[change["item_id"]].append((change["time"], change["available"]))
    checked = 0
    for row in rows:
        if row["event_type"] not in ("view", "add_to_cart", "remove_from_cart", "purchase"):
            continue
        state = True
        for when, available in history.get(row["item_id"], ()):
            if when <= row["occurred_at"]:
                state = available
        assert state, row
        checked += row["item_id"] in history
    assert checked > 100  # items that do change are still used while in stock
    final = {r["item_id"]: r["available"] for r in shop_items(SMALL).to_pylist()}
    for item, log in history.items():
        assert final[item] == log[-1][1]


def test_purchases_lean_to_high_true_affinity(dataset) -> None:
    truth = shop_truth(SMALL)
    purchases = dataset.events.filter(pc.equal(dataset.events.column("event_type"), "purchase"))
    users = _index(purchases.column("subject_id").to_pylist(), "u")
    items = _index(purchases.column("item_id").to_pylist(), "i")
    bought = truth.affinity(users, items)
    everything = truth.user_factors[users] @ truth.item_factors.T  # each buyer vs all items
    spread = float(everything.std())
    assert bought.mean() > everything.mean() + 0.75 * spread
    # The main preferred category is bought far more often than its share of the catalog.
    in_pref = truth.item_category[items] == truth.user_preferred_category[users]
    share = np.mean(truth.item_category[None, :] == truth.user_preferred_category[users, None])
    assert in_pref.mean() > 2 * share


def test_ratings_follow_affinity_and_sessions_stick_to_a_category(dataset) -> None:
    truth = shop_truth(SMALL)
    events = dataset.events
    ratings = events.filter(pc.equal(events.column("event_type"), "rating"))
    affinity = truth.affinity(
        _index(ratings.column("subject_id").to_pylist(), "u"),
        _index(ratings.column("item_id").to_pylist(), "i"),
    )
    assert np.corrcoef(ratings.column("value").to_numpy(), affinity)[0, 1] > 0.3
    views = events.filter(pc.equal(events.column("event_type"), "view"))
    categories = truth.item_category[_index(views.column("item_id").to_pylist(), "i")]
    by_session: dict[str, list[int]] = defaultdict(list)
    for session, category in zip(views.column("session_id").to_pylist(), categories, strict=True):
        by_session[session].append(int(category))
    modal_share = [np.bincount(c).max() / len(c) for c in by_session.values() if len(c) >= 3]
    assert np.mean(modal_share) > 0.6


def test_truth_shapes_and_entities(dataset) -> None:
    truth = shop_truth(SMALL)
    assert truth.user_factors.shape == (SMALL.users, SMALL.factors)
    assert truth.item_factors.shape == (SMALL.items, SMALL.factors)
    assert truth.item_popularity.shape == (SMALL.items,)
    assert np.isclose(truth.item_popularity.sum(), 1.0)
    assert set(np.unique(truth.item_category)) == set(range(SMALL.categories))
    assert truth.user_preferred_category.shape == (SMALL.users,)
    assert dataset.items.schema.equals(ENTITIES["items"].schema)
    assert dataset.users.schema.equals(ENTITIES["users"].schema)
    assert dataset.items.num_rows == SMALL.items and dataset.users.num_rows == SMALL.users
    for item in dataset.items.to_pylist()[:50]:
        _top, leaf = item["category"].split(ITEM_CATEGORY_SEPARATOR)
        assert leaf in item["title"] and item["description"].endswith(".")
        assert item["currency"] == "EUR" and item["price"] > 0 and item["brand"]
        assert item["created_at"] < SMALL.start
    for user in shop_users(SMALL).to_pylist()[:50]:
        attributes = json.loads(user["attributes"])
        assert set(attributes) == {"segment_truth", "activity"}
        assert attributes["segment_truth"] in truth.categories


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"users": 0}, "users"),
        ({"items": -1}, "items"),
        ({"events": 0}, "events"),
        ({"categories": 500}, "categories"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"users": 1.5}, "users"),
        ({"cart_probability": 1.5}, "cart_probability"),
        ({"revoke_share": -0.1}, "revoke_share"),
        ({"views_per_session_mean": 0.5}, "views_per_session_mean"),
        ({"start": datetime(2024, 1, 1)}, "start"),
        ({"countries": (("Germany", 1.0),)}, "countries"),
        ({"channels": (("direct", 0.0),)}, "channels"),
        ({"chunk_rows": 10}, "chunk_rows"),
    ],
)
def test_config_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    config = replace(SMALL, **changes)
    with pytest.raises(ShopConfigError, match=field) as info:
        config.validate()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match=field):
        simulate_shop(config)


def test_write_shop_writes_readable_parquet(tmp_path: Path, dataset, capsys) -> None:
    summary = write_shop(SMALL, tmp_path / "out" / "shop.parquet", progress=False)
    assert capsys.readouterr().out == ""
    paths = summary.paths
    assert paths["events"] == tmp_path / "out" / "shop.parquet"
    assert paths["items"].name == "shop.items.parquet"
    assert paths["users"].name == "shop.users.parquet"
    assert paths["item_changes"].name == "shop.item_changes.parquet"
    assert paths["truth"].name == "shop.truth.npz"
    assert pq.read_schema(paths["events"]).equals(EVENT_SCHEMA)
    events = pq.read_table(paths["events"])
    events.validate(full=True)
    assert summary.rows == events.num_rows == dataset.events.num_rows
    assert events.equals(dataset.events)
    assert pq.ParquetFile(paths["events"]).num_row_groups == 5
    assert pq.read_table(paths["items"]).equals(dataset.items)
    assert pq.read_table(paths["users"]).equals(dataset.users)
    assert pq.read_table(paths["item_changes"]).equals(shop_item_changes(SMALL))
    truth = load_truth(paths["truth"])
    assert np.array_equal(truth.item_factors, shop_truth(SMALL).item_factors)
    assert truth.categories == shop_truth(SMALL).categories
    assert summary.users == SMALL.users and summary.items == SMALL.items
    assert summary.seconds > 0


def test_cli_shop_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sim.parquet"
    result = CliRunner().invoke(
        app,
        ["shop", "--users", "50", "--items", "20", "--events", "3000", "--days", "7",
         "--seed", "3", "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output
    events = pq.read_table(out)
    assert abs(events.num_rows - 3000) < 100
    assert events.column("event_id")[0].as_py().startswith("sim3-")
    assert (tmp_path / "sim.truth.npz").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--users", "0"], "--users"), (["--events", "-5"], "--events"), (["--days", "0"], "--days")],
)
def test_cli_bad_value_exits_1_naming_the_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    out = tmp_path / "bad.parquet"
    result = CliRunner().invoke(app, ["shop", *args, "--out", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert option in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
