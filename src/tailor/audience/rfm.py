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


def customer_summary(purchases: pa.Table, periods: Periods) -> pa.Table:
    """One row per customer whose first purchase falls in the calibration period.

    Parameters
    ----------
    purchases : purchase rows (``event_type`` other than ``purchase`` are ignored when the
        column is present) with ``subject_id``, ``occurred_at``, ``quantity``, ``price`` and,
        optionally, ``item_id``.
    periods : the calibration (and holdout) period.

    Returns
    -------
    pyarrow.Table
        ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``,
        ``first_purchase``, ``last_purchase``, ``occasions``, ``total_value``,
        ``mean_days_between`` (null with one occasion), ``distinct_items``, ``return_rate``
        and, with a holdout period, ``holdout_frequency`` (occasions in it) and
        ``holdout_value``; ordered by ``customer_id``.
    """
    missing = [c for c in REQUIRED if c not in purchases.column_names]
    if missing:
        raise ValueError(f"purchases lack column(s) {', '.join(missing)}")
    end = periods.calibration_end
    holdout_end = periods.holdout_end or end
    has_type = "event_type" in purchases.column_names
    item = "item_id" if "item_id" in purchases.column_names else "NULL"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # One thread: parallel sums add in a varying order, and scores (quintiles, ties) must
        # not change between two runs over the same log.
        con.execute("SET threads = 1")
        con.register("purchases", purchases)
        table = con.sql(
            f"""
            WITH lines AS (
                SELECT subject_id AS customer_id,
                       CAST(timezone('UTC', occurred_at) AS DATE) AS day,
                       quantity, price, {item} AS item_id
                FROM purchases
                WHERE subject_id IS NOT NULL AND quantity IS NOT NULL AND price IS NOT NULL
                  {"AND event_type = 'purchase'" if has_type else ""}
                  AND CAST(timezone('UTC', occurred_at) AS DATE) <= $holdout_end
            ),
            days AS (  -- purchase occasions: days with a bought line
                SELECT customer_id, day, sum(quantity * price) AS value
                FROM lines WHERE quantity > 0 GROUP BY customer_id, day
            ),
            firsts AS (
                SELECT customer_id, min(day) AS first_day FROM days GROUP BY customer_id
                HAVING min(day) <= $end
            ),
            calibration AS (
                SELECT d.customer_id, f.first_day,
                       count(*) AS occasions,
                       max(d.day) AS last_day,
                       sum(d.value) AS total_value,
                       coalesce(sum(d.value) FILTER (WHERE d.day > f.first_day)
                                / nullif(count(*) - 1, 0), 0) AS monetary_value
                FROM days d JOIN firsts f USING (customer_id)
                WHERE d.day <= $end
                GROUP BY d.customer_id, f.first_day
            ),
            holdout AS (
                SELECT customer_id, count(*) AS holdout_frequency, sum(value) AS holdout_value
                FROM days WHERE day > $end GROUP BY customer_id
            ),
            habits AS (
                SELECT customer_id,
                       count(DISTINCT item_id) FILTER (WHERE quantity > 0) AS distinct_items,
                       coalesce(-sum(quantity * price) FILTER (WHERE quantity < 0), 0)
                           / nullif(sum(quantity * price) FILTER (WHERE quantity > 0), 0)
                           AS return_rate
                FROM lines WHERE day <= $end GROUP BY customer_id
            )
            SELECT c.customer_id,
                   CAST(c.occasions - 1 AS DOUBLE) AS frequency,
                   date_diff('day', c.first_day, c.last_day) / $period AS recency,
                   date_diff('day', c.first_day, $end) / $period AS T,
                   c.monetary_value,
                   c.first_day AS first_purchase,
                   c.last_day AS last_purchase,
                   c.occasions,
                   c.total_value,
                   CASE WHEN c.occasions > 1
                        THEN date_diff('day', c.first_day, c.last_day) / (c.occasions - 1)
                   END AS mean_days_between,
                   h.distinct_items,
                   coalesce(h.return_rate, 0) AS return_rate,
                   coalesce(o.holdout_frequency, 0) AS holdout_frequency,
                   coalesce(o.holdout_value, 0) AS holdout_value
            FROM calibration c
            JOIN habits h USING (customer_id)
            LEFT JOIN holdout o USING (customer_id)
            ORDER BY c.customer_id
            """,
            params={"end": end, "holdout_end": holdout_end, "period": periods.period_days},
        ).to_arrow_table()
    finally:
        con.close()
    if periods.holdout_end is None:
        table = table.drop_columns(["holdout_frequency", "holdout_value"])
    return table
