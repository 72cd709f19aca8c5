"""Split a budget over channels and a future horizon to maximize incremental conversions.

The plan is one spend per channel and period, held constant over the horizon. Constant
spend is what planners can execute (a weekly budget per channel), it keeps the problem at
``C`` variables whatever the horizon, and with a concave response and no known seasonality
in the response curves a time-varying plan gains nothing over it but noise.

What is maximized is the plan's *incremental* effect: the channel effects over the horizon
and the ``tail`` periods after it, with the plan, minus the same without it,

    sum_t contributions(history, plan, 0...)_t - sum_t contributions(history, 0, 0...)_t

so the carry-over still in flight from past spend (``history``) counts: a channel whose
adstock from last month is already high sits further up its saturation curve, and new spend
there buys less (PyMC-Marketing's optimizer ignores this, pymc-marketing#1013).

Adstock is linear in spend, so the adstocked spend of every draw is precomputed in NumPy as
``carry + x * gain`` (carry-over from history, plus the plan's per-unit footprint over the
periods); only the saturation runs in JAX, which gives exact gradients for SciPy's SLSQP.
:func:`incremental_effect_reference` computes the same figure the slow, obvious way with
:meth:`ChannelResponse.contributions`, and the tests check both agree.

Examples
--------
>>> import numpy as np
>>> from tailor.budget.transforms import ChannelResponse
>>> response = ChannelResponse(
...     channels=("search", "social"), adstock="geometric", saturation="logistic", l_max=4,
...     alpha=np.array([0.3, 0.5]), lam=np.array([1e-3, 4e-3]), beta=np.array([40.0, 30.0]))
>>> plan = plan_budget(response, budget=8_000.0, horizon=4)
>>> round(float(plan.totals.sum()))
8000
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

from tailor.budget.posterior import load_jax
from tailor.budget.transforms import (
    ChannelResponse,
    adstock_weights,
    apply_adstock,
    lagged,
    saturate,
)

__all__ = [
    "Allocation",
    "BudgetPlan",
    "evaluate_allocation",
    "incremental_effect_reference",
    "plan_budget",
    "proportional_allocation",
    "response_curves",
]

logger = logging.getLogger(__name__)

Bound = tuple[float | None, float | None]
Responses = ChannelResponse | Sequence[ChannelResponse]
PerPeriod = np.ndarray | Mapping[str, float]

_FEASIBLE_RTOL = 1e-6
MIN_SPEND = 1e-6
"""Per-period budgets below this (a millionth of a currency unit) are treated as 0."""
"""Relative slack allowed on a target constraint: SLSQP meets constraints to about this."""


# --- JAX --------------------------------------------------------------------------------------


@cache
def _value_and_grad(saturation: str, quantile: float | None) -> Callable[..., Any]:
    """Jitted ``(x, carry, gain, beta, lam, slope, base) -> ((value, per_draw), dvalue/dx)``;
    jax.jit compiles it once per array shape, so a back-test's repeated solves reuse it."""
    jax, jnp, _ = load_jax()  # 64-bit: spends of 1e6 lose the optimum in float32

    def value(x, carry, gain, beta, lam, slope, base):
        adstocked = carry + x * gain  # (D, T, C): adstock is linear in spend
        effect = saturate(saturation, adstocked, lam[:, None, :], slope[:, None, :], xp=jnp)
        per_draw = (beta[:, None, :] * effect).sum(axis=1) - base  # (D, C)
        total = per_draw.sum(axis=1)
        stat = total.mean() if quantile is None else jnp.quantile(total, quantile)
        return stat, per_draw

    return jax.jit(jax.value_and_grad(value, has_aux=True))


# --- the problem ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """A response model (one or more draws) laid over ``periods = horizon + tail``."""

    channels: tuple[str, ...]
    horizon: int
    tail: int
    saturation: str
    quantile: float | None
    carry: np.ndarray  # (D, T, C) adstocked spend from history alone
    gain: np.ndarray  # (D, T, C) adstocked spend of 1 per period over the horizon
    beta: np.ndarray  # (D, C)
    lam: np.ndarray
    slope: np.ndarray
    base: np.ndarray  # (D, C) effect of the history alone, summed over the periods

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective (mean or quantile over draws), its gradient in ``x`` (per-period
        spend), and the ``(D, C)`` incremental effect per draw and channel."""
        fn = _value_and_grad(self.saturation, self.quantile)
        (stat, per_draw), grad = fn(
            np.asarray(x, float),
            self.carry,
            self.gain,
            self.beta,
            self.lam,
            self.slope,
            self.base,
        )
        return float(stat), np.asarray(grad), np.asarray(per_draw)


def as_draws(responses: Responses) -> list[ChannelResponse]:
    draws = [responses] if isinstance(responses, ChannelResponse) else list(responses)
    if not draws:
        raise ValueError("responses: no ChannelResponse given; pass the posterior mean or draws")
    first = draws[0]
    for i, draw in enumerate(draws):
        if not isinstance(draw, ChannelResponse):
            raise ValueError(f"responses[{i}]: expected a ChannelResponse, got {type(draw)}")
        for name in ("channels", "adstock", "saturation", "l_max"):
            if getattr(draw, name) != getattr(first, name):
                raise ValueError(
                    f"responses[{i}].{name}: {getattr(draw, name)!r} differs from the first "
                    f"draw's {getattr(first, name)!r}; all draws must share one model structure"
                )
    return draws


def check_spend(values: Any, channels: tuple[str, ...], what: str = "history") -> np.ndarray:
    """``values`` as ``(periods, channels)`` spend, finite and >= 0, oldest period first
    (None: no periods); a ValueError naming ``what``, the channel and the row otherwise."""
    c = len(channels)
    if values is None:
        return np.zeros((0, c))
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != c:
        raise ValueError(
            f"{what}: expected (periods, {c}) spend with one column per channel "
            f"({', '.join(channels)}), oldest period first; got shape {values.shape}"
        )
    bad = np.argwhere(~np.isfinite(values) | (values < 0))
    if bad.size:
        row, col = bad[0]
        raise ValueError(
            f"{what}: channel {channels[col]!r} has spend {values[row, col]} in row {row}; "
            "spend must be finite and >= 0"
        )
    return values


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: must be a whole number of periods >= {minimum}, got {value!r}")
    return int(value)


def _check_quantile(quantile: float | None) -> float | None:
    if quantile is None:
        return None
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(
            f"quantile: {quantile} is outside (0, 1); use e.g. 0.1 for a cautious plan or None "
            "for the posterior mean"
        )
    return float(quantile)


def _build_problem(
    draws: list[ChannelResponse],
    horizon: int,
    history: np.ndarray,
    tail: int,
    quantile: float | None,
) -> _Problem:
    first = draws[0]
    c = len(first.channels)
    periods = horizon + tail
    on = np.zeros((periods, c))
    on[:horizon] = 1.0
    idle = np.zeros((periods, c))
    lag_history = lagged(idle, first.l_max, np, history)
    lag_plan = lagged(on, first.l_max, np)
    carry, gain, base = [], [], []
    for draw in draws:
        weights = adstock_weights(draw.adstock, draw.l_max, draw.alpha, draw.theta, xp=np)
        carried = apply_adstock(lag_history, weights, np)
        carry.append(carried)
        gain.append(apply_adstock(lag_plan, weights, np))
        effect = saturate(draw.saturation, carried, draw.lam, _slope(draw), xp=np)
        base.append((draw.beta * effect).sum(axis=0))
    return _Problem(
        channels=first.channels,
        horizon=horizon,
        tail=tail,
        saturation=first.saturation,
        quantile=quantile,
        carry=np.stack(carry),
        gain=np.stack(gain),
        beta=np.stack([np.asarray(d.beta, float) for d in draws]),
        lam=np.stack([np.asarray(d.lam, float) for d in draws]),
        slope=np.stack([_slope(d) for d in draws]),
        base=np.stack(base),
    )


def _slope(draw: ChannelResponse) -> np.ndarray:
    # Logistic saturation has no slope; ones keep one array layout for both kinds.
    return np.ones(len(draw.channels)) if draw.slope is None else np.asarray(draw.slope, float)


def incremental_effect_reference(
    responses: Responses,
    per_period: np.ndarray,
    *,
    horizon: int,
    history: np.ndarray | None = None,
    tail: int | None = None,
) -> np.ndarray:
    """``(D, C)`` incremental effect of each draw and channel, the slow obvious way.

    Builds the spend series (history, the plan for ``horizon`` periods, zeros for ``tail``)
    and subtracts the series without the plan, both through
    :meth:`ChannelResponse.contributions` in NumPy, one draw at a time. The reference the
    fast JAX objective is tested against.
    """
    draws = as_draws(responses)
    history = check_spend(history, draws[0].channels)
    tail = draws[0].l_max - 1 if tail is None else tail
    out = []
    for draw in draws:
        with_plan = np.zeros((horizon + tail, len(draw.channels)))
        for t in range(horizon):
            with_plan[t] = per_period
        without = np.zeros_like(with_plan)
        delta = draw.contributions(with_plan, history) - draw.contributions(without, history)
        out.append(delta.sum(axis=0))
    return np.stack(out)


# --- results ----------------------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Allocation:
    """What a spend allocation is expected to do over the horizon (and tail).

    Attributes
    ----------
    channels : channel names, the order of every array.
    per_period : ``(C,)`` spend per channel and period.
    totals : ``(C,)`` spend per channel over the horizon (``per_period * horizon``).
    spend : total spend over the horizon.
    conversions : the incremental conversions the plan was judged by: the mean over draws,
        or the chosen quantile of the draws' totals.
    expected_conversions : the mean over draws (equal to ``conversions`` without quantile).
    contributions : ``(C,)`` mean incremental conversions per channel.
    marginal_roi : ``(C,)`` d ``conversions`` / d the channel's total spend, conversions per
        currency unit (times ``value_per_conversion`` for revenue).
    cpa : ``spend / conversions``; None when nothing is spent or no conversions are expected.
    roas : ``value_per_conversion * conversions / spend``; None when nothing is spent.
    """

    channels: tuple[str, ...]
    per_period: np.ndarray
    totals: np.ndarray
    spend: float
    conversions: float
    expected_conversions: float
    contributions: np.ndarray
    marginal_roi: np.ndarray
    cpa: float | None
    roas: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "per_period": [float(v) for v in self.per_period],
            "totals": [float(v) for v in self.totals],
            "spend": float(self.spend),
            "conversions": float(self.conversions),
            "expected_conversions": float(self.expected_conversions),
            "contributions": [float(v) for v in self.contributions],
            # infinite at 0 on a Hill curve with slope < 1; JSON has no infinity
            "marginal_roi": [_number(v) for v in self.marginal_roi],
            "cpa": _number(self.cpa),
            "roas": _number(self.roas),
        }


@dataclass(frozen=True)
class BudgetPlan(Allocation):
    """An optimized allocation (see :class:`Allocation` for the figures) and how it was found.

    Attributes
    ----------
    budget, horizon, tail : the problem: total budget over ``horizon`` periods, with the
        plan's carry-over counted for ``tail`` periods after it.
    quantile : the quantile of the draws that was maximized; None for the mean.
    draws : number of posterior draws.
    value_per_conversion : revenue per conversion, for ``roas``.
    reference : the same figures for the reference allocation, when one was asked for.
    status : ``"optimal"``, ``"not_converged"``, ``"target_unreachable"``, ``"fixed"`` (no
        free channel) or ``"zero_budget"``.
    success : whether SciPy reported convergence (True when nothing had to be solved).
    iterations, seconds : solver iterations and wall time of the whole call.
    note : a sentence for people: why less than the budget is spent, why nothing is spent.
    """

    budget: float
    horizon: int
    tail: int
    quantile: float | None
    draws: int
    value_per_conversion: float
    reference: Allocation | None
    status: str
    success: bool
    iterations: int
    seconds: float
    note: str

    @property
    def uplift(self) -> float | None:
        """Relative gain in ``conversions`` over the reference allocation."""
        if self.reference is None or self.reference.conversions <= 0:
            return None
        return self.conversions / self.reference.conversions - 1.0

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update(
            budget=float(self.budget),
            horizon=self.horizon,
            tail=self.tail,
            quantile=self.quantile,
            draws=self.draws,
            value_per_conversion=float(self.value_per_conversion),
            reference=None if self.reference is None else self.reference.to_json(),
            uplift=_number(self.uplift),
            status=self.status,
            success=self.success,
            iterations=self.iterations,
            seconds=float(self.seconds),
            note=self.note,
        )
        return out


def _allocation(problem: _Problem, x: np.ndarray, value_per_conversion: float) -> Allocation:
    stat, grad, per_draw = problem.evaluate(x)
    spend = float(x.sum() * problem.horizon)
    return Allocation(
        channels=problem.channels,
        per_period=x.copy(),
        totals=x * problem.horizon,
        spend=spend,
        conversions=stat,
        expected_conversions=float(per_draw.sum(axis=1).mean()),
        contributions=per_draw.mean(axis=0),
        marginal_roi=grad / problem.horizon,
        cpa=spend / stat if stat > 0 and spend > 0 else None,
        roas=value_per_conversion * stat / spend if spend > 0 else None,
    )


# --- argument handling ------------------------------------------------------------------------


def _per_period(value: PerPeriod, channels: tuple[str, ...], what: str) -> np.ndarray:
    """A per-period spend vector from an array or a ``{channel: spend}`` mapping (channels
    left out spend 0)."""
    if isinstance(value, Mapping):
        _known(value, channels, what)
        out = np.array([float(value.get(c, 0.0)) for c in channels])
    else:
        out = np.asarray(value, dtype=float)
        if out.shape != (len(channels),):
            raise ValueError(
                f"{what}: expected {len(channels)} per-period spends ({', '.join(channels)}), "
                f"got shape {out.shape}"
            )
    bad = np.flatnonzero(~np.isfinite(out) | (out < 0))
    if bad.size:
        raise ValueError(
            f"{what}: channel {channels[bad[0]]!r} has spend {out[bad[0]]}; use a finite spend >= 0"
        )
    return out


def _known(mapping: Mapping[str, Any], channels: tuple[str, ...], what: str) -> None:
    unknown = [k for k in mapping if k not in channels]
    if unknown:
        raise ValueError(
            f"{what}: unknown channel {unknown[0]!r}; the model's channels are "
            f"{', '.join(channels)}"
        )


def _resolve_bounds(
    channels: tuple[str, ...],
    bounds: Mapping[str, Bound] | None,
    relative_bounds: tuple[float, float] | None,
    fixed: Mapping[str, float] | None,
    history: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-period ``lo``, ``hi`` and a mask of fixed channels (where ``lo == hi`` is the fixed
    spend). Explicit ``bounds`` and ``relative_bounds`` intersect; a fixed spend must lie in
    its explicit bounds but overrides the relative ones (it is the more specific order)."""
    c = len(channels)
    lo, hi = np.zeros(c), np.full(c, np.inf)
    if relative_bounds is not None:
        if len(relative_bounds) != 2:
            raise ValueError(f"relative_bounds: expected (low, high), got {relative_bounds!r}")
        low, high = (float(v) for v in relative_bounds)
        if not (0.0 <= low <= high) or not math.isfinite(low) or math.isnan(high):
            raise ValueError(
                f"relative_bounds: ({low}, {high}) must satisfy 0 <= low <= high, e.g. "
                "(0.5, 1.5) for between half and one and a half times the recent average"
            )
        if history.shape[0] == 0:
            raise ValueError(
                "relative_bounds: needs history (the recent periods' spend) to be relative to"
            )
        average = history.mean(axis=0)
        lo, hi = low * average, high * average
    if bounds is not None:
        _known(bounds, channels, "bounds")
        for name, pair in bounds.items():
            i = channels.index(name)
            try:
                low_b, high_b = pair
            except (TypeError, ValueError):
                raise ValueError(
                    f"bounds[{name!r}]: expected (minimum, maximum) per-period spend, either may "
                    f"be None; got {pair!r}"
                ) from None
            low_f = 0.0 if low_b is None else float(low_b)
            high_f = math.inf if high_b is None else float(high_b)
            if not (math.isfinite(low_f) and low_f >= 0) or math.isnan(high_f):
                raise ValueError(
                    f"bounds[{name!r}]: minimum {low_b!r} must be a finite spend >= 0 and the "
                    "maximum a number or None"
                )
            if low_f > high_f:
                raise ValueError(
                    f"bounds[{name!r}]: minimum {low_f} is above maximum {high_f}; swap them"
                )
            lo[i], hi[i] = max(lo[i], low_f), min(hi[i], high_f)
            if lo[i] > hi[i]:
                raise ValueError(
                    f"bounds[{name!r}]: ({low_f}, {high_f}) does not overlap relative_bounds' "
                    f"({lo[i]:.6g}, {hi[i]:.6g}) for this channel; widen one of them"
                )
    mask = np.zeros(c, dtype=bool)
    if fixed is not None:
        _known(fixed, channels, "fixed")
        for name, value in fixed.items():
            i = channels.index(name)
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"fixed[{name!r}]: {value} must be a finite spend >= 0")
            if bounds is not None and name in bounds:
                low_b, high_b = bounds[name]
                low_f = 0.0 if low_b is None else float(low_b)
                high_f = math.inf if high_b is None else float(high_b)
                if not low_f <= value <= high_f:
                    raise ValueError(
                        f"fixed[{name!r}]: {value} per period is outside bounds[{name!r}] "
                        f"({low_f}, {high_f}); drop one or make them agree"
                    )
            lo[i] = hi[i] = value
            mask[i] = True
    return lo, hi, mask


def proportional_allocation(
    history: np.ndarray, budget: float, horizon: int, channels: Sequence[str] | None = None
) -> np.ndarray:
    """``(C,)`` per-period spend that splits ``budget`` over the horizon in the proportions
    of the history's total spend per channel: "what we would have done anyway".

    Examples
    --------
    >>> proportional_allocation(np.array([[30.0, 10.0], [30.0, 10.0]]), 800.0, 4)
    array([150.,  50.])
    """
    history = np.asarray(history, dtype=float)
    if channels is not None:
        history = check_spend(history, tuple(channels))
    total = history.sum(axis=0) if history.ndim == 2 else np.asarray([])
    if history.ndim != 2 or total.sum() <= 0:
        raise ValueError(
            "history: a proportional allocation needs (periods, channels) history with some "
            "spend; pass reference=... as per-period spends instead"
        )
    return budget / horizon * total / total.sum()


# --- solving ----------------------------------------------------------------------------------


def _project(z: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> np.ndarray:
    """The point of the box ``[lo, hi]`` with ``sum == total`` nearest to ``z`` (Euclidean):
    ``clip(z + tau)`` with tau found by bisection. The caller checks ``total`` is reachable."""
    hi = np.minimum(hi, total)  # no single share can exceed the total anyway (lo >= 0)
    low, high = float(np.min(lo - z)), float(np.max(hi - z))
    for _ in range(200):
        tau = 0.5 * (low + high)
        if np.clip(z + tau, lo, hi).sum() < total:
            low = tau
        else:
            high = tau
    return np.clip(z + 0.5 * (low + high), lo, hi)


@dataclass
class _Solve:
    x: np.ndarray
    status: str
    success: bool
    iterations: int
    note: str


def _iterations(result: Any) -> int:
    # SciPy leaves ``nit`` out when the bounds pin every variable (nothing to iterate)
    return int(getattr(result, "nit", 0) or 0)


def _solve(
    problem: _Problem,
    lo: np.ndarray,
    hi: np.ndarray,
    fixed: np.ndarray,
    budget: float,
    rate: float | None,
    what: str,
) -> _Solve:
    """Maximize ``problem``'s objective over per-period spend in ``[lo, hi]``.

    Without a target the whole budget is spent (equality). With one, ``rate`` is the
    conversions each currency unit must at least buy on average, the budget is a cap, and
    the plan is the largest feasible one SLSQP finds (``what`` names the target in notes).
    """
    horizon = problem.horizon
    c = len(lo)
    free = ~fixed
    if budget / horizon < MIN_SPEND:  # also what no currency can split (and 0/0 below)
        return _Solve(np.zeros(c), "zero_budget", True, 0, "the budget is 0: nothing to spend")
    if not free.any():
        return _Solve(lo.copy(), "fixed", True, 0, "every channel is fixed: nothing to optimize")
    # Variables are shares of the budget: z = x * horizon / budget, so they are O(1) whatever
    # the currency, which SLSQP's absolute tolerances assume.
    unit = budget / horizon
    zl, zh = lo[free] / unit, hi[free] / unit
    remaining = 1.0 - lo[fixed].sum() / unit
    zh = np.minimum(zh, remaining)
    fixed_share = 1.0 - remaining

    memo: dict[bytes, tuple[float, np.ndarray]] = {}

    def evaluate(z: np.ndarray) -> tuple[float, np.ndarray]:
        key = z.tobytes()
        if key not in memo:  # SLSQP asks for the objective and the constraint at one point
            x = lo.copy()
            x[free] = z * unit
            stat, grad, _ = problem.evaluate(x)
            grad = grad[free] * unit
            if np.isposinf(grad).any():
                # Hill curves with slope < 1 rise infinitely steeply at 0: a big finite slope
                # still says "spend here first" without breaking SLSQP's line search.
                finite = np.abs(grad[np.isfinite(grad)])
                grad = np.where(np.isposinf(grad), 1e6 * max(finite.max(initial=0.0), 1.0), grad)
            memo.clear()
            memo[key] = (stat, grad)
        return memo[key]

    def to_x(z: np.ndarray) -> np.ndarray:
        x = lo.copy()
        x[free] = np.clip(z, zl, zh) * unit
        return x

    # With a target the maximums may allow less than the budget (checked up front otherwise).
    spendable = min(remaining, float(zh.sum()))
    start = _project(np.full(free.sum(), remaining / free.sum()), zl, zh, spendable)
    first = evaluate(start)[0]
    scale = abs(first) if abs(first) > 1e-12 else max(float(np.abs(problem.beta).sum()), 1.0)

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        stat, grad = evaluate(z)
        return -stat / scale, -grad / scale

    spend_all = {
        "type": "eq",
        "fun": lambda z: np.array([z.sum() - spendable]),
        "jac": lambda z: np.ones((1, z.size)),
    }
    full = minimize(
        objective,
        start,
        jac=True,
        method="SLSQP",
        bounds=list(zip(zl, zh, strict=True)),
        constraints=[spend_all],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    z_full = _project(np.asarray(full.x, float), zl, zh, spendable)
    iterations = _iterations(full)
    if not full.success:
        logger.warning("budget plan: SLSQP did not converge: %s", full.message)
    if rate is None:
        status = "optimal" if full.success else "not_converged"
        note = "" if full.success else f"the solver stopped early: {full.message}"
        return _Solve(to_x(z_full), status, bool(full.success), iterations, note)

    def slack(z: np.ndarray) -> float:
        """Conversions beyond what the target asks of the spend, in budget shares."""
        return evaluate(z)[0] / (rate * budget) - z.sum() - fixed_share

    if slack(z_full) >= -_FEASIBLE_RTOL:
        note = f"{what} is met at the full budget"
        if spendable < remaining:
            note = f"{what} is met at the most the maximums allow (less than the budget)"
        return _Solve(to_x(z_full), "optimal", bool(full.success), iterations, note)

    # The target caps the spend. Start SLSQP from a point that meets it: along the rays
    # from the minimum plan to the full-budget optimum and to the best channel alone, the
    # farthest point that still meets the target (CPA worsens with scale on concave curves).
    grad_min = evaluate(zl)[1]
    rays = [z_full - zl]
    best = np.zeros_like(zl)
    best[int(np.argmax(grad_min))] = 1.0
    rays.append(best * (zh - zl).clip(max=remaining))
    feasible = []
    for ray in rays:
        for step in np.geomspace(1.0, 1e-6, 60):
            z = zl + step * ray
            if z.sum() <= remaining + 1e-12 and slack(z) >= 0 and ray.sum() * step > 0:
                feasible.append(z)
                break
    if not feasible:
        minimum = "nothing" if not np.any(lo > 0) else "the minimum spend the bounds require"
        return _Solve(
            lo.copy(),  # the least spend the bounds and fixed channels allow
            "target_unreachable",
            True,
            iterations,
            f"{what} cannot be met by any plan within the bounds: spending {minimum} "
            "(every extra unit of spend costs more per conversion than the target allows)",
        )
    start = max(feasible, key=lambda z: evaluate(z)[0])
    capped = minimize(
        objective,
        start,
        jac=True,
        method="SLSQP",
        bounds=list(zip(zl, zh, strict=True)),
        constraints=[
            {
                "type": "ineq",
                "fun": lambda z: np.array([remaining - z.sum()]),
                "jac": lambda z: -np.ones((1, z.size)),
            },
            {
                "type": "ineq",
                "fun": lambda z: np.array([slack(z)]),
                "jac": lambda z: (evaluate(z)[1] / (rate * budget) - 1.0)[None, :],
            },
        ],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    iterations += _iterations(capped)
    z = np.clip(np.asarray(capped.x, float), zl, zh)
    if z.sum() > remaining:
        z = _project(z, zl, zh, remaining)
    worse = evaluate(z)[0] < evaluate(start)[0] - 1e-9 * abs(evaluate(start)[0])
    if slack(z) < -_FEASIBLE_RTOL or worse:
        # SLSQP wandered off; the start met the target and is a plan we can stand behind.
        z = start
        return _Solve(
            to_x(z),
            "not_converged",
            False,
            iterations,
            f"{what} caps the spend; the solver stopped early ({capped.message}), so this "
            "plan meets the target but may not be the best one that does",
        )
    spent = (z.sum() + fixed_share) * budget
    return _Solve(
        to_x(z),
        "optimal" if capped.success else "not_converged",
        bool(capped.success),
        iterations,
        f"{what} cannot be met at the full budget: spending {spent:,.2f} of {budget:,.2f}, "
        "the most that still meets it",
    )


# --- public API -------------------------------------------------------------------------------


def plan_budget(
    responses: Responses,
    *,
    budget: float,
    horizon: int,
    history: np.ndarray | None = None,
    bounds: Mapping[str, Bound] | None = None,
    relative_bounds: tuple[float, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    target_cpa: float | None = None,
    target_roas: float | None = None,
    value_per_conversion: float = 1.0,
    quantile: float | None = None,
    tail: int | None = None,
    reference: PerPeriod | Literal["history"] | None = None,
) -> BudgetPlan:
    """Allocate ``budget`` over the channels for the next ``horizon`` periods.

    Parameters
    ----------
    responses : the fitted response (posterior mean), or a sequence of posterior draws
        sharing channels, adstock, saturation and ``l_max``.
    budget : total spend over the horizon, in the data's currency.
    horizon : number of future periods (hours, days or weeks: the model's period).
    history : ``(H, C)`` spend of the periods just before the horizon, oldest first: the
        carry-over in flight. Only its last ``l_max - 1`` rows matter for the response;
        ``relative_bounds`` and ``reference="history"`` average all of it.
    bounds : ``{channel: (minimum, maximum)}`` per-period spend; either may be None.
    relative_bounds : ``(low, high)``: each channel's per-period spend between ``low`` and
        ``high`` times its average per-period spend over ``history``. Intersects ``bounds``.
    fixed : ``{channel: spend}`` per period, not optimized (must lie in its ``bounds``; it
        overrides ``relative_bounds``).
    target_cpa : the most a conversion may cost on average. The budget becomes a cap: the
        plan spends less where the full budget would cost more per conversion.
    target_roas : the least ``value_per_conversion * conversions / spend`` may be.
        Excludes ``target_cpa``.
    value_per_conversion : revenue per unit of the target, for ROAS (1 when the model's
        target is revenue already).
    quantile : maximize this quantile of the draws' total incremental conversions (e.g. 0.1
        for a plan that holds up in a bad case) instead of their mean; also what the targets
        are checked against.
    tail : periods after the horizon in which the plan's carry-over still counts; default
        ``l_max - 1`` (all of it).
    reference : an allocation to compare with: per-period spends (array or mapping), or
        ``"history"`` for the history's split scaled to the budget.

    Returns
    -------
    BudgetPlan
        The plan, its expected incremental conversions, marginal ROI per channel, CPA/ROAS,
        the reference's figures and the solver's report.

    Raises
    ------
    ValueError
        An argument is out of range or the constraints cannot all hold; the message names
        the argument (and channel) and what to change.
    """
    started = time.perf_counter()
    draws = as_draws(responses)
    channels = draws[0].channels
    budget = float(budget)
    if not math.isfinite(budget) or budget < 0:
        raise ValueError(f"budget: {budget} must be a finite total spend >= 0")
    horizon = _check_int(horizon, "horizon", 1)
    tail = draws[0].l_max - 1 if tail is None else _check_int(tail, "tail", 0)
    quantile = _check_quantile(quantile)
    if target_cpa is not None and target_roas is not None:
        raise ValueError(
            "target_cpa and target_roas: give one or the other (target_roas is "
            "value_per_conversion / target_cpa)"
        )
    value_per_conversion = float(value_per_conversion)
    if not (math.isfinite(value_per_conversion) and value_per_conversion > 0):
        raise ValueError(f"value_per_conversion: {value_per_conversion} must be > 0")
    rate, what = None, ""
    if target_cpa is not None:
        if not (math.isfinite(float(target_cpa)) and target_cpa > 0):
            raise ValueError(f"target_cpa: {target_cpa} must be a cost per conversion > 0")
        rate, what = 1.0 / float(target_cpa), f"the target CPA of {float(target_cpa):g}"
    if target_roas is not None:
        if not (math.isfinite(float(target_roas)) and target_roas > 0):
            raise ValueError(f"target_roas: {target_roas} must be a return on ad spend > 0")
        rate = float(target_roas) / value_per_conversion
        what = f"the target ROAS of {float(target_roas):g}"
    history_arr = check_spend(history, channels)
    lo, hi, mask = _resolve_bounds(channels, bounds, relative_bounds, fixed, history_arr)
    least, most = lo.sum() * horizon, hi.sum() * horizon
    if least > budget * (1 + 1e-9):
        raise ValueError(
            f"budget: the channels' minimum spends (bounds, relative_bounds and fixed) need "
            f"{least:,.2f} over the horizon, more than the budget of {budget:,.2f}; lower the "
            "minimums or raise the budget"
        )
    if rate is None and most < budget * (1 - 1e-9):
        raise ValueError(
            f"budget: the channels' maximum spends (bounds, relative_bounds and fixed) allow "
            f"only {most:,.2f} over the horizon, less than the budget of {budget:,.2f}; raise "
            "the maximums, free a fixed channel or lower the budget"
        )
    if reference == "history":
        reference_x = proportional_allocation(history_arr, budget, horizon, channels)
    elif isinstance(reference, str):
        raise ValueError(f"reference: {reference!r}; use 'history' or per-period spends")
    elif reference is not None:
        reference_x = _per_period(reference, channels, "reference")
    else:
        reference_x = None

    problem = _build_problem(draws, horizon, history_arr, tail, quantile)
    solved = _solve(problem, lo, hi, mask, budget, rate, what)
    plan = _allocation(problem, solved.x, value_per_conversion)
    ref = None if reference_x is None else _allocation(problem, reference_x, value_per_conversion)
    return BudgetPlan(
        **{f: getattr(plan, f) for f in Allocation.__dataclass_fields__},
        budget=budget,
        horizon=horizon,
        tail=tail,
        quantile=quantile,
        draws=len(draws),
        value_per_conversion=value_per_conversion,
        reference=ref,
        status=solved.status,
        success=solved.success,
        iterations=solved.iterations,
        seconds=time.perf_counter() - started,
        note=solved.note,
    )


def evaluate_allocation(
    responses: Responses,
    per_period: PerPeriod,
    *,
    horizon: int,
    history: np.ndarray | None = None,
    tail: int | None = None,
    quantile: float | None = None,
    value_per_conversion: float = 1.0,
) -> Allocation:
    """The figures of :class:`Allocation` for a given per-period spend (e.g. the current
    plan), on the same footing as :func:`plan_budget`'s."""
    draws = as_draws(responses)
    channels = draws[0].channels
    horizon = _check_int(horizon, "horizon", 1)
    tail = draws[0].l_max - 1 if tail is None else _check_int(tail, "tail", 0)
    problem = _build_problem(
        draws, horizon, check_spend(history, channels), tail, _check_quantile(quantile)
    )
    x = _per_period(per_period, channels, "per_period")
    return _allocation(problem, x, value_per_conversion)


def response_curves(
    responses: Responses,
    *,
    horizon: int,
    grid: np.ndarray | Mapping[str, np.ndarray],
    history: np.ndarray | None = None,
    at: PerPeriod | None = None,
    tail: int | None = None,
    quantile: float | None = None,
) -> dict[str, Any]:
    """Each channel's incremental effect and marginal ROI across a grid of per-period spends.

    Parameters
    ----------
    responses : as for :func:`plan_budget`.
    horizon : periods the spend is held for.
    grid : per-period spends to evaluate, one array for every channel or one per channel.
    history : ``(H, C)`` spend before the horizon (carry-over in flight).
    at : the other channels' per-period spend while one channel moves along its grid
        (default 0). Channels add up in the model, so this matters only with ``quantile``.
    tail, quantile : as for :func:`plan_budget`.

    Returns
    -------
    dict
        ``{"horizon", "tail", "quantile", "curves": {channel: {"spend", "total_spend",
        "effect", "marginal_roi"}}}`` (lists, JSON-ready): ``effect`` is the objective with
        the channel at the grid's spend minus with it at 0, ``marginal_roi`` its derivative
        per currency unit of the channel's total spend.
    """
    draws = as_draws(responses)
    channels = draws[0].channels
    horizon = _check_int(horizon, "horizon", 1)
    tail = draws[0].l_max - 1 if tail is None else _check_int(tail, "tail", 0)
    problem = _build_problem(
        draws, horizon, check_spend(history, channels), tail, _check_quantile(quantile)
    )
    x_at = np.zeros(len(channels)) if at is None else _per_period(at, channels, "at")
    if isinstance(grid, Mapping):
        _known(grid, channels, "grid")
        missing = [c for c in channels if c not in grid]
        if missing:
            raise ValueError(f"grid: no spends for channel {missing[0]!r}; give every channel")
        grids = {c: np.asarray(grid[c], float) for c in channels}
    else:
        grids = dict.fromkeys(channels, np.asarray(grid, float))
    curves = {}
    for i, name in enumerate(channels):
        values = grids[name]
        if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"grid[{name!r}]: expected a 1-D array of spends >= 0")
        x = x_at.copy()
        x[i] = 0.0
        zero = problem.evaluate(x)[0]
        effect, marginal = [], []
        for value in values:
            x[i] = value
            stat, grad, _ = problem.evaluate(x)
            effect.append(stat - zero)
            marginal.append(grad[i] / horizon)
        curves[name] = {
            "spend": values.tolist(),
            "total_spend": (values * horizon).tolist(),
            "effect": [float(v) for v in effect],
            "marginal_roi": [_number(v) for v in marginal],
        }
    return {"horizon": horizon, "tail": tail, "quantile": problem.quantile, "curves": curves}
