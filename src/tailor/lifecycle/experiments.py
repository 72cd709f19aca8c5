"""A/B test statistics: sticky assignment, the sample-ratio-mismatch alarm, and results.

* :func:`assign`: a subject's variant from a hash of (experiment salt, subject), the same
  on every call and in every process, in proportion to the variants' weights.
* :func:`sample_ratio_mismatch`: a chi-square test of the subjects each variant got against
  the planned split; below ``p < 0.001`` (GrowthBook's threshold) the assignment or the
  logging is broken and the test's results must not be read.
* :func:`compare`: the difference of a metric's means between treatment and control, with a
  confidence interval and p-value (Welch), optionally with CUPED (Deng et al., 2013): the
  metric adjusted by a pre-period covariate, which keeps the difference unbiased and
  shrinks its variance by the squared correlation.
* :func:`compare_ratio`: a ratio metric (clicks per impression, revenue per session) whose
  denominator varies per subject, by the delta method.
* :func:`beta_binomial`: the Bayesian view of a conversion rate: the probability that
  treatment beats control and the expected loss of choosing it, under Beta(1, 1) priors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tailor.lifecycle.checks import finite_vector

SRM_P_VALUE = 0.001


def assign(subject: str, salt: str, weights: Sequence[float]) -> int:
    """The index of the subject's variant; ``weights`` need not sum to 1."""
    total = float(sum(weights))
    if not weights or min(weights) < 0 or total <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    digest = hashlib.sha256(f"{salt}\x00{subject}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * total
    edges = np.cumsum(weights)
    return int(min(np.searchsorted(edges, point, side="right"), len(weights) - 1))


@dataclass(frozen=True)
class SampleRatio:
    chi_square: float
    p_value: float
    alarm: bool
    observed: tuple[int, ...]
    expected: tuple[float, ...]


def sample_ratio_mismatch(
    counts: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_P_VALUE
) -> SampleRatio:
    """Subjects per variant against the planned ``weights``."""
    observed = np.asarray(counts, dtype=np.float64)
    planned = np.asarray(weights, dtype=np.float64)
    if len(observed) != len(planned) or len(observed) < 2:
        raise ValueError("give the count and the weight of each variant (at least two)")
    if (observed < 0).any() or (planned <= 0).any():
        raise ValueError("counts must be 0 or more and weights more than 0")
    if observed.sum() == 0:
        raise ValueError("no subjects yet: nothing to test")
    expected = planned / planned.sum() * observed.sum()
    from scipy import stats  # here: serving imports assign, and scipy.stats takes 1 s

    chi2, p = stats.chisquare(observed, expected)
    return SampleRatio(
        float(chi2),
        float(p),
        bool(p < threshold),
        tuple(int(c) for c in observed),
        tuple(float(e) for e in expected),
    )


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: the difference, its interval, the p-value, the relative
    lift and, with CUPED, the share of variance it removed."""

    control: float
    treatment: float
    difference: float
    low: float
    high: float
    p_value: float
    lift: float
    variance_reduction: float = 0.0


def _sample(name: str, values: object) -> np.ndarray:
    array = finite_vector(name, values)
    if len(array) < 2:
        raise ValueError(f"{name} needs at least two subjects")
    return array


def _welch(
    mean_c: float, var_c: float, mean_t: float, var_t: float, level: float
) -> tuple[float, float, float, float]:
    difference = mean_t - mean_c
    error = np.sqrt(var_c + var_t)
    if error == 0:
        return difference, difference, difference, 1.0 if difference == 0 else 0.0
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    p = 2 * stats.norm.sf(abs(difference) / error)
    return difference, difference - z * error, difference + z * error, float(p)


def compare(
    control: object,
    treatment: object,
    *,
    control_before: object | None = None,
    treatment_before: object | None = None,
    level: float = 0.95,
) -> Comparison:
    """Per-subject metric values of each group; with the same metric from before the test
    (``*_before``), CUPED-adjusted. Normal approximation: the groups of a shop's test hold
    thousands of subjects."""
    c, t = _sample("control", control), _sample("treatment", treatment)
    reduction = 0.0
    if (control_before is None) != (treatment_before is None):
        raise ValueError("give the pre-period values of both groups, or of neither")
    if control_before is not None:
        cb, tb = (
            _sample("control_before", control_before),
            _sample("treatment_before", treatment_before),
        )
        if len(cb) != len(c) or len(tb) != len(t):
            raise ValueError("one pre-period value per subject, in the same order")
        x, y = np.concatenate([cb, tb]), np.concatenate([c, t])
        if x.var() > 0:
            theta = np.cov(x, y)[0, 1] / x.var(ddof=1)
            before = np.var(y, ddof=1)
            c, t = c - theta * (cb - x.mean()), t - theta * (tb - x.mean())
            after = np.var(np.concatenate([c, t]), ddof=1)
            reduction = float(1 - after / before) if before > 0 else 0.0
    mean_c, mean_t = float(c.mean()), float(t.mean())
    difference, low, high, p = _welch(
        mean_c, c.var(ddof=1) / len(c), mean_t, t.var(ddof=1) / len(t), level
    )
    lift = difference / mean_c if mean_c else float("nan")
    return Comparison(mean_c, mean_t, difference, low, high, p, lift, reduction)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """The ratio of sums and its delta-method variance."""
    n = len(numerator)
    mean_x, mean_y = numerator.mean(), denominator.mean()
    if mean_y == 0:
        raise ValueError("the denominator sums to 0: no ratio")
    ratio = mean_x / mean_y
    cov = np.cov(numerator, denominator)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mean_y**2)
    return float(ratio), float(variance)


def compare_ratio(
    control_numerator: object,
    control_denominator: object,
    treatment_numerator: object,
    treatment_denominator: object,
    *,
    level: float = 0.95,
) -> Comparison:
    """A ratio metric per group (sum of numerators over sum of denominators, one pair per
    subject), compared by the delta method."""
    groups = []
    for name, num, den in (
        ("control", control_numerator, control_denominator),
        ("treatment", treatment_numerator, treatment_denominator),
    ):
        x, y = _sample(f"{name}_numerator", num), _sample(f"{name}_denominator", den)
        if len(x) != len(y):
            raise ValueError(f"{name}: one numerator and one denominator per subject")
        groups.append(_ratio(x, y))
    (mean_c, var_c), (mean_t, var_t) = groups
    difference, low, high, p = _welch(mean_c, var_c, mean_t, var_t, level)
    lift = difference / mean_c if mean_c else float("nan")
    return Comparison(mean_c, mean_t, difference, low, high, p, lift)


@dataclass(frozen=True)
class BayesianResult:
    probability_to_beat: float
    """P(treatment's rate > control's)."""
    expected_loss: float
    """E[max(control - treatment, 0)]: the rate given up on average by choosing treatment."""


def beta_binomial(
    control_conversions: int,
    control_subjects: int,
    treatment_conversions: int,
    treatment_subjects: int,
    *,
    draws: int = 200_000,
    seed: int = 0,
) -> BayesianResult:
    """Conversion rates with Beta(1, 1) priors, by Monte Carlo over the two posteriors."""
    for name, k, n in (
        ("control", control_conversions, control_subjects),
        ("treatment", treatment_conversions, treatment_subjects),
    ):
        if not 0 <= k <= n or n < 1:
            raise ValueError(f"{name}: conversions must be between 0 and subjects (>= 1)")
    rng = np.random.default_rng(seed)
    a = rng.beta(1 + control_conversions, 1 + control_subjects - control_conversions, draws)
    b = rng.beta(1 + treatment_conversions, 1 + treatment_subjects - treatment_conversions, draws)
    return BayesianResult(float((b > a).mean()), float(np.maximum(a - b, 0).mean()))
