"""The time-of-week grid and the time features every device model shares.

A week is cut into slots of ``slot_minutes`` (15 by default, 672 a week), counted from
Monday 00:00 in the home's local time: habits follow the household's clock, not UTC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_SLOT_MINUTES",
    "TIME_FEATURE_NAMES",
    "local_index",
    "slot_of_week",
    "slots_per_week",
    "time_features",
]

DEFAULT_SLOT_MINUTES = 15
TIME_FEATURE_NAMES: tuple[str, ...] = (
    "sin_day_1",
    "cos_day_1",
    "sin_day_2",
    "cos_day_2",
    "sin_day_3",
    "cos_day_3",
    "weekend",
    "weekend_sin_day_1",
    "weekend_cos_day_1",
)


def slots_per_week(slot_minutes: int = DEFAULT_SLOT_MINUTES) -> int:
    """How many slots a week has; ``slot_minutes`` must divide a day."""
    if slot_minutes <= 0 or (24 * 60) % slot_minutes:
        raise ValueError(f"slot_minutes must divide 1440 (a day), got {slot_minutes}")
    return 7 * 24 * 60 // slot_minutes


def local_index(index: pd.DatetimeIndex, timezone: str = "UTC") -> pd.DatetimeIndex:
    """``index`` (tz-aware, or naive meaning UTC) as wall-clock time in ``timezone``."""
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.tz_convert(timezone)


def slot_of_week(
    index: pd.DatetimeIndex, slot_minutes: int = DEFAULT_SLOT_MINUTES, timezone: str = "UTC"
) -> np.ndarray:
    """Slot number (0 = Monday 00:00 local) of each timestamp, as an int64 array."""
    slots_per_week(slot_minutes)
    local = local_index(pd.DatetimeIndex(index), timezone)
    minute_of_week = local.day_of_week * 1440 + local.hour * 60 + local.minute
    return np.asarray(minute_of_week // slot_minutes, dtype=np.int64)


def time_features(index: pd.DatetimeIndex, timezone: str = "UTC") -> np.ndarray:
    """Smooth time-of-day harmonics and a weekend flag, one row per timestamp.

    Columns are :data:`TIME_FEATURE_NAMES`. Three harmonics of the day let a linear model draw
    a morning and an evening; the weekend interaction lets weekends keep their own rhythm.
    """
    local = local_index(pd.DatetimeIndex(index), timezone)
    day_fraction = np.asarray((local.hour * 60 + local.minute) / 1440.0, dtype=float)
    weekend = np.asarray(local.day_of_week >= 5, dtype=float)
    angle = 2 * np.pi * day_fraction
    columns = [
        np.sin(angle),
        np.cos(angle),
        np.sin(2 * angle),
        np.cos(2 * angle),
        np.sin(3 * angle),
        np.cos(3 * angle),
        weekend,
        weekend * np.sin(angle),
        weekend * np.cos(angle),
    ]
    return np.column_stack(columns)
