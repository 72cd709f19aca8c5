"""The back-test: replay a simulated history whose split was deliberately poor and check the
optimizer's split does better under the true response."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailor.budget.backtest import backtest, total_effect
from tailor.datasets.simulate.ad_channels import simulate_channels

START = 36


@pytest.fixture(scope="module")
def poor():
    """A 5-channel simulation whose spend goes mostly to the channels with the worst ROI."""
    sim = simulate_channels(channels=5, periods=52, seed=4)
    share = (1.0 / sim.roi) ** 1.5
    share /= share.sum()
    spend = sim.data.spend.sum(axis=1, keepdims=True) * share
    return sim, spend


def test_uplift_under_the_truth_is_positive(poor) -> None:
    sim, spend = poor
    result = backtest(sim.truth, spend, start=START, truth=sim.truth)
    assert result.true_uplift is not None and result.true_uplift > 0.02
    assert result.predicted_uplift == pytest.approx(result.true_uplift)  # model = truth
    assert result.blocks == 52 - START and result.not_converged == 0
    # each period's total is the actual one; the history before start is untouched
    np.testing.assert_allclose(result.allocations.sum(axis=1), spend[START:].sum(axis=1))
    np.testing.assert_allclose(result.actual, spend[START:])
    assert result.true_actual == pytest.approx(total_effect(sim.truth, spend, start=START))


def test_a_wrong_model_still_helps_within_bounds(poor) -> None:
    sim, spend = poor
    rng = np.random.default_rng(0)
    model = sim.truth.with_values(beta=sim.truth.beta * rng.lognormal(0.0, 0.3, 5))
    draws = [model.with_values(beta=model.beta * rng.lognormal(0.0, 0.1, 5)) for _ in range(8)]
    result = backtest(draws, spend, start=START, truth=sim.truth, horizon=4)
    assert result.true_uplift > 0
    assert result.predicted_uplift > 0


def test_default_bounds_keep_near_the_recent_split(poor) -> None:
    sim, spend = poor
    result = backtest(sim.truth, spend, start=START, truth=sim.truth, window=8)
    for row, begin in enumerate(range(START, 52)):
        recent = spend[begin - 8 : begin].sum(axis=0)
        share = recent / recent.sum()
        budget = spend[begin].sum()
        got = result.allocations[row]
        assert np.all(got >= 0.5 * share * budget * (1 - 1e-7) - 1e-9)
        assert np.all(got <= 1.5 * share * budget * (1 + 1e-7) + 1e-9)
    free = backtest(sim.truth, spend, start=START, truth=sim.truth, relative_bounds=None)
    assert free.true_uplift >= result.true_uplift - 1e-9  # fewer constraints, no worse


def test_blocks_hold_spend_constant_and_json(poor) -> None:
    sim, spend = poor
    result = backtest(
        sim.truth, spend, start=START, truth=sim.truth, horizon=5, bounds={"search": (10.0, None)}
    )
    assert result.blocks == 4  # 16 periods in blocks of 5, 5, 5, 1
    for begin in range(0, 15, 5):
        block = result.allocations[begin : begin + 5]
        np.testing.assert_allclose(block, np.broadcast_to(block[0], block.shape))
    assert np.all(result.allocations[:, 0] >= 10.0 - 1e-9)
    out = json.loads(json.dumps(result.to_json()))
    assert out["true_uplift"] == pytest.approx(result.true_uplift)
    assert len(out["allocations"]) == 52 - START


def test_without_truth(poor) -> None:
    sim, spend = poor
    result = backtest(sim.truth, spend, start=50)
    assert result.true_actual is None and result.true_uplift is None
    assert result.to_json()["true_uplift"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0}, "start"),
        ({"start": 52}, "start"),
        ({"horizon": 0}, "horizon"),
        ({"window": 0}, "window"),
        ({"relative_bounds": (1.2, 1.5)}, "relative_bounds"),
        ({"spend": np.ones((52, 3))}, "spend"),
        ({"spend": -np.ones((52, 5))}, "spend"),
        ({"bounds": {"nope": (0.0, 1.0)}}, "unknown channel 'nope'"),
    ],
)
def test_bad_arguments(poor, kwargs, match) -> None:
    sim, spend = poor
    args = {"spend": spend, "start": START, **kwargs}
    with pytest.raises(ValueError, match=match):
        backtest(sim.truth, args.pop("spend"), **args)


def test_truth_must_have_the_same_channels(poor) -> None:
    sim, spend = poor
    other = simulate_channels(channels=4, periods=20, seed=1).truth
    with pytest.raises(ValueError, match=r"truth\.channels"):
        backtest(sim.truth, spend, start=START, truth=other)
