"""A home's model end to end on a simulated home: learn, decide, explain, save, load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailor.datasets.simulate.homes import simulate_homes
from tailor.devices.model import HomeModel, HomeSettings, plan_heating
from tailor.devices.policy import decide, occupancy_features, slots_for
from tailor.devices.quality import clean
from tailor.devices.thermal import ThermalModel

HOME = "home-001"


@pytest.fixture(scope="module")
def sim():
    return simulate_homes(n_homes=2, weeks=3, seed=4)


@pytest.fixture(scope="module")
def grid(sim):
    readings = sim.readings[sim.readings["home_id"] == HOME]
    grids, _ = clean(readings, freq="15min")
    return grids[HOME]


@pytest.fixture(scope="module")
def fitted(sim, grid):
    adjustments = sim.adjustments[sim.adjustments["home_id"] == HOME]
    return HomeModel().fit(grid, adjustments, program=sim.program, home_id=HOME)


def test_it_learns_the_household_and_stays_in_bounds(sim, fitted):
    household = sim.truth[HOME].household
    values = {rule.value_c for rule in fitted.schedule_.rules_}
    assert household.comfort_c in values and household.sleep_c in values
    params = fitted.params_
    assert params.comfort.min() >= params.lower_c and params.comfort.max() <= params.upper_c
    assert (params.eco <= params.comfort).all()
    assert fitted.occupancy_ is not None and fitted.fallbacks_ == []
    # Asleep at home at 03:00 on most weekday nights.
    profile = fitted.home_profile_.reshape(7, 96)
    assert profile[:5, 3 * 4].mean() > 0.75


def test_decisions_follow_occupancy(sim, grid, fitted):
    decisions = fitted.decisions(grid["motion"])
    assert set(decisions.columns) == {
        "setpoint_c",
        "occupied_probability",
        "occupied",
        "preheating",
    }
    truth = sim.truth[HOME].occupied.reindex(grid.index).fillna(False).to_numpy(bool)
    agreement = (decisions["occupied"].to_numpy() == truth).mean()
    assert agreement > 0.8
    low, high = fitted.params_.lower_c, fitted.params_.upper_c
    assert decisions["setpoint_c"].between(low, high).all()


def test_modes_switch_features_off_one_by_one(fitted):
    features = HomeSettings(modes={"away": "off"})
    no_away = fitted.with_settings(features).params_with_modes()
    np.testing.assert_array_equal(no_away.eco, no_away.comfort)
    no_schedule = fitted.with_settings(HomeSettings(modes={"schedule": "off"})).params_with_modes()
    assert np.allclose(np.unique(no_schedule.comfort), [16.0, 20.0])  # the simulated program
    suggest = fitted.with_settings(HomeSettings(modes={"preheat": "suggest"})).params_with_modes()
    assert suggest.mode == "suggest"
    off = fitted.with_settings(
        HomeSettings(modes=dict.fromkeys(["schedule", "away", "preheat"], "off"))
    )
    assert off.params_with_modes().mode == "off"


def test_bounds_are_never_left_after_the_household_narrows_them(fitted, grid):
    narrow = fitted.with_settings(HomeSettings(lower_c=18.0, upper_c=19.0, away_c=18.0))
    decisions = narrow.decisions(grid["motion"])
    assert decisions["setpoint_c"].between(18.0, 19.0).all()


def test_save_and_load_give_the_same_decisions(tmp_path, fitted, grid):
    path = fitted.save(tmp_path / "home")
    loaded = HomeModel.load(path)
    motion = grid["motion"]
    pd.testing.assert_frame_equal(loaded.decisions(motion), fitted.decisions(motion))
    assert loaded.insights()["habits"] == fitted.insights()["habits"]
    assert loaded.explain_slot(grid.index[40]) == fitted.explain_slot(grid.index[40])
    (path / "home.json").write_text("{")
    with pytest.raises(ValueError, match="damaged home model"):
        HomeModel.load(path)


def test_too_little_data_falls_back_and_says_so(sim, grid):
    day = grid.iloc[:96]
    model = HomeModel().fit(day.drop(columns=["motion", "indoor_temp"]), sim.adjustments.iloc[:0])
    joined = " ".join(model.fallbacks_)
    assert "occupancy" in joined and "schedule" in joined and "program" in joined
    assert "thermal" in joined
    insights = model.insights()
    assert insights["fallbacks"] == model.fallbacks_


def test_plan_heating_coasts_before_bedtime_and_preheats_before_a_return():
    slots = 7 * 96
    minute = (np.arange(slots) % 96) * 15
    schedule = np.where((minute >= 7 * 60) & (minute < 22 * 60), 21.0, 17.0)
    expected = ~((minute >= 9 * 60) & (minute < 17 * 60))  # away 9:00-17:00
    thermal = ThermalModel.default()
    comfort, eco, lookahead = plan_heating(
        schedule, expected, np.full(slots, 0.0), thermal, HomeSettings(), 15
    )
    bedtime = 22 * 4
    assert comfort[bedtime - 1] == 17.0  # the heating stops before 22:00
    assert comfort[bedtime - 12] == 21.0  # but not hours before
    back = 17 * 4
    assert lookahead[back - 1] >= 1  # pre-heating starts before 17:00
    assert lookahead[12 * 4] == 0  # not at noon
    assert (eco <= comfort).all()


def _week(wake_h: float, leave_h: float) -> tuple[np.ndarray, np.ndarray]:
    minute = (np.arange(7 * 96) % 96) * 15
    schedule = np.where((minute >= wake_h * 60) & (minute < 22 * 60), 21.0, 17.0)
    expected = ~((minute >= leave_h * 60) & (minute < 17 * 60))
    return schedule, expected


def test_heating_stops_before_they_leave_once_the_home_is_warm():
    schedule, expected = _week(6.0, 9.0)
    thermal = ThermalModel.default()
    outdoor = np.full(schedule.size, 0.0)
    comfort, eco, _ = plan_heating(schedule, expected, outdoor, thermal, HomeSettings(), 15)
    leave = 9 * 4
    # As long before leaving as the home takes to drift by the tolerance (1 °C) from 21 °C.
    drift = int(thermal.cool_down_minutes(21.0, 20.0, 0.0, cooling=False) // 15)
    assert drift >= 1
    coasting = np.flatnonzero(comfort[:leave] < schedule[:leave])
    assert coasting.tolist() == list(range(leave - drift, leave))
    assert (comfort[coasting] == eco[leave]).all()
    # Never before the home has reached 21 °C after waking at 6:00.
    warm_up = int(np.ceil(thermal.heat_up_minutes(17.0, 21.0, 0.0) / 15))
    assert coasting.min() >= 6 * 4 + warm_up

    off = HomeSettings(modes={"away": "off"})
    kept, _, _ = plan_heating(schedule, expected, outdoor, thermal, off, 15)
    assert (kept[6 * 4 : leave] == 21.0).all()  # no setback, so nothing to coast into


def test_a_short_morning_is_warmed_not_coasted():
    schedule, expected = _week(8.5, 9.0)  # 30 minutes between waking and leaving
    thermal = ThermalModel.default()
    assert thermal.heat_up_minutes(17.0, 21.0, 0.0) >= 30  # it is not warm before they go
    comfort, _, _ = plan_heating(
        schedule, expected, np.full(schedule.size, 0.0), thermal, HomeSettings(), 15
    )
    assert (comfort[34:36] == 21.0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lower_c": 20.0, "upper_c": 18.0}, "lower_c"),
        ({"away_c": float("nan")}, "away_c"),
        ({"upper_c": 40.0}, "upper_c"),
        ({"modes": {"lights": "auto"}}, "unknown feature"),
        ({"modes": {"away": "sometimes"}}, "modes.away"),
        ({"tolerance_c": 5.0}, "tolerance_c"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HomeSettings(**kwargs)


def test_a_bad_grid_is_named(grid, sim):
    with pytest.raises(ValueError, match="tz-aware"):
        HomeModel().fit(grid.tz_localize(None), sim.adjustments.iloc[:0])
    with pytest.raises(ValueError, match="regular"):
        HomeModel().fit(grid.drop(grid.index[3]).iloc[:200], sim.adjustments.iloc[:0])
    with pytest.raises(ValueError, match="at least a day"):
        HomeModel().fit(grid.iloc[:1], sim.adjustments.iloc[:0])


def test_the_onnx_path_sees_the_same_features(fitted, grid):
    features = occupancy_features(grid["motion"], slot_minutes=15)
    made = decide(fitted.params_, features, slots_for(grid.index, fitted.params_))
    np.testing.assert_allclose(made.setpoint, fitted.decisions(grid["motion"])["setpoint_c"])
