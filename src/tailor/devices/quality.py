"""Telemetry data quality: irregular device readings in, a regular per-home grid out.

Devices report when they like: bursts, silences, clocks that are hours off or reset to
2000-01-01, the same reading sent twice, Fahrenheit next to Celsius, a sensor stuck on one
value. :func:`clean` runs the steps in the order that keeps each one honest:

1. :func:`normalize_units`: every value into the canonical unit of its metric (°C, fraction...);
2. :func:`correct_clock_skew`: re-anchor device timestamps on tailor's clock;
3. :func:`drop_duplicates`: the same reading received twice counts once (the last one received);
4. :func:`flag_outliers` and :func:`detect_stuck`: impossible, NaN, spiky and frozen readings are
   dropped (and counted);
5. :func:`resample`: each home onto a regular grid by time-weighted averaging, with short gaps
   interpolated, long ones left empty, and every filled or missing slot marked.

Readings frame columns: ``home_id``, ``device_id``, ``metric``, ``ts`` (UTC), ``value``, and
optionally ``unit``, ``device_time`` and ``received_at`` (UTC or NaT).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "BINARY_METRICS",
    "CANONICAL_UNITS",
    "CONTINUOUS_METRICS",
    "FRACTION_METRICS",
    "METRIC_BOUNDS",
    "SPIKE_METRICS",
    "QualityError",
    "QualityReport",
    "clean",
    "correct_clock_skew",
    "detect_stuck",
    "drop_duplicates",
    "flag_outliers",
    "normalize_units",
    "resample",
]

logger = logging.getLogger(__name__)

CONTINUOUS_METRICS: tuple[str, ...] = (
    "indoor_temp",
    "outdoor_temp",
    "humidity",
    "co2",
    "light",
    "setpoint",
)
BINARY_METRICS: tuple[str, ...] = ("motion", "presence", "door")
FRACTION_METRICS: tuple[str, ...] = ("heating", "cooling")
_ALL_METRICS: tuple[str, ...] = CONTINUOUS_METRICS + BINARY_METRICS + FRACTION_METRICS
_TEMPERATURE_METRICS = ("indoor_temp", "outdoor_temp", "setpoint")
# A setpoint is piecewise constant by nature: between two readings the older one is in force.
# Interpolating it linearly would invent setpoints nobody chose.
_HOLD_METRICS = frozenset({"setpoint"})

CANONICAL_UNITS: dict[str, str] = {
    "indoor_temp": "°C",
    "outdoor_temp": "°C",
    "setpoint": "°C",
    "humidity": "%",
    "co2": "ppm",
    "light": "lx",
    "motion": "binary",
    "presence": "binary",
    "door": "binary",
    "heating": "fraction",
    "cooling": "fraction",
}

METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "indoor_temp": (-30.0, 60.0),
    "outdoor_temp": (-60.0, 60.0),
    "setpoint": (4.0, 35.0),
    "humidity": (0.0, 100.0),
    "co2": (0.0, 10_000.0),
    "light": (0.0, 100_000.0),
    "motion": (0.0, 1.0),
    "presence": (0.0, 1.0),
    "door": (0.0, 1.0),
    "heating": (0.0, 1.0),
    "cooling": (0.0, 1.0),
}

# The spike test only runs on slowly varying physical signals: lights, doors, heating relays
# and setpoints change in steps on purpose.
SPIKE_METRICS: tuple[str, ...] = ("indoor_temp", "outdoor_temp", "humidity", "co2")
# Floor on the MAD, about twice a typical sensor's resolution, so that a flat signal whose
# noise is near zero does not turn every last-digit flicker into a spike.
_MAD_FLOOR: dict[str, float] = {
    "indoor_temp": 0.2,
    "outdoor_temp": 0.3,
    "humidity": 2.0,
    "co2": 50.0,
}
_MAD_SCALE = 1.4826  # MAD -> standard deviation for Gaussian noise
_MIN_SIDE_READINGS = 3
_STUCK_TOLERANCE = 1e-9
_MAX_SLOTS = 2_000_000  # about 57 years of 15-minute slots: more is a clock gone wrong

_REQUIRED = ("home_id", "device_id", "metric", "ts", "value")

# Spellings accepted per unit, compared after lower-casing and dropping spaces and underscores.
_CELSIUS = {"c", "°c", "degc", "celsius", "degreesc", "degreescelsius"}
_FAHRENHEIT = {"f", "°f", "degf", "fahrenheit", "degreesf", "degreesfahrenheit"}
_KELVIN = {"k", "°k", "kelvin"}
_PERCENT = {"%", "percent", "pct"}
_SECONDS = {"s", "sec", "secs", "second", "seconds"}
_FRACTION = {"fraction", "ratio", "1"}
_SAME_UNITS: dict[str, set[str]] = {
    "humidity": {"%", "%rh", "rh", "percent", "pct"},
    "co2": {"ppm"},
    "light": {"lx", "lux"},
    "motion": {"binary", "bool", "boolean", "0/1"},
    "presence": {"binary", "bool", "boolean", "0/1"},
    "door": {"binary", "bool", "boolean", "0/1"},
}


class QualityError(ValueError):
    """Readings that cannot be cleaned; the message names the row, the field and the fix."""


@dataclass
class QualityReport:
    """What each cleaning step did, in counts.

    Attributes
    ----------
    rows_in : int
        Readings handed to :func:`clean`.
    unit_converted : int
        Readings whose value was converted into the canonical unit.
    duplicates : int
        Readings dropped as duplicates (same home, device, metric and time).
    outliers : dict of str to int
        Readings dropped per reason (``"nan"``, ``"out_of_range"``, ``"spike"``).
    stuck : int
        Readings dropped because their sensor was stuck (and not already an outlier).
    skew_seconds : dict of str to float
        Per device, how far its clock runs ahead of tailor's (negative: behind), latency
        included, as the clock stands in its latest segment.
    gap_slots : dict of str to int
        Per metric, grid slots without a reading of their own (filled or missing), all homes.
    rows_out : int
        Readings that survived and went into the grids.
    slots : int
        Grid rows over all homes.
    homes_without_data : list of str
        Homes left with no reading after cleaning, so without a grid.
    """

    rows_in: int = 0
    unit_converted: int = 0
    duplicates: int = 0
    outliers: dict[str, int] = field(default_factory=dict)
    stuck: int = 0
    skew_seconds: dict[str, float] = field(default_factory=dict)
    gap_slots: dict[str, int] = field(default_factory=dict)
    rows_out: int = 0
    slots: int = 0
    homes_without_data: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as plain JSON-ready types (NaN skews become None)."""
        out = asdict(self)
        out["skew_seconds"] = {
            str(k): (None if not np.isfinite(v) else float(v)) for k, v in self.skew_seconds.items()
        }
        return out


# --------------------------------------------------------------------------- validation


def _check_columns(readings: pd.DataFrame, required: Sequence[str]) -> None:
    if not isinstance(readings, pd.DataFrame):
        raise QualityError(
            f"readings must be a pandas DataFrame, got {type(readings).__name__}; "
            "build one with the columns " + ", ".join(_REQUIRED)
        )
    missing = [c for c in required if c not in readings.columns]
    if missing:
        raise QualityError(
            f"readings lack the column(s) {', '.join(missing)}; a readings frame needs "
            f"{', '.join(required)} (and optionally unit, device_time, received_at)"
        )


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _utc(values: pd.Series, name: str, *, allow_missing: bool) -> pd.Series:
    """``values`` as datetime64[ns, UTC]; naive timestamps are taken to be UTC already."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) and str(values.dtype.tz) == "UTC":
        out = values
    else:
        try:
            out = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        except (TypeError, ValueError) as exc:
            raise QualityError(
                f"field '{name}' cannot be read as timestamps ({exc}); give ISO-8601 strings "
                "or pandas timestamps"
            ) from exc
        bad = (out.isna() & values.notna()).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise QualityError(
                f"row {row}, field '{name}': {values.iloc[row]!r} is not a timestamp; "
                "give ISO-8601 strings or pandas timestamps"
            )
    out = out.dt.as_unit("ns")
    if not allow_missing:
        missing = out.isna().to_numpy()
        if missing.any():
            raise QualityError(
                f"row {_first_row(missing)}, field '{name}': the timestamp is missing; "
                f"every reading needs a '{name}' (drop the row or fill it from device_time)"
            )
    return out


def _prepare(readings: pd.DataFrame, required: Sequence[str] = _REQUIRED) -> pd.DataFrame:
    """A copy with the optional columns present and every column in its contract dtype."""
    _check_columns(readings, required)
    df = readings.copy()
    for name in ("home_id", "device_id", "metric"):
        if name in df.columns:
            missing = df[name].isna().to_numpy()
            if missing.any():
                raise QualityError(
                    f"row {_first_row(missing)}, field '{name}': the value is missing; "
                    f"every reading needs a {name}"
                )
            df[name] = df[name].astype(str)
    if "value" in df.columns:
        numeric = pd.to_numeric(df["value"], errors="coerce")
        bad = (numeric.isna() & df["value"].notna()).to_numpy()
        if bad.any():
            row = _first_row(bad)
            raise QualityError(
                f"row {row}, field 'value': {df['value'].iloc[row]!r} is not a number; "
                "send numbers (booleans as 0/1)"
            )
        df["value"] = numeric.astype(float)
    if "ts" in df.columns:
        df["ts"] = _utc(df["ts"], "ts", allow_missing=False)
    for name in ("device_time", "received_at"):
        if name in df.columns:
            df[name] = _utc(df[name], name, allow_missing=True)
        else:
            df[name] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    if "unit" not in df.columns:
        df["unit"] = None
    return df


def _ns(values: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch as int64 (NaT becomes the int64 minimum)."""
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _timedelta_ns(value: str | pd.Timedelta, name: str) -> int:
    try:
        delta = pd.Timedelta(value)
    except (TypeError, ValueError) as exc:
        raise QualityError(
            f"{name}={value!r} is not a duration; write it like '15min', '1h' or '300s'"
        ) from exc
    if pd.isna(delta) or delta <= pd.Timedelta(0):
        raise QualityError(f"{name}={value!r} must be a positive duration such as '15min'")
    return int(delta.value)


# --------------------------------------------------------------------------- units


def _unit_key(unit: object) -> str:
    """A unit lower-cased, without spaces or underscores, unicode degree signs unified."""
    if unit is None or (isinstance(unit, float) and np.isnan(unit)):
        return ""
    text = str(unit).strip().replace("℃", "°c").replace("℉", "°f").replace("º", "°")
    return text.lower().replace(" ", "").replace("_", "")


def _conversion(metric: str, key: str) -> str | None:
    """How a value of ``metric`` in unit ``key`` becomes canonical; None for an unknown unit."""
    if key == "":
        return "same"
    if metric in _TEMPERATURE_METRICS:
        if key in _CELSIUS:
            return "same"
        if key in _FAHRENHEIT:
            return "fahrenheit"
        if key in _KELVIN:
            return "kelvin"
        return None
    if metric in FRACTION_METRICS:
        if key in _FRACTION:
            return "same"
        if key in _PERCENT:
            return "percent"
        if key in _SECONDS:
            return "seconds"
        return None
    return "same" if key in _SAME_UNITS.get(metric, ()) else None


def _normalize_units(df: pd.DataFrame, interval_seconds: float) -> tuple[pd.DataFrame, int]:
    if not interval_seconds or interval_seconds <= 0:
        raise QualityError(
            f"interval_seconds={interval_seconds!r} must be positive: it is how long each "
            "heating/cooling reading in seconds covers (300 for a 5-minute report)"
        )
    metric_code, metrics = pd.factorize(df["metric"])
    for code, name in enumerate(metrics):
        if name not in CANONICAL_UNITS:
            row = _first_row(metric_code == code)
            raise QualityError(
                f"row {row}, field 'metric': unknown metric {name!r}; map it to one of "
                f"{', '.join(_ALL_METRICS)} before cleaning (or drop it)"
            )
    # Classify each distinct (metric, unit) pair once: a home has a handful, not 50k.
    unit_code, units = pd.factorize(df["unit"].astype(object), use_na_sentinel=True)
    unit_keys = [_unit_key(u) for u in units] + [""]  # code -1 (missing) -> last entry
    pair = metric_code.astype(np.int64) * (len(unit_keys) + 1) + unit_code
    pair_code, pairs = pd.factorize(pair)
    kinds = []
    for code, value in enumerate(pairs):
        name = metrics[value // (len(unit_keys) + 1)]
        u = int(value % (len(unit_keys) + 1))
        u = -1 if u == len(unit_keys) else u
        kind = _conversion(name, unit_keys[u])
        if kind is None:
            row = _first_row(pair_code == code)
            raise QualityError(
                f"row {row}, field 'unit': unknown unit {df['unit'].iloc[row]!r} for metric "
                f"{name!r}; send it in {CANONICAL_UNITS[name]!r} (or a unit tailor converts: "
                "°F/K for temperatures, % or s for heating/cooling), or leave the unit empty "
                "if the value is already canonical"
            )
        kinds.append(kind)
    kind = np.asarray(kinds, dtype=object)[pair_code]
    value = df["value"].to_numpy(dtype=float).copy()
    fahrenheit = kind == "fahrenheit"
    value[fahrenheit] = (value[fahrenheit] - 32.0) * 5.0 / 9.0
    kelvin = kind == "kelvin"
    value[kelvin] = value[kelvin] - 273.15
    percent = kind == "percent"
    value[percent] = value[percent] / 100.0
    seconds = kind == "seconds"
    # Seconds of running time per report interval; a report that claims more than the whole
    # interval (clock jitter, a late report) still means "ran all the time".
    value[seconds] = np.clip(value[seconds] / float(interval_seconds), 0.0, 1.0)
    out = df.copy()
    out["value"] = value
    canonical = np.asarray([CANONICAL_UNITS[m] for m in metrics], dtype=object)
    out["unit"] = pd.Series(canonical[metric_code], index=df.index, dtype=object)
    return out, int((kind != "same").sum())


def normalize_units(readings: pd.DataFrame, *, interval_seconds: float = 300) -> pd.DataFrame:
    """Convert every reading into the canonical unit of its metric.

    Temperatures (``indoor_temp``, ``outdoor_temp``, ``setpoint``) become °C from °F or K;
    ``heating``/``cooling`` become the fraction of the interval the system ran, from a
    percentage or from seconds (divided by ``interval_seconds`` and clipped to [0, 1]).
    A missing unit means the value is already canonical.

    Parameters
    ----------
    readings : DataFrame
        A readings frame.
    interval_seconds : float, default 300
        The report interval a heating/cooling reading in seconds covers.

    Returns
    -------
    DataFrame
        A copy with converted ``value`` and ``unit`` set to :data:`CANONICAL_UNITS`.

    Raises
    ------
    QualityError
        For an unknown metric, or a unit tailor does not know for that metric (the message
        names the row).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"home_id": ["h"], "device_id": ["d"], "metric": ["indoor_temp"],
    ...                       "ts": [pd.Timestamp("2024-01-01", tz="UTC")], "value": [68.0],
    ...                       "unit": ["°F"]})
    >>> out = normalize_units(frame)
    >>> float(out["value"].iloc[0]), out["unit"].iloc[0]
    (20.0, '°C')
    """
    df = _prepare(readings, ("metric", "value"))
    out, _ = _normalize_units(df, interval_seconds)
    return out


# --------------------------------------------------------------------------- clock skew


def correct_clock_skew(
    readings: pd.DataFrame, *, max_latency: str | pd.Timedelta = "5min"
) -> tuple[pd.DataFrame, pd.Series]:
    """Re-anchor device timestamps on tailor's clock.

    Per device, the offset ``received_at - device_time`` is the clock error plus the network
    latency. Its median over a segment of the device's readings is robust to the odd late
    delivery or backlog flush; ``ts`` becomes ``device_time + offset``, which is the reading's
    time on tailor's clock, late by about the device's typical latency (a few seconds) instead
    of by its clock error (which can be hours). Only the median is used, never the minimum:
    one reading with a wrong ``received_at`` must not move a whole device.

    Segments: a clock that is reset (``device_time`` goes back by more than ``max_latency``
    while ``received_at`` goes forward) or jumps ahead (the offset drops more than
    ``max_latency`` below its lowest value so far, which latency alone cannot do) starts a new
    segment with its own offset. Smaller backward steps are taken for reordered deliveries.

    Rows without ``device_time`` keep their ``ts``. Rows with a ``device_time`` but no
    ``received_at`` take the offset of their device's latest segment; a device without any row
    having both keeps all its ``ts`` and gets a NaN skew.

    Parameters
    ----------
    readings : DataFrame
        A readings frame.
    max_latency : str or Timedelta, default "5min"
        The largest delivery delay taken as normal; larger clock moves start a new segment.

    Returns
    -------
    frame : DataFrame
        A copy with ``ts`` corrected.
    skew : Series
        Seconds the device's clock runs ahead of tailor's (latency included, so a perfect
        clock shows a few negative seconds), as of its latest segment, indexed by device_id.
    """
    df = _prepare(readings, ("device_id", "ts"))
    tolerance = _timedelta_ns(max_latency, "max_latency")
    n = len(df)
    device_codes, devices = pd.factorize(df["device_id"])
    dev_ns = _ns(df["device_time"])
    rec_ns = _ns(df["received_at"])
    has_dev = df["device_time"].notna().to_numpy()
    paired = has_dev & df["received_at"].notna().to_numpy()

    offsets = np.full(n, np.nan)  # per row, ns as float
    skew = pd.Series(np.nan, index=pd.Index(devices, name="device_id"), name="skew_seconds")
    if paired.any():
        rows = np.flatnonzero(paired)
        order = rows[np.lexsort((dev_ns[rows], rec_ns[rows], device_codes[rows]))]
        codes = device_codes[order]
        offset = (rec_ns[order] - dev_ns[order]).astype(np.float64)
        new_device = np.r_[True, codes[1:] != codes[:-1]]
        backward = np.r_[False, np.diff(dev_ns[order]) < -tolerance]
        first_pass = np.cumsum(new_device | backward)
        lowest = pd.Series(offset).groupby(first_pass).cummin().to_numpy()
        # A forward jump: the offset falls well below anything seen in this segment so far.
        same = np.r_[False, first_pass[1:] == first_pass[:-1]]
        forward = same & (offset < np.r_[np.inf, lowest[:-1]] - tolerance)
        segment = np.cumsum(new_device | backward | forward)
        median = pd.Series(offset).groupby(segment).transform("median").to_numpy()
        offsets[order] = median
        # The device's latest segment (by received_at) speaks for its clock as it is now.
        last = np.r_[codes[1:] != codes[:-1], True]
        latest_offset = np.full(len(devices), np.nan)
        latest_offset[codes[last]] = median[last]
        skew[:] = -latest_offset / 1e9
        orphan = has_dev & ~paired
        offsets[orphan] = latest_offset[device_codes[orphan]]
        for device, seconds in skew.items():
            if np.isfinite(seconds) and abs(seconds) > tolerance / 1e9:
                logger.debug("device %s: clock %+.0f s off tailor's", device, seconds)
    fix = np.isfinite(offsets)
    ts_ns = _ns(df["ts"]).copy()
    ts_ns[fix] = dev_ns[fix] + np.round(offsets[fix]).astype(np.int64)
    df["ts"] = pd.to_datetime(ts_ns, utc=True).as_unit("ns")
    return df, skew


# --------------------------------------------------------------------------- duplicates


def drop_duplicates(readings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one reading per home, device, metric and ``ts``: the last one received.

    "Last" is the latest ``received_at`` (a missing one counts as earliest), then the latest
    position in the frame. Rows keep their order and index.

    Returns
    -------
    frame : DataFrame
        The readings without duplicates.
    removed : int
        How many rows were dropped.
    """
    df = _prepare(readings, ("home_id", "device_id", "metric", "ts"))
    n = len(df)
    if n == 0:
        return df, 0
    rec = _ns(df["received_at"])  # NaT is int64 min: sorts first, i.e. "earliest"
    order = np.lexsort((np.arange(n), rec))
    keys = df[["home_id", "device_id", "metric", "ts"]].iloc[order]
    keep_sorted = ~keys.duplicated(keep="last").to_numpy()
    keep = np.zeros(n, dtype=bool)
    keep[order[keep_sorted]] = True
    return df.iloc[np.flatnonzero(keep)], int(n - keep.sum())


# --------------------------------------------------------------------------- outliers


def _per_metric(metric: pd.Series, mapping: dict[str, float], default: float) -> np.ndarray:
    """``mapping[metric]`` for every row, looked up once per distinct metric."""
    codes, names = pd.factorize(metric)
    table = np.asarray([mapping.get(name, default) for name in names], dtype=float)
    return table[codes] if len(table) else np.zeros(len(metric))


def _group_codes(df: pd.DataFrame) -> np.ndarray:
    device, _ = pd.factorize(df["device_id"])
    metric, metrics = pd.factorize(df["metric"])
    return device.astype(np.int64) * max(len(metrics), 1) + metric


def _rolling(
    values: np.ndarray, times_ns: np.ndarray, codes: np.ndarray, window: int, stat: str
) -> np.ndarray:
    """Trailing time-window ``stat`` per group; rows must be sorted by (code, time)."""
    series = pd.Series(values, index=pd.DatetimeIndex(times_ns.view("datetime64[ns]")))
    rolled = getattr(series.groupby(codes, sort=False).rolling(pd.Timedelta(window)), stat)()
    return rolled.to_numpy(dtype=float)


def _hampel_side(
    values: np.ndarray, times_ns: np.ndarray, codes: np.ndarray, half_window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trailing-window median, MAD and count of each row (rows sorted by code, time)."""
    median = _rolling(values, times_ns, codes, half_window, "median")
    mad = _rolling(np.abs(values - median), times_ns, codes, half_window, "median")
    count = _rolling(values, times_ns, codes, half_window, "count")
    return median, mad, count


def _spikes(df: pd.DataFrame, candidates: np.ndarray, window_ns: int, k: float) -> np.ndarray:
    """Hampel test seen from both sides; True where a candidate row is a spike."""
    spike = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(candidates)
    if len(rows) < 2 * _MIN_SIDE_READINGS:
        return spike
    sub = df.iloc[rows]
    codes = _group_codes(sub)
    t = _ns(sub["ts"])
    order = np.lexsort((t, codes))
    codes, t = codes[order], t[order]
    values = sub["value"].to_numpy(dtype=float)[order]
    floor = _per_metric(sub["metric"], _MAD_FLOOR, 0.0)[order]
    half = max(window_ns // 2, 1)
    # The leading window is a trailing one on reversed time: (code ascending, time descending).
    rev = np.lexsort((-t, codes))
    past = _hampel_side(values, t, codes, half)
    ahead_rev = _hampel_side(values[rev], (t.max() - t)[rev], codes[rev], half)
    ahead = tuple(np.empty_like(a) for a in ahead_rev)
    for dest, src in zip(ahead, ahead_rev, strict=True):
        dest[rev] = src

    def _exceeds(side: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
        median, mad, count = side
        scale = k * _MAD_SCALE * np.maximum(mad, floor)
        usable = count >= _MIN_SIDE_READINGS
        return usable, np.abs(values - median) > scale

    past_ok, past_far = _exceeds(past)
    ahead_ok, ahead_far = _exceeds(ahead)
    # A spike stands out from what came before AND from what follows; a genuine step change
    # agrees with one side, so it is never flagged. A side with too few readings has no vote.
    is_spike = (past_ok | ahead_ok) & (past_far | ~past_ok) & (ahead_far | ~ahead_ok)
    spike[rows[order]] = is_spike
    return spike


def flag_outliers(
    readings: pd.DataFrame,
    *,
    window: str | pd.Timedelta = "2h",
    k: float = 5.0,
    metrics: Sequence[str] = SPIKE_METRICS,
) -> pd.Series:
    """Why each reading is an outlier, or None.

    Reasons, first match wins: ``"nan"`` (NaN or infinite value), ``"out_of_range"``
    (outside :data:`METRIC_BOUNDS`, or not 0/1 for a binary metric), ``"spike"`` (Hampel
    filter per device and metric on ``metrics``).

    The Hampel test compares a reading with the median of the readings within ``window / 2``
    before it and, separately, within ``window / 2`` after it (each side including the reading
    itself): it is a spike when ``|x - median| > k * 1.4826 * MAD`` on both sides, the MAD
    floored per metric (:data:`_MAD_FLOOR`) so a quiet signal's noise does not flag everything.
    Needing both sides is what spares a sustained step change: after the step, the readings
    ahead agree with it. The MAD of a side is the rolling median of each reading's absolute
    deviation from its own side median, a standard streaming approximation of the exact MAD.

    Parameters
    ----------
    readings : DataFrame
        A readings frame (values already in canonical units).
    window : str or Timedelta, default "2h"
        Total width of the centred window.
    k : float, default 5.0
        How many robust standard deviations make a spike.
    metrics : sequence of str, default :data:`SPIKE_METRICS`
        Metrics the spike test runs on.

    Returns
    -------
    Series
        Object dtype, aligned on ``readings.index``.
    """
    if not np.isfinite(k) or k <= 0:
        raise QualityError(f"k={k!r} must be a positive number of deviations, such as 5.0")
    window_ns = _timedelta_ns(window, "window")
    df = _prepare(readings, ("device_id", "metric", "ts", "value"))
    value = df["value"].to_numpy(dtype=float)
    metric = df["metric"]
    reasons = np.full(len(df), None, dtype=object)
    finite = np.isfinite(value)
    reasons[~finite] = "nan"
    low = _per_metric(metric, {m: b[0] for m, b in METRIC_BOUNDS.items()}, -np.inf)
    high = _per_metric(metric, {m: b[1] for m, b in METRIC_BOUNDS.items()}, np.inf)
    with np.errstate(invalid="ignore"):
        outside = (value < low) | (value > high)
    binary = metric.isin(BINARY_METRICS).to_numpy()
    outside |= binary & finite & (value != 0.0) & (value != 1.0)
    outside &= finite
    reasons[outside] = "out_of_range"
    candidates = finite & ~outside & metric.isin(list(metrics)).to_numpy()
    spike = _spikes(df, candidates, window_ns, float(k))
    reasons[spike] = "spike"
    return pd.Series(reasons, index=readings.index, name="outlier", dtype=object)


def detect_stuck(
    readings: pd.DataFrame,
    *,
    min_duration: str | pd.Timedelta = "3h",
    metrics: Sequence[str] = ("indoor_temp", "outdoor_temp", "humidity", "co2"),
) -> pd.Series:
    """True for readings of a sensor frozen on one value for longer than ``min_duration``.

    Per device and metric, in time order, consecutive readings whose values differ by less
    than 1e-9 form a run; a run whose first and last readings are more than ``min_duration``
    apart is stuck, all its readings included. Real temperature, humidity and CO2 sensors
    always flicker in the last digit; a value that does not move for hours is a dead sensor.
    NaN values break runs.

    Returns
    -------
    Series
        Boolean, aligned on ``readings.index``.
    """
    duration_ns = _timedelta_ns(min_duration, "min_duration")
    df = _prepare(readings, ("device_id", "metric", "ts", "value"))
    stuck = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(df["metric"].isin(list(metrics)).to_numpy())
    if len(rows):
        sub = df.iloc[rows]
        codes = _group_codes(sub)
        t = _ns(sub["ts"])
        order = np.lexsort((t, codes))
        codes, t = codes[order], t[order]
        values = sub["value"].to_numpy(dtype=float)[order]
        with np.errstate(invalid="ignore"):
            moved = ~(np.abs(np.diff(values)) < _STUCK_TOLERANCE)  # NaN counts as moved
        new_run = np.r_[True, (codes[1:] != codes[:-1]) | moved | np.isnan(values[:-1])]
        run = np.cumsum(new_run)
        first = pd.Series(t).groupby(run).transform("min").to_numpy()
        last = pd.Series(t).groupby(run).transform("max").to_numpy()
        stuck[rows[order]] = ((last - first) > duration_ns) & np.isfinite(values)
    return pd.Series(stuck, index=readings.index, name="stuck", dtype=bool)


# --------------------------------------------------------------------------- resampling


def _slot_values(
    t: np.ndarray,
    v: np.ndarray,
    start_ns: int,
    freq_ns: int,
    n_slots: int,
    max_gap_ns: int,
    hold: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One series onto the grid: (time-weighted slot mean, slot has a reading of its own).

    The series is the piecewise-linear (or, with ``hold``, piecewise-constant) curve through
    the readings, cut wherever two readings are more than ``max_gap`` apart. A slot's value is
    the integral of the curve over the part of the slot it covers, divided by that length, so
    fifty readings in one minute weigh one minute. A slot with readings but no covered length
    (an isolated reading) takes their mean.
    """
    # Readings at the same instant are one reading: their mean.
    t, inverse = np.unique(t, return_inverse=True)
    v = np.bincount(inverse, weights=v) / np.bincount(inverse)

    slot = (t - start_ns) // freq_ns
    inside = (slot >= 0) & (slot < n_slots)
    count = np.bincount(slot[inside], minlength=n_slots).astype(float)
    total = np.bincount(slot[inside], weights=v[inside], minlength=n_slots)
    integral = np.zeros(n_slots)
    covered = np.zeros(n_slots)
    if len(t) >= 2:
        seg_len = np.diff(t)
        # Slot boundaries inside the series' span (and inside the grid) cut the curve into
        # pieces that each lie in a single slot and a single segment.
        end_ns = start_ns + n_slots * freq_ns
        lo = max(t[0], start_ns)
        hi = min(t[-1], end_ns)
        if lo <= hi:
            first_k = -(-(lo - start_ns) // freq_ns)
            last_k = (hi - start_ns) // freq_ns
            bounds = start_ns + freq_ns * np.arange(first_k, last_k + 1, dtype=np.int64)
            x = np.union1d(t, bounds)
        else:
            x = t
        seg = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
        frac = (x - t[seg]).astype(float) / seg_len[seg].astype(float)
        if hold:
            y_left = v[seg[:-1]]
            y_right = y_left
        else:
            y = v[seg] + (v[seg + 1] - v[seg]) * frac
            # x[k+1] may be the next segment's start: the curve is continuous, same value.
            y_left, y_right = y[:-1], y[1:]
        piece_len = np.diff(x).astype(float)
        piece_seg = seg[:-1]
        piece_slot = (x[:-1] - start_ns) // freq_ns
        keep = (
            (seg_len[piece_seg] <= max_gap_ns)
            & (piece_slot >= 0)
            & (piece_slot < n_slots)
            & (piece_len > 0)
        )
        piece_slot = piece_slot[keep]
        integral = np.bincount(
            piece_slot,
            weights=piece_len[keep] * 0.5 * (y_left[keep] + y_right[keep]),
            minlength=n_slots,
        )
        covered = np.bincount(piece_slot, weights=piece_len[keep], minlength=n_slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(
            covered > 0, integral / covered, np.where(count > 0, total / count, np.nan)
        )
    return value, count > 0


def _nanmean_rows(stack: np.ndarray) -> np.ndarray:
    present = ~np.isnan(stack)
    n = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(present, stack, 0.0).sum(axis=0) / n, np.nan)


def resample(
    readings: pd.DataFrame,
    *,
    freq: str | pd.Timedelta = "15min",
    max_gap: str | pd.Timedelta = "1h",
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One home's readings onto a regular grid.

    - Continuous metrics (temperatures, humidity, CO2, light, setpoint): the time-weighted
      mean over each slot of the curve through the readings: linear between readings
      (``setpoint``: the older value holds, as a setpoint does), never across a gap longer
      than ``max_gap``. Not a forward fill, and a burst of readings weighs only the time it
      spans.
    - Binary metrics (motion, presence, door): the maximum reading in the slot.
    - heating/cooling: the mean reading in the slot.

    Several devices reporting one metric: the mean of their slot values (the max for binary
    metrics). ``<metric>_gap`` is True where the slot had no reading of its own: filled by
    interpolation across a short gap, or NaN (a long gap, or no data).

    Parameters
    ----------
    readings : DataFrame
        Readings of a single home, in canonical units, with NaN values ignored.
    freq : str or Timedelta, default "15min"
        Slot length.
    max_gap : str or Timedelta, default "1h"
        The longest silence interpolated across.
    start, end : Timestamp, optional
        The grid holds the slots starting in ``[floor(start), end)``. Default: from the slot of
        the first reading through the slot of the last one.
    metrics : sequence of str, optional
        Columns to produce even without readings (all NaN, all gap). Default: the metrics in
        ``readings``, in canonical order.

    Returns
    -------
    DataFrame
        Indexed by slot start (UTC, regular at ``freq``); one float column per metric, then
        one boolean ``<metric>_gap`` column per metric.
    """
    freq_ns = _timedelta_ns(freq, "freq")
    max_gap_ns = _timedelta_ns(max_gap, "max_gap")
    df = _prepare(readings, ("device_id", "metric", "ts", "value"))
    if "home_id" in df.columns and df["home_id"].nunique() > 1:
        raise QualityError(
            f"resample takes the readings of one home, got {df['home_id'].nunique()} homes; "
            "call clean() for several, or filter on home_id first"
        )
    unknown = ~df["metric"].isin(_ALL_METRICS).to_numpy()
    if unknown.any():
        row = _first_row(unknown)
        raise QualityError(
            f"row {row}, field 'metric': unknown metric {df['metric'].iloc[row]!r}; use one "
            f"of {', '.join(_ALL_METRICS)}"
        )
    df = df[np.isfinite(df["value"].to_numpy(dtype=float))]
    ts = _ns(df["ts"])
    if (start is None or end is None) and len(df) == 0:
        raise QualityError(
            "no finite readings to resample; pass start and end to get an empty grid"
        )
    freq_td = pd.Timedelta(freq_ns, unit="ns")
    if start is not None:
        first = pd.Timestamp(start)
        first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    else:
        first = pd.Timestamp(int(ts.min()), unit="ns", tz="UTC")
    first = first.floor(freq_td)
    if end is not None:
        stop = pd.Timestamp(end)
        stop = stop.tz_localize("UTC") if stop.tzinfo is None else stop.tz_convert("UTC")
    else:
        stop = pd.Timestamp(int(ts.max()), unit="ns", tz="UTC").floor(freq_td) + freq_td
    start_ns, stop_ns = first.value, stop.value
    n_slots = max(0, -(-(stop_ns - start_ns) // freq_ns))
    if n_slots > _MAX_SLOTS:
        raise QualityError(
            f"the grid would span {first} to {stop} ({n_slots} slots of {freq_td}); a device "
            "clock is probably wrong: run correct_clock_skew first, or pass start and end"
        )
    index = pd.date_range(first, periods=n_slots, freq=freq_td, name="ts")

    present = set(pd.unique(df["metric"]))
    wanted = list(metrics) if metrics is not None else []
    strangers = [m for m in wanted if m not in CANONICAL_UNITS]
    if strangers:
        raise QualityError(
            f"metrics={strangers!r} are not tailor metrics; ask for some of "
            f"{', '.join(_ALL_METRICS)}"
        )
    columns = [m for m in _ALL_METRICS if m in present or m in wanted]
    values: dict[str, np.ndarray] = {}
    gaps: dict[str, np.ndarray] = {}
    groups = df.groupby(["metric", "device_id"], sort=False).indices
    value_all = df["value"].to_numpy(dtype=float)
    for metric in columns:
        keys = [key for key in groups if key[0] == metric]
        if not keys:
            values[metric] = np.full(n_slots, np.nan)
            gaps[metric] = np.ones(n_slots, dtype=bool)
            continue
        if metric in BINARY_METRICS or metric in FRACTION_METRICS:
            per_device = []
            for key in keys:
                rows = groups[key]
                slot = (ts[rows] - start_ns) // freq_ns
                inside = (slot >= 0) & (slot < n_slots)
                slot, v = slot[inside], value_all[rows][inside]
                if metric in BINARY_METRICS:
                    best = np.full(n_slots, -np.inf)
                    np.maximum.at(best, slot, v)
                    per_device.append(np.where(np.isinf(best), np.nan, best))
                else:
                    count = np.bincount(slot, minlength=n_slots)
                    total = np.bincount(slot, weights=v, minlength=n_slots)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        per_device.append(np.where(count > 0, total / count, np.nan))
            stack = np.vstack(per_device)
            if metric in BINARY_METRICS:
                combined = np.fmax.reduce(stack, axis=0)  # fmax skips NaN
            else:
                combined = _nanmean_rows(stack)
            values[metric] = combined
            gaps[metric] = np.isnan(combined)
            continue
        per_device, own = [], np.zeros(n_slots, dtype=bool)
        for key in keys:
            rows = groups[key]
            order = np.argsort(ts[rows], kind="stable")
            value, has = _slot_values(
                ts[rows][order],
                value_all[rows][order],
                start_ns,
                freq_ns,
                n_slots,
                max_gap_ns,
                metric in _HOLD_METRICS,
            )
            per_device.append(value)
            own |= has
        combined = _nanmean_rows(np.vstack(per_device))
        values[metric] = combined
        gaps[metric] = ~own | np.isnan(combined)
    data: dict[str, np.ndarray] = {m: values[m] for m in columns}
    data.update({f"{m}_gap": gaps[m] for m in columns})
    return pd.DataFrame(data, index=index)


# --------------------------------------------------------------------------- pipeline


def clean(
    readings: pd.DataFrame,
    *,
    freq: str | pd.Timedelta = "15min",
    max_gap: str | pd.Timedelta = "1h",
    interval_seconds: float = 300,
) -> tuple[dict[str, pd.DataFrame], QualityReport]:
    """Every cleaning step, in order, then one grid per home.

    Units are normalized, clocks re-anchored, duplicates collapsed, outliers and stuck
    readings dropped, and each home resampled (see the module docstring).

    Parameters
    ----------
    readings : DataFrame
        A readings frame, any number of homes.
    freq : str or Timedelta, default "15min"
        Grid slot length.
    max_gap : str or Timedelta, default "1h"
        The longest silence interpolated across.
    interval_seconds : float, default 300
        The report interval of heating/cooling readings given in seconds.

    Returns
    -------
    grids : dict of str to DataFrame
        The grid of each home with readings left (see :func:`resample`).
    report : QualityReport
        What each step did.

    Raises
    ------
    QualityError
        For no readings, missing columns, or a row that cannot be read (the message names it).
    """
    _check_columns(readings, _REQUIRED)
    if len(readings) == 0:
        raise QualityError(
            "there are no readings to clean; check the time window and the homes you queried"
        )
    _timedelta_ns(freq, "freq")
    _timedelta_ns(max_gap, "max_gap")
    df = _prepare(readings.reset_index(drop=True))
    report = QualityReport(rows_in=len(df))

    df, report.unit_converted = _normalize_units(df, interval_seconds)
    df, skew = correct_clock_skew(df)
    report.skew_seconds = {str(k): float(v) for k, v in skew.items()}
    df, report.duplicates = drop_duplicates(df)

    reasons = flag_outliers(df)
    stuck = detect_stuck(df).to_numpy() & reasons.isna().to_numpy()
    report.outliers = {
        reason: int(count) for reason, count in reasons.value_counts().sort_index().items()
    }
    report.stuck = int(stuck.sum())
    df = df[reasons.isna().to_numpy() & ~stuck]
    report.rows_out = len(df)

    grids: dict[str, pd.DataFrame] = {}
    homes = [str(h) for h in pd.unique(readings["home_id"].astype(str))]
    by_home = df.groupby("home_id", sort=False).indices
    for home in homes:
        if home not in by_home:
            report.homes_without_data.append(home)
            logger.warning("home %s: no reading left after cleaning, no grid", home)
            continue
        grid = resample(df.iloc[by_home[home]], freq=freq, max_gap=max_gap)
        grids[home] = grid
        report.slots += len(grid)
        for name in grid.columns:
            if name.endswith("_gap"):
                metric = name[: -len("_gap")]
                report.gap_slots[metric] = report.gap_slots.get(metric, 0) + int(grid[name].sum())
    logger.info(
        "cleaned %d readings into %d homes: %d converted, %d duplicates, %s outliers, %d stuck",
        report.rows_in,
        len(grids),
        report.unit_converted,
        report.duplicates,
        report.outliers,
        report.stuck,
    )
    return grids, report
