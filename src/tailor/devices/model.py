"""One home's learned model: occupancy, schedule, thermal rates and the decisions they make.

:class:`HomeModel` is the engine's estimator. ``fit`` takes the home's clean grid (from
:func:`tailor.devices.quality.clean`) and its manual adjustments and learns

- when the household is home (:mod:`~tailor.devices.occupancy`, labelled from motion),
- what it wants when it is (:mod:`~tailor.devices.schedule`, from repeated adjustments),
- how fast the home heats and cools (:mod:`~tailor.devices.thermal`, for pre-heating),
- whether the heating or a sensor is degrading (:mod:`~tailor.devices.maintenance`),

and packs the first three into :class:`~tailor.devices.policy.DecisionParams`, the small
table-and-weights form that the server's :func:`~tailor.devices.policy.decide` and the
device's ONNX graph both run. With too little data each part falls back to a documented
default and says so in :meth:`HomeModel.insights`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailor.devices.features import DEFAULT_SLOT_MINUTES, slots_per_week
from tailor.devices.maintenance import maintenance_report
from tailor.devices.occupancy import OccupancyModel, activity_profile, home_labels
from tailor.devices.policy import (
    OCCUPANCY_FEATURE_NAMES,
    DecisionParams,
    decide,
    occupancy_features,
    slots_for,
)
from tailor.devices.schedule import ScheduleRule, SetpointSchedule, default_program, describe_rule
from tailor.devices.thermal import ThermalModel

__all__ = ["FEATURES", "MODES", "HomeModel", "HomeSettings"]

logger = logging.getLogger(__name__)

FORMAT = "tailor.devices.home"
FORMAT_VERSION = 1
FEATURES = ("schedule", "away", "preheat")
"""Personalization levels the household switches on and off one by one: the learned
schedule, the setback while away, and pre-heating before they come back."""
MODES = ("auto", "suggest", "off")
COMFORT_BAND_C = 1.0
"""How far from the wanted temperature a household is still comfortable: the discomfort
the benchmark counts is what lies beyond it."""


@dataclass
class HomeSettings:
    """What the household decided, not what the model learned.

    ``lower_c``/``upper_c`` are the comfort bounds no decision may leave; ``away_c`` is the
    setback while the home is empty; ``tolerance_c`` is how far from the wanted temperature
    they are still comfortable (pre-heating aims within half of it of the comfort setpoint,
    and before bedtime or leaving the heating stops early enough to drift at most this much);
    ``modes`` maps each of
    :data:`FEATURES` to ``auto``
    (applied), ``suggest`` (shown, applied only when accepted) or ``off``.
    """

    lower_c: float = 15.0
    upper_c: float = 24.0
    away_c: float = 16.0
    tolerance_c: float = COMFORT_BAND_C
    modes: dict[str, str] = field(default_factory=lambda: dict.fromkeys(FEATURES, "auto"))

    def __post_init__(self) -> None:
        for name in ("lower_c", "upper_c", "away_c"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name}: a finite temperature in °C is required, got {value!r}")
            if not 5.0 <= value <= 35.0:
                raise ValueError(f"{name}: {value} °C is outside what a thermostat holds (5-35)")
        if not 0.0 <= self.tolerance_c <= 3.0:
            raise ValueError(f"tolerance_c: {self.tolerance_c} °C; use 0 to 3")
        if self.lower_c >= self.upper_c:
            raise ValueError(f"lower_c ({self.lower_c}) must be below upper_c ({self.upper_c})")
        unknown = set(self.modes) - set(FEATURES)
        if unknown:
            raise ValueError(f"modes: unknown feature(s) {sorted(unknown)}; use {FEATURES}")
        for feature, mode in self.modes.items():
            if mode not in MODES:
                raise ValueError(f"modes.{feature}: {mode!r}; use one of {MODES}")
        self.modes = {**dict.fromkeys(FEATURES, "auto"), **self.modes}

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower_c": self.lower_c,
            "upper_c": self.upper_c,
            "away_c": self.away_c,
            "tolerance_c": self.tolerance_c,
            "modes": dict(self.modes),
        }


class HomeModel:
    """Learn one home's habits and turn them into decisions.

    Parameters
    ----------
    slot_minutes : int
        Grid and schedule slot; the grid passed to ``fit`` must step by it.
    timezone : str
        The home's IANA time zone.
    settings : HomeSettings, optional
        The household's bounds, setback and modes.
    threshold : float
        Occupancy probability at or above which the home counts as occupied.
    min_days, min_share : int, float
        How often an adjustment must repeat to become a habit (see SetpointSchedule).

    Attributes
    ----------
    params_ : DecisionParams
    schedule_ : SetpointSchedule
    occupancy_ : OccupancyModel or None
        None when there was no motion data or too little to learn from.
    thermal_ : ThermalModel
    home_profile_ : ndarray of shape (slots_per_week,)
        Share of the learning window's slots the household was home, per slot of the week.
    fallbacks_ : list of str
        What fell back to a default, and why.
    """

    def __init__(
        self,
        *,
        slot_minutes: int = DEFAULT_SLOT_MINUTES,
        timezone: str = "UTC",
        settings: HomeSettings | None = None,
        threshold: float = 0.5,
        min_days: int = 2,
        min_share: float = 0.25,
    ) -> None:
        self.slot_minutes = slot_minutes
        self.timezone = timezone
        self.settings = settings
        self.threshold = threshold
        self.min_days = min_days
        self.min_share = min_share

    def fit(
        self,
        grid: pd.DataFrame,
        adjustments: pd.DataFrame,
        *,
        program: np.ndarray | None = None,
        home_id: str = "",
    ) -> HomeModel:
        """Learn from ``grid`` (a clean Grid frame) and ``adjustments`` (manual changes)."""
        settings = self.settings or HomeSettings()
        n_slots = slots_per_week(self.slot_minutes)
        index = _check_grid(grid, self.slot_minutes)
        start, end = index[0], index[-1] + pd.Timedelta(minutes=self.slot_minutes)
        self.fallbacks_: list[str] = []
        motion = grid["motion"] if "motion" in grid else pd.Series(np.nan, index=index)

        labels = home_labels(motion, timezone=self.timezone)
        known = motion.notna().to_numpy()
        self.home_profile_ = _profile(labels, known, index, self.slot_minutes, self.timezone)
        features = occupancy_features(
            motion, timezone=self.timezone, slot_minutes=self.slot_minutes
        )
        self.occupancy_ = None
        try:
            self.occupancy_ = OccupancyModel(threshold=self.threshold).fit(
                features[known], labels[known]
            )
            coef, intercept = self.occupancy_.coef_, self.occupancy_.intercept_
        except ValueError as exc:
            self.fallbacks_.append(f"occupancy: {exc}; the home counts as always occupied")
            coef = np.zeros(len(OCCUPANCY_FEATURE_NAMES))
            intercept = 4.0  # sigmoid(4) = 0.98: occupied, so the schedule alone decides

        activity = activity_profile(motion, slot_minutes=self.slot_minutes, timezone=self.timezone)
        base = np.asarray(program, dtype=float) if program is not None else None
        self._program = base
        if base is None:
            self.fallbacks_.append("program: none given; the default 20/17 °C day/night is used")
        self.schedule_ = SetpointSchedule(
            slot_minutes=self.slot_minutes, min_days=self.min_days, min_share=self.min_share
        ).fit(
            adjustments,
            start=start,
            end=end,
            program=base,
            activity=None if np.isnan(activity).all() else np.nan_to_num(activity),
            timezone=self.timezone,
        )
        if not self.schedule_.rules_:
            self.fallbacks_.append("schedule: no repeated adjustment yet; the program stands")
        try:
            self.thermal_ = ThermalModel(min_rows=min(192, max(len(index) // 4, 8))).fit(grid)
        except (ValueError, KeyError) as exc:
            self.fallbacks_.append(f"thermal: {exc}; default heat-up rates are used")
            self.thermal_ = ThermalModel.default(step_minutes=self.slot_minutes)

        expected = self.home_profile_ >= self.threshold
        outdoor = _outdoor_profile(grid, index, self.slot_minutes, self.timezone)
        self._outdoor = np.broadcast_to(np.asarray(outdoor, dtype=float), (n_slots,)).copy()
        comfort, eco, lookahead = plan_heating(
            self.schedule_.table_, expected, outdoor, self.thermal_, settings, self.slot_minutes
        )
        self.occupancy_learned_ = self.occupancy_ is not None
        self.params_ = DecisionParams(
            slot_minutes=self.slot_minutes,
            timezone=self.timezone,
            feature_names=OCCUPANCY_FEATURE_NAMES,
            occupancy_coef=np.asarray(coef, dtype=float),
            occupancy_intercept=float(intercept),
            threshold=self.threshold,
            comfort=comfort,
            eco=eco,
            lower_c=settings.lower_c,
            upper_c=settings.upper_c,
            preheat_slots=lookahead,
            expected_occupied=expected,
            mode="auto",
            version=_version(home_id, start, end),
        )
        reference = next((c for c in grid.columns if c.startswith("temp_")), None)
        self.maintenance_ = maintenance_report(
            grid, home_id=home_id, timezone=self.timezone, reference_col=reference
        )
        self.settings_ = settings
        self.home_id_ = home_id
        self.window_ = (start, end)
        self.n_adjustments_ = len(adjustments)
        return self

    # -- answering -------------------------------------------------------------------------

    def decisions(self, motion: pd.Series) -> pd.DataFrame:
        """The decision for every slot of ``motion`` (a grid of the recent and current slots):
        setpoint, occupancy probability, pre-heating, with the household's modes applied."""
        params = self.params_with_modes()
        index = pd.DatetimeIndex(motion.index)
        features = occupancy_features(
            motion, timezone=self.timezone, slot_minutes=self.slot_minutes
        )
        made = decide(params, features, slots_for(index, params))
        return pd.DataFrame(
            {
                "setpoint_c": made.setpoint,
                "occupied_probability": made.occupied_probability,
                "occupied": made.occupied,
                "preheating": made.preheating,
            },
            index=index,
        )

    def params_with_modes(self) -> DecisionParams:
        """The decision parameters with each switched-off feature taken out.

        ``schedule`` off: the program (or default) replaces the learned comfort table;
        ``away`` off: no setback (eco = comfort); ``preheat`` off: no early start. All three
        off (or the whole home off) is mode ``off``: the device keeps its own program.
        """
        modes = self.settings_.modes
        params = self.params_
        comfort = params.comfort
        if modes["schedule"] == "off":
            comfort = np.clip(self.base_program_, self.settings_.lower_c, self.settings_.upper_c)
        eco = comfort if modes["away"] == "off" else np.minimum(comfort, self.settings_.away_c)
        preheat = np.zeros_like(params.preheat_slots) if modes["preheat"] == "off" else None
        mode = (
            "off"
            if all(m == "off" for m in modes.values())
            else ("suggest" if "suggest" in modes.values() else "auto")
        )
        return DecisionParams(
            slot_minutes=params.slot_minutes,
            timezone=params.timezone,
            feature_names=params.feature_names,
            occupancy_coef=params.occupancy_coef,
            occupancy_intercept=params.occupancy_intercept,
            threshold=params.threshold,
            comfort=comfort,
            eco=eco,
            lower_c=params.lower_c,
            upper_c=params.upper_c,
            preheat_slots=params.preheat_slots if preheat is None else preheat,
            expected_occupied=params.expected_occupied,
            mode=mode,
            version=params.version,
        )

    @property
    def base_program_(self) -> np.ndarray:
        """What the home runs without the learned schedule: its program, else the default."""
        program = getattr(self, "_program", None)
        return program if program is not None else default_program(self.slot_minutes)

    def with_settings(self, settings: HomeSettings) -> HomeModel:
        """This fitted model under new household settings (bounds, setback, modes)."""
        clone = object.__new__(HomeModel)
        clone.__dict__.update(self.__dict__)
        clone.settings = settings
        clone.settings_ = settings
        comfort, eco, lookahead = plan_heating(
            self.schedule_.table_,
            self.params_.expected_occupied,
            self._outdoor,
            self.thermal_,
            settings,
            self.slot_minutes,
        )
        clone.params_ = DecisionParams(
            **{
                **_params_fields(self.params_),
                "comfort": comfort,
                "eco": eco,
                "preheat_slots": lookahead,
                "lower_c": settings.lower_c,
                "upper_c": settings.upper_c,
            }
        )
        return clone

    def explain_slot(self, when: pd.Timestamp) -> str:
        return self.schedule_.explain(when)

    def insights(self) -> dict[str, Any]:
        """What was learned, in words and numbers, for the household and the dashboard."""
        thermal = self.thermal_
        n_day = 1440 // self.slot_minutes
        profile = self.home_profile_.reshape(7, n_day)
        return {
            "home_id": self.home_id_,
            "timezone": self.timezone,
            "window": [self.window_[0].isoformat(), self.window_[1].isoformat()],
            "settings": self.settings_.to_dict(),
            "habits": [
                {**rule.to_dict(), "explanation": describe_rule(rule)}
                for rule in self.schedule_.rules_
            ],
            "one_off_adjustments_ignored": int(self.schedule_.rejected_),
            "adjustments": int(self.n_adjustments_),
            "occupancy": {
                "learned": self.occupancy_learned_,
                "home_share_weekdays": _round(np.nanmean(profile[:5])),
                "home_share_weekends": _round(np.nanmean(profile[5:])),
            },
            "thermal": {
                "heat_up_c_per_hour_at_5c": _round(_heat_rate(thermal, 5.0)),
                "heat_up_minutes_16_to_20_at_0c": _round(thermal.heat_up_minutes(16.0, 20.0, 0.0)),
                "loss_rate_per_hour": _round(getattr(thermal, "loss_rate_", float("nan"))),
            },
            "maintenance": {
                "alerts": self.maintenance_.get("alerts", []),
                "skipped": self.maintenance_.get("skipped", {}),
            },
            "fallbacks": list(self.fallbacks_),
        }

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model to folder ``path`` atomically (JSON + the decision params' npz)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.params_.save(staging / "decision.npz")
            header = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "home_id": self.home_id_,
                "slot_minutes": self.slot_minutes,
                "timezone": self.timezone,
                "threshold": self.threshold,
                "min_days": self.min_days,
                "min_share": self.min_share,
                "settings": self.settings_.to_dict(),
                "window": [self.window_[0].isoformat(), self.window_[1].isoformat()],
                "rules": [rule.to_dict() for rule in self.schedule_.rules_],
                "rejected": int(self.schedule_.rejected_),
                "n_adjustments": int(self.n_adjustments_),
                "thermal": self.thermal_.to_dict(),
                "occupancy_learned": self.occupancy_learned_,
                "fallbacks": self.fallbacks_,
                "maintenance": self.maintenance_,
            }
            (staging / "home.json").write_text(json.dumps(header, indent=1))
            np.savez(
                staging / "tables.npz",
                schedule=self.schedule_.table_,
                schedule_source=self.schedule_.source_,
                home_profile=self.home_profile_,
                program=self.base_program_,
                outdoor=self._outdoor,
            )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | Path) -> HomeModel:
        """Read a folder written by :meth:`save`; a damaged one raises ``ValueError``."""
        folder = Path(path)
        fix = "fit the home again with `tailor devices fit`"
        try:
            header = json.loads((folder / "home.json").read_text())
            if header.get("format") != FORMAT:
                raise ValueError(f"not a tailor home model (format {header.get('format')!r})")
            with np.load(folder / "tables.npz") as tables:
                schedule_table = tables["schedule"]
                schedule_source = tables["schedule_source"]
                home_profile = tables["home_profile"]
                program = tables["program"]
                outdoor = tables["outdoor"]
            params = DecisionParams.load(folder / "decision.npz")
        except (OSError, KeyError, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{folder}: damaged home model ({exc}); {fix}") from None
        model = cls(
            slot_minutes=header["slot_minutes"],
            timezone=header["timezone"],
            settings=HomeSettings(**header["settings"]),
            threshold=header["threshold"],
            min_days=header["min_days"],
            min_share=header["min_share"],
        )
        schedule = SetpointSchedule(
            slot_minutes=model.slot_minutes, min_days=model.min_days, min_share=model.min_share
        )
        schedule.rules_ = [ScheduleRule(**rule) for rule in header["rules"]]
        schedule.learned_day_types_ = {rule.day_type for rule in schedule.rules_}
        schedule.rejected_ = header["rejected"]
        schedule.table_ = schedule_table
        schedule.source_ = schedule_source
        schedule.timezone_ = model.timezone
        model.schedule_ = schedule
        model.params_ = params
        model.home_profile_ = home_profile
        model._program = program
        model._outdoor = outdoor
        model.thermal_ = ThermalModel.from_dict(header["thermal"])
        model.occupancy_ = None  # its weights live in the decision parameters
        model.occupancy_learned_ = bool(header["occupancy_learned"])
        model.settings_ = model.settings
        model.home_id_ = header["home_id"]
        model.window_ = tuple(pd.Timestamp(t) for t in header["window"])
        model.n_adjustments_ = header["n_adjustments"]
        model.fallbacks_ = header["fallbacks"]
        model.maintenance_ = header.get("maintenance", {})
        return model


def _params_fields(params: DecisionParams) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def _check_grid(grid: pd.DataFrame, slot_minutes: int) -> pd.DatetimeIndex:
    if not isinstance(grid.index, pd.DatetimeIndex) or grid.index.tz is None:
        raise ValueError("grid: a tz-aware DatetimeIndex (UTC slot starts) is required")
    index = grid.index
    if len(index) < 2:
        raise ValueError(f"grid: {len(index)} slot(s); a home needs at least a day of data")
    steps = np.unique(np.diff(index.as_unit("ns").asi8))
    if len(steps) != 1 or steps[0] != pd.Timedelta(minutes=slot_minutes).value:
        raise ValueError(
            f"grid: slots must be regular and {slot_minutes} min apart; resample with "
            "tailor.devices.quality.resample(freq=...) first"
        )
    return index


def _profile(values, known, index, slot_minutes: int, timezone: str) -> np.ndarray:
    series = pd.Series(np.where(known, values, np.nan), index=index)
    profile = activity_profile(series, slot_minutes=slot_minutes, timezone=timezone)
    return np.nan_to_num(profile, nan=1.0)  # never seen: assume home, the safe side


def _outdoor_profile(grid, index, slot_minutes: int, timezone: str) -> np.ndarray | float:
    if "outdoor_temp" not in grid or grid["outdoor_temp"].isna().all():
        return 5.0
    profile = activity_profile(grid["outdoor_temp"], slot_minutes=slot_minutes, timezone=timezone)
    fill = float(np.nanmean(profile))
    return np.where(np.isnan(profile), fill, profile)


MAX_PREHEAT_SLOTS = 16
MAX_COAST_HOURS = 2.0


def plan_heating(
    schedule: np.ndarray,
    expected: np.ndarray,
    outdoor: np.ndarray,
    thermal: ThermalModel,
    settings: HomeSettings,
    slot_minutes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(comfort, eco, lookahead)`` per slot of the week for :class:`DecisionParams`.

    - **Comfort** is the learned schedule inside the bounds, except that heating stops early
      before the household usually wants less: before a scheduled drop while they are home
      (bedtime) and before they usually leave (the eco setback follows). It stops as long
      before as the home takes to cool by the household's ``tolerance_c`` (or by the drop,
      if smaller), so they never feel more than they said they tolerate, and the heat they
      would have paid for in that last stretch is saved (capped at two hours). Should they
      stay home after all, the occupancy forecast sees them and comfort resumes.
    - **Eco** is the setback while the home is empty: ``away_c``, never above comfort.
    - **Lookahead**: how many slots before an expected return the comfort setpoint starts.
      The home is assumed to have drifted from the temperature it was left at (the thermal
      model's free cooling over the absence, never below eco), and the lead is the heating
      time back to within half the tolerance of comfort, capped at four hours: arriving to a
      home still warming up is a worse start than a slow drift before leaving.
    """
    n_slots = len(schedule)
    step_h = slot_minutes / 60.0
    comfort = np.clip(np.asarray(schedule, float), settings.lower_c, settings.upper_c)
    eco = np.minimum(comfort, settings.away_c)
    half = settings.tolerance_c / 2.0
    # What the household wants in each slot if the schedule is right: comfort at home, eco
    # away (no setback, and so no stopping early before leaving, with the away feature off).
    setback = eco if settings.modes["away"] != "off" else comfort
    wanted = np.where(expected, comfort, setback)
    coasted = comfort.copy()
    for i in range(n_slots):
        before = (i - 1) % n_slots
        drop = comfort[before] - wanted[i]
        if drop <= 0.25 or not expected[before]:
            continue
        minutes = thermal.cool_down_minutes(
            comfort[before],
            comfort[before] - min(settings.tolerance_c, drop),
            outdoor[before],
            cooling=False,
        )
        slots = min(
            int(min(minutes, MAX_COAST_HOURS * 60) // slot_minutes),
            _slots_held(comfort, wanted, before, thermal, outdoor, slot_minutes),
        )
        for back in range(1, slots + 1):
            coasted[(i - back) % n_slots] = min(coasted[(i - back) % n_slots], wanted[i])
    target = np.where(expected, coasted, eco)
    indoor = _expected_indoor(target, outdoor, thermal, step_h)
    lookahead = np.zeros(n_slots, dtype=np.int64)
    for i in np.flatnonzero(expected & ~np.roll(expected, 1)):
        goal = coasted[i] - half
        for lead in range(0, MAX_PREHEAT_SLOTS + 1):
            start = indoor[(i - lead) % n_slots]
            minutes = thermal.heat_up_minutes(start, goal, outdoor[(i - lead) % n_slots])
            if minutes <= lead * slot_minutes:
                break
        for back in range(1, lead + 1):
            slot = (i - back) % n_slots
            lookahead[slot] = max(lookahead[slot], back)
    return coasted, eco, lookahead


def _slots_held(
    comfort: np.ndarray,
    wanted: np.ndarray,
    last: int,
    thermal: ThermalModel,
    outdoor: np.ndarray,
    slot_minutes: int,
) -> int:
    """How many slots up to ``last`` the home has been AT its current comfort level: the run
    of that level, less the time heating needs to reach it from the level before. Coasting
    may only use these; otherwise a short morning between waking and leaving would never be
    warmed at all."""
    n_slots = len(comfort)
    level = comfort[last]
    run = 1
    while run < n_slots and comfort[(last - run) % n_slots] == level:
        run += 1
    previous = wanted[(last - run) % n_slots]
    if previous >= level:
        return run
    first = (last - run + 1) % n_slots
    minutes = thermal.heat_up_minutes(previous, level, outdoor[first])
    if not np.isfinite(minutes):
        return 0
    return max(0, run - math.ceil(minutes / slot_minutes))


def _expected_indoor(
    target: np.ndarray, outdoor: np.ndarray, thermal: ThermalModel, step_h: float
) -> np.ndarray:
    """The indoor temperature at each slot's start if the home followed ``target`` without
    pre-heating: it drifts freely towards outdoors and heating holds it at the target (two
    passes over the week, so Monday morning starts from Sunday night)."""
    loss = float(thermal.loss_rate_)
    keep = np.exp(-loss * step_h) if np.isfinite(loss) and loss > 0 else 1.0
    indoor = np.empty(len(target))
    temperature = float(target[-1])
    for _ in range(2):
        for slot in range(len(target)):
            indoor[slot] = temperature
            drifted = outdoor[slot] + (temperature - outdoor[slot]) * keep
            temperature = max(drifted, float(target[slot]))
    return indoor


def _heat_rate(thermal: ThermalModel, outdoor_c: float) -> float:
    minutes = thermal.heat_up_minutes(19.0, 20.0, outdoor_c)
    return 60.0 / minutes if minutes and math.isfinite(minutes) else float("nan")


def _round(value: float) -> float | None:
    value = float(value)
    return round(value, 3) if math.isfinite(value) else None


def _version(home_id: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    import hashlib

    digest = hashlib.sha256(f"{home_id}|{start.isoformat()}|{end.isoformat()}".encode())
    return digest.hexdigest()[:12]
