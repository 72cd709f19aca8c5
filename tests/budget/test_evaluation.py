"""Out-of-sample checks: MAPE by hand, the hold-out, rolling origins and the ridge peer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tailor.budget.evaluation import RidgeBaseline, holdout, mape, rolling_origin
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
