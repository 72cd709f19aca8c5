"""The budget optimizer: known answers, constraints, carry-over, targets, draws, errors, and
the JAX objective against the plain NumPy reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailor.budget.optimize import (
    evaluate_allocation,
    incremental_effect_reference,
    plan_budget,
    proportional_allocation,
    response_curves,
)
from tailor.budget.transforms import ChannelResponse


def _response(
    alpha=(0.3, 0.3),
    lam=(1e-3, 1e-3),
    beta=(100.0, 100.0),
    names=None,
    l_max=4,
    **kwargs,
) -> ChannelResponse:
    names = names or tuple("abcdefghij"[: len(alpha)])
    return ChannelResponse(
        channels=tuple(names),
        adstock=kwargs.pop("adstock", "geometric"),
        saturation=kwargs.pop("saturation", "logistic"),
        l_max=l_max,
        alpha=np.asarray(alpha, float),
        lam=np.asarray(lam, float),
        beta=np.asarray(beta, float),
        **kwargs,
    )


@pytest.fixture(scope="module")
def mixed() -> ChannelResponse:
    """A near-linear channel (a), a saturated one (b) and one in between (c)."""
    return _response(
        alpha=(0.2, 0.5, 0.4), lam=(1e-4, 2e-3, 5e-4), beta=(2_500.0, 150.0, 600.0), l_max=6
    )


def _random_feasible(rng, budget, horizon, n, size):
    return rng.dirichlet(np.ones(n), size=size) * budget / horizon


# --- known answers ----------------------------------------------------------------------------


def test_two_identical_channels_split_equally() -> None:
    plan = plan_budget(_response(), budget=4_000.0, horizon=4)
    assert plan.status == "optimal" and plan.success
    np.testing.assert_allclose(plan.per_period, [500.0, 500.0], rtol=1e-5)
    np.testing.assert_allclose(plan.totals.sum(), 4_000.0, rtol=1e-9)
    np.testing.assert_allclose(plan.totals, plan.per_period * 4)
    np.testing.assert_allclose(plan.marginal_roi[0], plan.marginal_roi[1], rtol=1e-6)


def test_optimum_equalizes_marginal_roi_and_beats_random_plans(mixed) -> None:
    budget, horizon = 12_000.0, 4
    plan = plan_budget(mixed, budget=budget, horizon=horizon)
    assert plan.status == "optimal"
    interior = plan.per_period > 1e-6 * budget
    assert interior.sum() >= 2
    roi = plan.marginal_roi[interior]
    np.testing.assert_allclose(roi, roi.mean(), rtol=1e-4)
    # a channel left at 0 is one where even the first unit returns less
    assert np.all(plan.marginal_roi[~interior] <= roi.mean() * (1 + 1e-4))
    # extra budget goes mostly to the near-linear channel, little to the saturated one
    more = plan_budget(mixed, budget=3 * budget, horizon=horizon).per_period - plan.per_period
    assert more[0] > more[1] + more[2] and more[1] < more[2]
    rng = np.random.default_rng(0)
    for x in _random_feasible(rng, budget, horizon, 3, 300):
        other = evaluate_allocation(mixed, x, horizon=horizon)
        assert other.conversions <= plan.conversions * (1 + 1e-9)


def test_marginal_roi_is_the_derivative(mixed) -> None:
    history = np.full((5, 3), 800.0)
    x = np.array([900.0, 300.0, 600.0])
    got = evaluate_allocation(mixed, x, horizon=3, history=history).marginal_roi
    for c in range(3):
        step = np.zeros(3)
        step[c] = 1e-2
        up = incremental_effect_reference(mixed, x + step, horizon=3, history=history).sum()
        down = incremental_effect_reference(mixed, x - step, horizon=3, history=history).sum()
        # per currency unit of the channel's total spend over the horizon
        np.testing.assert_allclose(got[c], (up - down) / (2e-2 * 3), rtol=1e-5)


# --- the objective against the NumPy reference ------------------------------------------------


@pytest.mark.parametrize(
    ("adstock", "saturation", "extra"),
    [
        ("geometric", "logistic", {}),
        ("delayed", "hill", {"theta": np.array([1.0, 2.0]), "slope": np.array([1.5, 2.5])}),
        ("weibull", "logistic", {"theta": np.array([2.0, 3.0])}),
    ],
)
@pytest.mark.parametrize("history_rows", [0, 2, 9])
def test_jax_objective_matches_numpy_reference(adstock, saturation, extra, history_rows) -> None:
    rng = np.random.default_rng(history_rows)
    lam = (1e-3, 2e-3) if saturation == "logistic" else (800.0, 300.0)
    draws = [
        _response(
            alpha=rng.uniform(0.2, 0.8, 2) if adstock != "weibull" else rng.uniform(1.2, 2.0, 2),
            lam=np.asarray(lam) * rng.uniform(0.8, 1.2, 2),
            beta=rng.uniform(50, 150, 2),
            l_max=5,
            adstock=adstock,
            saturation=saturation,
            **extra,
        )
        for _ in range(3)
    ]
    history = rng.uniform(0, 2_000, (history_rows, 2)) if history_rows else None
    x = np.array([700.0, 1_300.0])
    for tail in (0, None):
        ref = incremental_effect_reference(draws, x, horizon=3, history=history, tail=tail)
        got = evaluate_allocation(draws, x, horizon=3, history=history, tail=tail)
        np.testing.assert_allclose(got.conversions, ref.sum(axis=1).mean(), rtol=1e-10)
        np.testing.assert_allclose(got.contributions, ref.mean(axis=0), rtol=1e-10)


# --- constraints ------------------------------------------------------------------------------


def test_bounds_and_fixed_are_honoured(mixed) -> None:
    plan = plan_budget(
        mixed,
        budget=12_000.0,
        horizon=4,
        bounds={"a": (None, 1_000.0), "b": (700.0, None)},
        fixed={"c": 500.0},
    )
    assert plan.per_period[0] <= 1_000.0 * (1 + 1e-9)
    assert plan.per_period[1] >= 700.0 * (1 - 1e-9)
    assert plan.per_period[2] == 500.0
    np.testing.assert_allclose(plan.totals.sum(), 12_000.0, rtol=1e-9)


def test_relative_bounds_follow_the_history(mixed) -> None:
    history = np.tile([1_000.0, 500.0, 1_500.0], (6, 1))
    plan = plan_budget(
        mixed, budget=12_000.0, horizon=4, history=history, relative_bounds=(0.8, 1.2)
    )
    average = history.mean(axis=0)
    assert np.all(plan.per_period >= 0.8 * average * (1 - 1e-9))
    assert np.all(plan.per_period <= 1.2 * average * (1 + 1e-9))


def test_all_fixed_and_zero_budget() -> None:
    plan = plan_budget(_response(), budget=800.0, horizon=2, fixed={"a": 100.0, "b": 300.0})
    assert plan.status == "fixed"
    np.testing.assert_array_equal(plan.per_period, [100.0, 300.0])
    zero = plan_budget(_response(), budget=0.0, horizon=2)
    assert zero.status == "zero_budget" and zero.spend == 0.0 and zero.conversions == 0.0


def test_carry_over_in_flight_lowers_new_spend() -> None:
    # Channel a carries over for long and is close to saturation when much is in flight.
    response = _response(alpha=(0.85, 0.1), lam=(1e-3, 1e-3), beta=(100.0, 100.0), l_max=8)
    without = plan_budget(response, budget=4_000.0, horizon=4)
    history = np.tile([4_000.0, 0.0], (7, 1))
    with_history = plan_budget(response, budget=4_000.0, horizon=4, history=history)
    assert with_history.per_period[0] < 0.8 * without.per_period[0]
    # and the history alone counts for nothing: the objective is incremental
    idle = evaluate_allocation(response, np.zeros(2), horizon=4, history=history)
    assert abs(idle.conversions) < 1e-9


# --- targets ----------------------------------------------------------------------------------


def test_target_cpa_spends_less_and_meets_it(mixed) -> None:
    full = plan_budget(mixed, budget=40_000.0, horizon=4)
    assert full.cpa is not None
    target = 0.95 * full.cpa  # cheaper than the full budget can buy, dearer than the first euro
    plan = plan_budget(mixed, budget=40_000.0, horizon=4, target_cpa=target)
    assert plan.status == "optimal", plan.note
    assert plan.spend < 0.99 * 40_000.0
    assert plan.cpa <= target * (1 + 1e-5)
    np.testing.assert_allclose(plan.cpa, target, rtol=1e-4)  # it spends up to the target
    assert "cannot be met at the full budget" in plan.note


def test_target_cpa_met_at_full_budget_spends_it(mixed) -> None:
    full = plan_budget(mixed, budget=12_000.0, horizon=4)
    plan = plan_budget(mixed, budget=12_000.0, horizon=4, target_cpa=2 * full.cpa)
    np.testing.assert_allclose(plan.spend, 12_000.0, rtol=1e-9)
    assert "met at the full budget" in plan.note


def test_unreachable_target_gives_a_zero_plan(mixed) -> None:
    # the best first euro buys beta * lam / 2 conversions per period-unit; ask for far more
    plan = plan_budget(mixed, budget=12_000.0, horizon=4, target_cpa=0.01)
    assert plan.status == "target_unreachable"
    np.testing.assert_array_equal(plan.per_period, np.zeros(3))
    assert plan.spend == 0.0
    assert "cannot be met" in plan.note and "target CPA" in plan.note


def test_target_roas(mixed) -> None:
    value = 40.0
    full = plan_budget(mixed, budget=40_000.0, horizon=4, value_per_conversion=value)
    target = 1.05 * full.roas
    plan = plan_budget(
        mixed, budget=40_000.0, horizon=4, target_roas=target, value_per_conversion=value
    )
    assert plan.spend < 40_000.0
    assert plan.roas >= target * (1 - 1e-5)
    assert "ROAS" in plan.note


# --- uncertainty ------------------------------------------------------------------------------


def test_quantile_is_more_conservative_than_the_mean(mixed) -> None:
    rng = np.random.default_rng(1)
    draws = [mixed.with_values(beta=mixed.beta * rng.lognormal(0.0, 0.3, 3)) for _ in range(64)]
    mean = plan_budget(draws, budget=12_000.0, horizon=4)
    low = plan_budget(draws, budget=12_000.0, horizon=4, quantile=0.1)
    assert low.quantile == 0.1 and low.draws == 64
    assert low.conversions < mean.conversions
    assert low.expected_conversions <= mean.expected_conversions * (1 + 1e-9)
    # the quantile plan is the best one for the quantile
    at_mean = evaluate_allocation(draws, mean.per_period, horizon=4, quantile=0.1)
    assert low.conversions >= at_mean.conversions * (1 - 1e-6)


# --- reference, curves, JSON ------------------------------------------------------------------


def test_reference_history_and_json(mixed) -> None:
    history = np.tile([200.0, 2_500.0, 300.0], (8, 1))
    plan = plan_budget(mixed, budget=12_000.0, horizon=4, history=history, reference="history")
    expected = proportional_allocation(history, 12_000.0, 4)
    np.testing.assert_allclose(plan.reference.per_period, expected)
    np.testing.assert_allclose(plan.reference.spend, 12_000.0)
    assert plan.uplift is not None and plan.uplift > 0
    out = json.loads(json.dumps(plan.to_json()))
    assert out["channels"] == ["a", "b", "c"]
    assert out["reference"]["per_period"] == pytest.approx(list(expected))
    assert out["status"] == "optimal" and out["iterations"] > 0


def test_response_curves(mixed) -> None:
    grid = np.linspace(0.0, 4_000.0, 9)
    curves = response_curves(mixed, horizon=4, grid=grid, history=np.full((3, 3), 500.0))
    assert set(curves["curves"]) == {"a", "b", "c"}
    for name, curve in curves["curves"].items():
        effect = np.array(curve["effect"])
        marginal = np.array(curve["marginal_roi"])
        assert effect[0] == pytest.approx(0.0, abs=1e-9)
        assert np.all(np.diff(effect) > 0), name
        assert np.all(np.diff(marginal) < 0), name  # logistic: diminishing returns
        assert curve["total_spend"] == pytest.approx(list(grid * 4))
    json.dumps(curves)


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": -1.0}, "budget"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.5}, "horizon"),
        ({"tail": -1}, "tail"),
        ({"history": np.zeros((4, 2))}, "history"),
        ({"history": -np.ones((4, 3))}, "history"),
        ({"bounds": {"nope": (0, 1)}}, "bounds: unknown channel 'nope'"),
        ({"bounds": {"a": (5.0, 1.0)}}, r"bounds\['a'\].*above maximum"),
        ({"bounds": {"a": (-5.0, 1.0)}}, r"bounds\['a'\]"),
        ({"bounds": {"a": 3.0}}, r"bounds\['a'\]"),
        ({"fixed": {"zz": 1.0}}, "fixed: unknown channel 'zz'"),
        ({"fixed": {"a": -1.0}}, r"fixed\['a'\]"),
        ({"fixed": {"a": 50.0}, "bounds": {"a": (100.0, 200.0)}}, r"fixed\['a'\].*outside"),
        ({"bounds": {"a": (2_000.0, None), "b": (2_000.0, None)}}, "budget.*minimum"),
        ({"bounds": {"a": (0, 10.0), "b": (0, 10.0), "c": (0, 10.0)}}, "budget.*maximum"),
        ({"quantile": 1.5}, "quantile"),
        ({"quantile": 0.0}, "quantile"),
        ({"target_cpa": 10.0, "target_roas": 2.0}, "target_cpa and target_roas"),
        ({"target_cpa": -1.0}, "target_cpa"),
        ({"target_roas": 0.0}, "target_roas"),
        ({"value_per_conversion": 0.0}, "value_per_conversion"),
        ({"relative_bounds": (0.5, 1.5)}, "relative_bounds: needs history"),
        ({"relative_bounds": (1.5, 0.5), "history": np.ones((3, 3))}, "relative_bounds"),
        ({"reference": "last year"}, "reference"),
        ({"reference": "history"}, "history"),
        ({"reference": {"q": 1.0}}, "reference: unknown channel 'q'"),
    ],
)
def test_bad_arguments_name_the_argument(mixed, kwargs, match) -> None:
    args = {"budget": 12_000.0, "horizon": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        plan_budget(mixed, **args)


def test_draws_must_share_a_structure(mixed) -> None:
    other = _response(alpha=(0.2, 0.5, 0.4), lam=(1e-4, 2e-3, 5e-4), beta=(1, 1, 1), l_max=3)
    with pytest.raises(ValueError, match=r"responses\[1\]\.l_max"):
        plan_budget([mixed, other], budget=1_000.0, horizon=2)
    with pytest.raises(ValueError, match="responses"):
        plan_budget([], budget=1_000.0, horizon=2)


def test_target_with_tight_maximums_and_minimums(mixed) -> None:
    full = plan_budget(mixed, budget=12_000.0, horizon=4)
    # maximums below the budget are fine with a target: the budget is only a cap
    capped = plan_budget(
        mixed,
        budget=12_000.0,
        horizon=4,
        bounds={"a": (0, 100.0), "b": (0, 100.0), "c": (0, 100.0)},
        target_cpa=2 * full.cpa,
    )
    np.testing.assert_allclose(capped.per_period, [100.0, 100.0, 100.0])
    assert "maximums" in capped.note
    # an unreachable target leaves the minimum spend the bounds ask for
    floor = plan_budget(
        mixed, budget=12_000.0, horizon=4, bounds={"b": (200.0, None)}, target_cpa=0.01
    )
    assert floor.status == "target_unreachable"
    np.testing.assert_allclose(floor.per_period, [0.0, 200.0, 0.0])
    assert "minimum spend" in floor.note


def test_hill_with_slope_below_one_solves() -> None:
    # Infinitely steep at 0: the gradient there is infinite, which must not stop SLSQP.
    response = _response(
        lam=(500.0, 5_000.0),
        beta=(100.0, 10.0),
        saturation="hill",
        slope=np.array([0.8, 0.8]),
    )
    plan = plan_budget(response, budget=1_000.0, horizon=2)
    assert plan.status == "optimal"
    np.testing.assert_allclose(plan.totals.sum(), 1_000.0)
    json.dumps(plan.to_json(), allow_nan=False)


def test_bounds_that_pin_every_channel_to_zero_under_a_cpa_target_answer_a_plan() -> None:
    # found by the API fuzzer: SciPy's SLSQP returns no iteration count when the bounds pin
    # every variable, which once escaped as a KeyError (a 500)
    response = ChannelResponse(
        channels=("a", "b"), adstock="geometric", saturation="logistic", l_max=2,
        alpha=np.array([0.3, 0.3]), lam=np.array([1e-3, 1e-3]), beta=np.array([10.0, 10.0]),
    )  # fmt: skip
    plan = plan_budget(
        response, budget=1.0, horizon=4, history=np.ones((3, 2)), relative_bounds=(0.0, 0.0),
        target_cpa=1.0,
    )  # fmt: skip
    assert plan.iterations == 0
    assert np.allclose(plan.per_period, 0.0)
