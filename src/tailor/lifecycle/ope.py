"""Off-policy evaluation: what a new policy would have earned, from the logs of another.

A logging (behaviour) policy showed action ``a_i`` with probability ``p_i`` (its propensity)
and got reward ``r_i``; the policy to evaluate would have shown it with probability
``pi_i``. The importance weight ``w_i = pi_i / p_i`` re-weights the logged rewards:

* **IPW**: mean of ``w_i r_i``; unbiased, high variance.
* **SNIPW**: ``sum(w_i r_i) / sum(w_i)``; slightly biased, lower variance, and it stays
  within the range of the rewards.
* **DR** (doubly robust): a reward model ``q`` predicts every action's reward;
  mean of ``sum_a pi(a) q(a) + w_i (r_i - q(a_i))``. It is unbiased when either the
  propensities or the model are right, and it has lower variance when the model is good.

The formulas are those of Dudík, Langford and Li (2011) and of Saito et al.'s ``obp``
(the benchmark checks that our estimates equal obp's on the same inputs). Confidence
intervals are normal-approximation intervals from each estimator's per-round
contributions; for SNIPW those are its linearization ``w_i (r_i - V) / mean(w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from tailor.lifecycle.checks import finite_vector


@dataclass(frozen=True)
class Estimate:
    """A policy value with its standard error and central ``level`` confidence interval."""

    estimator: str
    value: float
    standard_error: float
    low: float
    high: float
    rounds: int

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def _weights(reward: object, propensity: object, target: object) -> tuple[np.ndarray, ...]:
    r = finite_vector("reward", reward)
    if len(r) == 0:
        raise ValueError("no rounds: reward is empty")
    p = finite_vector("propensity", propensity, length=len(r))
    pi = finite_vector("target_probability", target, length=len(r))
    for name, values, low_ok in (("propensity", p, False), ("target_probability", pi, True)):
        bad = (values < 0) | (values > 1) | (~low_ok & (values == 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            limits = "in [0, 1]" if low_ok else "in (0, 1]: the logging policy showed it"
            raise ValueError(f"{name}[{row}] = {float(values[row])!r} must be {limits}")
    return r, pi / p


def _estimate(name: str, contributions: np.ndarray, value: float, level: float) -> Estimate:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    n = len(contributions)
    error = float(np.std(contributions, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    z = float(norm.ppf(0.5 + level / 2))
    value = float(value)
    return Estimate(name, value, error, value - z * error, value + z * error, n)


def ipw(reward: object, propensity: object, target: object, *, level: float = 0.95) -> Estimate:
    """Inverse propensity weighting. ``target``: the evaluated policy's probability of each
    logged action (at its position), ``propensity``: the logging policy's."""
    r, w = _weights(reward, propensity, target)
    contributions = w * r
    return _estimate("ipw", contributions, contributions.mean(), level)


def snipw(reward: object, propensity: object, target: object, *, level: float = 0.95) -> Estimate:
    """Self-normalized IPW."""
    r, w = _weights(reward, propensity, target)
    if w.sum() == 0:
        raise ValueError("the evaluated policy never takes a logged action: nothing to weigh")
    value = float((w * r).sum() / w.sum())
    return _estimate("snipw", w * (r - value) / w.mean(), value, level)


def doubly_robust(
    reward: object,
    propensity: object,
    target: object,
    predicted_reward: object,
    expected_reward: object,
    *,
    level: float = 0.95,
) -> Estimate:
    """Doubly robust. ``predicted_reward``: the reward model's prediction for each logged
    action; ``expected_reward``: per round, the model's reward averaged over the evaluated
    policy's actions, ``sum_a pi(a) q(a)``."""
    r, w = _weights(reward, propensity, target)
    q = finite_vector("predicted_reward", predicted_reward, length=len(r))
    direct = finite_vector("expected_reward", expected_reward, length=len(r))
    contributions = direct + w * (r - q)
    return _estimate("dr", contributions, contributions.mean(), level)
