"""A seeded simulator of heated homes in one town in winter, with known ground truth.

Weather: one outdoor temperature per minute for the whole town, a daily cycle (coldest at
05:00, warmest at 15:00, amplitude 2.5-5 °C) around a daily mean that wanders as an AR(1)
around 3 °C. Building: a first-order RC model, ``dT/dt = (T_out - T) / tau + heat_rate *
heating + gain * occupied`` (``tau`` 20-60 h, ``heat_rate`` 1.5-4 °C/h, gains 0.2 °C/h from
the people inside), integrated on 1-minute steps; a thermostat with a 0.3 °C hysteresis band
switches the heating. Household: a routine per day type (weekday, weekend) of wake, leave,
return and sleep times with daily jitter; commuters, home workers (never leave on weekdays),
shift workers and night owls; weekends sleep in and sometimes go out for the afternoon. Each
household prefers ``comfort_c`` while home and awake and ``sleep_c`` while asleep.

The thermostats run a weekly ``program`` (by default 20 °C from 07:00 to 23:00, 16 °C
otherwise). The occupants are the signal: while home and awake, when the setpoint in force is
0.5 °C or more from what they want, each minute they fix it with a probability that makes the
median delay 10 minutes. They set their preference (``sleep_c`` in the 30 minutes before bed)
as a hold that lasts until the program's next change point, like "until the next scheduled
activity" on commercial thermostats. About once a fortnight a home makes a one-off evening
adjustment (+1.5 to 3 °C: a guest, a cold), flagged ``is_one_off``: noise, not habit.

Devices report every ``reading_minutes`` (±30 s): a thermostat (``indoor_temp``, ``setpoint``,
``heating`` duty, ``outdoor_temp`` from a weather feed) and a motion sensor (``motion``, with
false positives from pets). The data is nasty as real data is: outages of 1-6 hours, ~0.5%
duplicated readings, skewed device clocks in some homes, a few NaN values.

:func:`run_thermostat` replays the same buildings, weather and occupancy under any setpoint
trajectory (without occupant adjustments) and scores it by energy and discomfort, so a learned
schedule can be compared with a fixed one exactly.

Examples
--------
>>> from tailor.datasets.simulate.homes import simulate_homes
>>> sim = simulate_homes(n_homes=3, weeks=1, seed=1)
>>> sim.home_ids
('home-000', 'home-001', 'home-002')
>>> sorted(sim.readings["metric"].unique())
['heating', 'indoor_temp', 'motion', 'outdoor_temp', 'setpoint']
>>> sim.truth["home-000"].occupied.shape
(672,)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tailor.datasets.base import Dataset
from tailor.devices.features import slots_per_week
from tailor.events.table import conform_entities, conform_events

__all__ = [
    "HOUSEHOLD_KINDS",
    "METRICS",
    "Building",
    "HomeTruth",
    "Household",
    "Routine",
    "SimulatedHomes",
    "ThermostatRun",
    "fixed_schedule",
    "run_thermostat",
    "simulate_homes",
]

logger = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
HYSTERESIS_C = 0.3
"""Width of the thermostat's dead band: on below ``setpoint - 0.15``, off above ``+ 0.15``."""
OCCUPIED_GAIN_C_PER_H = 0.2
ADJUST_THRESHOLD_C = 0.5
ADJUST_PROBABILITY = 1.0 - 0.5 ** (1.0 / 10.0)
"""Per minute: a geometric delay with a median of 10 minutes."""
WIND_DOWN_MINUTES = 30
"""Before bed the occupants already want ``sleep_c``."""
HOUSEHOLD_KINDS: tuple[str, ...] = ("commuter", "home_worker", "shift_worker", "night_owl")
_KIND_WEIGHTS = (0.5, 0.2, 0.15, 0.15)
METRICS: tuple[str, ...] = ("indoor_temp", "setpoint", "heating", "outdoor_temp", "motion")
_UNITS: tuple[str | None, ...] = ("C", "C", None, "C", None)
_THERMOSTAT_METRICS = 4  # the first four of METRICS come from the thermostat
# Per-minute occupancy codes.
AWAY, AWAKE, ASLEEP, WIND_DOWN = 0, 1, 2, 3
_MOTION_PROBABILITY = np.array([0.01, 0.7, 0.05, 0.7])  # by code: pets and false positives
_DT_H = 1.0 / 60.0


@dataclass(frozen=True)
class Building:
    """A home's first-order thermal model.

    Attributes
    ----------
    tau_h : time constant in hours (how slowly the home cools towards the outdoors).
    heat_rate_c_per_h : how fast the heating warms the home, °C per hour while on.
    power_kw : the heating's power draw while on.
    gain_c_per_h : warming from the people inside while someone is home.
    """

    tau_h: float
    heat_rate_c_per_h: float
    power_kw: float
    gain_c_per_h: float = OCCUPIED_GAIN_C_PER_H


@dataclass(frozen=True)
class Routine:
    """A household's usual day of one type, in minutes after that day's midnight.

    ``sleep`` may exceed 1440 (bed after midnight). ``leave`` and ``return_home`` are ``None``
    for a household that stays in; otherwise it goes out on a given day with probability
    ``away_probability``.
    """

    wake: int
    leave: int | None
    return_home: int | None
    sleep: int
    away_probability: float


@dataclass(frozen=True)
class Household:
    """Who lives in a home: their kind, routines, daily jitter and preferred temperatures."""

    kind: str
    weekday: Routine
    weekend: Routine
    jitter_minutes: float
    comfort_c: float
    sleep_c: float

    def routine(self, day_of_week: int) -> Routine:
        """The routine of a day (0 = Monday)."""
        return self.weekend if day_of_week >= 5 else self.weekday


@dataclass(frozen=True, eq=False)
class HomeTruth:
    """What really happened in one home, on the slot grid (slot starts, UTC).

    Attributes
    ----------
    home_id, thermostat_id, motion_id : the home and its two devices.
    occupied : someone home for most of the slot.
    asleep : the household asleep for most of the slot.
    preferred : ``comfort_c`` when home and awake, ``sleep_c`` when asleep, NaN when away.
    building, household : the parameters behind it.
    days : the realized day, one row per date: ``wake``, ``leave``, ``return_home`` (NaN on a
        day at home) and ``sleep``, in minutes after that date's midnight.
    clock_offset_s : how far the home's device clocks are off (``device_time - ts``).
    outages : ``(start, end)`` of each stretch with no readings.
    """

    home_id: str
    thermostat_id: str
    motion_id: str
    occupied: pd.Series
    asleep: pd.Series
    preferred: pd.Series
    building: Building
    household: Household
    days: pd.DataFrame
    clock_offset_s: int
    outages: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]


@dataclass(frozen=True, eq=False)
class ThermostatRun:
    """Per-minute result of :func:`run_thermostat` for some homes.

    Arrays are ``(n_homes, n_minutes)``: ``indoor`` (°C at the start of each minute),
    ``heating`` (on during the minute), ``setpoint`` (in force), ``occupied`` (true
    occupancy) and ``preferred`` (comfort or sleep preference, NaN when away).
    """

    home_ids: tuple[str, ...]
    index: pd.DatetimeIndex
    indoor: np.ndarray
    heating: np.ndarray
    setpoint: np.ndarray
    occupied: np.ndarray
    preferred: np.ndarray
    power_kw: np.ndarray

    @property
    def energy_kwh(self) -> np.ndarray:
        """Heating energy per home: minutes on / 60 x power."""
        return self.heating.sum(axis=1) / 60.0 * self.power_kw

    def discomfort_degree_hours(self, band: float = 1.0, *, cold_only: bool = False) -> np.ndarray:
        """Per home, the sum over occupied minutes of ``max(0, |T - preferred| - band) / 60``.

        ``cold_only`` counts only ``preferred - T`` (too cold): a home that was warm at bedtime
        cools slowly, so much of the symmetric score is being too warm asleep, which no
        schedule can avoid quickly.
        """
        if not (np.isfinite(band) and band >= 0):
            raise ValueError(f"band: {band} must be a finite number of °C >= 0 (e.g. 1.0)")
        gap = np.where(self.occupied, self.preferred - self.indoor, 0.0)  # > 0: too cold
        miss = gap if cold_only else np.abs(gap)
        return np.maximum(miss - band, 0.0).sum(axis=1) / 60.0


@dataclass(frozen=True, eq=False)
class SimulatedHomes:
    """Simulated homes: what the devices reported, what the occupants did, and the truth.

    Attributes
    ----------
    readings : the readings frame (``home_id``, ``device_id``, ``metric``, ``ts``, ``value``,
        ``unit``, ``device_time``, ``received_at``), sorted by home and arrival, with the
        gaps, duplicates, clock skew and NaNs left in.
    adjustments : every manual setpoint change: ``home_id``, ``device_id``, ``ts``,
        ``value``, ``previous_value``, ``metric`` ("setpoint") and ``is_one_off``.
    truth : ``home_id -> HomeTruth``.
    outdoor : the town's outdoor temperature per minute (UTC index).
    program : the weekly program the thermostats ran, per slot of week.
    home_ids : the homes, in order.
    """

    readings: pd.DataFrame
    adjustments: pd.DataFrame
    truth: dict[str, HomeTruth]
    outdoor: pd.Series
    program: np.ndarray
    home_ids: tuple[str, ...]
    seed: int
    start: pd.Timestamp
    slot_minutes: int
    reading_minutes: int
    # Per-minute state, time-major (n_minutes, n_homes): what run_thermostat replays.
    _state: np.ndarray = field(repr=False)
    _indoor: np.ndarray = field(repr=False)
    _heating: np.ndarray = field(repr=False)
    _setpoint: np.ndarray = field(repr=False)
    _preferred_lut: np.ndarray = field(repr=False)

    @property
    def minute_index(self) -> pd.DatetimeIndex:
        """The simulated minutes (UTC)."""
        return self.outdoor.index  # type: ignore[return-value]

    def _column(self, home_id: str) -> int:
        try:
            return self.home_ids.index(home_id)
        except ValueError:
            raise KeyError(f"unknown home {home_id!r}; homes are {self.home_ids[0]!r}...") from None

    def minutes(self, home_id: str) -> pd.DataFrame:
        """One home's true per-minute state: temperatures, heating, setpoint and occupancy."""
        h = self._column(home_id)
        state = self._state[:, h]
        return pd.DataFrame(
            {
                "outdoor_temp": self.outdoor.to_numpy(),
                "indoor_temp": self._indoor[:, h],
                "heating": self._heating[:, h],
                "setpoint": self._setpoint[:, h].astype(float),
                "occupied": state != AWAY,
                "asleep": state == ASLEEP,
                "preferred": self._preferred_lut[h, state],
            },
            index=self.minute_index,
        )

    def devices(self, limit_homes: int | None = None) -> pa.Table:
        """The ``devices`` entity table: a thermostat and a motion sensor per home."""
        homes = self._limited(limit_homes)
        rows = [(self.truth[h].thermostat_id, "thermostat", h) for h in homes] + [
            (self.truth[h].motion_id, "motion_sensor", h) for h in homes
        ]
        ids, kinds, owners = (list(c) for c in zip(*rows, strict=True))
        return conform_entities(
            "devices",
            pa.table(
                {"device_id": ids, "device_type": kinds, "home_id": owners, "owner_id": owners}
            ),
        )

    def _limited(self, limit_homes: int | None) -> tuple[str, ...]:
        if limit_homes is None:
            return self.home_ids
        if isinstance(limit_homes, bool) or not isinstance(limit_homes, int) or limit_homes < 1:
            raise ValueError(
                f"limit_homes: must be a whole number >= 1 or None, got {limit_homes!r}"
            )
        return self.home_ids[:limit_homes]

    def to_events(self, limit_homes: int | None = None, *, consent: bool = True) -> pa.Table:
        """``telemetry`` and ``device_adjustment`` events (and consents), import-ready.

        One ``telemetry`` per reading with a finite value (a NaN reading would be rejected on
        import, so it is left out), ``event_id = "homesim-{seed}-r{row}"`` (``row`` = its
        position in :attr:`readings`; a duplicated reading is a re-send under a new id, as
        gateways do), ``subject_id`` = the home. One ``device_adjustment`` per manual change,
        ``event_id = "homesim-{seed}-a{row}"``. With ``consent`` (the default), each home
        first grants ``personalization`` at the start, so reads that honour consent see it.
        ``limit_homes`` keeps the first homes only; ids do not depend on it.
        """
        homes = self._limited(limit_homes)
        readings = self.readings
        keep = readings["home_id"].isin(homes).to_numpy() & np.isfinite(
            readings["value"].to_numpy()
        )
        r = readings.loc[keep]
        telemetry = pa.table(
            {
                "event_id": _ids(f"homesim-{self.seed}-r", np.flatnonzero(keep)),
                "event_type": pa.repeat(pa.scalar("telemetry"), len(r)),
                "occurred_at": _arrow_time(r["ts"]),
                "subject_id": pa.array(r["home_id"]),
                "device_id": pa.array(r["device_id"]),
                "metric": pa.array(r["metric"]),
                "value": pa.array(r["value"].to_numpy(), pa.float64()),
                "unit": pa.array(r["unit"]),
                "device_time": _arrow_time(r["device_time"]),
                "line": _zeros(len(r)),
            }
        )
        adjust_rows = np.flatnonzero(self.adjustments["home_id"].isin(homes).to_numpy())
        a = self.adjustments.iloc[adjust_rows]
        adjustments = pa.table(
            {
                "event_id": _ids(f"homesim-{self.seed}-a", adjust_rows),
                "event_type": pa.repeat(pa.scalar("device_adjustment"), len(a)),
                "occurred_at": _arrow_time(a["ts"]),
                "subject_id": pa.array(a["home_id"]),
                "device_id": pa.array(a["device_id"]),
                "metric": pa.array(a["metric"]),
                "value": pa.array(a["value"].to_numpy(), pa.float64()),
                "previous_value": pa.array(a["previous_value"].to_numpy(), pa.float64()),
                "unit": pa.repeat(pa.scalar("C"), len(a)),
                "line": _zeros(len(a)),
            }
        )
        parts = [conform_events(telemetry), conform_events(adjustments)]
        if consent:
            moment = pa.scalar(self.start.to_pydatetime(), pa.timestamp("us", tz="UTC"))
            parts.insert(
                0,
                conform_events(
                    pa.table(
                        {
                            "event_id": [f"homesim-{self.seed}-consent-{h}" for h in homes],
                            "event_type": pa.repeat(pa.scalar("consent"), len(homes)),
                            "occurred_at": pa.repeat(moment, len(homes)),
                            "subject_id": list(homes),
                            "purpose": pa.repeat(pa.scalar("personalization"), len(homes)),
                            "granted": pa.repeat(pa.scalar(True), len(homes)),
                            "line": _zeros(len(homes)),
                        }
                    )
                ),
            )
        return pa.concat_tables(parts)

    def to_dataset(self, limit_homes: int | None = None) -> Dataset:
        """The events and the ``devices`` table as a :class:`~tailor.datasets.base.Dataset`."""
        homes = self._limited(limit_homes)
        weeks = len(self.outdoor) // MINUTES_PER_WEEK
        return Dataset(
            name=f"homes-sim-{self.seed}",
            events=self.to_events(limit_homes),
            devices=self.devices(limit_homes),
            notes=[
                f"Simulated heated homes: {len(homes)} homes x {weeks} weeks from "
                f"{self.start.date()}, seed {self.seed}; readings every "
                f"{self.reading_minutes} min.",
                "Ground truth: simulate_homes(...) returns it (truth, adjustments.is_one_off).",
            ],
        )


def _arrow_time(values: pd.Series) -> pa.Array:
    """A UTC pandas column as Arrow timestamps (``pa.array`` of a tz-aware Series warns)."""
    return pa.array(values.dt.tz_convert(None).to_numpy()).cast(pa.timestamp("ns", tz="UTC"))


def _zeros(n: int) -> pa.Array:
    return pa.repeat(pa.scalar(0, pa.int64()), n)


def _ids(prefix: str, rows: np.ndarray) -> pa.Array:
    """``prefix + str(row)`` for each row, without a Python loop."""
    numbers = pc.cast(pa.array(rows.astype(np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), numbers, "")


def fixed_schedule(
    slot_minutes: int = 15,
    day_c: float = 20.0,
    night_c: float = 16.0,
    start_hour: int = 7,
    end_hour: int = 23,
) -> np.ndarray:
    """The classic program: ``day_c`` from ``start_hour`` to ``end_hour`` every day, else
    ``night_c``; one value per slot of the week (slot 0 = Monday 00:00).

    Examples
    --------
    >>> p = fixed_schedule()
    >>> p.shape, p[4 * 7 - 1], p[4 * 7], p[4 * 23 - 1], p[4 * 23]
    ((672,), np.float64(16.0), np.float64(20.0), np.float64(20.0), np.float64(16.0))
    """
    n = slots_per_week(slot_minutes)
    if not (0 <= start_hour < end_hour <= 24):
        raise ValueError(
            f"start_hour {start_hour} and end_hour {end_hour}: need 0 <= start < end <= 24"
        )
    for name, value in (("day_c", day_c), ("night_c", night_c)):
        if not np.isfinite(value):
            raise ValueError(f"{name}: {value} must be a finite temperature in °C")
    minute_of_day = (np.arange(n) * slot_minutes) % MINUTES_PER_DAY
    day = (minute_of_day >= start_hour * 60) & (minute_of_day < end_hour * 60)
    return np.where(day, float(day_c), float(night_c))


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}: must be a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name}: must be at most {high}, got {value!r}")
    return int(value)


def _check_program(program: object, slot_minutes: int) -> np.ndarray:
    n = slots_per_week(slot_minutes)
    if program is None:
        return fixed_schedule(slot_minutes)
    values = np.asarray(program, dtype=float)
    if values.shape != (n,):
        raise ValueError(
            f"program: expected one setpoint per slot of week, shape ({n},) for "
            f"slot_minutes={slot_minutes}, got shape {values.shape}; see fixed_schedule()"
        )
    if not np.all(np.isfinite(values)) or values.min() < 5.0 or values.max() > 30.0:
        raise ValueError("program: setpoints must be finite and between 5 and 30 °C")
    return values


def _weather(rng: np.random.Generator, n_days: int) -> np.ndarray:
    """Outdoor °C per minute: a skewed daily cycle around an AR(1) daily mean."""
    means = np.empty(n_days)
    means[0] = 3.0 + rng.normal(0.0, 3.0)
    for d in range(1, n_days):
        means[d] = 3.0 + 0.75 * (means[d - 1] - 3.0) + rng.normal(0.0, 2.0)
    amplitude = rng.uniform(2.5, 5.0, n_days)
    minutes = np.arange(n_days * MINUTES_PER_DAY, dtype=float)
    centres = np.arange(n_days) * MINUTES_PER_DAY + MINUTES_PER_DAY / 2
    # Warming takes 10 h (05:00 to 15:00), cooling 14 h: the phase runs at two speeds.
    u = minutes % MINUTES_PER_DAY
    theta = np.where(
        (u >= 300) & (u < 900),
        np.pi * (u - 300) / 600,
        np.pi + np.pi * ((u - 900) % MINUTES_PER_DAY) / 840,
    )
    return np.interp(minutes, centres, means) - np.interp(minutes, centres, amplitude) * np.cos(
        theta
    )


def _clock(rng: np.random.Generator, low: str, high: str) -> int:
    """A random minute of the day between two ``HH:MM`` times (high may pass 24:00)."""
    lo, hi = ((int(t[:2]) * 60 + int(t[3:])) for t in (low, high))
    return int(rng.integers(lo, hi + 1))


def _household(rng: np.random.Generator) -> Household:
    kind = HOUSEHOLD_KINDS[int(rng.choice(len(HOUSEHOLD_KINDS), p=_KIND_WEIGHTS))]
    if kind == "commuter":
        wake = _clock(rng, "05:45", "07:30")
        weekday = Routine(
            wake,
            wake + int(rng.integers(40, 91)),
            _clock(rng, "16:30", "19:00"),
            _clock(rng, "22:00", "23:45"),
            1.0,
        )
    elif kind == "home_worker":
        weekday = Routine(
            _clock(rng, "06:30", "08:00"), None, None, _clock(rng, "22:00", "23:30"), 0.0
        )
    elif kind == "shift_worker":  # the late shift
        weekday = Routine(
            _clock(rng, "09:00", "10:30"),
            _clock(rng, "13:00", "14:30"),
            _clock(rng, "22:00", "23:00"),
            _clock(rng, "23:45", "25:00"),
            1.0,
        )
    else:  # night owl
        wake = _clock(rng, "08:30", "10:00")
        weekday = Routine(
            wake,
            wake + int(rng.integers(45, 91)),
            _clock(rng, "18:30", "20:30"),
            _clock(rng, "24:30", "26:00"),
            1.0,
        )
    late = kind in ("shift_worker", "night_owl")
    leave = _clock(rng, "13:00", "15:00")
    weekend = Routine(
        weekday.wake + int(rng.integers(30, 91) if late else rng.integers(60, 151)),
        leave,
        leave + int(rng.integers(120, 301)),
        weekday.sleep + int(rng.integers(0, 61)),
        float(rng.uniform(0.2, 0.6)),
    )
    comfort = round(float(rng.uniform(19.5, 23.0)) * 2) / 2
    sleep = round(float(rng.uniform(15.5, 19.5)) * 2) / 2
    return Household(kind, weekday, weekend, float(rng.uniform(15.0, 20.0)), comfort, sleep)


def _building(rng: np.random.Generator) -> Building:
    tau = float(rng.uniform(20.0, 60.0))
    # Enough power to hold ~23 °C through a -10 °C night: heat_rate > 33 / tau.
    rate = float(rng.uniform(max(1.5, 33.0 / tau + 0.3), 4.0))
    return Building(tau_h=tau, heat_rate_c_per_h=rate, power_kw=float(rng.uniform(5.0, 12.0)))


def _days(
    rng: np.random.Generator, households: Sequence[Household], n_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Realized ``(wake, leave, return, sleep, away)``, each ``(n_homes, n_days)``, in minutes
    after each day's midnight, day by day across homes (a day starts after the last bedtime)."""
    n = len(households)
    jitter = np.array([h.jitter_minutes for h in households])
    shape = (n, n_days)
    wake, leave, back, sleep = (np.zeros(shape, dtype=np.int64) for _ in range(4))
    away = np.zeros(shape, dtype=bool)
    previous_sleep = np.full(n, -(10**6))
    for d in range(n_days):
        routines = [h.routine(d % 7) for h in households]  # day 0 is a Monday
        goes = np.array([r.away_probability for r in routines])
        usual = np.array(
            [
                (
                    r.wake,
                    r.leave if r.leave is not None else r.wake,
                    r.return_home if r.return_home is not None else r.wake,
                    r.sleep,
                )
                for r in routines
            ],
            dtype=float,
        )
        drawn = np.rint(usual + rng.normal(0.0, 1.0, (n, 4)) * jitter[:, None]).astype(np.int64)
        out = rng.random(n) < goes
        w = np.maximum(drawn[:, 0], previous_sleep - MINUTES_PER_DAY + 240)  # >= 4 h of sleep
        lv = np.maximum(drawn[:, 1], w + 20)
        rt = np.maximum(drawn[:, 2], lv + 60)
        awake_until = np.where(out, rt, w + 8 * 60)
        s = np.maximum(drawn[:, 3], awake_until + 60)
        wake[:, d], leave[:, d], back[:, d], sleep[:, d], away[:, d] = w, lv, rt, s, out
        previous_sleep = s
    return wake, leave, back, sleep, away


def _state_column(
    wake: np.ndarray,
    leave: np.ndarray,
    back: np.ndarray,
    sleep: np.ndarray,
    away: np.ndarray,
    n_minutes: int,
) -> np.ndarray:
    """One home's per-minute occupancy codes from its realized days (all ``(n_days,)``)."""
    base = np.arange(len(wake)) * MINUTES_PER_DAY
    lv = np.where(away, leave, wake) + base  # a day at home: zero-length away stretch
    rt = np.where(away, back, wake) + base
    times = np.column_stack(
        [wake + base, lv, rt, sleep + base - WIND_DOWN_MINUTES, sleep + base]
    ).ravel()
    codes = np.tile([AWAKE, AWAY, AWAKE, WIND_DOWN, ASLEEP], len(wake))
    times = np.clip(np.concatenate([[0], times, [n_minutes]]), 0, n_minutes)
    codes = np.concatenate([[ASLEEP], codes])
    return np.repeat(codes.astype(np.int8), np.diff(times))


def _thermal_step(
    indoor: np.ndarray,
    on: np.ndarray,
    setpoint: np.ndarray,
    outdoor: float,
    occupied: np.ndarray,
    inv_tau: np.ndarray,
    rate: np.ndarray,
    gain: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One minute: the thermostat decides from the temperature now, then the home integrates.

    Shared by the simulation and :func:`run_thermostat` so a replay is bit-for-bit the same.
    """
    half = HYSTERESIS_C / 2
    on = (indoor <= setpoint - half) | (on & (indoor < setpoint + half))
    change = (outdoor - indoor) * inv_tau + rate * on + gain * occupied
    return indoor + _DT_H * change, on


def simulate_homes(
    n_homes: int = 200,
    weeks: int = 8,
    *,
    seed: int = 0,
    start: str = "2026-01-05",
    slot_minutes: int = 15,
    reading_minutes: int = 10,
    program: np.ndarray | None = None,
) -> SimulatedHomes:
    """Simulate ``n_homes`` heated homes for ``weeks`` weeks of winter.

    Parameters
    ----------
    n_homes : number of homes (``home-000``, ``home-001``, ...).
    weeks : whole weeks simulated.
    seed : everything follows from it.
    start : the first day (ISO date, a Monday); the simulation runs in UTC.
    slot_minutes : the slot of the truth grid and of ``program``; must divide a day.
    reading_minutes : how often each device reports (1 to 60).
    program : the thermostats' weekly program, one setpoint per slot of week (°C, 5 to 30);
        default :func:`fixed_schedule` (20 °C 07:00-23:00, 16 °C otherwise).

    Returns
    -------
    SimulatedHomes
    """
    n_homes = _whole("n_homes", n_homes, 1)
    weeks = _whole("weeks", weeks, 1)
    reading_minutes = _whole("reading_minutes", reading_minutes, 1, 60)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: must be a whole number >= 0, got {seed!r}")
    slot_minutes = _whole("slot_minutes", slot_minutes, 1)
    plan = _check_program(program, slot_minutes)  # also checks slot_minutes divides a day
    try:
        first = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start: {start!r} is not a date; use ISO, e.g. '2026-01-05'") from exc
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    if first != first.normalize() or first.day_of_week != 0:
        raise ValueError(f"start: {start!r} must be a Monday at midnight, e.g. '2026-01-05'")

    streams = np.random.SeedSequence(int(seed)).spawn(5)
    rng_weather, rng_homes, rng_days, rng_adjust, rng_sensors = map(np.random.default_rng, streams)
    n_days = 7 * weeks
    n_minutes = n_days * MINUTES_PER_DAY
    outdoor = _weather(rng_weather, n_days)
    home_ids = tuple(f"home-{i:03d}" for i in range(n_homes))
    buildings = [_building(rng_homes) for _ in range(n_homes)]
    households = [_household(rng_homes) for _ in range(n_homes)]

    wake, leave, back, sleep, away = _days(rng_days, households, n_days)
    state = np.empty((n_minutes, n_homes), dtype=np.int8)
    for h in range(n_homes):
        state[:, h] = _state_column(wake[h], leave[h], back[h], sleep[h], away[h], n_minutes)
    comfort = np.array([hh.comfort_c for hh in households])
    sleep_c = np.array([hh.sleep_c for hh in households])
    nan = np.full(n_homes, np.nan)
    # What the occupants want, by code: AWAY, AWAKE, ASLEEP, WIND_DOWN (asleep: nothing to do).
    wants_lut = np.column_stack([nan, comfort, nan, sleep_c])
    preferred_lut = np.column_stack([nan, comfort, sleep_c, comfort])
    # float32 holds the half-degree setpoints exactly, in half the memory.
    target = wants_lut[np.arange(n_homes)[None, :], state].astype(np.float32)
    one_off, forced = _one_offs(rng_days, state, target, comfort, weeks)

    indoor, heating, setpoint, records = _run_homes(
        rng_adjust, state, target, forced, plan, slot_minutes, outdoor, buildings
    )
    minute_index = pd.date_range(first, periods=n_minutes, freq="min")
    adjustments = _adjustments_frame(rng_sensors, records, one_off, home_ids, first)
    offsets, outages = _nastiness(rng_sensors, n_homes, n_minutes)
    readings = _readings(
        rng_sensors,
        state=state,
        indoor=indoor,
        heating=heating,
        setpoint=setpoint,
        outdoor=outdoor,
        home_ids=home_ids,
        first=first,
        reading_minutes=reading_minutes,
        offsets=offsets,
        outages=outages,
    )
    truth = _truth(
        state=state,
        preferred_lut=preferred_lut,
        home_ids=home_ids,
        buildings=buildings,
        households=households,
        days=(wake, leave, back, sleep, away),
        first=first,
        slot_minutes=slot_minutes,
        offsets=offsets,
        outages=outages,
    )
    logger.info(
        "simulated %d homes x %d weeks: %d readings, %d adjustments",
        n_homes,
        weeks,
        len(readings),
        len(adjustments),
    )
    return SimulatedHomes(
        readings=readings,
        adjustments=adjustments,
        truth=truth,
        outdoor=pd.Series(outdoor, index=minute_index, name="outdoor_temp"),
        program=plan,
        home_ids=home_ids,
        seed=int(seed),
        start=first,
        slot_minutes=slot_minutes,
        reading_minutes=reading_minutes,
        _state=state,
        _indoor=indoor,
        _heating=heating,
        _setpoint=setpoint,
        _preferred_lut=preferred_lut,
    )


def _one_offs(
    rng: np.random.Generator, state: np.ndarray, target: np.ndarray, comfort: np.ndarray, weeks: int
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Write one-off evenings into ``target``; return the window mask and forced starts.

    About one per home per fortnight, on distinct days: from a random evening minute when
    someone is home and awake, the wish is ``comfort + 1.5..3 °C`` for 2-4 hours (cut short
    when they leave or wind down); the first minute acts at once (it is why they got up).
    """
    n_minutes, n_homes = state.shape
    n_days = n_minutes // MINUTES_PER_DAY
    window = np.zeros(state.shape, dtype=bool)
    forced: dict[int, list[int]] = {}
    for h in range(n_homes):
        count = min(int(rng.poisson(weeks / 2)), n_days)
        for d in np.sort(rng.choice(n_days, size=count, replace=False)):
            begin = d * MINUTES_PER_DAY + int(rng.integers(17 * 60 + 30, 20 * 60 + 31))
            latest = d * MINUTES_PER_DAY + 22 * 60
            length = int(rng.integers(120, 241))
            boost = round(float(rng.uniform(1.5, 3.0)) * 2) / 2
            home = np.flatnonzero(state[begin:latest, h] == AWAKE)
            if not len(home):
                continue
            begin += int(home[0])
            stretch = state[begin : begin + length, h] == AWAKE
            end = begin + (int(np.argmin(stretch)) if not stretch.all() else len(stretch))
            target[begin:end, h] = comfort[h] + boost
            window[begin:end, h] = True
            forced.setdefault(begin, []).append(h)
    return window, {m: np.array(hs) for m, hs in forced.items()}


def _run_homes(
    rng: np.random.Generator,
    state: np.ndarray,
    target: np.ndarray,
    forced: dict[int, np.ndarray],
    plan: np.ndarray,
    slot_minutes: int,
    outdoor: np.ndarray,
    buildings: Sequence[Building],
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]
]:
    """The minute loop (numpy across homes): program, holds, occupants, thermostat, heat."""
    n_minutes, n_homes = state.shape
    program = np.repeat(plan, slot_minutes)  # per minute of week
    change = program != np.roll(program, 1)  # the program's change points end holds
    inv_tau = np.array([1.0 / b.tau_h for b in buildings])
    rate = np.array([b.heat_rate_c_per_h for b in buildings])
    gain = np.array([b.gain_c_per_h for b in buildings])
    temp = program[0] + 1.0 + rng.normal(0.0, 0.5, n_homes)
    on = np.zeros(n_homes, dtype=bool)
    hold = np.full(n_homes, np.nan)
    indoor = np.empty((n_minutes, n_homes))
    heating = np.empty((n_minutes, n_homes), dtype=bool)
    setpoint = np.empty((n_minutes, n_homes), dtype=np.float32)
    records: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    occupied = state != AWAY
    for m in range(n_minutes):
        w = m % MINUTES_PER_WEEK
        if change[w]:
            hold[:] = np.nan
        sp = np.where(np.isnan(hold), program[w], hold)
        wish = target[m]
        want = np.abs(sp - wish) >= ADJUST_THRESHOLD_C  # NaN (nobody awake) -> False
        if want.any():
            act = want & (rng.random(n_homes) < ADJUST_PROBABILITY)
            if m in forced:
                act[forced[m]] = want[forced[m]]
            if act.any():
                idx = np.flatnonzero(act)
                records.append((m, idx, wish[idx], sp[idx]))
                hold[idx] = wish[idx]
                sp[idx] = wish[idx]
        indoor[m] = temp
        setpoint[m] = sp
        temp, on = _thermal_step(temp, on, sp, outdoor[m], occupied[m], inv_tau, rate, gain)
        heating[m] = on
    return indoor, heating, setpoint, records


def _adjustments_frame(
    rng: np.random.Generator,
    records: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    one_off: np.ndarray,
    home_ids: tuple[str, ...],
    first: pd.Timestamp,
) -> pd.DataFrame:
    if records:
        minute = np.concatenate([np.full(len(r[1]), r[0]) for r in records])
        homes = np.concatenate([r[1] for r in records])
        value = np.concatenate([r[2] for r in records])
        previous = np.concatenate([r[3] for r in records])
    else:
        minute = homes = np.zeros(0, dtype=np.int64)
        value = previous = np.zeros(0)
    seconds = minute * 60 + rng.integers(0, 60, len(minute))
    order = np.lexsort((seconds, homes))
    minute, homes, value, previous, seconds = (
        a[order] for a in (minute, homes, value, previous, seconds)
    )
    ids = np.array(home_ids, dtype=object)[homes]
    return pd.DataFrame(
        {
            "home_id": pd.array(ids, dtype="str"),
            "device_id": pd.array([f"{h}-thermostat" for h in ids], dtype="str"),
            "ts": first + pd.to_timedelta(seconds, unit="s"),
            "value": value.astype(float),
            "previous_value": previous.astype(float),
            "metric": pd.array(["setpoint"] * len(ids), dtype="str"),
            "is_one_off": one_off[minute, homes],
        }
    )


def _nastiness(
    rng: np.random.Generator, n_homes: int, n_minutes: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per home: a clock offset in seconds and 1-3 outages ``[(start, end), ...]`` in minutes."""
    skewed = rng.random(n_homes) < 0.25
    # Half of the skewed clocks are whole hours off (a wrong time zone), the rest drift.
    whole = rng.random(n_homes) < 0.5
    offset = np.where(
        whole,
        rng.choice([-7200, -3600, 3600, 7200], n_homes),
        rng.integers(-7200, 7201, n_homes),
    )
    offsets = np.where(skewed, offset, 0).astype(np.int64)
    outages = []
    for _ in range(n_homes):
        count = int(rng.integers(1, 4))
        length = rng.integers(60, 361, count)
        begin = rng.integers(0, np.maximum(n_minutes - length, 1))
        outages.append(np.column_stack([begin, np.minimum(begin + length, n_minutes)]))
    return offsets, outages


def _readings(
    rng: np.random.Generator,
    *,
    state: np.ndarray,
    indoor: np.ndarray,
    heating: np.ndarray,
    setpoint: np.ndarray,
    outdoor: np.ndarray,
    home_ids: tuple[str, ...],
    first: pd.Timestamp,
    reading_minutes: int,
    offsets: np.ndarray,
    outages: list[np.ndarray],
) -> pd.DataFrame:
    """Every device's reports, vectorized as ``(n_homes, n_readings)`` blocks."""
    n_minutes, n_homes = state.shape
    n_read = n_minutes // reading_minutes
    period = reading_minutes * 60
    homes = np.arange(n_homes)[:, None]

    def report_times() -> tuple[np.ndarray, np.ndarray]:
        phase = rng.integers(0, period, (n_homes, 1))
        seconds = (
            phase + np.arange(n_read)[None, :] * period + rng.integers(-30, 31, (n_homes, n_read))
        )
        seconds = np.clip(seconds, 0, n_minutes * 60 - 1)
        return seconds, seconds // 60

    t_seconds, t_minute = report_times()
    m_seconds, m_minute = report_times()
    cum = np.zeros((n_minutes + 1, n_homes), dtype=np.int32)
    np.cumsum(heating, axis=0, out=cum[1:])
    before = np.concatenate(
        [np.maximum(t_minute[:, :1] - reading_minutes, -1), t_minute[:, :-1]], 1
    )
    duty = (cum[t_minute + 1, homes] - cum[before + 1, homes]) / np.maximum(t_minute - before, 1)
    bias = rng.normal(0.0, 0.3, (n_homes, 1))  # where each feed's station is
    values = [
        np.round(indoor[t_minute, homes] + rng.normal(0.0, 0.1, t_minute.shape), 1),
        setpoint[t_minute, homes],
        np.round(duty, 3),
        np.round(outdoor[t_minute] + bias + rng.normal(0.0, 0.3, t_minute.shape), 1),
        (rng.random(m_minute.shape) < _MOTION_PROBABILITY[state[m_minute, homes]]).astype(float),
    ]
    n_metrics = len(METRICS)
    value = np.stack(values, axis=1)  # (n_homes, n_metrics, n_read)
    seconds = np.stack([t_seconds] * _THERMOSTAT_METRICS + [m_seconds], axis=1)
    metric = np.broadcast_to(np.arange(n_metrics)[None, :, None], value.shape)
    home = np.broadcast_to(homes[:, :, None], value.shape)
    value, seconds, metric, home = (a.reshape(-1) for a in (value, seconds, metric, home))

    down = np.zeros(len(value), dtype=bool)
    for h, spans in enumerate(outages):
        block = slice(h * n_metrics * n_read, (h + 1) * n_metrics * n_read)
        minute = seconds[block] // 60
        for begin, end in spans:
            down[block] |= (minute >= begin) & (minute < end)
    keep = np.flatnonzero(~down)
    value, seconds, metric, home = value[keep], seconds[keep], metric[keep], home[keep]
    value[rng.random(len(value)) < 0.0005] = np.nan  # a sensor glitch now and then
    latency = rng.integers(1, 21, len(value))
    twice = np.flatnonzero(rng.random(len(value)) < 0.005)  # re-sent after a missed ack
    value = np.concatenate([value, value[twice]])
    seconds = np.concatenate([seconds, seconds[twice]])
    metric = np.concatenate([metric, metric[twice]])
    home = np.concatenate([home, home[twice]])
    latency = np.concatenate([latency, latency[twice] + rng.integers(5, 301, len(twice))])
    received = seconds + latency
    order = np.argsort(home * (n_minutes * 60 + 400) + received, kind="stable")
    value, seconds, metric, home, received = (
        a[order] for a in (value, seconds, metric, home, received)
    )

    device_kind = (metric == n_metrics - 1).astype(np.int64)  # 0 thermostat, 1 motion sensor
    devices = [f"{h}-{d}" for h in home_ids for d in ("thermostat", "motion")]
    origin = first.as_unit("ns").value

    def to_time(seconds: np.ndarray) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(
            (origin + seconds * 1_000_000_000).astype("datetime64[ns]"), tz="UTC"
        )

    return pd.DataFrame(
        {
            "home_id": _strings(home, home_ids),
            "device_id": _strings(home * 2 + device_kind, devices),
            "metric": _strings(metric, METRICS),
            "ts": to_time(seconds),
            "value": value,
            "unit": _strings(metric, _UNITS),
            "device_time": to_time(seconds + offsets[home]),
            "received_at": to_time(received),
        }
    )


def _strings(codes: np.ndarray, names: Sequence[str | None]) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a pandas string column, built in Arrow (fast for millions)."""
    table = pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(list(names), pa.string())
    )
    return pd.array(table.cast(pa.string()), dtype="str")


def _truth(
    *,
    state: np.ndarray,
    preferred_lut: np.ndarray,
    home_ids: tuple[str, ...],
    buildings: Sequence[Building],
    households: Sequence[Household],
    days: tuple[np.ndarray, ...],
    first: pd.Timestamp,
    slot_minutes: int,
    offsets: np.ndarray,
    outages: list[np.ndarray],
) -> dict[str, HomeTruth]:
    """The slot-grid truth: each slot takes the state held for most of its minutes."""
    n_minutes, n_homes = state.shape
    n_slots = n_minutes // slot_minutes
    blocks = state.reshape(n_slots, slot_minutes, n_homes)
    counts = np.stack(
        [
            (blocks == AWAY).sum(axis=1),
            ((blocks == AWAKE) | (blocks == WIND_DOWN)).sum(axis=1),
            (blocks == ASLEEP).sum(axis=1),
        ]
    )
    label = counts.argmax(axis=0)  # 0 away, 1 awake, 2 asleep; ties go to the first
    index = pd.date_range(first, periods=n_slots, freq=f"{slot_minutes}min")
    dates = pd.date_range(first, periods=n_minutes // MINUTES_PER_DAY, freq="D")
    wake, leave, back, sleep, away = days
    truth = {}
    for h, home_id in enumerate(home_ids):
        day_frame = pd.DataFrame(
            {
                "wake": wake[h],
                "leave": np.where(away[h], leave[h], np.nan),
                "return_home": np.where(away[h], back[h], np.nan),
                "sleep": sleep[h],
            },
            index=dates,
        )
        spans = tuple(
            (first + pd.Timedelta(minutes=int(b)), first + pd.Timedelta(minutes=int(e)))
            for b, e in outages[h]
        )
        truth[home_id] = HomeTruth(
            home_id=home_id,
            thermostat_id=f"{home_id}-thermostat",
            motion_id=f"{home_id}-motion",
            occupied=pd.Series(label[:, h] != 0, index=index, name="occupied"),
            asleep=pd.Series(label[:, h] == 2, index=index, name="asleep"),
            preferred=pd.Series(preferred_lut[h, label[:, h]], index=index, name="preferred"),
            building=buildings[h],
            household=households[h],
            days=day_frame,
            clock_offset_s=int(offsets[h]),
            outages=spans,
        )
    return truth


def run_thermostat(
    homes: SimulatedHomes,
    home_ids: Sequence[str] | None,
    setpoints: np.ndarray | Callable[[int, np.ndarray], np.ndarray],
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> ThermostatRun:
    """Replay the homes' thermal model under another setpoint trajectory.

    Same weather, buildings and true occupancy (so the same internal gains) as the
    simulation, but no occupant adjustments: the thermostat follows ``setpoints`` exactly.
    The state at ``start`` (indoor temperature, heating on or off) is the simulation's, so
    replaying the simulated setpoints reproduces the simulated temperatures bit for bit.

    Parameters
    ----------
    homes : the simulation.
    home_ids : the homes to run (``None``: all), in the order of the result.
    setpoints : ``(n_homes, n_minutes)`` °C per home and minute from ``start``, or a
        callable ``f(t, indoor) -> (n_homes,)`` asked each minute ``t`` (0 = ``start``) with
        the current indoor temperatures (a reactive thermostat).
    start, end : UTC minutes within the simulation (default: all of it); ``end`` excluded.

    Returns
    -------
    ThermostatRun
    """
    ids = tuple(homes.home_ids if home_ids is None else home_ids)
    if not ids:
        raise ValueError("home_ids: empty; pass None for all homes")
    cols = np.array([homes._column(h) for h in ids])
    index = homes.minute_index
    m0 = _minute(homes, start, index[0], "start")
    m1 = _minute(homes, end, index[-1] + pd.Timedelta(minutes=1), "end")
    if m1 <= m0:
        raise ValueError(f"start {start} must be before end {end}")
    n = m1 - m0
    table: np.ndarray | None = None
    if not callable(setpoints):
        values = np.asarray(setpoints, dtype=float)
        if values.shape != (len(ids), n):
            raise ValueError(
                f"setpoints: expected shape (n_homes, n_minutes) = ({len(ids)}, {n}), got "
                f"{values.shape}; for one trajectory shared by all homes use np.tile"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("setpoints: all values must be finite °C")
        table = np.ascontiguousarray(values.T)
    buildings = [homes.truth[h].building for h in ids]
    inv_tau = np.array([1.0 / b.tau_h for b in buildings])
    rate = np.array([b.heat_rate_c_per_h for b in buildings])
    gain = np.array([b.gain_c_per_h for b in buildings])
    state = homes._state[m0:m1, cols]
    occupied = state != AWAY
    outdoor = homes.outdoor.to_numpy()[m0:m1]
    temp = homes._indoor[m0, cols].copy()
    on = homes._heating[m0 - 1, cols].copy() if m0 else np.zeros(len(ids), dtype=bool)
    indoor = np.empty((n, len(ids)))
    heating = np.empty((n, len(ids)), dtype=bool)
    used = np.empty((n, len(ids)))
    for t in range(n):
        if table is not None:
            sp = table[t]
        else:
            sp = np.asarray(setpoints(t, temp.copy()), dtype=float)
            if sp.shape != (len(ids),) or not np.all(np.isfinite(sp)):
                raise ValueError(
                    f"setpoints({t}, indoor) returned {sp.shape}; need {len(ids)} finite °C"
                )
        indoor[t] = temp
        used[t] = sp
        temp, on = _thermal_step(temp, on, sp, outdoor[t], occupied[t], inv_tau, rate, gain)
        heating[t] = on
    return ThermostatRun(
        home_ids=ids,
        index=index[m0:m1],
        indoor=indoor.T.copy(),
        heating=heating.T.copy(),
        setpoint=used.T.copy(),
        occupied=occupied.T.copy(),
        preferred=homes._preferred_lut[cols[:, None], state.T],
        power_kw=np.array([b.power_kw for b in buildings]),
    )


def _minute(
    homes: SimulatedHomes, moment: str | pd.Timestamp | None, default: pd.Timestamp, name: str
) -> int:
    """Position of ``moment`` on the simulation's minutes (``len`` for the end)."""
    at = default if moment is None else pd.Timestamp(moment)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    offset = (at - homes.start) / pd.Timedelta(minutes=1)
    n = len(homes.outdoor)
    if offset != int(offset) or not 0 <= offset <= n:
        raise ValueError(
            f"{name}: {moment} must be a whole minute between {homes.start} and "
            f"{homes.start + pd.Timedelta(minutes=n)}"
        )
    if name == "start" and offset == n:
        raise ValueError(f"start: {moment} is the end of the simulation")
    return int(offset)
