"""Assignment, the sample-ratio alarm, comparisons with CUPED and the delta method, and the
Bayesian view."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.lifecycle.experiments import (
    assign,
    beta_binomial,
    compare,
    compare_ratio,
    sample_ratio_mismatch,
)


def test_assignment_is_sticky_salted_and_proportional():
    first = [assign(f"u{k}", "exp-1", [1, 1, 2]) for k in range(20_000)]
    assert first == [assign(f"u{k}", "exp-1", [1, 1, 2]) for k in range(20_000)]
    shares = np.bincount(first, minlength=3) / len(first)
    np.testing.assert_allclose(shares, [0.25, 0.25, 0.5], atol=0.015)
    other = [assign(f"u{k}", "exp-2", [1, 1, 2]) for k in range(20_000)]
    assert np.mean(np.array(first) == np.array(other)) < 0.5  # a new salt reshuffles
    with pytest.raises(ValueError, match="weights"):
        assign("u", "s", [0, 0])


def test_the_sample_ratio_alarm():
    assert sample_ratio_mismatch([52_000, 48_000], [1, 1]).alarm
    quiet = sample_ratio_mismatch([50_100, 49_900], [1, 1])
    assert not quiet.alarm and quiet.p_value > 0.1 and quiet.expected == (50_000.0, 50_000.0)
    assert not sample_ratio_mismatch([10_050, 89_950], [1, 9]).alarm
    with pytest.raises(ValueError, match="each variant"):
        sample_ratio_mismatch([10], [1])
    with pytest.raises(ValueError, match="no subjects"):
        sample_ratio_mismatch([0, 0], [1, 1])


def test_cuped_keeps_the_effect_and_narrows_the_interval():
    rng = np.random.default_rng(0)
    before_c, before_t = rng.gamma(2, 10, 5_000), rng.gamma(2, 10, 5_000)
    control = before_c * 0.8 + rng.normal(0, 3, 5_000)
    treatment = before_t * 0.8 + rng.normal(0, 3, 5_000) + 1.0  # the true effect: +1
    plain = compare(control, treatment)
    adjusted = compare(control, treatment, control_before=before_c, treatment_before=before_t)
    assert adjusted.low < 1.0 < adjusted.high
    assert adjusted.high - adjusted.low < 0.5 * (plain.high - plain.low)
    assert adjusted.variance_reduction > 0.7 and adjusted.p_value < 1e-6
    with pytest.raises(ValueError, match="both groups"):
        compare(control, treatment, control_before=before_c)
    with pytest.raises(ValueError, match="one pre-period value per subject"):
        compare(control, treatment, control_before=before_c[:10], treatment_before=before_t)


def test_no_effect_gives_a_high_p_value_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    covered = sum(
        compare(rng.normal(size=400), rng.normal(size=400)).p_value > 0.05 for _ in range(300)
    )
    assert 0.91 <= covered / 300 <= 0.99


def test_a_ratio_metric_by_the_delta_method():
    rng = np.random.default_rng(1)
    sessions_c, sessions_t = rng.integers(1, 10, 4_000), rng.integers(1, 10, 4_000)
    clicks_c = rng.binomial(sessions_c, 0.10)
    clicks_t = rng.binomial(sessions_t, 0.12)
    result = compare_ratio(clicks_c, sessions_c, clicks_t, sessions_t)
    assert result.control == pytest.approx(clicks_c.sum() / sessions_c.sum())
    assert result.low < 0.02 < result.high and result.p_value < 0.01
    with pytest.raises(ValueError, match="one numerator and one denominator"):
        compare_ratio(clicks_c, sessions_c[:5], clicks_t, sessions_t)
    with pytest.raises(ValueError, match="sums to 0"):
        compare_ratio([1, 2], [0, 0], [1, 2], [1, 1])


def test_the_bayesian_view_of_conversion():
    better = beta_binomial(100, 1000, 150, 1000)
    assert better.probability_to_beat > 0.99 and better.expected_loss < 1e-4
    even = beta_binomial(100, 1000, 100, 1000)
    assert 0.4 < even.probability_to_beat < 0.6
    with pytest.raises(ValueError, match="treatment"):
        beta_binomial(1, 10, 11, 10)
