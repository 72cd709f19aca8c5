"""Recency, frequency and monetary value per customer, from purchase events, in SQL.

The summary follows Fader, Hardie and Lee (2005) and the ``lifetimes`` package, so that the
lifetime-value models read it directly: a *purchase occasion* is a day (UTC) with at least one
bought line; ``frequency`` counts the repeat occasions (all but the first), ``recency`` is the
time from the first occasion to the last, ``T`` the time from the first occasion to the end
of the calibration period, both in ``period_days`` (7: weeks), and ``monetary_value`` the mean
value of the repeat occasions (0 without one). Lines with a negative quantity are returns:
they count towards ``return_rate`` (returned value over bought value), not towards occasions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tailor.store.base import Store

REQUIRED = ("subject_id", "occurred_at", "quantity", "price")


@dataclass(frozen=True)
class Periods:
    """The calibration period ends on ``calibration_end`` (a day, included); an optional
    holdout period runs from the next day to ``holdout_end`` (included)."""

    calibration_end: date
    holdout_end: date | None = None
    period_days: float = 7.0

    def __post_init__(self) -> None:
        if not self.period_days > 0:
            raise ValueError(f"period_days must be more than 0, got {self.period_days}")
        if self.holdout_end is not None and self.holdout_end <= self.calibration_end:
            raise ValueError(
                f"holdout_end ({self.holdout_end}) must come after calibration_end "
                f"({self.calibration_end})"
            )

    @property
    def holdout_length(self) -> float:
        """The holdout period in periods (0 without one)."""
        if self.holdout_end is None:
            return 0.0
        return (self.holdout_end - self.calibration_end).days / self.period_days


def as_day(value: date | datetime | str) -> date:
    """A day from a date, an aware datetime (its UTC day) or ``YYYY-MM-DD``."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a day as YYYY-MM-DD, got {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value} has no time zone: give an aware datetime or a date")
        return value.astimezone(UTC).date()
    return value


PURPOSE = "analytics"
"""The consent purpose customer analytics reads purchases under."""

SUMMARY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("frequency", pa.float64()),
        ("recency", pa.float64()),
        ("T", pa.float64()),
        ("monetary_value", pa.float64()),
        ("first_purchase", pa.date32()),
        ("last_purchase", pa.date32()),
        ("occasions", pa.int64()),
        ("total_value", pa.float64()),
        ("mean_days_between", pa.float64()),
        ("distinct_items", pa.int64()),
        ("distinct_categories", pa.int64()),
        ("return_rate", pa.float64()),
        ("holdout_frequency", pa.int64()),
        ("holdout_value", pa.float64()),
    ]
)

# Written once for both engines (DuckDB and PostgreSQL): ``?`` placeholders, DATE - DATE for
# whole days, explicit DOUBLE PRECISION casts where PostgreSQL would divide integers.
SUMMARY_SQL = """
WITH settings AS (
    SELECT CAST(? AS DATE) AS calibration_end, CAST(? AS DATE) AS holdout_end,
           CAST(? AS DOUBLE PRECISION) AS period
),
lines AS (
    SELECT p.subject_id AS customer_id,
           CAST(timezone('UTC', p.occurred_at) AS DATE) AS day,
           CAST(p.quantity AS DOUBLE PRECISION) * p.price AS value,
           p.quantity, p.item_id,
           -- the department: the first level of the catalog's category path
           nullif(split_part(i.category, ' > ', 1), '') AS department
    FROM scoped_events p
    CROSS JOIN settings s
    LEFT JOIN (  -- one row per item, whatever the caller's catalog holds
        SELECT item_id, min(category) AS category FROM items GROUP BY item_id
    ) i ON i.item_id = p.item_id
    WHERE p.subject_id IS NOT NULL AND p.quantity IS NOT NULL AND p.price IS NOT NULL
      AND CAST(timezone('UTC', p.occurred_at) AS DATE) <= s.holdout_end
),
days AS (  -- purchase occasions: days with a bought line
    SELECT customer_id, day, sum(value) AS value
    FROM lines WHERE quantity > 0 GROUP BY customer_id, day
),
firsts AS (
    SELECT d.customer_id, min(d.day) AS first_day
    FROM days d, settings s GROUP BY d.customer_id, s.calibration_end
    HAVING min(d.day) <= s.calibration_end
),
calibration AS (
    SELECT d.customer_id, f.first_day,
           count(*) AS occasions,
           max(d.day) AS last_day,
           sum(d.value) AS total_value,
           coalesce(sum(d.value) FILTER (WHERE d.day > f.first_day)
                    / nullif(count(*) - 1, 0), 0) AS monetary_value
    FROM days d JOIN firsts f ON f.customer_id = d.customer_id, settings s
    WHERE d.day <= s.calibration_end
    GROUP BY d.customer_id, f.first_day
),
holdout AS (
    SELECT d.customer_id, count(*) AS holdout_frequency, sum(d.value) AS holdout_value
    FROM days d, settings s WHERE d.day > s.calibration_end GROUP BY d.customer_id
),
habits AS (
    SELECT l.customer_id,
           count(DISTINCT l.item_id) FILTER (WHERE l.quantity > 0) AS distinct_items,
           count(DISTINCT l.department) FILTER (WHERE l.quantity > 0) AS distinct_categories,
           coalesce(-sum(l.value) FILTER (WHERE l.quantity < 0), 0)
               / nullif(sum(l.value) FILTER (WHERE l.quantity > 0), 0) AS return_rate
    FROM lines l, settings s WHERE l.day <= s.calibration_end GROUP BY l.customer_id
)
SELECT c.customer_id,
       CAST(c.occasions - 1 AS DOUBLE PRECISION) AS frequency,
       (c.last_day - c.first_day) / s.period AS recency,
       (s.calibration_end - c.first_day) / s.period AS T,
       c.monetary_value,
       c.first_day AS first_purchase,
       c.last_day AS last_purchase,
       c.occasions,
       c.total_value,
       CASE WHEN c.occasions > 1
            THEN CAST(c.last_day - c.first_day AS DOUBLE PRECISION) / (c.occasions - 1)
       END AS mean_days_between,
       h.distinct_items,
       h.distinct_categories,
       coalesce(h.return_rate, 0) AS return_rate,
       coalesce(o.holdout_frequency, 0) AS holdout_frequency,
       coalesce(o.holdout_value, 0) AS holdout_value
FROM calibration c
JOIN habits h ON h.customer_id = c.customer_id
LEFT JOIN holdout o ON o.customer_id = c.customer_id
CROSS JOIN settings s
"""
SUMMARY_COLUMNS = ("subject_id", "occurred_at", "quantity", "price", "item_id")
NO_CATALOG = pa.table({"item_id": pa.array([], pa.string()), "category": pa.array([], pa.string())})


def customer_summary(
    purchases: pa.Table | Store, periods: Periods, items: pa.Table | None = None
) -> pa.Table:
    """One row per customer whose first purchase falls in the calibration period.

    Parameters
    ----------
    purchases : a store, whose own SQL engine (DuckDB or PostgreSQL) computes the summary
        over the purchase events of the customers whose analytics consent allows it, so the
        log never leaves the database as rows; or a table of purchase rows (rows whose
        ``event_type``, when present, is not ``purchase`` are ignored) with ``subject_id``,
        ``occurred_at``, ``quantity``, ``price`` and, optionally, ``item_id``, summarized by
        the same SQL in an in-process DuckDB.
    periods : the calibration (and holdout) period.
    items : with a table of purchases, the catalog (``item_id``, ``category``) for category
        breadth; a store reads its own.

    Returns
    -------
    pyarrow.Table
        ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``,
        ``first_purchase``, ``last_purchase``, ``occasions``, ``total_value``,
        ``mean_days_between`` (null with one occasion), ``distinct_items``,
        ``distinct_categories`` (category breadth: the distinct first levels of the bought
        items' category paths in the catalog; 0 without one), ``return_rate``
        and, with a holdout period, ``holdout_frequency`` (occasions in it) and
        ``holdout_value``; ordered by ``customer_id`` (byte order, whatever the database's
        collation).
    """
    params = [
        periods.calibration_end,
        periods.holdout_end or periods.calibration_end,
        periods.period_days,
    ]
    if isinstance(purchases, pa.Table):
        table = _summarize_table(purchases, params, items)
    else:
        table = purchases.aggregate_events(
            SUMMARY_SQL,
            params,
            SUMMARY_SCHEMA,
            purpose=PURPOSE,
            event_types=["purchase"],
            columns=SUMMARY_COLUMNS,
        )
    table = table.sort_by("customer_id")
    if periods.holdout_end is None:
        table = table.drop_columns(["holdout_frequency", "holdout_value"])
    return table


def _summarize_table(purchases: pa.Table, params: list[object], items: pa.Table | None) -> pa.Table:
    missing = [c for c in REQUIRED if c not in purchases.column_names]
    if missing:
        raise ValueError(f"purchases lack column(s) {', '.join(missing)}")
    if "event_type" in purchases.column_names:
        purchases = purchases.filter(pc.equal(purchases["event_type"], "purchase"))
    if "item_id" not in purchases.column_names:
        purchases = purchases.append_column("item_id", pa.nulls(purchases.num_rows, pa.string()))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # One thread: parallel sums add in a varying order, and scores (quintiles, ties) must
        # not change between two runs over the same log.
        con.execute("SET threads = 1")
        con.register("scoped_events", purchases.select(list(SUMMARY_COLUMNS)))
        if items is None:
            items = NO_CATALOG
        missing = [c for c in ("item_id", "category") if c not in items.column_names]
        if missing:
            raise ValueError(f"items lack column(s) {', '.join(missing)}")
        con.register("items", items.select(["item_id", "category"]))
        table = con.sql(SUMMARY_SQL, params=params).to_arrow_table()
    finally:
        con.close()
    return table.rename_columns(SUMMARY_SCHEMA.names).cast(SUMMARY_SCHEMA)


def last_purchase_day(purchases: pa.Table | Store) -> date | None:
    """The UTC day of the latest purchase (None without any), from the store's engine or
    a table, with the consent :func:`customer_summary` applies."""
    if isinstance(purchases, pa.Table):
        if "event_type" in purchases.column_names:
            purchases = purchases.filter(pc.equal(purchases["event_type"], "purchase"))
        latest = pc.max(purchases["occurred_at"]).as_py() if purchases.num_rows else None
    else:
        latest = purchases.aggregate_events(
            "SELECT max(occurred_at) FROM scoped_events WHERE subject_id IS NOT NULL",
            [],
            pa.schema([("latest", pa.timestamp("us", "UTC"))]),
            purpose=PURPOSE,
            event_types=["purchase"],
            columns=["subject_id", "occurred_at"],
        )["latest"][0].as_py()
    return None if latest is None else as_day(latest)
