"""Churn: features strictly from before the cut-off, a model that learns, explanations, and
bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailor.audience.churn import (
    FEATURES,
    ISOTONIC_MIN_CUSTOMERS,
    ChurnModel,
    churn_data,
    recency_rule,
)

CUTOFF = date(2024, 6, 30)


def simulated_purchases(n: int = 600, seed: int = 0) -> pa.Table:
    """Customers buying at their own weekly rate from 2024-01 on; a third stop for good at a
    random day, so recency says something and the horizon after a cut-off holds the answer."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("subject_id", "occurred_at", "quantity", "price")}
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for customer in range(n):
        rate = rng.gamma(2.0, 0.15)  # purchases per day
        stop = rng.uniform(0, 360) if rng.random() < 1 / 3 else 1e9
        day = rng.uniform(0, 60)
        while day < min(stop, 365):
            rows["subject_id"].append(f"c{customer}")
            rows["occurred_at"].append(start + timedelta(days=float(day)))
            rows["quantity"].append(float(rng.integers(1, 4)))
            rows["price"].append(float(rng.gamma(3, 10)))
            day += rng.exponential(1 / rate)
    table = pa.table(rows)
    return table.append_column("item_id", pa.array(["i"] * table.num_rows))


def until(purchases: pa.Table, cutoff: date) -> pa.Table:
    end = pa.scalar(datetime.combine(cutoff + timedelta(days=1), datetime.min.time(), UTC))
    return purchases.filter(pc.less(purchases["occurred_at"], end))


def assert_no_leakage(features: Callable[[pa.Table], np.ndarray], purchases: pa.Table) -> None:
    """Features at the cut-off must not change when everything after it is removed (up to the
    last bits of sums the SQL engine adds in parallel, in an order that varies)."""
    np.testing.assert_allclose(
        features(purchases), features(until(purchases, CUTOFF)), rtol=1e-12, atol=0
    )


def test_features_at_the_cutoff_use_nothing_after_it():
    purchases = simulated_purchases()
    assert_no_leakage(lambda log: churn_data(log, CUTOFF, 60, labelled=False).features, purchases)


def test_the_leakage_check_catches_a_leaky_feature():
    def leaky(log: pa.Table) -> np.ndarray:
        data = churn_data(log, CUTOFF, 60, labelled=False)
        ids, counts = np.unique(log["subject_id"], return_counts=True)
        lifetime_rows = dict(zip(ids, counts, strict=True))
        extra = np.array([lifetime_rows[c] for c in data.customer_id], float)
        return np.column_stack([data.features, extra])

    with pytest.raises(AssertionError):
        assert_no_leakage(leaky, simulated_purchases())


def test_the_model_learns_churn_and_explains_each_score():
    purchases = simulated_purchases()
    train = churn_data(purchases, CUTOFF - timedelta(days=60), 60)
    test = churn_data(purchases, CUTOFF, 60)
    model = ChurnModel(n_estimators=100).fit(train)
    risk = model.predict_proba(test)
    assert ((risk >= 0) & (risk <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test.churned, risk) > 0.75
    assert roc_auc_score(test.churned, recency_rule(test)) > 0.6
    reasons = model.explain(test, top=2)
    assert len(reasons) == len(risk) and all(len(r) == 2 for r in reasons)
    assert {name for r in reasons for name, _ in r} <= set(FEATURES)


def test_bad_input_says_what_to_change():
    purchases = simulated_purchases(50)
    with pytest.raises(ValueError, match="horizon_days must be at least 1"):
        churn_data(purchases, CUTOFF, 0)
    with pytest.raises(ValueError, match="no customer bought on or before the cut-off"):
        churn_data(purchases, date(2020, 1, 1), 30)
    unlabelled = churn_data(purchases, CUTOFF, 30, labelled=False)
    with pytest.raises(ValueError, match="fit needs labelled data"):
        ChurnModel().fit(unlabelled)
    with pytest.raises(ValueError, match="needs both outcomes"):
        # A horizon beyond the log: nobody buys in it, everybody "churned".
        ChurnModel().fit(churn_data(purchases, date(2024, 12, 31), 30))
    with pytest.raises(RuntimeError, match="not fitted"):
        ChurnModel().predict_proba(unlabelled)


@pytest.mark.parametrize("customers", [300, 1200])  # a logistic and an isotonic calibration
def test_a_saved_model_scores_and_explains_alike(tmp_path, customers):
    purchases = simulated_purchases(customers)
    model = ChurnModel(n_estimators=50).fit(churn_data(purchases, CUTOFF - timedelta(days=60), 60))
    today = churn_data(purchases, CUTOFF, 60, labelled=False)
    again = ChurnModel.load(model.save(tmp_path / "churn"))
    np.testing.assert_array_equal(again.predict_proba(today), model.predict_proba(today))
    assert again.explain(today) == model.explain(today)
    assert (again.cutoff_, again.horizon_days_) == (CUTOFF - timedelta(days=60), 60)
    (tmp_path / "churn" / "churn_calibration.npz").write_bytes(_empty_npz())
    with pytest.raises(ValueError, match="holds no calibration"):
        ChurnModel.load(tmp_path / "churn")


def _empty_npz() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer)
    return buffer.getvalue()


def test_a_small_base_is_calibrated_without_tying_customers_the_booster_ranked_apart():
    """Below ISOTONIC_MIN_CUSTOMERS the calibration is a logistic curve of the booster's
    log-odds: strictly increasing, so the calibrated risks keep the booster's order (an
    isotonic fit would put many customers on one step); above it, isotonic."""
    small = churn_data(simulated_purchases(300), CUTOFF - timedelta(days=60), 60)
    assert len(small.churned) < ISOTONIC_MIN_CUSTOMERS
    model = ChurnModel(n_estimators=50).fit(small)
    assert set(model.calibration_) == {"platt"} and model.calibration_["platt"][0] > 0
    log_odds = model.booster_.predict(small.features, raw_score=True)
    risk = model.predict_proba(small)
    assert len(np.unique(risk)) == len(np.unique(log_odds))
    order = np.argsort(log_odds, kind="stable")
    assert (np.diff(risk[order]) >= 0).all()

    large = churn_data(simulated_purchases(1200), CUTOFF - timedelta(days=60), 60)
    assert len(large.churned) >= ISOTONIC_MIN_CUSTOMERS
    assert set(ChurnModel(n_estimators=50).fit(large).calibration_) == {"x", "y"}
