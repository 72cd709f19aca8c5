"""Bandits: they find the best strategy, log honest propensities, and their logs evaluate
another policy off-line."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.lifecycle.bandits import Bandit
from tailor.lifecycle.ope import ipw

RATES = {"popular": 0.02, "ease": 0.05, "hybrid": 0.08}


def play(bandit: Bandit, rounds: int, seed: int = 0, learn: bool = True):
    rng = np.random.default_rng(seed)
    log = []
    for _ in range(rounds):
        arm, propensity = bandit.choose(rng)
        reward = float(rng.random() < RATES[arm])
        if learn:
            bandit.update(arm, reward)
        log.append((arm, propensity, reward))
    return log


def test_thompson_sampling_finds_the_best_strategy():
    bandit = Bandit(list(RATES), propensity_draws=500)
    log = play(bandit, 6000)
    late = [arm for arm, _, _ in log[-1000:]]
    assert late.count("hybrid") / len(late) > 0.6
    earned = sum(reward for _, _, reward in log)
    assert earned > 6000 * np.mean(list(RATES.values()))  # beats a uniform split
    assert bandit.probabilities().argmax() == list(RATES).index("hybrid")


def test_epsilon_greedy_probabilities_are_exact_and_sum_to_one():
    bandit = Bandit(list(RATES), policy="epsilon-greedy", epsilon=0.3)
    bandit.update("ease", 1.0)
    np.testing.assert_allclose(bandit.probabilities(), [0.1, 0.8, 0.1])
    fresh = Bandit(list(RATES), policy="epsilon-greedy", epsilon=0.3)  # a three-way tie
    np.testing.assert_allclose(fresh.probabilities(), [1 / 3] * 3)


def test_logged_propensities_match_how_often_each_arm_is_played():
    bandit = Bandit(list(RATES))
    bandit.set_counts([2, 5, 6], [98, 95, 94])
    log = play(bandit, 4000, learn=False)
    played = np.array([[arm == a for a in bandit.arms] for arm, _, _ in log]).mean(axis=0)
    np.testing.assert_allclose(played, bandit.probabilities(), atol=0.03)


def test_the_bandits_logs_evaluate_another_policy_off_line():
    bandit = Bandit(list(RATES), policy="epsilon-greedy", epsilon=0.5)
    bandit.update("ease", 1.0)  # plays ease 2/3 of the time, the others 1/6 each
    log = play(bandit, 20_000, seed=3, learn=False)
    arms, propensity, reward = zip(*log, strict=True)
    always_hybrid = [1.0 if arm == "hybrid" else 0.0 for arm in arms]
    estimate = ipw(reward, propensity, always_hybrid)
    assert estimate.covers(RATES["hybrid"])


def test_state_survives_a_restart_and_bad_input_is_refused(tmp_path):
    bandit = Bandit(list(RATES), policy="epsilon-greedy", epsilon=0.2)
    bandit.update("hybrid", 1.0)
    again = Bandit.load(bandit.save(tmp_path / "bandit.json"))
    np.testing.assert_array_equal(again.probabilities(), bandit.probabilities())
    with pytest.raises(ValueError, match="at least two distinct arms"):
        Bandit(["a", "a"])
    with pytest.raises(ValueError, match="policy"):
        Bandit(["a", "b"], policy="ucb")
    with pytest.raises(ValueError, match="unknown arm 'x'"):
        bandit.update("x", 1.0)
    with pytest.raises(ValueError, match="one success and one failure count per arm"):
        bandit.set_counts([1, 2], [1, 2])
    with pytest.raises(ValueError, match="reward must be between 0 and 1"):
        bandit.update("ease", 2.0)
    (tmp_path / "cut.json").write_text('{"format": "tailor.lifecycle.bandit/1", "arms": ["a"]}')
    with pytest.raises(ValueError, match="damaged bandit"):
        Bandit.load(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="does not hold a saved bandit"):
        Bandit.load(tmp_path / "other.json")
