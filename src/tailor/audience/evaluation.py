"""A back-test of the audience engine on the shop's own log, for the report.

With ``H`` the horizon and ``D`` the day the customers are seen from: the churn model learns
on the customers as of ``D - 2H`` (labels: the next ``H`` days) and is tested on those as of
``D - H`` (labels: the last ``H`` days), against the BG/NBD's probability of no purchase and
the recency rule; the BG/NBD fitted on the summary at ``D - H`` predicts each customer's
purchases in the last ``H`` days (the calibration/holdout check of Fader, Hardie and Lee).
Nothing is tested on what it learned from.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.audience.churn import ChurnModel, churn_data, recency_rule
from tailor.audience.lifetime_value import BetaGeo
from tailor.store.base import Store

BINS = 10
FREQUENCY_CAP = 7
"""Customers with this many repeat purchases or more share the last group of the holdout
chart, as in the paper's figure."""


def backtest(purchases: pa.Table | Store, as_of: date, horizon_days: int) -> dict[str, Any]:
    """Figures and chart points of the churn and purchase predictions (plain types)."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    horizon = timedelta(days=horizon_days)
    train = churn_data(purchases, as_of - 2 * horizon, horizon_days)
    test = churn_data(purchases, as_of - horizon, horizon_days)
    truth = test.churned
    if truth is None or len(np.unique(truth)) < 2:
        raise ValueError("the back-test needs churners and buyers among the test customers")
    risk = ChurnModel().fit(train).predict_proba(test)
    summary = test.summary
    rfm = [summary[c].to_numpy() for c in ("frequency", "recency", "T")]
    bgnbd = test.bgnbd or BetaGeo().fit(*rfm)
    silent = bgnbd.probability_no_purchase(horizon_days / 7, *rfm)
    scores = {"churn model": risk, "BG/NBD": silent, "recency rule": recency_rule(test)}
    predicted = bgnbd.conditional_expected_purchases(horizon_days / 7, *rfm)
    actual = summary["holdout_frequency"].to_numpy().astype(float)
    return {
        "train_as_of": str(train.cutoff),
        "test_as_of": str(test.cutoff),
        "horizon_days": horizon_days,
        "test_customers": len(truth),
        "churn_rate": round(float(truth.mean()), 4),
        "auc": {k: round(float(roc_auc_score(truth, v)), 4) for k, v in scores.items()},
        "brier": {
            k: round(float(brier_score_loss(truth, v)), 4)
            for k, v in scores.items()
            if k != "recency rule"  # a score, not a probability
        },
        "calibration": _calibration(risk, truth),
        "gains": {k: _gains(v, truth) for k, v in scores.items()},
        "holdout": {
            "mae": round(float(np.mean(np.abs(predicted - actual))), 4),
            "by_frequency": _by_frequency(rfm[0], predicted, actual),
        },
    }


def _calibration(risk: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Mean predicted against observed churn in deciles of predicted risk."""
    order = np.argsort(risk, kind="stable")
    return [
        {
            "predicted": round(float(risk[part].mean()), 4),
            "observed": round(float(truth[part].mean()), 4),
            "customers": len(part),
        }
        for part in np.array_split(order, min(BINS, len(order)))
        if len(part)
    ]


def _gains(score: np.ndarray, truth: np.ndarray) -> list[float]:
    """Share of all churners among the riskiest 0%, 10%, ..., 100% of customers."""
    order = np.argsort(-score, kind="stable")
    captured = np.cumsum(truth[order]) / max(truth.sum(), 1)
    points = [0.0]
    for step in range(1, BINS + 1):
        points.append(round(float(captured[int(np.ceil(len(order) * step / BINS)) - 1]), 4))
    return points


def _by_frequency(
    frequency: np.ndarray, predicted: np.ndarray, actual: np.ndarray
) -> list[dict[str, float]]:
    groups = np.minimum(frequency, FREQUENCY_CAP).astype(int)
    return [
        {
            "frequency": int(g),
            "customers": int((groups == g).sum()),
            "predicted": round(float(predicted[groups == g].mean()), 4),
            "actual": round(float(actual[groups == g].mean()), 4),
        }
        for g in np.unique(groups)
    ]
