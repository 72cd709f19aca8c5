"""IPW, SNIPW and DR: by hand, unbiased on a simulated bandit, and bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.lifecycle.ope import doubly_robust, ipw, snipw


def test_estimates_by_hand():
    reward = [1.0, 0.0, 1.0, 0.0]
    propensity = [0.5, 0.5, 0.25, 0.25]
    target = [1.0, 0.0, 0.5, 0.5]  # weights 2, 0, 2, 2
    assert ipw(reward, propensity, target).value == pytest.approx((2 + 2) / 4)
    assert snipw(reward, propensity, target).value == pytest.approx(4 / 6)
    predicted, expected = [0.5, 0.5, 0.5, 0.5], [0.7, 0.7, 0.7, 0.7]
    dr = doubly_robust(reward, propensity, target, predicted, expected)
    assert dr.value == pytest.approx(0.7 + (2 * 0.5 + 0 + 2 * 0.5 + 2 * -0.5) / 4)
    assert dr.low < dr.value < dr.high and dr.rounds == 4


def simulated_bandit(n: int, seed: int):
    """Three actions with known click rates, logged uniformly; the evaluated policy prefers
    the best action."""
    rng = np.random.default_rng(seed)
    rates = np.array([0.02, 0.05, 0.10])
    target_policy = np.array([0.1, 0.2, 0.7])
    action = rng.integers(0, 3, n)
    reward = (rng.random(n) < rates[action]).astype(float)
    return rates, target_policy, action, reward, target_policy @ rates


def test_each_estimator_covers_the_true_value_about_as_often_as_it_says():
    covered = {"ipw": 0, "snipw": 0, "dr": 0}
    runs = 200
    for seed in range(runs):
        _, policy, action, reward, truth = simulated_bandit(4000, seed)
        propensity = np.full(len(action), 1 / 3)
        target = policy[action]
        q = np.full(3, reward.mean())  # a poor reward model: DR must still be unbiased
        estimates = {
            "ipw": ipw(reward, propensity, target),
            "snipw": snipw(reward, propensity, target),
            "dr": doubly_robust(
                reward, propensity, target, q[action], np.full(len(action), policy @ q)
            ),
        }
        for name, estimate in estimates.items():
            covered[name] += estimate.covers(truth)
    for name, count in covered.items():
        assert 0.90 <= count / runs <= 0.99, (name, count)


def test_a_perfect_reward_model_makes_dr_tighter_than_ipw():
    rates, policy, action, _, truth = simulated_bandit(4000, 1)
    # Rewards (say, basket values) that the action explains well: little noise around its mean.
    reward = rates[action] + np.random.default_rng(2).normal(0, 0.005, len(action))
    propensity = np.full(len(action), 1 / 3)
    plain = ipw(reward, propensity, policy[action])
    dr = doubly_robust(
        reward, propensity, policy[action], rates[action], np.full(len(action), truth)
    )
    assert dr.standard_error < 0.8 * plain.standard_error


@pytest.mark.parametrize(
    "reward, propensity, target, message",
    [
        ([], [], [], "no rounds"),
        ([1.0, 0.0], [0.5], [0.5, 0.5], "propensity has 1 values, expected 2"),
        ([1.0, np.nan], [0.5, 0.5], [0.5, 0.5], r"reward\[1\]"),
        ([1.0, 0.0], [0.5, 0.0], [0.5, 0.5], r"propensity\[1\] = 0.0 must be in \(0, 1\]"),
        ([1.0, 0.0], [0.5, 0.5], [0.5, 1.5], r"target_probability\[1\]"),
    ],
)
def test_bad_input_names_the_field_and_round(reward, propensity, target, message):
    with pytest.raises(ValueError, match=message):
        ipw(reward, propensity, target)


def test_snipw_needs_a_logged_action_the_policy_takes():
    with pytest.raises(ValueError, match="never takes a logged action"):
        snipw([1.0, 0.0], [0.5, 0.5], [0.0, 0.0])
