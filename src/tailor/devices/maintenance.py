"""Maintenance alerts: heating that delivers less heat, a thermostat sensor that drifts.

Both checks compare each day with a reference period (the first ``reference_days`` of the
grid, taken as healthy) and run Page's CUSUM on the daily statistic standardized by the
reference mean and standard deviation (E. S. Page, "Continuous inspection schemes",
*Biometrika* 41, 1954; D. C. Montgomery, *Introduction to Statistical Quality Control*, ch. 9):

.. math::

    z_t = (x_t - \\mu_0) / \\sigma_0, \\qquad
    S_t = \\max(0,\\; S_{t-1} \\pm z_t - k)                                        \\qquad (1)

An alarm is raised when :math:`S_t > h`; the change is estimated to have started on the first
day after :math:`S` last stood at zero (Page's change-point estimate). With the defaults
``k = 0.5`` (tuned to a shift of one standard deviation) and ``h = 4``, a one-sided chart on
independent in-control days with a known mean and spread alarms falsely once in ~336 days
(Siegmund's approximation; 168 for the two-sided chart, Montgomery table 9.3) and catches a
shift of 2 standard deviations in about 3 days. Here the mean and spread come from only 14
reference days, which shortens the in-control run length a lot (Jones, Champ & Rigdon, "The
run length distribution of the CUSUM with estimated parameters", *Journal of Quality
Technology* 36, 2004): on 150 simulated clean 8-week homes (14 reference days, 42 monitored)
the efficiency chart alarmed on 27%. An alarm becomes an alert only when the change is also
large enough to be worth a visit (``min_drop`` = 15%, ``min_drift`` = 0.5 °C), which brought
false efficiency alerts down to 5% of those homes (8 of 150; under 1% with ``h = 5``) while a
25% drop was still caught in a median of 1 day (90% within 5 days).

* **Heating efficiency** (:func:`efficiency_by_day`, :func:`detect_efficiency_drop`): a
  :class:`~tailor.devices.thermal.ThermalModel` fitted on the reference period predicts how the
  home would have drifted with the heating off; what the indoor temperature gained beyond that
  is attributed to the heating. Divided by the heating's running time, it is a daily estimate
  of the heating rate :math:`b` (°C per hour at full duty). A fouled boiler, a heat pump losing
  refrigerant or a failing element delivers less heat per running minute: :math:`b` falls while
  the thermostat hides it by running longer.
* **Sensor drift** (:func:`detect_sensor_drift`): the thermostat's sensor against a second
  indoor sensor; the daily mean difference moving away from its reference level in either
  direction. A stuck or dead sensor is :mod:`tailor.devices.quality`'s job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from tailor.devices.features import local_index
from tailor.devices.thermal import ThermalModel, _grid_step, step_pairs

__all__ = [
    "HEATING_EFFICIENCY",
    "SENSOR_DRIFT",
    "MaintenanceAlert",
    "detect_efficiency_drop",
    "detect_sensor_drift",
    "efficiency_by_day",
    "maintenance_report",
]

logger = logging.getLogger(__name__)

HEATING_EFFICIENCY = "heating_efficiency"
SENSOR_DRIFT = "sensor_drift"
MIN_REFERENCE_DAYS = 5
"""Fewer usable reference days than this and there is no baseline to compare against."""
_SD_FLOOR_RELATIVE = 0.02
_SD_FLOOR_DRIFT_C = 0.05
_DRIFT_WINDOW_DAYS = 3


@dataclass(frozen=True)
class MaintenanceAlert:
    """Something in the home needs a technician (or a new sensor) soon.

    Attributes
    ----------
    kind : str
        ``"heating_efficiency"`` or ``"sensor_drift"``.
    detected_at : datetime.date
        The (local) day the alarm was raised.
    started_at : datetime.date
        The estimated first day of the change (the CUSUM change point).
    magnitude : float
        Percent drop in heating delivered per running minute (positive = less heat), or the
        sensor's drift in °C (positive = reads warmer than before).
    message : str
        Plain English: what happened and what to do.
    home_id : str, optional
        The home, when the caller gave it.
    """

    kind: str
    detected_at: date
    started_at: date
    magnitude: float
    message: str
    home_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form, dates as ISO strings."""
        return {
            "kind": self.kind,
            "home_id": self.home_id,
            "detected_at": self.detected_at.isoformat(),
            "started_at": self.started_at.isoformat(),
            "magnitude": round(float(self.magnitude), 3),
            "message": self.message,
        }


def _day_text(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def _local_dates(index: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    return np.asarray(local_index(pd.DatetimeIndex(index), timezone).date)


def _reference_end(grid: pd.DataFrame, reference_days: int, timezone: str) -> date:
    if not isinstance(reference_days, int | np.integer) or reference_days < 1:
        raise ValueError(f"reference_days must be a positive integer, got {reference_days!r}")
    if len(grid) == 0:
        raise ValueError("the grid is empty")
    return _local_dates(grid.index[:1], timezone)[0] + timedelta(days=int(reference_days))


def _reference_model(grid: pd.DataFrame, reference_days: int, timezone: str) -> ThermalModel:
    """A thermal model fitted on the grid's first ``reference_days`` local days."""
    end = _reference_end(grid, reference_days, timezone)
    reference = grid.loc[_local_dates(grid.index, timezone) < end]
    try:
        return ThermalModel().fit(reference)
    except ValueError as error:
        raise ValueError(
            f"the reference period (the first {reference_days} days) cannot give a thermal "
            f"model: {error}"
        ) from error


def efficiency_by_day(
    grid: pd.DataFrame,
    reference_days: int = 14,
    *,
    timezone: str = "UTC",
    model: ThermalModel | None = None,
    min_heating_minutes: float = 60.0,
) -> pd.DataFrame:
    """Daily heating efficiency: the heat rate :math:`b` the heating delivered each day.

    For each valid step, the heating's share of the temperature change is the measured change
    minus what the reference thermal model predicts with the heating off (loss to outside,
    gains, cooling). Summed over a local day, it is divided by the day's heating time
    (duty-weighted, and discounted for the losses during the step, eq. (2) of
    :mod:`tailor.devices.thermal`), giving °C per hour of full heating: on a healthy system it
    stays near the reference model's ``heat_rate_``.

    Parameters
    ----------
    grid : pandas.DataFrame
        Grid frame with ``indoor_temp``, ``outdoor_temp``, ``heating`` (and optional
        ``cooling``), NaN where missing.
    reference_days : int, default 14
        The first local days of the grid, taken as healthy: the thermal model is fitted on
        them (unless ``model`` is given) and they set the baseline of
        :func:`detect_efficiency_drop`.
    timezone : str, default "UTC"
        The home's IANA time zone: days are local days.
    model : ThermalModel, optional
        A thermal model fitted on a healthy period, used instead of fitting one.
    min_heating_minutes : float, default 60
        Days with less heating than this get a NaN efficiency: too little to measure.

    Returns
    -------
    pandas.DataFrame
        One row per local calendar day from the grid's first to its last (index ``date``,
        ``datetime.date``; days without data included), with ``efficiency``
        (°C/h at full duty), ``heating_gain`` (°C the heating added over the day),
        ``heating_minutes``, ``outdoor_mean`` (°C), ``n_steps`` (valid steps) and
        ``reference`` (True inside the reference period).

    Raises
    ------
    ValueError
        When the reference period cannot give a thermal model (too little data, heating that
        never varies); the message says how much is needed.
    """
    end = _reference_end(grid, reference_days, timezone)
    if model is None:
        model = _reference_model(grid, reference_days, timezone)
    pairs = step_pairs(grid)
    hours = float(pairs["hours"].iloc[0]) if len(pairs) else 0.0
    no_heat = model.predict_step(
        pairs["indoor"].to_numpy(),
        pairs["outdoor"].to_numpy(),
        0.0,
        pairs["cooling"].to_numpy(),
        step_minutes=hours * 60.0,
    )
    heating = pairs["heating"].to_numpy()
    # Under eq. (2) full heating for a step adds b (1 - exp(-a dt)) / a, slightly less than
    # b dt: heat put in early in the step partly leaks out before its end.
    effective_hours = -math.expm1(-model.loss_rate_ * hours) / model.loss_rate_
    frame = pd.DataFrame(
        {
            "date": _local_dates(pairs.index, timezone),
            "heating_gain": pairs["indoor_next"].to_numpy() - no_heat,
            "heated_hours": heating * effective_hours,
            "heating_minutes": heating * hours * 60.0,
            "outdoor": pairs["outdoor"].to_numpy(),
        }
    )
    daily = frame.groupby("date", sort=True).agg(
        heating_gain=("heating_gain", "sum"),
        heated_hours=("heated_hours", "sum"),
        heating_minutes=("heating_minutes", "sum"),
        outdoor_mean=("outdoor", "mean"),
        n_steps=("outdoor", "size"),
    )
    # Every calendar day appears, measurable or not, so a gap in the data shows as a gap.
    local = _local_dates(grid.index[[0, -1]], timezone)
    calendar = pd.Index(pd.date_range(local[0], local[1], freq="D").date, name="date")
    daily = daily.reindex(calendar)
    daily = daily.fillna({"heating_gain": 0.0, "heated_hours": 0.0, "heating_minutes": 0.0})
    daily["n_steps"] = daily["n_steps"].fillna(0).astype(np.int64)
    enough = daily["heating_minutes"] >= min_heating_minutes
    daily["efficiency"] = np.where(
        enough, daily["heating_gain"] / daily["heated_hours"].where(enough), np.nan
    )
    daily["reference"] = np.asarray([day < end for day in daily.index], dtype=bool)
    daily = daily.drop(columns="heated_hours")
    return daily[
        ["efficiency", "heating_gain", "heating_minutes", "outdoor_mean", "n_steps", "reference"]
    ]


def _baseline(
    values: pd.Series, reference: pd.Series, floor: float, what: str
) -> tuple[float, float]:
    ref = values[reference.astype(bool)].dropna()
    if len(ref) < MIN_REFERENCE_DAYS:
        raise ValueError(
            f"the reference period has {len(ref)} usable days of {what}; at least "
            f"{MIN_REFERENCE_DAYS} are needed for a baseline: collect more data or lengthen "
            "reference_days"
        )
    mean = float(ref.mean())
    sd = float(ref.std(ddof=1))
    # A suspiciously steady reference would turn every later wobble into an alarm.
    return mean, max(sd, floor)


def _cusum(
    z: np.ndarray, *, k: float, h: float, sign: int, accept: Callable[[int, int], bool]
) -> tuple[int, int] | None:
    """First alarm of a one-sided CUSUM, eq. (1), as (change start, alarm) positions.

    ``sign`` +1 watches for an upward shift, -1 for a downward one. NaN days are skipped (the
    statistic carries over). An alarm that ``accept(start, alarm)`` rejects keeps the chart
    running, so a change too small to matter can still grow into an alert later.
    """
    statistic = 0.0
    start: int | None = None
    for i, value in enumerate(z):
        if not np.isfinite(value):
            continue
        statistic = max(0.0, statistic + sign * value - k)
        if statistic == 0.0:
            start = None
            continue
        if start is None:
            start = i
        if statistic > h and accept(start, i):
            return start, i
    return None


def _check_chart(k: float, h: float) -> None:
    if not (np.isfinite(k) and k >= 0):
        raise ValueError(f"k must be a non-negative number of standard deviations, got {k!r}")
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive number of standard deviations, got {h!r}")


def detect_efficiency_drop(
    daily: pd.DataFrame,
    *,
    k: float = 0.5,
    h: float = 4.0,
    min_drop: float = 0.15,
    home_id: str | None = None,
) -> list[MaintenanceAlert]:
    """Alert when the heating delivers less heat per running minute than in the reference.

    A lower CUSUM, eq. (1), on the daily ``efficiency`` after the reference period. Each day
    is weighted by its heating time relative to a typical reference day, :math:`w_t`, since
    the unexplained gains of a day spread over fewer heating minutes on a mild day:

    .. math::

        z_t = w_t (x_t - \\mu_0) / \\sigma_0            \\qquad (3)

    with :math:`\\mu_0` the heating-time weighted reference mean and :math:`\\sigma_0` the
    reference standard deviation of :math:`w_t (x_t - \\mu_0)` (floored at 2% of
    :math:`\\mu_0`).

    Parameters
    ----------
    daily : pandas.DataFrame
        Output of :func:`efficiency_by_day`.
    k : float, default 0.5
        Allowance, in reference standard deviations: half the shift the chart is tuned for.
    h : float, default 4.0
        Decision threshold, in reference standard deviations. See the module notes for the
        false-alarm rates: h=5 trades a day or two of delay for far fewer false alerts.
    min_drop : float, default 0.15
        The smallest drop worth an alert, as a fraction of the reference efficiency: the
        (heating-time weighted) mean efficiency since the estimated change must be at least
        this much lower.
    home_id : str, optional
        Copied into the alert.

    Returns
    -------
    list of MaintenanceAlert
        Empty, or the first alert (one per series: after it, the system needs a visit, not more
        alerts).
    """
    _check_chart(k, h)
    if not 0 <= min_drop < 1:
        raise ValueError(f"min_drop is a fraction between 0 and 1, got {min_drop!r}")
    missing = {"efficiency", "heating_minutes", "reference"} - set(daily.columns)
    if missing:
        raise ValueError(f"daily lacks {sorted(missing)}; build it with efficiency_by_day()")
    efficiency = daily["efficiency"].to_numpy(dtype=float)
    minutes = daily["heating_minutes"].to_numpy(dtype=float)
    reference = daily["reference"].to_numpy(dtype=bool)
    usable = reference & np.isfinite(efficiency)
    if usable.sum() < MIN_REFERENCE_DAYS:
        raise ValueError(
            f"the reference period has {int(usable.sum())} days with enough heating to measure "
            f"efficiency; at least {MIN_REFERENCE_DAYS} are needed for a baseline: collect more "
            "data or lengthen reference_days"
        )
    # A day's efficiency is b plus that day's unexplained gains divided by its heating time,
    # so a mild day with little heating is noisier. Weighting by heating time makes the days
    # comparable (eq. 3): w (x - mu) has the same spread on every day.
    weight = minutes / minutes[usable].mean()
    mean = float(np.sum(efficiency[usable] * weight[usable]) / np.sum(weight[usable]))
    if mean <= 0:
        raise ValueError("the reference efficiency is not positive; check the heating data")
    scaled = (efficiency - mean) * weight
    # A suspiciously steady reference would turn every later wobble into an alarm.
    sd = max(float(np.std(scaled[usable], ddof=1)), _SD_FLOOR_RELATIVE * mean)
    after = ~reference
    values, weights = efficiency[after], weight[after]
    days = list(daily.index[after])

    def drop_since(start: int, alarm: int) -> float:
        window = slice(start, alarm + 1)
        ok = np.isfinite(values[window])
        pooled = np.sum(values[window][ok] * weights[window][ok]) / np.sum(weights[window][ok])
        return 1.0 - float(pooled) / mean

    found = _cusum(
        scaled[after] / sd,
        k=k,
        h=h,
        sign=-1,
        accept=lambda start, alarm: drop_since(start, alarm) >= min_drop,
    )
    if found is None:
        return []
    start, alarm = found
    percent = 100.0 * drop_since(start, alarm)
    message = (
        f"heating delivered {percent:.0f}% less heat per running minute since "
        f"{_day_text(days[start])}; have the boiler or heat pump serviced before it fails"
    )
    logger.info("efficiency alert for %s: %s", home_id or "a home", message)
    return [
        MaintenanceAlert(
            kind=HEATING_EFFICIENCY,
            detected_at=days[alarm],
            started_at=days[start],
            magnitude=percent,
            message=message,
            home_id=home_id,
        )
    ]


def _daily_sensor_residual(
    grid: pd.DataFrame, sensor_col: str, reference_col: str, *, timezone: str, min_coverage: float
) -> pd.Series:
    """Daily mean of (sensor - reference), °C; NaN on days with too few valid slots."""
    for column in (sensor_col, reference_col):
        if column not in grid.columns:
            raise ValueError(f"the grid has no {column!r} column to compare for sensor drift")
    if sensor_col == reference_col:
        raise ValueError("sensor_col and reference_col name the same column; pick a second sensor")
    if not isinstance(grid.index, pd.DatetimeIndex):
        raise ValueError("the grid must be indexed by a DatetimeIndex of slot starts")
    slots_per_day = pd.Timedelta(days=1) / _grid_step(grid.index)
    values = []
    for column in (sensor_col, reference_col):
        series = pd.to_numeric(grid[column], errors="coerce").to_numpy(float, na_value=np.nan)
        if f"{column}_gap" in grid.columns:
            filled = grid[f"{column}_gap"].astype("boolean").fillna(True).to_numpy(dtype=bool)
            series = np.where(filled, np.nan, series)
        values.append(series)
    residual = pd.Series(values[0] - values[1], index=_local_dates(grid.index, timezone))
    grouped = residual.groupby(level=0, sort=True)
    coverage = grouped.count() / slots_per_day
    return grouped.mean().where(coverage >= min_coverage)


def detect_sensor_drift(
    grid: pd.DataFrame,
    sensor_col: str,
    reference_col: str,
    *,
    reference_days: int = 14,
    k: float = 0.5,
    h: float = 4.0,
    min_drift: float = 0.5,
    timezone: str = "UTC",
    min_coverage: float = 0.5,
    home_id: str | None = None,
) -> list[MaintenanceAlert]:
    """Alert when a temperature sensor drifts away from a second sensor in the home.

    A two-sided CUSUM, eq. (1), on the daily mean of ``sensor - reference`` after the
    reference period, standardized by the reference days' mean and standard deviation
    (floored at 0.05 °C). A constant offset (the other sensor sits in a warmer room) is fine:
    only a change from the reference level alerts.

    The reference must be a second sensor. The thermal model's predictions cannot stand in
    for one: an offset :math:`\\delta` in the sensor enters eq. (1) of
    :mod:`tailor.devices.thermal` exactly as extra gains :math:`a\\delta` would, so a day with
    0.1 °C/h more sun or visitors looks like a 1 °C drift in a home with :math:`a = 0.1`/h. On
    simulated homes that check alarmed on most clean 8-week series.

    Parameters
    ----------
    grid : pandas.DataFrame
        Grid frame holding both columns; NaN (or a ``<column>_gap`` flag) where missing.
    sensor_col : str
        The sensor to check, e.g. ``"indoor_temp"`` (the thermostat's own).
    reference_col : str
        A second indoor sensor to compare it with.
    reference_days : int, default 14
        The first local days, taken as healthy.
    k, h : float, default 0.5 and 4.0
        CUSUM allowance and threshold, in reference standard deviations; two sides, so the
        bare chart alarms about twice as often as the one-sided efficiency chart.
    min_drift : float, default 0.5
        The smallest drift worth an alert, °C (a typical thermostat's stated accuracy), measured
        as the mean residual of the last 3 days minus the reference level.
    timezone : str, default "UTC"
        The home's IANA time zone: days are local days.
    min_coverage : float, default 0.5
        Days where fewer than this fraction of slots have both readings are skipped.
    home_id : str, optional
        Copied into the alert.

    Returns
    -------
    list of MaintenanceAlert
        Empty, or the first drift alert.
    """
    _check_chart(k, h)
    if not min_drift >= 0:
        raise ValueError(f"min_drift must be at least 0 °C, got {min_drift!r}")
    end = _reference_end(grid, reference_days, timezone)
    daily = _daily_sensor_residual(
        grid, sensor_col, reference_col, timezone=timezone, min_coverage=min_coverage
    )
    is_reference = pd.Series([day < end for day in daily.index], index=daily.index)
    mean, sd = _baseline(daily, is_reference, _SD_FLOOR_DRIFT_C, "sensor comparisons")
    monitored = daily[~is_reference.to_numpy()]
    values = monitored.to_numpy(dtype=float)
    days = list(monitored.index)

    def drift_at(alarm: int) -> float:
        recent = values[: alarm + 1]
        recent = recent[np.isfinite(recent)][-_DRIFT_WINDOW_DAYS:]
        return float(recent.mean()) - mean

    found = None
    for sign in (1, -1):
        hit = _cusum(
            (values - mean) / sd,
            k=k,
            h=h,
            sign=sign,
            accept=lambda start, alarm, sign=sign: sign * drift_at(alarm) >= min_drift,
        )
        if hit is not None and (found is None or hit[1] < found[1]):
            found = hit
    if found is None:
        return []
    start, alarm = found
    drift = drift_at(alarm)
    direction = "warmer" if drift > 0 else "colder"
    message = (
        f"the {sensor_col} sensor has drifted: it now reads {abs(drift):.1f} °C {direction} "
        f"than before, compared with the {reference_col} sensor, a change that began around "
        f"{_day_text(days[start])}; recalibrate or replace it, since the heating is steered by "
        "its reading"
    )
    logger.info("sensor drift alert for %s: %s", home_id or "a home", message)
    return [
        MaintenanceAlert(
            kind=SENSOR_DRIFT,
            detected_at=days[alarm],
            started_at=days[start],
            magnitude=drift,
            message=message,
            home_id=home_id,
        )
    ]


def _json_number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def maintenance_report(
    grid: pd.DataFrame,
    *,
    home_id: str | None = None,
    reference_days: int = 14,
    timezone: str = "UTC",
    sensor_col: str = "indoor_temp",
    reference_col: str | None = None,
    k: float = 0.5,
    h: float = 4.0,
    min_drop: float = 0.15,
    min_drift: float = 0.5,
) -> dict[str, Any]:
    """Both maintenance checks for one home, as a JSON-serializable dict.

    A check that cannot run (too little data, no reference sensor) is listed under
    ``skipped`` with the reason instead of failing the whole report.

    Parameters
    ----------
    grid : pandas.DataFrame
        The home's grid frame.
    home_id : str, optional
        Copied into the report and the alerts.
    reference_days, timezone, k, h, min_drop, min_drift
        As in :func:`efficiency_by_day`, :func:`detect_efficiency_drop` and
        :func:`detect_sensor_drift`.
    sensor_col, reference_col : str
        The sensor to check for drift and a second indoor sensor to check it against; without
        ``reference_col`` the drift check is skipped (see :func:`detect_sensor_drift` for why
        the thermal model cannot stand in).

    Returns
    -------
    dict
        ``home_id``, ``reference_days``, ``thermal_model`` (:meth:`ThermalModel.to_dict` of
        the reference model, or None), ``efficiency`` (reference mean and sd, and one entry per
        day), ``alerts`` (:meth:`MaintenanceAlert.to_dict`, oldest first) and ``skipped``
        (check name to reason).
    """
    report: dict[str, Any] = {
        "home_id": home_id,
        "reference_days": int(reference_days),
        "thermal_model": None,
        "efficiency": None,
        "alerts": [],
        "skipped": {},
    }
    alerts: list[MaintenanceAlert] = []
    try:
        model = _reference_model(grid, reference_days, timezone)
        daily = efficiency_by_day(grid, reference_days, timezone=timezone, model=model)
        report["thermal_model"] = model.to_dict()
        ref = daily.loc[daily["reference"], "efficiency"].dropna()
        report["efficiency"] = {
            "unit": "°C per hour of full heating",
            "reference_mean": _json_number(ref.mean()) if len(ref) else None,
            "reference_sd": _json_number(ref.std(ddof=1)) if len(ref) > 1 else None,
            "daily": [
                {
                    "date": day.isoformat(),
                    "efficiency": _json_number(row.efficiency),
                    "heating_minutes": round(float(row.heating_minutes), 1),
                    "outdoor_mean": _json_number(row.outdoor_mean),
                    "reference": bool(row.reference),
                }
                for day, row in daily.iterrows()
            ],
        }
        alerts += detect_efficiency_drop(daily, k=k, h=h, min_drop=min_drop, home_id=home_id)
    except ValueError as error:
        report["skipped"][HEATING_EFFICIENCY] = str(error)
    if reference_col is None:
        report["skipped"][SENSOR_DRIFT] = (
            "no reference sensor: pass reference_col (a second indoor sensor) to check the "
            f"{sensor_col} sensor for drift"
        )
    else:
        try:
            alerts += detect_sensor_drift(
                grid,
                sensor_col,
                reference_col,
                reference_days=reference_days,
                k=k,
                h=h,
                min_drift=min_drift,
                timezone=timezone,
                home_id=home_id,
            )
        except ValueError as error:
            report["skipped"][SENSOR_DRIFT] = str(error)
    alerts.sort(key=lambda alert: alert.detected_at)
    report["alerts"] = [alert.to_dict() for alert in alerts]
    return report
