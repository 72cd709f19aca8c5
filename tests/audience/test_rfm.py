"""The customer summary computed from purchase events: hand-made cases, the published CDNOW
summary, and bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
from bench.audience import published_summary_matches

from tailor.audience.rfm import Periods, as_day, customer_summary, last_purchase_day
from tailor.datasets.base import DataNotFoundError
from tailor.datasets.cdnow import load_cdnow
from tests.conftest import consent, events_table


def purchases(*rows: tuple[str, str, float, float, str]) -> pa.Table:
    """(customer, ISO time, quantity, price, item) rows of purchase lines."""
    customer, when, quantity, price, item = zip(*rows, strict=True)
    return pa.table(
        {
            "event_type": ["purchase"] * len(rows),
            "subject_id": list(customer),
            "occurred_at": pa.array(
                [datetime.fromisoformat(w) for w in when], pa.timestamp("us", tz="UTC")
            ),
            "quantity": list(quantity),
            "price": list(price),
            "item_id": list(item),
        }
    )


def test_a_hand_made_summary():
    table = purchases(
        ("ann", "2024-01-01T09:00:00+00:00", 1, 10.0, "a"),
        ("ann", "2024-01-01T18:00:00+00:00", 2, 5.0, "b"),  # the same day: one occasion
        ("ann", "2024-01-15T10:00:00+00:00", 1, 30.0, "a"),
        ("ann", "2024-01-22T10:00:00+00:00", -1, 30.0, "a"),  # a return: not an occasion
        ("ann", "2024-02-05T10:00:00+00:00", 3, 10.0, "c"),  # after calibration: holdout
        ("bob", "2024-01-29T23:59:00+00:00", 1, 8.0, "a"),
        ("cid", "2024-02-02T10:00:00+00:00", 1, 8.0, "a"),  # first buys after calibration
    )
    summary = customer_summary(table, Periods(date(2024, 1, 29), date(2024, 2, 26)))
    rows = {row["customer_id"]: row for row in summary.to_pylist()}
    assert set(rows) == {"ann", "bob"}
    ann, bob = rows["ann"], rows["bob"]
    assert (ann["frequency"], ann["recency"], ann["T"]) == (1.0, 2.0, 4.0)
    assert ann["monetary_value"] == 30.0  # the repeat occasion only
    assert ann["total_value"] == 50.0 and ann["occasions"] == 2
    assert ann["distinct_items"] == 2 and ann["return_rate"] == pytest.approx(30 / 50)
    assert ann["mean_days_between"] == 14
    assert ann["distinct_categories"] == 0  # no catalog given
    assert (ann["holdout_frequency"], ann["holdout_value"]) == (1, 30.0)
    assert (bob["frequency"], bob["recency"], bob["T"], bob["monetary_value"]) == (0, 0, 0, 0)
    assert bob["mean_days_between"] is None and bob["holdout_frequency"] == 0


def test_without_holdout_there_are_no_holdout_columns():
    table = purchases(("ann", "2024-01-01T09:00:00+00:00", 1, 10.0, "a"))
    summary = customer_summary(table, Periods(date(2024, 1, 8), period_days=1))
    assert "holdout_frequency" not in summary.column_names
    assert summary["T"].to_pylist() == [7.0]


def test_the_cdnow_sample_log_gives_the_published_summary(cdnow_spend):
    try:
        log = load_cdnow(sample=True)
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")
    summary = customer_summary(log.events, Periods(date(1997, 9, 30)))
    assert published_summary_matches(summary)
    zbar = np.sort(summary["monetary_value"].to_numpy()[summary["frequency"].to_numpy() > 0])
    np.testing.assert_allclose(
        zbar, np.sort(cdnow_spend["zbar"][cdnow_spend["x"] > 0]), atol=0.0051
    )


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="purchases lack column\\(s\\) price"):
        customer_summary(pa.table({"subject_id": ["a"], "occurred_at": [1], "quantity": [1]}),
                         Periods(date(2024, 1, 1)))  # fmt: skip
    with pytest.raises(ValueError, match="must come after calibration_end"):
        Periods(date(2024, 1, 1), date(2024, 1, 1))
    with pytest.raises(ValueError, match="period_days must be more than 0"):
        Periods(date(2024, 1, 1), period_days=0)
    with pytest.raises(ValueError, match="has no time zone"):
        as_day(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="expected a day as YYYY-MM-DD"):
        as_day("01/02/2024")
    assert as_day(datetime(2024, 1, 1, 23, tzinfo=UTC)) == date(2024, 1, 1)


def test_the_store_computes_the_summary_in_its_own_engine(store):
    """DuckDB and PostgreSQL give the summary the in-process engine gives over the same
    consented purchases; a customer without analytics consent is left out of both."""
    lines = [
        ("ann", "2024-01-01T09:00:00+00:00", 1, 10.0, "a"),
        ("ann", "2024-01-01T23:30:00-02:00", 2, 5.0, "b"),  # 01:30 UTC on the 2nd
        ("ann", "2024-01-15T10:00:00+00:00", 1, 30.0, "a"),
        ("ann", "2024-01-22T10:00:00+00:00", -1, 30.0, "a"),
        ("ann", "2024-02-05T10:00:00+00:00", 3, 10.0, "c"),
        ("bob", "2024-01-29T23:59:00+00:00", 1, 8.0, "a"),
        ("Cid", "2024-01-03T10:00:00+00:00", 1, 7.5, "a"),  # capital: byte order sorts it first
        ("Cid", "2024-01-10T10:00:00+00:00", 2, 7.5, "d"),
        ("eve", "2024-01-04T10:00:00+00:00", 1, 99.0, "a"),  # no analytics consent
    ]
    events = [
        consent(f"ok-{who}", who, True, "2023-12-01T00:00:00Z", purpose="analytics")
        for who in ("ann", "bob", "Cid")
    ]
    events += [
        {
            "event_id": f"p{n}",
            "event_type": "purchase",
            "subject_id": who,
            "occurred_at": when,
            "currency": "EUR",
            "items": [{"item_id": item, "quantity": quantity, "price": price}],
        }
        for n, (who, when, quantity, price, item) in enumerate(lines)
    ]
    store.append_events(events_table(*events))
    catalog = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "category": ["Books > Fiction", "Home > Kitchen > Mugs", "Books > Poetry", None],
        }
    )
    store.upsert_entities("items", catalog)
    periods = Periods(date(2024, 1, 29), date(2024, 2, 26))

    in_store = customer_summary(store, periods)
    consented = purchases(*(line for line in lines if line[0] != "eve"))
    in_process = customer_summary(consented, periods, items=catalog)
    assert in_store.schema == in_process.schema
    assert in_store.to_pylist() == in_process.to_pylist()
    assert in_store["customer_id"].to_pylist() == ["Cid", "ann", "bob"]
    ann = in_store.to_pylist()[1]
    assert (ann["frequency"], ann["recency"], ann["occasions"]) == (2.0, 2.0, 3)
    # Books and Home; "c" (Books too) falls in the holdout. Cid's "d" has no category.
    assert [row["distinct_categories"] for row in in_store.to_pylist()] == [1, 2, 1]
    assert last_purchase_day(store) == date(2024, 2, 5)


def test_aggregates_always_apply_a_purpose(store):
    with pytest.raises(ValueError, match="purpose"):
        store.aggregate_events(
            "SELECT count(*) FROM scoped_events",
            [],
            pa.schema([("n", pa.int64())]),
            purpose=None,
            event_types=["purchase"],
            columns=["subject_id"],
        )
    with pytest.raises(ValueError, match="unknown event column"):
        store.aggregate_events(
            "SELECT count(*) FROM scoped_events",
            [],
            pa.schema([("n", pa.int64())]),
            purpose="analytics",
            event_types=["purchase"],
            columns=["password"],
        )


def test_an_empty_store_has_no_last_purchase(store):
    assert last_purchase_day(store) is None
    assert customer_summary(store, Periods(date(2024, 1, 1))).num_rows == 0


def test_category_breadth_counts_departments_once_per_item():
    table = purchases(
        ("ann", "2024-01-01T09:00:00+00:00", 1, 10.0, "a"),
        ("ann", "2024-01-02T09:00:00+00:00", 1, 10.0, "b"),
        ("ann", "2024-01-03T09:00:00+00:00", -1, 10.0, "c"),  # a return: no breadth
    )
    # An item listed twice in a caller's catalog must not count (or add value) twice.
    catalog = pa.table(
        {"item_id": ["a", "a", "b", "c"], "category": ["Toys", "Toys", "Garden > Tools", "Pets"]}
    )
    row = customer_summary(table, Periods(date(2024, 1, 31)), items=catalog).to_pylist()[0]
    assert row["distinct_categories"] == 2 and row["total_value"] == 20.0
    with pytest.raises(ValueError, match="items lack column"):
        customer_summary(table, Periods(date(2024, 1, 31)), items=pa.table({"item_id": ["a"]}))
