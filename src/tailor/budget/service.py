"""The budget engine's service layer: what ``tailor budget ...``, ``POST /v1/budget/plan`` and
the worker's ``replan-budget`` job share.

Load the data (ad events from the store, or a CSV), fit a media-mix model and save it to a
folder atomically, plan a budget from a saved model with validated options, back-test, and
write the report. Every mistake a user can make raises ``ValueError`` (or
:class:`~tailor.budget.data.MediaDataError`) whose message names the field and what to do.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tailor.budget.data import TARGETS, MediaData, MediaDataError, from_events, read_csv
from tailor.budget.lift import LiftTests
from tailor.budget.model import MediaMixModel, Method, MMMConfig
from tailor.budget.optimize import check_spend
from tailor.budget.transforms import ChannelResponse

log = logging.getLogger(__name__)

MAX_HORIZON = 366
MAX_BUDGET = 1e12
"""A trillion in the data's currency over one horizon: more is a typo, and the optimizer's
scaling would suffer."""
"""A plan covers at most a year of days (or 366 weeks)."""
PLAN_DRAWS = 100
"""Posterior draws a plan is judged on: the expected effect over the posterior (and its
quantiles), not the effect at the mean parameters; 100 keep an answer well under a second."""
DEFAULT_HORIZON = 4
BACKTEST_PERIODS = 13
"""The report's back-test replays this many of the last periods (a quarter of weeks)."""
HEADER = "model.json"


@dataclass(frozen=True)
class CsvSource:
    """Where the CLI's ``--csv`` data comes from (see :func:`tailor.budget.data.read_csv`)."""

    path: Path
    date_col: str
    target_col: str
    spend_cols: tuple[str, ...]
    control_cols: tuple[str, ...] = ()
    target_scale: float = 1.0
    frequency: str | None = None


def load_data(
    *,
    store: Any = None,
    csv: CsvSource | None = None,
    target: str = "conversions",
    frequency: str = "W",
    control_keys: Sequence[str] = (),
) -> MediaData:
    """The media data from a CSV (``csv``) or from the ``ad_spend`` and ``ad_result`` events
    of ``store``; exactly one of the two."""
    if (store is None) == (csv is None):
        raise ValueError("data: give a store or a CSV file, one of the two")
    if csv is not None:
        if not math.isfinite(csv.target_scale) or csv.target_scale <= 0:
            raise MediaDataError(f"target scale: {csv.target_scale} must be a number > 0")
        return read_csv(
            csv.path,
            date_col=csv.date_col,
            target_col=csv.target_col,
            spend_cols=csv.spend_cols,
            control_cols=csv.control_cols,
            frequency=csv.frequency,  # type: ignore[arg-type]
            target_scale=csv.target_scale,
        )
    return from_events(store, target=target, frequency=frequency, control_keys=control_keys)


def load_model(folder: str | Path) -> MediaMixModel:
    """The model saved in ``folder``, or a ``ValueError`` that says how to make one."""
    folder = Path(folder)
    if not (folder / HEADER).is_file():
        raise ValueError(
            f"model: {folder} holds no budget model; fit one with "
            f"`tailor budget fit --model {folder}`"
        )
    return MediaMixModel.load(folder)


@dataclass(frozen=True)
class Fitted:
    """A fit and where it went: ``note`` says why a warm start was not used."""

    model: MediaMixModel
    folder: Path
    warm_started: bool
    note: str = ""


def fit_model(
    data: MediaData,
    folder: str | Path,
    *,
    method: Method = "map",
    warm_start: bool = False,
    config: MMMConfig | None = None,
    lift_tests: LiftTests | None = None,
) -> Fitted:
    """Fit a media-mix model on ``data`` and save it to ``folder``, replacing what was there
    only once the new one is written in full.

    ``warm_start`` (MAP only) starts from the mode of the model already in ``folder``, with
    its configuration; when there is none, or it has other channels, the fit starts from
    scratch and ``note`` says why. ``lift_tests`` calibrate the curves
    (:mod:`tailor.budget.lift`); without them a warm start keeps the earlier fit's tests.
    """
    if method not in ("nuts", "map"):
        raise ValueError(f"method: {method!r}; use 'map' (seconds) or 'nuts' (full posterior)")
    if warm_start and method != "map":
        raise ValueError("warm start: applies to --method map only, not to nuts")
    folder = Path(folder)
    previous, note = None, ""
    if warm_start:
        previous, note = _previous(folder, data)
    if config is None:
        config = previous.config if previous is not None else MMMConfig()
    if lift_tests is None and previous is not None:
        lift_tests = previous.lift_tests_
    model = MediaMixModel(config).fit(
        data, method=method, warm_start=previous, lift_tests=lift_tests
    )
    save_atomically(model, folder)
    return Fitted(model, folder, previous is not None, note)


def _previous(folder: Path, data: MediaData) -> tuple[MediaMixModel | None, str]:
    if not (folder / HEADER).is_file():
        return None, f"no model in {folder} yet to warm-start from: fitted from scratch"
    try:
        previous = MediaMixModel.load(folder)
    except ValueError as exc:
        return None, f"the model in {folder} cannot be read ({exc}): fitted from scratch"
    if previous.channels_ != data.channels or previous.control_names_ != data.control_names:
        return None, (
            f"the model in {folder} has channels {list(previous.channels_)}, the data "
            f"{list(data.channels)}: fitted from scratch"
        )
    return previous, ""


def save_atomically(model: MediaMixModel, folder: str | Path) -> Path:
    """Save into a temporary folder beside ``folder``, then swap it in: a reader (the server,
    a crash) sees the old model or the new one, never half of one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save(temporary)
        if folder.exists():
            if not (folder / HEADER).is_file() and any(folder.iterdir()):
                raise ValueError(
                    f"model: {folder} exists and is not a budget model folder; choose an empty "
                    "or new folder"
                )
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            temporary.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temporary.rename(folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


# --- plans -------------------------------------------------------------------------------------


def _spend_history(model: MediaMixModel, recent_spend: Any) -> np.ndarray:
    """The carry-over in flight: the model's last periods, then ``recent_spend`` (spend since
    the model's data ended: ``(H, C)`` or ``{channel: [spend, ...]}``, oldest first)."""
    history = np.asarray(model.history_, float)
    if recent_spend is None:
        return history
    channels = model.channels_
    if isinstance(recent_spend, Mapping):
        unknown = [k for k in recent_spend if k not in channels]
        missing = [c for c in channels if c not in recent_spend]
        if unknown or missing:
            raise ValueError(
                f"recent_spend: give every channel of the model ({', '.join(channels)}); "
                + (f"unknown {unknown[0]!r}" if unknown else f"missing {missing[0]!r}")
            )
        lengths = {len(recent_spend[c]) for c in channels}
        if len(lengths) != 1:
            raise ValueError("recent_spend: every channel needs the same number of periods")
        recent_spend = np.array([list(recent_spend[c]) for c in channels], float).T
    return np.concatenate([history, check_spend(recent_spend, channels, "recent_spend")])


def default_budget(model: MediaMixModel, horizon: int) -> float:
    """The recent average spend per period (all channels) times ``horizon``: carry on at the
    current level, split better."""
    return float(np.asarray(model.history_, float).mean(axis=0).sum() * horizon)


def make_plan(
    model: MediaMixModel,
    *,
    budget: float,
    horizon: int,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    relative_bounds: tuple[float, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    target_cpa: float | None = None,
    target_roas: float | None = None,
    value_per_conversion: float = 1.0,
    quantile: float | None = None,
    recent_spend: Any = None,
    draws: int = PLAN_DRAWS,
) -> dict[str, Any]:
    """A budget plan for the ``horizon`` periods after the model's data, as JSON.

    The options are :func:`tailor.budget.optimize.plan_budget`'s (per-period ``bounds`` and
    ``fixed`` spends per channel; ``relative_bounds`` times the recent average). The carry-over
    in flight is the model's last periods of spend (:attr:`MediaMixModel.history_`) followed by
    ``recent_spend`` where given. The answer compares the plan with the recent split of spend
    scaled to the budget (``reference``, ``uplift``).
    """
    from tailor.budget.optimize import plan_budget

    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not (math.isfinite(budget) and 0 < budget <= MAX_BUDGET)
    ):
        raise ValueError(f"budget: {budget!r} must be a total spend > 0 and <= {MAX_BUDGET:g}")
    if (
        isinstance(horizon, bool)
        or not isinstance(horizon, int)
        or not (1 <= horizon <= MAX_HORIZON)
    ):
        raise ValueError(
            f"horizon: {horizon!r} must be a whole number of periods, 1 to {MAX_HORIZON}"
        )
    history = _spend_history(model, recent_spend)
    responses = model.response_draws(draws)
    plan = plan_budget(
        responses,
        budget=float(budget),
        horizon=horizon,
        history=history,
        bounds=bounds,
        relative_bounds=relative_bounds,
        fixed=fixed,
        target_cpa=target_cpa,
        target_roas=target_roas,
        value_per_conversion=value_per_conversion,
        quantile=quantile,
        reference="history" if history.sum() > 0 else None,
    )
    step = 7 if model.frequency_ == "W" else 1
    recent_periods = 0 if recent_spend is None else len(history) - len(model.history_)
    first = model.last_date_ + np.timedelta64(step * (1 + recent_periods), "D")
    return {
        **plan.to_json(),
        "first_period": str(first),
        "frequency": model.frequency_,
        "target": model.target_name_,
    }


# --- back-tests --------------------------------------------------------------------------------


def aligned_truth(truth: ChannelResponse, channels: Sequence[str]) -> ChannelResponse:
    """``truth`` with its channels in ``channels``' order (the event log sorts them by name)."""
    if set(truth.channels) != set(channels):
        raise ValueError(
            f"truth: channels {list(truth.channels)} differ from the model's {list(channels)}"
        )
    order = [truth.channels.index(c) for c in channels]
    values = {
        name: None if getattr(truth, name) is None else np.asarray(getattr(truth, name))[order]
        for name in ("alpha", "lam", "beta", "theta", "slope")
    }
    return replace(truth, channels=tuple(channels), **values)


def run_backtest(
    model: MediaMixModel,
    data: MediaData,
    *,
    start: int | None = None,
    last: int | None = None,
    truth: ChannelResponse | None = None,
) -> dict[str, Any]:
    """Replay the periods from ``start`` (or the ``last`` ones) of ``data`` with the
    optimizer's split of each period's actual total (see :mod:`tailor.budget.backtest`), judged
    under the model's mean response and, where known, the ``truth``."""
    from tailor.budget.backtest import backtest

    if (start is None) == (last is None):
        raise ValueError("start and last: give one of the two (--start N or --last N)")
    if data.channels != model.channels_:
        raise ValueError(
            f"data: channels {list(data.channels)} differ from the model's "
            f"{list(model.channels_)}; back-test on the data the model was fitted on"
        )
    if last is not None:
        if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last < data.periods:
            raise ValueError(
                f"last: {last!r} periods; replay 1 to {data.periods - 1} of the {data.periods}"
            )
        start = data.periods - last
    if truth is not None:
        truth = aligned_truth(truth, model.channels_)
    result = backtest(model.response("mean"), data.spend, start=start, truth=truth)
    return {
        **result.to_json(),
        "dates": [str(d) for d in data.dates[result.start :]],
    }


# --- the server's copy --------------------------------------------------------------------------


class BudgetService:
    """A saved budget model the API plans with, reloaded when the folder is rewritten (by
    ``tailor budget fit`` or the worker's ``replan-budget``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._seen = _stamp(self.folder)
        # One reference: a request sees the old model or the new one, never half a reload.
        self.model = load_model(self.folder)

    def reload_if_changed(self) -> bool:
        stamp = _stamp(self.folder)
        if stamp == self._seen:
            return False
        self._seen = stamp  # a broken model is tried once, not on every poll
        self.model = load_model(self.folder)
        return True

    def plan(self, **options: Any) -> dict[str, Any]:
        return make_plan(self.model, **options)

    def describe(self) -> dict[str, Any]:
        return describe(self.model)


def _stamp(folder: Path) -> tuple[int, int] | None:
    try:
        header = os.stat(folder / HEADER)
    except OSError:
        return None
    return header.st_mtime_ns, header.st_ino


def describe(model: MediaMixModel) -> dict[str, Any]:
    """What the model is: channels, data, fit, posterior summary and convergence."""
    return {
        "channels": list(model.channels_),
        "controls": list(model.control_names_),
        "target": model.target_name_,
        "frequency": model.frequency_,
        "last_date": str(model.last_date_),
        "method": model.method_,
        "fit_seconds": round(float(model.fit_seconds_), 3),
        "config": {k: getattr(model.config, k) for k in model.config.__dataclass_fields__},
        "summary": model.summary(),
        "diagnostics": model.diagnostics_,
        "problems": model.problems(),
        "lift_tests": model.lift_check(),
    }


def events_target(model: MediaMixModel | None) -> str:
    """The ``ad_result`` field a re-fit on the events reads: the model's, if it is one."""
    if model is not None and model.target_name_ in TARGETS:
        return model.target_name_
    return "conversions"


# --- the report --------------------------------------------------------------------------------


def write_report(
    model: MediaMixModel,
    data: MediaData,
    path: str | Path,
    *,
    plan: dict[str, Any] | None = None,
    backtest_last: int | None = BACKTEST_PERIODS,
    truth: ChannelResponse | None = None,
) -> tuple[Path, Path]:
    """The HTML report and its JSON twin (:mod:`tailor.budget.report`) of ``model`` on
    ``data``. Without ``plan``, the plan shown keeps the recent spend per period for
    :data:`DEFAULT_HORIZON` periods, split by the optimizer; the back-test replays the last
    ``backtest_last`` periods (None: none)."""
    from tailor.budget.report import budget_figures, write_budget_report

    path = Path(path)
    if path.suffix != ".html":
        raise ValueError(f"report: {path} must end in .html (its .json twin goes beside it)")
    if plan is None and float(np.asarray(model.history_).sum()) > 0:
        plan = make_plan(
            model, budget=default_budget(model, DEFAULT_HORIZON), horizon=DEFAULT_HORIZON
        )
    test = None
    if backtest_last is not None:
        last = min(backtest_last, data.periods // 4)
        test = run_backtest(model, data, last=last, truth=truth) if last >= 1 else None
    figures = budget_figures(model, data, plan=plan, backtest=test)
    return write_budget_report(figures, path)
