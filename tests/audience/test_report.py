"""The back-test's chart points, by hand, and the page's escaping."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tailor.audience.evaluation import _by_frequency, _calibration, _gains
from tailor.audience.report import audience_figures, write_audience_report


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
        {"segment": ["champions", "new"], "clv": [10.0, 2.0], "churn_risk": [0.1, 0.5]}
    )
    described = {
        "as_of": "2024-01-01",
        "bgnbd": {}, "bgnbd_standard_errors": {}, "gammagamma": None,
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
