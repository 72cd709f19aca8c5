"""Drift of the shop's event features, computed in each store: a price rise in the recent week
is found, basket sizes that stayed put are not, and a thin window is not judged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from tailor.lifecycle.monitor import FEATURES, drift_report, feature_values
from tests._cli import tailor
from tests.conftest import consent, events_table

AS_OF = date(2024, 5, 31)


def shop_log(customers: int = 150, seed: int = 0) -> list[dict]:
    """35 days of purchases (1-3 lines each); prices rise by half in the last 7 days."""
    rng = np.random.default_rng(seed)
    events = [
        consent(f"ok{c}", f"c{c}", True, "2024-01-01T00:00:00Z", purpose="analytics")
        for c in range(customers)
    ]
    start = datetime(2024, 4, 27, tzinfo=UTC)
    for n in range(2500):
        when = start + timedelta(days=float(rng.uniform(0, 35)))
        rise = 1.5 if when.date() > AS_OF - timedelta(days=7) else 1.0
        lines = [
            {"item_id": f"i{rng.integers(50)}", "quantity": 1,
             "price": round(float(rng.gamma(4, 5)) * rise, 2)}
            for _ in range(int(rng.integers(1, 4)))
        ]  # fmt: skip
        buyer = f"c{rng.integers(customers)}"
        events.append(
            {"event_id": f"p{n}", "event_type": "purchase", "subject_id": buyer,
             "occurred_at": when.isoformat(), "currency": "EUR", "items": lines}
        )  # fmt: skip
    return events


def test_a_price_rise_is_drift_and_steady_baskets_are_not(store):
    store.append_events(events_table(*shop_log()))
    report = {row.feature: row for row in drift_report(store, AS_OF)}
    assert set(report) == set(FEATURES)
    value, lines = report["purchase_value"].check, report["basket_lines"].check
    assert value.drifted and value.ks_p_value < 1e-6 and value.psi > 0.1
    assert not lines.drifted
    assert report["purchase_value"].recent_values + report["purchase_value"].reference_values > 2000
    daily = feature_values(
        store, "daily_events", datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)
    )
    assert daily.min() >= 1 and daily.sum() == 2500  # every purchase counted once


def test_thin_windows_are_not_judged_and_bad_requests_refused(store):
    store.append_events(events_table(*shop_log(customers=20)[:60]))
    report = drift_report(store, AS_OF, reference_days=1, recent_days=1)
    assert all(row.check is None for row in report)
    with pytest.raises(ValueError, match="unknown feature"):
        feature_values(store, "mood", datetime(2024, 1, 1, tzinfo=UTC), datetime.now(UTC))
    with pytest.raises(ValueError, match="at least 1"):
        drift_report(store, AS_OF, reference_days=0)


def test_the_cli_prints_and_writes_the_report(workdir):
    from tailor.config import get_settings
    from tailor.store import open_store

    assert tailor("init").exit_code == 0
    get_settings.cache_clear()
    store = open_store(get_settings().store)
    try:
        store.append_events(events_table(*shop_log()))
    finally:
        store.close()
    result = tailor("monitor", "drift", "--as-of", str(AS_OF), "--out", "drift.json")
    assert result.exit_code == 0, result.output
    written = json.loads((workdir / "drift.json").read_text())
    drifted = {f["feature"]: f.get("drifted") for f in written["features"]}
    assert drifted["purchase_value"] is True and drifted["basket_lines"] is False
    assert tailor("monitor", "drift", "--as-of", "31/05/2024").exit_code == 2
