"""Replay a past period with the optimizer's allocation and compare it with what was spent.

From period ``start`` on, each block of ``horizon`` periods gets the total that was actually
spent in it, split by :func:`~tailor.budget.optimize.plan_budget`. The carry-over in flight
at each block is the replayed policy's own: the actual spend before ``start``, the optimized
spend after it. The two spend series (actual and optimized) are then scored by the total
channel effect over the replay window plus the ``l_max - 1`` periods after it, under the
model (what the optimizer believed) and, for simulated data, under the true response (what
would really have happened). An uplift under the model alone is self-congratulation; the
truth is the test.

Credibility needs bounds: a model that is a little too optimistic about one channel would
move everything there, which no planner would do on one model's word. By default each
channel's spend in a block may move between 0.5 and 1.5 times its share of the actual spend
over the ``window`` periods before the block, times the block's budget; a channel that did not
run in that window stays off.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailor.budget.optimize import Bound, Responses, as_draws, check_spend, plan_budget
from tailor.budget.transforms import ChannelResponse

__all__ = ["BacktestResult", "backtest", "total_effect"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestResult:
    """The replay: spends and the total channel effect of each policy.

    Attributes
    ----------
    channels : channel names, the column order of the spend arrays.
    start, horizon : first replayed period and the block length.
    actual : ``(P, C)`` what was spent in the replayed periods.
    allocations : ``(P, C)`` what the optimizer would have spent (each block's total equals
        the actual one).
    predicted_actual, predicted_optimized : total channel effect over the window and tail
        under the model (the mean over draws).
    predicted_uplift : ``predicted_optimized / predicted_actual - 1``.
    true_actual, true_optimized, true_uplift : the same under ``truth``; None without it.
    blocks : number of plans solved; ``not_converged`` how many of them SLSQP left early.
    seconds : wall time of the whole replay.
    """

    channels: tuple[str, ...]
    start: int
    horizon: int
    actual: np.ndarray
    allocations: np.ndarray
    predicted_actual: float
    predicted_optimized: float
    predicted_uplift: float | None
    true_actual: float | None
    true_optimized: float | None
    true_uplift: float | None
    blocks: int
    not_converged: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "start": self.start,
            "horizon": self.horizon,
            "actual": self.actual.tolist(),
            "allocations": self.allocations.tolist(),
            "predicted_actual": float(self.predicted_actual),
            "predicted_optimized": float(self.predicted_optimized),
            "predicted_uplift": _number(self.predicted_uplift),
            "true_actual": _number(self.true_actual),
            "true_optimized": _number(self.true_optimized),
            "true_uplift": _number(self.true_uplift),
            "blocks": self.blocks,
            "not_converged": self.not_converged,
            "seconds": float(self.seconds),
        }


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _uplift(optimized: float, actual: float) -> float | None:
    return optimized / actual - 1.0 if actual > 0 else None


def total_effect(
    responses: Responses, spend: np.ndarray, *, start: int = 0, tail: int | None = None
) -> float:
    """Total channel effect of ``spend`` ``(T, C)`` from period ``start`` to ``T + tail``
    (spend after ``T`` is 0), the mean over draws. Periods before ``start`` only carry
    over into the window."""
    draws = as_draws(responses)
    tail = draws[0].l_max - 1 if tail is None else tail
    padded = np.concatenate([spend, np.zeros((tail, spend.shape[1]))])
    return float(np.mean([d.contributions(padded)[start:].sum() for d in draws]))


def _share_bounds(
    actual: np.ndarray,
    begin: int,
    budget: float,
    length: int,
    window: int,
    relative: tuple[float, float],
    channels: tuple[str, ...],
) -> dict[str, Bound]:
    recent = actual[max(begin - window, 0) : begin].sum(axis=0)
    if recent.sum() <= 0:
        return {}  # nothing was spent recently: no split to stay near
    share = recent / recent.sum()
    low, high = relative
    per_period = budget / length
    return {
        c: (low * s * per_period, high * s * per_period)
        for c, s in zip(channels, share, strict=True)
    }


def _intersect(first: Mapping[str, Bound], second: Mapping[str, Bound] | None) -> dict[str, Bound]:
    out = dict(first)
    for name, (lo2, hi2) in (second or {}).items():
        lo1, hi1 = out.get(name, (None, None))
        lo = max(v for v in (lo1, lo2, 0.0) if v is not None)
        his = [v for v in (hi1, hi2) if v is not None]
        hi = min(his) if his else None
        if hi is not None and lo > hi:
            # The explicit bounds win: they are what the planner asked for.
            lo, hi = (lo2 or 0.0), hi2
        out[name] = (lo, hi)
    return out


def backtest(
    response_model: Responses,
    spend: np.ndarray,
    *,
    start: int,
    truth: ChannelResponse | None = None,
    horizon: int = 1,
    bounds: Mapping[str, Bound] | None = None,
    relative_bounds: tuple[float, float] | None = (0.5, 1.5),
    window: int = 8,
    quantile: float | None = None,
) -> BacktestResult:
    """Replay ``spend[start:]`` with each block's total allocated by the optimizer.

    Parameters
    ----------
    response_model : the fitted response (mean) or posterior draws, as for ``plan_budget``.
    spend : ``(T, C)`` actual spend per period and channel, oldest first.
    start : first period to replay (the periods before it are the history).
    truth : the true response, where known (simulated data), to score both policies.
    horizon : periods per block; each block's spend is constant per channel (the last block
        may be shorter).
    bounds : ``{channel: (minimum, maximum)}`` per-period spend, passed to every plan. Where
        it contradicts the share bounds below, it wins.
    relative_bounds : ``(low, high)``: each channel's spend in a block between ``low`` and
        ``high`` times its share of the actual spend over the ``window`` periods before the
        block, times the block's budget. None lets the optimizer move everything anywhere.
    window : periods the shares of ``relative_bounds`` are taken over.
    quantile : as for ``plan_budget``.

    Returns
    -------
    BacktestResult
    """
    started = time.perf_counter()
    draws = as_draws(response_model)
    channels = draws[0].channels
    spend = check_spend(spend, channels, "spend")
    periods = spend.shape[0]
    if isinstance(start, bool) or not isinstance(start, int | np.integer):
        raise ValueError(f"start: expected a period index, got {start!r}")
    if not 0 < start < periods:
        raise ValueError(
            f"start: {start} must leave history before it and periods to replay after it "
            f"(1 <= start < {periods})"
        )
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon: must be a whole number of periods >= 1, got {horizon!r}")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window: must be a whole number of periods >= 1, got {window!r}")
    if relative_bounds is not None:
        low, high = (float(v) for v in relative_bounds)
        if not 0.0 <= low <= 1.0 <= high:
            raise ValueError(
                f"relative_bounds: ({low}, {high}) must satisfy 0 <= low <= 1 <= high, so the "
                "actual split stays allowed"
            )
    if truth is not None and truth.channels != channels:
        raise ValueError(
            f"truth.channels: {list(truth.channels)} differ from the model's {list(channels)}"
        )

    replayed = spend.copy()
    blocks = not_converged = 0
    for begin in range(start, periods, horizon):
        length = min(horizon, periods - begin)
        budget = float(spend[begin : begin + length].sum())
        block_bounds: dict[str, Bound] = {}
        if relative_bounds is not None:
            block_bounds = _share_bounds(
                spend, begin, budget, length, window, relative_bounds, channels
            )
        block_bounds = _intersect(block_bounds, bounds)
        plan = plan_budget(
            draws,
            budget=budget,
            horizon=length,
            history=replayed[:begin],
            bounds=block_bounds or None,
            quantile=quantile,
        )
        replayed[begin : begin + length] = plan.per_period
        blocks += 1
        not_converged += plan.status == "not_converged"
    if not_converged:
        logger.warning("backtest: %d of %d plans did not converge", not_converged, blocks)

    tail = max(d.l_max for d in [*draws, *([truth] if truth else [])]) - 1
    predicted_actual = total_effect(draws, spend, start=start, tail=tail)
    predicted_optimized = total_effect(draws, replayed, start=start, tail=tail)
    true_actual = true_optimized = true_uplift = None
    if truth is not None:
        true_actual = total_effect(truth, spend, start=start, tail=tail)
        true_optimized = total_effect(truth, replayed, start=start, tail=tail)
        true_uplift = _uplift(true_optimized, true_actual)
    return BacktestResult(
        channels=channels,
        start=int(start),
        horizon=int(horizon),
        actual=spend[start:].copy(),
        allocations=replayed[start:].copy(),
        predicted_actual=predicted_actual,
        predicted_optimized=predicted_optimized,
        predicted_uplift=_uplift(predicted_optimized, predicted_actual),
        true_actual=true_actual,
        true_optimized=true_optimized,
        true_uplift=true_uplift,
        blocks=blocks,
        not_converged=not_converged,
        seconds=time.perf_counter() - started,
    )
