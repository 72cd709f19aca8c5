"""Drift checks: quiet on the same distribution, alarmed by a shift, measures by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from tailor.lifecycle.drift import Reference


def test_the_same_distribution_is_quiet_and_a_shift_is_found():
    rng = np.random.default_rng(0)
    reference = Reference.fit(rng.standard_normal(50_000))
    same = reference.check(rng.standard_normal(50_000))
    assert not same.drifted and same.psi < 0.01 and same.ks_p_value > 0.05
    shifted_values = rng.standard_normal(50_000) + 0.1
    shifted = reference.check(shifted_values)
    assert shifted.drifted and shifted.ks_p_value < 1e-6
    assert shifted.ks == pytest.approx(0.04, abs=0.01)  # the normal CDFs differ by ~0.04
    assert shifted.psi > same.psi and shifted.jensen_shannon > same.jensen_shannon


def test_wasserstein_on_bins_is_close_to_the_exact_distance():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(100_000)
    reference = Reference.fit(base)
    for shift in (0.5, 3.0):  # 3 sd: mostly beyond the reference's range
        moved = rng.standard_normal(100_000) + shift
        exact = wasserstein_distance(base, moved)
        assert reference.check(moved).wasserstein == pytest.approx(exact, rel=0.1)


def test_the_false_alarm_rate_stays_at_or_below_alpha():
    alarms = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        reference = Reference.fit(rng.exponential(size=5_000))
        alarms += reference.check(rng.exponential(size=5_000), alpha=0.1).drifted
    assert alarms / 60 <= 0.1 + 0.05  # conservative on bins; slack for 60 runs


def test_a_constant_feature_and_bad_input():
    reference = Reference.fit(np.ones(100))
    assert not reference.check(np.ones(50)).drifted
    assert reference.check(np.full(50, 2.0)).psi > 1
    with pytest.raises(ValueError, match="no values"):
        Reference.fit([])
    with pytest.raises(ValueError, match=r"values\[1\] = nan"):
        reference.check([1.0, np.nan])
    with pytest.raises(ValueError, match="bins"):
        Reference.fit([1.0, 2.0], bins=1)
    with pytest.raises(ValueError, match="alpha"):
        reference.check([1.0], alpha=0)


def test_a_saved_reference_checks_alike(tmp_path):
    rng = np.random.default_rng(5)
    reference = Reference.fit(rng.lognormal(size=20_000))
    loaded = Reference.load(reference.save(tmp_path / "basket_value.json"))
    new = rng.lognormal(0.05, 1.0, 20_000)
    assert loaded.check(new) == reference.check(new)
    (tmp_path / "bad.json").write_text('{"format": "tailor.lifecycle.drift/1", "edges": [1], '
                                       '"shares": [1], "quantiles": [], "n": 1}')  # fmt: skip
    with pytest.raises(ValueError, match="damaged drift reference"):
        Reference.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="does not hold a saved drift reference"):
        Reference.load(tmp_path / "other.json")
