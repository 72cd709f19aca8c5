"""Maintenance alerts against seeded RC simulations with a known fault and a known start."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from tailor.devices.maintenance import (
    HEATING_EFFICIENCY,
    SENSOR_DRIFT,
    MaintenanceAlert,
    detect_efficiency_drop,
    detect_sensor_drift,
    efficiency_by_day,
    maintenance_report,
)
from tailor.devices.thermal import ThermalModel

TRUE_A, TRUE_B, TRUE_D = 0.1, 3.0, 0.3
START = date(2025, 1, 6)
FAULT_DAY = 28  # the first day of week 5


@functools.cache
def _simulate(
    days: int = 56,
    seed: int = 0,
    *,
    drop: float = 0.0,
    drift_per_day: float = 0.0,
) -> pd.DataFrame:
    """Eight weeks of a home under a proportional thermostat, integrated exactly per step.

    From day 28 the heater may deliver ``drop`` less heat and the thermostat's sensor may
    drift by ``drift_per_day`` °C a day; the thermostat steers on its own (drifting) reading.
    ``room_temp`` is a second sensor in another room: 0.4 °C warmer, its own daily wobble.
    """
    rng = np.random.default_rng(seed)
    per_day, dt = 96, 0.25
    n = days * per_day
    index = pd.date_range(START.isoformat(), periods=n, freq="15min", tz="UTC")
    day = np.arange(n) // per_day
    hour = (np.arange(n) % per_day) * dt
    level = 4.0 + 0.7 * np.cumsum(rng.normal(0, 1.0, days))
    outdoor = level[day] + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.3, n)
    gains = TRUE_D + rng.normal(0, 0.1, days)[day] + rng.normal(0, 0.2, n)
    comfort = ((hour >= 6) & (hour < 9)) | ((hour >= 17) & (hour < 23))
    setpoint = np.where(comfort, 21.0, 17.0)
    heat = np.where(day >= FAULT_DAY, TRUE_B * (1 - drop), TRUE_B)
    offset = drift_per_day * np.clip(np.arange(n) / per_day - FAULT_DAY, 0, None)
    decay = math.exp(-TRUE_A * dt)
    true, measured, heating = np.empty(n), np.empty(n), np.empty(n)
    temperature = 19.0
    for i in range(n):
        true[i] = temperature
        measured[i] = temperature + offset[i] + rng.normal(0, 0.05)
        heating[i] = min(max(0.5 + 1.5 * (setpoint[i] - measured[i]), 0.0), 1.0)
        equilibrium = outdoor[i] + (heat[i] * heating[i] + gains[i]) / TRUE_A
        temperature = equilibrium + (temperature - equilibrium) * decay
    room = true + 0.4 + rng.normal(0, 0.1, days)[day] + rng.normal(0, 0.05, n)
    return pd.DataFrame(
        {
            "indoor_temp": measured,
            "outdoor_temp": outdoor,
            "heating": heating,
            "room_temp": room,
        },
        index=index,
    )


def simulate(*args, **kwargs) -> pd.DataFrame:
    return _simulate(*args, **kwargs).copy()


def _days_after_fault(day: date) -> int:
    return (day - START).days - FAULT_DAY


# ------------------------------------------------------------------------ efficiency
def test_daily_efficiency_estimates_the_heat_rate():
    daily = efficiency_by_day(simulate(56, 0, drop=0.25))
    assert list(daily.columns) == [
        "efficiency",
        "heating_gain",
        "heating_minutes",
        "outdoor_mean",
        "n_steps",
        "reference",
    ]
    assert len(daily) == 56 and daily.index[0] == START
    assert daily["reference"].sum() == 14 and daily["reference"].iloc[:14].all()
    assert (daily["n_steps"].iloc[:-1] == 96).all()
    before = daily["efficiency"].iloc[:FAULT_DAY].mean()
    after = daily["efficiency"].iloc[FAULT_DAY:].mean()
    assert before == pytest.approx(TRUE_B, rel=0.05)
    assert after == pytest.approx(TRUE_B * 0.75, rel=0.05)
    # The thermostat hides the fault by running longer.
    minutes = daily["heating_minutes"]
    assert minutes.iloc[FAULT_DAY:].mean() > 1.2 * minutes.iloc[:FAULT_DAY].mean()


def test_clean_series_raises_no_alert():
    grid = simulate(56, 0)
    assert detect_efficiency_drop(efficiency_by_day(grid)) == []
    assert detect_sensor_drift(grid, "indoor_temp", "room_temp") == []
    assert maintenance_report(grid, reference_col="room_temp")["alerts"] == []


def test_false_alarms_stay_low_over_seeds():
    efficiency_alerts = drift_alerts = 0
    for seed in range(100, 110):
        grid = simulate(56, seed)
        efficiency_alerts += len(detect_efficiency_drop(efficiency_by_day(grid)))
        drift_alerts += len(detect_sensor_drift(grid, "indoor_temp", "room_temp"))
    # About 5% of clean 8-week homes get a false efficiency alert with the defaults.
    assert efficiency_alerts <= 2
    assert drift_alerts == 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_25_percent_drop_is_caught_within_days(seed):
    alerts = detect_efficiency_drop(efficiency_by_day(simulate(56, seed, drop=0.25)), home_id="h1")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.kind == HEATING_EFFICIENCY and alert.home_id == "h1"
    assert 0 <= _days_after_fault(alert.detected_at) <= 5
    assert abs(_days_after_fault(alert.started_at)) <= 3
    assert alert.started_at <= alert.detected_at
    assert 15 <= alert.magnitude <= 40
    assert "less heat per running minute since" in alert.message
    assert f"{alert.started_at.day} {alert.started_at:%b}" in alert.message
    assert "serviced" in alert.message


def test_a_small_drop_is_not_worth_an_alert():
    daily = efficiency_by_day(simulate(56, 0, drop=0.05))
    assert detect_efficiency_drop(daily) == []
    # The bare chart (no minimum drop, low threshold) does react to it.
    assert detect_efficiency_drop(daily, h=1.0, min_drop=0.0)


def test_an_improvement_is_not_a_drop():
    assert detect_efficiency_drop(efficiency_by_day(simulate(56, 0, drop=-0.3))) == []


def test_nan_gaps_do_not_break_efficiency():
    grid = simulate(56, 1, drop=0.25)
    rng = np.random.default_rng(0)
    grid.loc[rng.random(len(grid)) < 0.1, "indoor_temp"] = np.nan
    grid.iloc[20 * 96 : 21 * 96, grid.columns.get_loc("heating")] = np.nan  # a day without duty
    grid = grid.drop(grid.index[40 * 96 : 41 * 96])  # a day missing altogether
    daily = efficiency_by_day(grid)
    assert len(daily) == 56
    for gap in (20, 40):
        assert math.isnan(daily.loc[START + timedelta(days=gap), "efficiency"])
        assert daily.loc[START + timedelta(days=gap), "n_steps"] == 0
    assert daily["efficiency"].notna().sum() == 54
    alerts = detect_efficiency_drop(daily)
    assert len(alerts) == 1 and 0 <= _days_after_fault(alerts[0].detected_at) <= 5


def test_days_are_local_days():
    daily = efficiency_by_day(simulate(21, 0), timezone="America/New_York")
    assert daily.index[0] == START - timedelta(days=1)  # 00:00 UTC is 19:00 the day before
    assert daily["n_steps"].iloc[0] == 20  # 19:00-24:00, less the last step of the grid
    assert daily["reference"].sum() == 14


def test_efficiency_needs_enough_reference_data():
    with pytest.raises(ValueError, match=r"reference period .*at least 192"):
        efficiency_by_day(simulate(56, 0).iloc[:150])
    # A model fitted elsewhere can be passed in, but the baseline still needs its days.
    daily = efficiency_by_day(
        simulate(56, 0).iloc[: 3 * 96], model=ThermalModel.default(), reference_days=14
    )
    with pytest.raises(ValueError, match="at least 5"):
        detect_efficiency_drop(daily)


def test_detect_efficiency_drop_checks_its_inputs():
    daily = efficiency_by_day(simulate(56, 0))
    with pytest.raises(ValueError, match="efficiency_by_day"):
        detect_efficiency_drop(daily.drop(columns="heating_minutes"))
    with pytest.raises(ValueError, match="k must be"):
        detect_efficiency_drop(daily, k=-1.0)
    with pytest.raises(ValueError, match="h must be"):
        detect_efficiency_drop(daily, h=0.0)
    with pytest.raises(ValueError, match="min_drop"):
        detect_efficiency_drop(daily, min_drop=15.0)


# ------------------------------------------------------------------------ sensor drift
@pytest.mark.parametrize(("seed", "rate"), [(0, 0.05), (1, 0.05), (2, -0.05)])
def test_a_drifting_sensor_is_caught(seed, rate):
    grid = simulate(56, seed, drift_per_day=rate)
    alerts = detect_sensor_drift(grid, "indoor_temp", "room_temp", home_id="h2")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.kind == SENSOR_DRIFT and alert.home_id == "h2"
    # 0.05 °C/day crosses the 0.5 °C that is worth an alert after 10 days.
    assert 5 <= _days_after_fault(alert.detected_at) <= 16
    assert -10 <= _days_after_fault(alert.started_at) <= _days_after_fault(alert.detected_at)
    assert np.sign(alert.magnitude) == np.sign(rate) and 0.5 <= abs(alert.magnitude) < 1.2
    assert ("warmer" if rate > 0 else "colder") in alert.message
    assert "room_temp" in alert.message and "recalibrate" in alert.message


def test_a_fixed_offset_between_rooms_is_not_drift():
    grid = simulate(56, 0)
    grid["room_temp"] += 1.5
    assert detect_sensor_drift(grid, "indoor_temp", "room_temp") == []


def test_sensor_drift_survives_gaps_and_filled_values():
    grid = simulate(56, 0, drift_per_day=0.05)
    rng = np.random.default_rng(3)
    grid.loc[rng.random(len(grid)) < 0.2, "room_temp"] = np.nan
    # Filled values are not readings: flag a day of them with a wild value; they must not count.
    grid["indoor_temp_gap"] = False
    filled = slice(30 * 96, 31 * 96)
    grid.iloc[filled, grid.columns.get_loc("indoor_temp")] = 40.0
    grid.iloc[filled, grid.columns.get_loc("indoor_temp_gap")] = True
    alerts = detect_sensor_drift(grid, "indoor_temp", "room_temp")
    assert len(alerts) == 1 and 5 <= _days_after_fault(alerts[0].detected_at) <= 16


def test_detect_sensor_drift_checks_its_inputs():
    grid = simulate(56, 0)
    with pytest.raises(ValueError, match="no 'hall_temp'"):
        detect_sensor_drift(grid, "indoor_temp", "hall_temp")
    with pytest.raises(ValueError, match="same column"):
        detect_sensor_drift(grid, "indoor_temp", "indoor_temp")
    with pytest.raises(ValueError, match="at least 5"):
        detect_sensor_drift(grid.iloc[: 3 * 96], "indoor_temp", "room_temp")
    with pytest.raises(ValueError, match="reference_days"):
        detect_sensor_drift(grid, "indoor_temp", "room_temp", reference_days=0)


# ------------------------------------------------------------------------------ report
def test_report_bundles_both_checks_as_json():
    grid = simulate(56, 0, drop=0.25)
    report = maintenance_report(grid, home_id="home-7", reference_col="room_temp")
    text = json.dumps(report, allow_nan=False)
    again = json.loads(text)
    assert again["home_id"] == "home-7" and again["skipped"] == {}
    assert [alert["kind"] for alert in again["alerts"]] == [HEATING_EFFICIENCY]
    alert = again["alerts"][0]
    assert alert["home_id"] == "home-7"
    assert date.fromisoformat(alert["detected_at"]) >= date.fromisoformat(alert["started_at"])
    assert again["efficiency"]["reference_mean"] == pytest.approx(TRUE_B, rel=0.05)
    assert len(again["efficiency"]["daily"]) == 56
    model = ThermalModel.from_dict(again["thermal_model"])
    assert model.heat_rate_ == pytest.approx(TRUE_B, rel=0.10)


def test_report_skips_what_it_cannot_check():
    report = maintenance_report(simulate(56, 0).iloc[:150])
    json.dumps(report, allow_nan=False)
    assert report["alerts"] == []
    assert "at least 192" in report["skipped"][HEATING_EFFICIENCY]
    assert "reference_col" in report["skipped"][SENSOR_DRIFT]
    assert report["thermal_model"] is None and report["efficiency"] is None


def test_alerts_are_frozen_and_serializable():
    alert = MaintenanceAlert(
        kind=SENSOR_DRIFT,
        detected_at=date(2025, 2, 14),
        started_at=date(2025, 2, 3),
        magnitude=0.61234,
        message="recalibrate",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.magnitude = 1.0
    assert alert.to_dict() == {
        "kind": SENSOR_DRIFT,
        "home_id": None,
        "detected_at": "2025-02-14",
        "started_at": "2025-02-03",
        "magnitude": 0.612,
        "message": "recalibrate",
    }
