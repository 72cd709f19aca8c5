"""Multi-armed bandits over strategies, for placements where a fixed A/B split costs too much.

Each arm is a strategy (a model version, a layout); the reward is binary (a click, a
conversion). :class:`ThompsonSampling` keeps a Beta posterior per arm and plays each arm as
often as it is likely to be the best; ``epsilon`` greedy plays the best-looking arm and
explores uniformly with probability ``epsilon``.

Every choice comes with its **propensity**, the probability the policy had of playing that
arm. Logged with the impression, it is what lets :mod:`tailor.lifecycle.ope` evaluate another
policy from these logs later. For Thompson sampling it is estimated by drawing from the
posteriors (``propensity_draws`` times), as the Open Bandit Dataset's logs were made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

FORMAT = "tailor.lifecycle.bandit/1"


@dataclass
class Bandit:
    """A bandit over named ``arms``: ``policy`` is ``"thompson"`` or ``"epsilon-greedy"``."""

    arms: list[str]
    policy: str = "thompson"
    epsilon: float = 0.1
    prior: tuple[float, float] = (1.0, 1.0)
    propensity_draws: int = 10_000
    successes: np.ndarray = field(init=False)
    failures: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"a bandit needs at least two distinct arms, got {self.arms}")
        if self.policy not in ("thompson", "epsilon-greedy"):
            raise ValueError(f"policy must be 'thompson' or 'epsilon-greedy', got {self.policy!r}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if min(self.prior) <= 0 or self.propensity_draws < 100:
            raise ValueError("the prior's two numbers must be > 0 and propensity_draws >= 100")
        self.successes = np.zeros(len(self.arms))
        self.failures = np.zeros(len(self.arms))
        self._thompson: np.ndarray | None = None

    def _index(self, arm: str) -> int:
        try:
            return self.arms.index(arm)
        except ValueError:
            raise ValueError(f"unknown arm {arm!r}; the arms are {', '.join(self.arms)}") from None

    def probabilities(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """The probability of playing each arm now (the propensities of the next choice)."""
        if self.policy == "epsilon-greedy":
            means = self.posterior_means()
            best = np.flatnonzero(means == means.max())
            out = np.full(len(self.arms), self.epsilon / len(self.arms))
            out[best] += (1 - self.epsilon) / len(best)
            return out
        if self._thompson is None:  # the posteriors changed since the last estimate
            rng = rng or np.random.default_rng(0)
            a, b = self.prior
            shape = (self.propensity_draws, len(self.arms))
            best = rng.beta(a + self.successes, b + self.failures, shape).argmax(axis=1)
            self._thompson = np.bincount(best, minlength=len(self.arms)) / self.propensity_draws
        return self._thompson.copy()

    def posterior_means(self) -> np.ndarray:
        a, b = self.prior
        return (a + self.successes) / (a + b + self.successes + self.failures)

    def choose(self, rng: np.random.Generator) -> tuple[str, float]:
        """An arm to play and the probability the policy had of playing it."""
        probabilities = self.probabilities()
        if self.policy == "thompson":
            a, b = self.prior
            arm = int(rng.beta(a + self.successes, b + self.failures).argmax())
        else:
            arm = int(rng.choice(len(self.arms), p=probabilities))
        return self.arms[arm], float(probabilities[arm])

    def update(self, arm: str, reward: float) -> None:
        """Record an outcome (``reward`` 1 or 0; a fraction counts as that share of a success)."""
        if not 0 <= reward <= 1:
            raise ValueError(f"reward must be between 0 and 1, got {reward}")
        index = self._index(arm)
        self.successes[index] += reward
        self.failures[index] += 1 - reward
        self._thompson = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(
            json.dumps(
                {
                    "format": FORMAT, "arms": self.arms, "policy": self.policy,
                    "epsilon": self.epsilon, "prior": list(self.prior),
                    "propensity_draws": self.propensity_draws,
                    "successes": self.successes.tolist(), "failures": self.failures.tolist(),
                }
            )
        )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        saved = json.loads(Path(path).read_text())
        if saved.get("format") != FORMAT:
            raise ValueError(f"{path} does not hold a saved bandit")
        try:
            bandit = cls(
                saved["arms"],
                saved["policy"],
                saved["epsilon"],
                tuple(saved["prior"]),
                saved["propensity_draws"],
            )
            bandit.set_counts(saved["successes"], saved["failures"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path} holds a damaged bandit ({exc!r}): start a new one") from None
        return bandit

    def set_counts(self, successes: object, failures: object) -> None:
        """Replace the outcomes counted so far (one number per arm each)."""
        wins, losses = np.asarray(successes, float), np.asarray(failures, float)
        if wins.shape != (len(self.arms),) or losses.shape != (len(self.arms),):
            raise ValueError(f"give one success and one failure count per arm ({len(self.arms)})")
        if (wins < 0).any() or (losses < 0).any():
            raise ValueError("counts must be 0 or more")
        self.successes, self.failures = wins, losses
        self._thompson = None
