"""What setpoint a device will hold: its own program, plus the deviations the household repeats.

A thermostat with a program (Home / Away / Sleep "comfort settings" on ecobee) holds the
setting's setpoint unless someone overrides it, and some overrides are habits: the same hold
most evenings, pre-cooling before the family returns (ecobee's Smart Recovery), the device's
own ramps at change points. :class:`ProgramDeviations` learns, per day type and time of day,
the median deviation of the setpoint in force from the program over the learning days. The
median makes it a majority vote: a deviation counts only when it happened on more than half
of the days of that type at that time, so one-off holds do not move the prediction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tailor.devices.features import slot_of_week, slots_per_week
from tailor.devices.schedule import DAY_TYPES

__all__ = ["ProgramDeviations"]


class ProgramDeviations:
    """Predict the setpoint in force from the program and the household's repeated deviations.

    Parameters
    ----------
    slot_minutes : int
        The grid of the series passed to ``fit`` and ``predict``.
    timezone : str
        The home's IANA time zone.
    day_types : {"weekday_weekend", "daily", "single"}
        How days are pooled.

    Attributes
    ----------
    offsets_ : ndarray of shape (slots_per_week,)
        Median deviation from the program per slot of the week (°C).
    fallback_mode_ : ndarray of object, shape (slots_per_week,)
        The program's usual mode per slot, for steps whose mode is unknown.
    mode_setpoints_ : dict
        Setpoint of each program mode.
    """

    def __init__(
        self, *, slot_minutes: int = 5, timezone: str = "UTC", day_types: str = "weekday_weekend"
    ) -> None:
        self.slot_minutes = slot_minutes
        self.timezone = timezone
        self.day_types = day_types

    def fit(
        self,
        setpoint: pd.Series,
        program_mode: pd.Series,
        mode_setpoints: Mapping[str, float],
    ) -> ProgramDeviations:
        """Learn from the setpoint in force and the program's mode on one grid."""
        n_slots = slots_per_week(self.slot_minutes)
        if self.day_types not in DAY_TYPES:
            raise ValueError(f"day_types must be one of {sorted(DAY_TYPES)}")
        if not setpoint.index.equals(program_mode.index):
            raise ValueError("setpoint and program_mode must share one index (the grid)")
        if not mode_setpoints:
            raise ValueError("mode_setpoints: give the setpoint of each program mode")
        self.mode_setpoints_ = {str(k): float(v) for k, v in mode_setpoints.items()}
        index = pd.DatetimeIndex(setpoint.index)
        slots = slot_of_week(index, self.slot_minutes, self.timezone)
        self.fallback_mode_ = _usual_mode(program_mode, slots, n_slots, self.mode_setpoints_)
        program = self.program_setpoint(index, program_mode)
        residual = setpoint.to_numpy(dtype=float) - program
        n_day = 1440 // self.slot_minutes
        weekday = slots // n_day
        time_of_day = slots % n_day
        self.offsets_ = np.zeros(n_slots)
        for _, days in DAY_TYPES[self.day_types]:
            of_type = np.isin(weekday, days) & np.isfinite(residual)
            for minute_slot in range(n_day):
                here = of_type & (time_of_day == minute_slot)
                if here.any():
                    offset = float(np.median(residual[here]))
                    for day in days:
                        self.offsets_[day * n_day + minute_slot] = offset
        return self

    def program_setpoint(self, index: pd.DatetimeIndex, program_mode: pd.Series) -> np.ndarray:
        """The program's setpoint at each step (its usual mode where the mode is unknown)."""
        slots = slot_of_week(pd.DatetimeIndex(index), self.slot_minutes, self.timezone)
        modes = program_mode.reindex(index).astype(object).to_numpy()
        known = np.array([m in self.mode_setpoints_ for m in modes])
        modes = np.where(known, modes, self.fallback_mode_[slots])
        return np.array([self.mode_setpoints_.get(m, np.nan) for m in modes], dtype=float)

    def predict(self, index: pd.DatetimeIndex, program_mode: pd.Series) -> np.ndarray:
        slots = slot_of_week(pd.DatetimeIndex(index), self.slot_minutes, self.timezone)
        return self.program_setpoint(index, program_mode) + self.offsets_[slots]


def _usual_mode(
    program_mode: pd.Series, slots: np.ndarray, n_slots: int, known: Mapping[str, float]
) -> np.ndarray:
    frame = pd.DataFrame({"slot": slots, "mode": program_mode.astype(object).to_numpy()})
    frame = frame[frame["mode"].isin(list(known))]
    if frame.empty:
        raise ValueError("program_mode: no step carries a known mode; cannot learn the program")
    overall = frame["mode"].mode().iloc[0]
    usual = frame.groupby("slot")["mode"].agg(lambda m: m.mode().iloc[0])
    table = np.full(n_slots, overall, dtype=object)
    table[usual.index.to_numpy()] = usual.to_numpy()
    return table
