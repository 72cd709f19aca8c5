"""The back-test's chart points, by hand, and the page's escaping."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailor.audience.evaluation import _by_frequency, _calibration, _gains
from tailor.audience.lifetime_value import BetaGeo
from tailor.audience.report import audience_figures, fit_check, write_audience_report


def test_gains_of_a_perfect_and_of_a_useless_ranking():
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    perfect = _gains(truth.astype(float), truth)
    assert perfect[:3] == [0.0, 0.5, 1.0] and perfect[-1] == 1.0
    backwards = _gains(-truth.astype(float), truth)
    assert backwards[8] == 0.0 and backwards[10] == 1.0


def test_calibration_deciles_and_holdout_groups():
    risk = np.linspace(0, 1, 20)
    truth = (risk > 0.5).astype(int)
    bins = _calibration(risk, truth)
    assert len(bins) == 10 and sum(b["customers"] for b in bins) == 20
    assert bins[0]["observed"] == 0 and bins[-1]["observed"] == 1
    groups = _by_frequency(
        np.array([0, 0, 9, 12]), np.array([0.1, 0.3, 2, 4]), np.array([0, 1, 3, 3])
    )
    assert groups == [
        {"frequency": 0, "customers": 2, "predicted": 0.2, "actual": 0.5},
        {"frequency": 7, "customers": 2, "predicted": 3.0, "actual": 3.0},
    ]


def test_the_page_escapes_what_it_is_given(tmp_path):
    scores = pa.table(
        {
            "segment": ["champions", "new"],
            "clv": [10.0, 2.0],
            "churn_risk": [0.1, 0.5],
            "frequency": [3.0, 0.0],
            "tenure_weeks": [20.0, 0.0],
        }
    )
    described = {
        "as_of": "2024-01-01",
        "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
        "bgnbd_standard_errors": {}, "gammagamma": None,
        "clusters": {"k": 2, "descriptions": [
            {"cluster": 0, "customers": 1, "distinguished_by": ["<b>high</b> value"]}]},
        "notes": ["<script>alert(1)</script>"],
    }  # fmt: skip
    page, twin = write_audience_report(
        audience_figures(scores, described, None), tmp_path / "r.html"
    )
    text = page.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "<b>high" not in text
    assert "Not run" in text and twin.exists()
    assert "customers by repeat purchases so far" in text


def test_the_fit_check_counts_customers_and_what_the_model_expects():
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    frequency = np.array([0, 0, 1, 3, 9, 7])
    T = np.array([0.0, 30.0, 30.0, 30.0, 30.0, 30.0])
    check = fit_check(frequency, T, params)
    assert check["repeat_purchases"] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert check["actual"] == [2, 1, 0, 1, 0, 0, 0, 2]
    assert sum(check["expected"]) == pytest.approx(6, abs=0.05)
    model = BetaGeo.from_params(**params)
    # A customer first seen today (T = 0) has surely made no repeat purchase yet.
    zero = 1 + model.probability_of_purchases(0, np.full(5, 30.0)).sum()
    assert check["expected"][0] == pytest.approx(zero, abs=0.05)
