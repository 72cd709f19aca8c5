"""When is the home occupied: a logistic model on sensors and time of week, and its baseline.

The model is deliberately linear (a scikit-learn ``LogisticRegression`` on standardized
features): a household's presence is well described by time of week plus what the sensors
said in the last hour, a linear model is what the device can run (its weights go into the
ONNX decision graph and into the federated average), and it cannot memorise a month of one
home's noise. The baseline it must beat is the time-of-week majority: "is this home usually
occupied on a Tuesday at 14:15?".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from tailor.devices.features import (
    DEFAULT_SLOT_MINUTES,
    TIME_FEATURE_NAMES,
    slot_of_week,
    slots_per_week,
    time_features,
)

__all__ = [
    "OccupancyModel",
    "TimeOfWeekBaseline",
    "activity_profile",
    "occupancy_f1",
    "sensor_features",
]


def occupancy_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the occupied class (1), with 0 when nothing is predicted or true."""
    return float(f1_score(np.asarray(y_true, int), np.asarray(y_pred, int), zero_division=0))


class TimeOfWeekBaseline:
    """The majority label of each slot of the week in the training data.

    A slot never seen in training takes the overall majority.
    """

    def __init__(self, *, slot_minutes: int = DEFAULT_SLOT_MINUTES, timezone: str = "UTC"):
        self.slot_minutes = slot_minutes
        self.timezone = timezone

    def fit(self, index: pd.DatetimeIndex, y: np.ndarray) -> TimeOfWeekBaseline:
        y = np.asarray(y, dtype=float)
        if len(index) != len(y):
            raise ValueError(f"index has {len(index)} rows but y has {len(y)}")
        if len(y) == 0:
            raise ValueError("no training rows: the baseline needs labelled history")
        slots = slot_of_week(index, self.slot_minutes, self.timezone)
        n_slots = slots_per_week(self.slot_minutes)
        known = ~np.isnan(y)
        ones = np.bincount(slots[known], weights=y[known], minlength=n_slots)
        counts = np.bincount(slots[known], minlength=n_slots)
        overall = float(np.nanmean(y) >= 0.5)
        share = np.divide(ones, counts, out=np.full(n_slots, overall), where=counts > 0)
        self.share_ = share
        self.table_ = (share >= 0.5).astype(int)
        return self

    def predict(self, index: pd.DatetimeIndex) -> np.ndarray:
        return self.table_[slot_of_week(index, self.slot_minutes, self.timezone)]


class OccupancyModel:
    """Logistic regression of occupancy on standardized features.

    Parameters
    ----------
    C : float
        Inverse L2 strength (scikit-learn's).
    threshold : float
        Probability at or above which a slot is called occupied.
    class_weight : {"balanced", None}
        ``"balanced"`` when the occupied class is rare (motion in a quiet home).

    Attributes
    ----------
    coef_, intercept_ : the model in the *raw* feature space (standardization folded in), so
        ``sigmoid(X @ coef_ + intercept_)`` is the probability: what the device computes.
    """

    def __init__(
        self, *, C: float = 1.0, threshold: float = 0.5, class_weight: str | None = None
    ) -> None:
        self.C = C
        self.threshold = threshold
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray) -> OccupancyModel:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, k) with n = len(y); got {X.shape} and {y.shape}")
        keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
        if keep.sum() < 10 or len(np.unique(y[keep])) < 2:
            raise ValueError(
                "occupancy needs at least 10 labelled rows with both occupied and empty "
                f"examples; got {int(keep.sum())} row(s) and labels {sorted(set(y[keep]))}"
            )
        scaler = StandardScaler().fit(X[keep])
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        logistic = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000)
        logistic.fit((X[keep] - scaler.mean_) / scale, y[keep].astype(int))
        self.coef_ = logistic.coef_[0] / scale
        self.intercept_ = float(logistic.intercept_[0] - np.dot(self.coef_, scaler.mean_))
        self.n_features_in_ = X.shape[1]
        self.n_rows_ = int(keep.sum())
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.nan_to_num(np.asarray(X, dtype=float))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}"
            )
        return 1.0 / (1.0 + np.exp(-(X @ self.coef_ + self.intercept_)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= self.threshold).astype(int)


def sensor_features(
    sensors: pd.DataFrame, *, timezone: str = "UTC", with_time: bool = True
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Features from environmental sensors read *now* (occupancy detection, not forecast).

    Each numeric column, its change since the previous row (people switch lights on and
    breathe CO2 out: the change says more than the level) and, optionally, the time features.
    Missing cells are filled from the previous reading for the level and 0 for the change.
    """
    numeric = sensors.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise ValueError("sensor_features needs at least one numeric sensor column")
    level = numeric.ffill().bfill().fillna(0.0)
    change = level.diff().fillna(0.0)
    columns = [level.to_numpy(float), change.to_numpy(float)]
    names = [*numeric.columns, *(f"{c}_change" for c in numeric.columns)]
    if with_time:
        columns.append(time_features(pd.DatetimeIndex(sensors.index), timezone))
        names.extend(TIME_FEATURE_NAMES)
    return np.column_stack(columns), tuple(str(n) for n in names)


def activity_profile(
    motion: pd.Series, *, slot_minutes: int = DEFAULT_SLOT_MINUTES, timezone: str = "UTC"
) -> np.ndarray:
    """Typical share of slots with motion, per slot of the week (NaN where never observed)."""
    values = motion.to_numpy(dtype=float)
    slots = slot_of_week(pd.DatetimeIndex(motion.index), slot_minutes, timezone)
    n_slots = slots_per_week(slot_minutes)
    known = ~np.isnan(values)
    sums = np.bincount(slots[known], weights=values[known], minlength=n_slots)
    counts = np.bincount(slots[known], minlength=n_slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def home_labels(
    motion: pd.Series,
    *,
    timezone: str = "UTC",
    away_after: str | pd.Timedelta = "1h",
    night_start_hour: int = 20,
    night_end_hour: int = 11,
) -> np.ndarray:
    """Whether the household was at home in each slot, inferred from motion alone.

    Motion says someone is up and about; its absence is ambiguous. A quiet stretch (no
    motion) longer than ``away_after`` was an absence from its first quiet slot, since the
    household left right after the last motion, except a quiet night: one that starts after
    ``night_start_hour`` or before 06:00 (a pet or a trip to the bathroom splits a night in
    two) and ends before ``night_end_hour`` (local time), at most 14 hours long, is the
    household asleep, at home. Shorter quiet stretches are people sitting still. Unknown
    slots (NaN) count as quiet.

    This is the *training label* of the home's occupancy forecast: it looks ahead (to see
    how long a quiet stretch lasted), which the forecast itself never does.
    """
    values = np.nan_to_num(motion.to_numpy(dtype=float), nan=0.0)
    index = pd.DatetimeIndex(motion.index)
    labels = np.ones(len(values), dtype=int)
    if len(values) == 0:
        return labels
    away = pd.Timedelta(away_after).value
    ts = index.as_unit("ns").asi8
    local = index.tz_convert(timezone) if index.tz is not None else index
    hours = np.asarray(local.hour)
    step = int(np.median(np.diff(ts))) if len(ts) > 1 else away
    moving = values > 0
    # Quiet stretches as [start, stop) runs of slots without motion.
    edges = np.diff(np.concatenate([[1], moving.astype(int), [1]]))
    starts, stops = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    for start, stop in zip(starts, stops, strict=True):
        length = (stop - start) * step
        if length <= away:
            continue
        night = (
            start > 0
            and stop < len(values)
            and (hours[start] >= night_start_hour or hours[start] < 6)
            and hours[stop] < night_end_hour
            and length <= pd.Timedelta("14h").value
        )
        if not night:
            labels[start:stop] = 0
    return labels
