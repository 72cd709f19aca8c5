"""Drift of the shop's own event features: a recent window checked against a reference one.

The features are aggregates the engines learn from, computed in the store's SQL engine over
the events of subjects whose analytics consent allows it (:meth:`Store.aggregate_events`):

* ``purchase_value``: the value of each purchase (sum of quantity × price over its lines);
* ``basket_lines``: the lines of each purchase;
* ``daily_events``: events per active subject per day (views, carts, purchases...);
* ``daily_items``: distinct items per active subject per day.

Each is binned once over the reference window (:class:`~tailor.lifecycle.drift.Reference`)
and checked on the recent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pyarrow as pa

from tailor.lifecycle.drift import DEFAULT_ALPHA, DriftCheck, Reference
from tailor.store.base import Store

PURPOSE = "analytics"
MIN_VALUES = 30
"""Fewer values than this in either window: the feature is reported as not checked."""
ACTIVITY_TYPES = ["view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating"]

_WINDOW = """
WITH settings AS (SELECT CAST(? AS TIMESTAMPTZ) AS start_at, CAST(? AS TIMESTAMPTZ) AS end_at)
"""


def _daily(column: str) -> str:
    """Distinct ``column`` values per active subject per UTC day."""
    return (
        _WINDOW
        + f"""SELECT CAST(count(DISTINCT e.{column}) AS DOUBLE PRECISION)
        FROM scoped_events e, settings s
        WHERE e.occurred_at >= s.start_at AND e.occurred_at < s.end_at
          AND e.subject_id IS NOT NULL AND e.{column} IS NOT NULL
        GROUP BY e.subject_id, CAST(timezone('UTC', e.occurred_at) AS DATE)"""
    )


FEATURES: dict[str, tuple[list[str], list[str], str]] = {
    "purchase_value": (
        ["purchase"],
        ["event_id", "occurred_at", "quantity", "price"],
        _WINDOW
        + """SELECT sum(e.quantity * e.price) FROM scoped_events e, settings s
        WHERE e.occurred_at >= s.start_at AND e.occurred_at < s.end_at
          AND e.quantity IS NOT NULL AND e.price IS NOT NULL
        GROUP BY e.event_id""",
    ),
    "basket_lines": (
        ["purchase"],
        ["event_id", "occurred_at"],
        _WINDOW
        + """SELECT CAST(count(*) AS DOUBLE PRECISION) FROM scoped_events e, settings s
        WHERE e.occurred_at >= s.start_at AND e.occurred_at < s.end_at
        GROUP BY e.event_id""",
    ),
    "daily_events": (ACTIVITY_TYPES, ["event_id", "subject_id", "occurred_at"], _daily("event_id")),
    "daily_items": (ACTIVITY_TYPES, ["item_id", "subject_id", "occurred_at"], _daily("item_id")),
}


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    reference_values: int
    recent_values: int
    check: DriftCheck | None
    """None when a window holds fewer than :data:`MIN_VALUES` values."""


def feature_values(store: Store, feature: str, start: datetime, end: datetime) -> np.ndarray:
    """One feature's values over ``[start, end)``, computed in the store."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; expected one of {', '.join(FEATURES)}")
    event_types, columns, sql = FEATURES[feature]
    table = store.aggregate_events(
        sql,
        [start, end],
        pa.schema([("value", pa.float64())]),
        purpose=PURPOSE,
        event_types=event_types,
        columns=columns,
    )
    values = table["value"].to_numpy(zero_copy_only=False)
    return values[np.isfinite(values)]


def drift_report(
    store: Store,
    as_of: date,
    *,
    reference_days: int = 28,
    recent_days: int = 7,
    alpha: float = DEFAULT_ALPHA,
) -> list[FeatureDrift]:
    """Each feature over the ``recent_days`` that end with ``as_of`` against the
    ``reference_days`` before them."""
    if reference_days < 1 or recent_days < 1:
        raise ValueError("reference_days and recent_days must be at least 1")
    end = datetime.combine(as_of + timedelta(days=1), time(), UTC)
    split = end - timedelta(days=recent_days)
    start = split - timedelta(days=reference_days)
    out = []
    for feature in FEATURES:
        reference = feature_values(store, feature, start, split)
        recent = feature_values(store, feature, split, end)
        check = None
        if min(len(reference), len(recent)) >= MIN_VALUES:
            check = Reference.fit(reference).check(recent, alpha=alpha)
        out.append(FeatureDrift(feature, len(reference), len(recent), check))
    return out
