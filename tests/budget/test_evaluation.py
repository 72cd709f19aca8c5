"""Out-of-sample checks: MAPE by hand, the hold-out, rolling origins and the ridge peer."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tailor.budget.evaluation import (
    RidgeBaseline,
    holdout,
    mape,
    one_standard_error,
    rolling_origin,
    select_config,
)
from tailor.budget.model import MediaMixModel, MMMConfig
from tailor.datasets.simulate.ad_channels import simulate_channels

pytest.importorskip("numpyro")

SMALL = MMMConfig(chains=2, draws=200, warmup=200, laplace_draws=200)


@pytest.fixture(scope="module")
def sim():
    return simulate_channels(channels=2, periods=60, seed=2)


# --- mape ------------------------------------------------------------------------------------


def test_mape_by_hand() -> None:
    assert mape([100, 200, 50], [110, 180, 50]) == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert mape([4.0], [5.0]) == pytest.approx(0.25)
    assert mape([-100.0, 100.0], [-80.0, 130.0]) == pytest.approx((0.2 + 0.3) / 2)
    assert mape(np.array([10.0, 20.0]), np.array([10.0, 20.0])) == 0.0


def test_mape_leaves_zero_actuals_out() -> None:
    assert mape([0, 100, 0, 50], [7, 90, -3, 60]) == pytest.approx((0.1 + 0.2) / 2)


def test_mape_of_all_zeros_is_refused() -> None:
    with pytest.raises(ValueError, match="every actual value is 0"):
        mape([0, 0, 0], [1, 2, 3])


# --- holdout ---------------------------------------------------------------------------------


def test_holdout_with_map(sim) -> None:
    result = holdout(SMALL, sim.data, 8, method="map")
    assert result.periods == 8
    assert result.predicted.shape == result.ridge_predicted.shape == (8,)
    np.testing.assert_array_equal(result.actual, sim.data.target[-8:])
    assert math.isfinite(result.mape) and math.isfinite(result.ridge_mape)
    assert result.mape == pytest.approx(mape(result.actual, result.predicted))
    assert result.ridge_mape == pytest.approx(mape(result.actual, result.ridge_predicted))
    assert 0.0 <= result.coverage <= 1.0
    assert result.mape < 0.5  # a real forecast, not noise (the data's noise is 5%)
    out = result.to_json()
    assert out["periods"] == 8 and len(out["predicted"]) == 8 and out["mape"] == result.mape
    # a model fitted beforehand on the same periods gives the same forecast (seeded)
    fitted = MediaMixModel(SMALL).fit(sim.data.head(52), method="map")
    again = holdout(SMALL, sim.data, 8, model=fitted)
    np.testing.assert_array_equal(again.predicted, result.predicted)
    expected = fitted.predict(sim.data.slice(52, 60), history=sim.data.spend[:52])["mean"]
    np.testing.assert_allclose(result.predicted, expected, rtol=1e-12)


@pytest.mark.parametrize("periods", [0, -1, 60, 61])
def test_holdout_periods_out_of_range(sim, periods) -> None:
    with pytest.raises(ValueError, match=f"holdout: {periods} periods"):
        holdout(SMALL, sim.data, periods, method="map")


# --- the ridge peer --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ridge_beats_the_mean(seed) -> None:
    data = simulate_channels(channels=3, periods=104, seed=seed).data
    train, test = data.head(88), data.slice(88, 104)
    ridge = RidgeBaseline(MMMConfig()).fit(train)
    predicted = ridge.predict(test, history=train.spend)
    assert predicted.shape == (16,)
    constant = np.full(16, train.target.mean())
    assert mape(test.target, predicted) < mape(test.target, constant)
    # in sample too
    flat = np.full(88, train.target.mean())
    assert mape(train.target, ridge.predict(train)) < mape(train.target, flat)


# --- rolling origin --------------------------------------------------------------------------


def test_rolling_origin_folds(sim) -> None:
    seen = []
    results = rolling_origin(
        SMALL, sim.data, folds=2, horizon=8, progress=lambda i, n: seen.append((i, n))
    )
    assert len(results) == 2 and seen == [(1, 2), (2, 2)]
    assert all(r.periods == 8 and r.predicted.shape == (8,) for r in results)
    # expanding windows: the last fold ends at the data's end, the one before 8 periods earlier
    np.testing.assert_array_equal(results[1].actual, sim.data.target[52:60])
    np.testing.assert_array_equal(results[0].actual, sim.data.target[44:52])
    assert all(math.isfinite(r.mape) for r in results)


@pytest.mark.parametrize(
    ("folds", "horizon", "match"),
    [
        (0, 8, "folds and horizon must be at least 1, got 0 and 8"),
        (2, 0, "folds and horizon must be at least 1, got 2 and 0"),
        (5, 10, "5 folds of 10 periods leave 10 periods for the first fit"),
    ],
)
def test_rolling_origin_bad_arguments(sim, folds, horizon, match) -> None:
    with pytest.raises(ValueError, match=match):
        rolling_origin(SMALL, sim.data, folds=folds, horizon=horizon)


# --- structure selection ---------------------------------------------------------------------


def _score(l_max: int, points: int, mean: float, se: float) -> dict:
    return {"l_max": l_max, "trend_changepoints": points, "cv_mape": mean, "cv_se": se}


def test_one_standard_error_takes_the_simplest_within_reach_of_the_best() -> None:
    # mmm_roas_data.csv's scores (rounded): the lowest mean is 12 lags with changepoints,
    # 4 lags with changepoints lie within its standard error, no straight trend does.
    roas = [
        _score(4, 0, 0.0223, 0.0056),
        _score(4, 5, 0.0178, 0.0053),
        _score(8, 0, 0.0211, 0.0071),
        _score(8, 5, 0.0158, 0.0045),
        _score(12, 0, 0.0210, 0.0071),
        _score(12, 5, 0.0157, 0.0046),
    ]
    assert one_standard_error(roas) == roas[1]
    # a best that stands clear of the rest is kept, however complex
    clear = [_score(4, 0, 0.050, 0.001), _score(12, 5, 0.030, 0.001)]
    assert one_standard_error(clear) == clear[1]
    # fewer changepoints come before shorter carry-over
    order = [_score(4, 5, 0.030, 0.01), _score(12, 0, 0.031, 0.01)]
    assert one_standard_error(order) == order[1]
    # a candidate that could not be scored never wins; if none could, the simplest
    broken = [_score(4, 0, math.inf, 0.0), _score(8, 0, 0.04, 0.002)]
    assert one_standard_error(broken) == broken[1]
    nothing = [_score(8, 5, math.inf, 0.0), _score(4, 5, math.inf, 0.0), _score(12, 0, math.inf, 0)]
    assert one_standard_error(nothing) == nothing[2]


def test_select_config_reports_each_candidates_folds(sim) -> None:
    config, scores = select_config(SMALL, sim.data, l_max=(2, 4), changepoints=(0,), folds=2)
    assert [(s["l_max"], s["trend_changepoints"]) for s in scores] == [(2, 0), (4, 0)]
    for score in scores:
        folds = np.asarray(score["fold_mape"])
        assert folds.shape == (2,) and np.all(np.isfinite(folds))
        assert score["cv_mape"] == pytest.approx(folds.mean())
        assert score["cv_se"] == pytest.approx(folds.std(ddof=1) / math.sqrt(2))
    assert config == replace(
        SMALL,
        l_max=one_standard_error(scores)["l_max"],
        trend_changepoints=0,
    )
