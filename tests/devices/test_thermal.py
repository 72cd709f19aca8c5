"""ThermalModel against a small seeded RC simulation with known rates."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from tailor.devices.thermal import DEFAULT_RATES, ThermalModel, step_pairs

TRUE_A = 0.1  # 1/h: a 10-hour time constant
TRUE_B = 3.0  # °C/h at full heating
TRUE_C = 2.5  # °C/h at full cooling
TRUE_D = 0.3  # °C/h of gains


@functools.cache
def _simulate(
    days: int,
    seed: int,
    step_minutes: int = 15,
    b: float = TRUE_B,
    outdoor_level: float = 4.0,
    with_cooling: bool = False,
) -> pd.DataFrame:
    """A home under a proportional thermostat, integrated exactly per step (eq. 2).

    Comfort 21 °C 06-09 and 17-23, 17 °C otherwise; weather wanders from day to day; the
    gains have a daily level and per-step noise; the sensor adds 0.05 °C white noise and the
    thermostat steers on that noisy reading (closed loop, as in a real home).
    """
    rng = np.random.default_rng(seed)
    per_day = 1440 // step_minutes
    n = days * per_day
    dt = step_minutes / 60
    index = pd.date_range("2025-01-06", periods=n, freq=f"{step_minutes}min", tz="UTC")
    day = np.arange(n) // per_day
    hour = (np.arange(n) % per_day) * dt
    level = outdoor_level + 0.7 * np.cumsum(rng.normal(0, 1.0, days))
    amplitude = 8.0 if with_cooling else 4.0
    outdoor = level[day] + amplitude * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.3, n)
    gains = TRUE_D + rng.normal(0, 0.1, days)[day] + rng.normal(0, 0.2, n)
    comfort = ((hour >= 6) & (hour < 9)) | ((hour >= 17) & (hour < 23))
    setpoint = np.where(comfort, 21.0, 17.0)
    decay = math.exp(-TRUE_A * dt)
    measured, heating, cooling = np.empty(n), np.empty(n), np.zeros(n)
    temperature = 19.0
    for i in range(n):
        measured[i] = temperature + rng.normal(0, 0.05)
        heating[i] = min(max(0.5 + 1.5 * (setpoint[i] - measured[i]), 0.0), 1.0)
        if with_cooling:
            cooling[i] = min(max(0.5 + 1.5 * (measured[i] - 24.0), 0.0), 1.0)
        drive = b * heating[i] - TRUE_C * cooling[i] + gains[i]
        equilibrium = outdoor[i] + drive / TRUE_A
        temperature = equilibrium + (temperature - equilibrium) * decay
    frame = pd.DataFrame(
        {"indoor_temp": measured, "outdoor_temp": outdoor, "heating": heating}, index=index
    )
    if with_cooling:
        frame["cooling"] = cooling
    return frame


def simulate(*args, **kwargs) -> pd.DataFrame:
    return _simulate(*args, **kwargs).copy()


def _true_model(b: float = TRUE_B) -> ThermalModel:
    data = ThermalModel.default().to_dict()
    data.update(loss_rate=TRUE_A, heat_rate=b, gain=TRUE_D, cool_rate=TRUE_C)
    return ThermalModel.from_dict(data)


def _minutes_by_simulation(model_b: float, start: float, target: float, outdoor: float) -> int:
    """Minutes for the true continuous system at full heating, in 1-minute exact steps."""
    decay = math.exp(-TRUE_A / 60)
    equilibrium = outdoor + (model_b + TRUE_D) / TRUE_A
    temperature, minutes = start, 0
    while temperature < target:
        temperature = equilibrium + (temperature - equilibrium) * decay
        minutes += 1
        assert minutes < 24 * 60
    return minutes


# --------------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_the_true_rates(seed):
    model = ThermalModel().fit(simulate(28, seed))
    assert model.loss_rate_ == pytest.approx(TRUE_A, rel=0.10)
    assert model.heat_rate_ == pytest.approx(TRUE_B, rel=0.10)
    assert model.gain_ == pytest.approx(TRUE_D, abs=0.15)
    assert math.isnan(model.cool_rate_)
    assert model.n_rows_ == 28 * 96 - 1
    assert model.step_minutes_ == 15
    assert not model.is_default_
    # The one-step error is the sensor noise and gains noise, not a misfit.
    assert 0.03 < model.residual_sd_ < 0.15
    assert 0 < model.std_errors_["loss_rate"] < 0.01


def test_rates_do_not_depend_on_the_grid_step():
    model = ThermalModel().fit(simulate(14, 3, step_minutes=5))
    assert model.step_minutes_ == 5
    assert model.loss_rate_ == pytest.approx(TRUE_A, rel=0.10)
    assert model.heat_rate_ == pytest.approx(TRUE_B, rel=0.10)


def test_fit_learns_cooling_when_the_home_has_it():
    grid = simulate(28, 4, outdoor_level=21.0, with_cooling=True)
    assert grid["cooling"].std() > 0.1 and grid["heating"].std() > 0.1
    model = ThermalModel().fit(grid)
    assert model.cool_rate_ == pytest.approx(TRUE_C, rel=0.15)
    assert model.loss_rate_ == pytest.approx(TRUE_A, rel=0.10)
    assert model.heat_rate_ == pytest.approx(TRUE_B, rel=0.10)


def test_constant_cooling_column_is_ignored_not_fatal():
    grid = simulate(7, 5)
    grid["cooling"] = 0.0
    model = ThermalModel().fit(grid)
    assert math.isnan(model.cool_rate_)
    with pytest.raises(ValueError, match="no cooling rate"):
        model.cool_down_minutes(24.0, 22.0, 10.0, cooling=True)


def test_nan_gaps_do_not_break_the_fit():
    grid = simulate(28, 6)
    rng = np.random.default_rng(0)
    holes = rng.random(len(grid)) < 0.1
    grid.loc[holes, "indoor_temp"] = np.nan
    grid.loc[rng.random(len(grid)) < 0.05, "outdoor_temp"] = np.nan
    grid.iloc[500:700, grid.columns.get_loc("heating")] = np.nan  # two days without duty
    grid = grid.drop(grid.index[1000:1100])  # and rows missing altogether
    model = ThermalModel().fit(grid)
    assert np.isfinite([model.loss_rate_, model.heat_rate_, model.gain_]).all()
    assert model.loss_rate_ == pytest.approx(TRUE_A, rel=0.10)
    assert model.heat_rate_ == pytest.approx(TRUE_B, rel=0.10)

    pairs = step_pairs(grid)
    assert len(pairs) == model.n_rows_
    assert not pairs.isna().any().any()
    # No pair spans a hole: each next value is the grid's value one step later.
    later = grid["indoor_temp"].reindex(pairs.index + pd.Timedelta(minutes=15)).to_numpy()
    np.testing.assert_array_equal(pairs["indoor_next"].to_numpy(), later)


def test_filled_values_are_skipped_unless_asked():
    grid = simulate(7, 7)
    grid["indoor_temp_gap"] = False
    grid.iloc[100:200, grid.columns.get_loc("indoor_temp_gap")] = True
    assert len(step_pairs(grid)) == len(grid) - 1 - 101
    assert len(step_pairs(grid, skip_filled=False)) == len(grid) - 1
    assert ThermalModel(skip_filled=False).fit(grid).n_rows_ == len(grid) - 1


def test_too_little_data_says_how_much_is_needed():
    with pytest.raises(ValueError, match=r"at least 192 .* has 95.*default\(\)"):
        ThermalModel().fit(simulate(7, 0).iloc[:96])
    with pytest.raises(ValueError, match="has 0"):
        ThermalModel().fit(simulate(7, 0).iloc[:1])
    with pytest.raises(ValueError, match="at least 500"):
        ThermalModel(min_rows=500).fit(simulate(3, 0))


def test_heating_that_never_varies_is_rejected():
    grid = simulate(7, 0)
    grid["heating"] = 0.4
    with pytest.raises(ValueError, match="barely varies"):
        ThermalModel().fit(grid)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g.drop(columns="outdoor_temp"), "lacks outdoor_temp"),
        (lambda g: g.assign(heating=g["heating"] * 15), "duty fraction"),
        (lambda g: g.iloc[::-1], "not sorted"),
        (lambda g: g.reset_index(drop=True), "DatetimeIndex"),
        # Heating that cools the home: a sign error in the data.
        (lambda g: g.assign(heating=1 - g["heating"]), "not positive"),
    ],
)
def test_bad_grids_fail_with_a_clear_message(change, message):
    with pytest.raises(ValueError, match=message):
        ThermalModel().fit(change(simulate(7, 0)))


def test_a_home_that_runs_away_from_the_outdoor_temperature_is_not_physical():
    # Indoor moving away from the outside (wrong outdoor column, or a sign error): a <= 0.
    rng = np.random.default_rng(2)
    n = 400
    heating = rng.integers(0, 2, n).astype(float)
    indoor = np.empty(n)
    indoor[0] = 20.0
    for t in range(n - 1):
        indoor[t + 1] = indoor[t] + 0.005 * indoor[t] + 0.3 * heating[t] - 0.25
    grid = pd.DataFrame(
        {"indoor_temp": indoor, "outdoor_temp": rng.normal(0, 3, n), "heating": heating},
        index=pd.date_range("2025-01-06", periods=n, freq="15min", tz="UTC"),
    )
    with pytest.raises(ValueError, match="not physical"):
        ThermalModel().fit(grid)


def test_unfitted_model_says_what_to_do():
    with pytest.raises(RuntimeError, match="fit"):
        ThermalModel().heat_up_minutes(17, 21, 0)


# ------------------------------------------------------------------------------ prediction
@pytest.mark.parametrize(("start", "target", "outdoor"), [(17.0, 21.0, 2.0), (16.0, 20.0, -5.0)])
def test_heat_up_minutes_matches_the_simulated_time(start, target, outdoor):
    truth = _minutes_by_simulation(TRUE_B, start, target, outdoor)
    # The closed form is exact for the true rates...
    assert _true_model().heat_up_minutes(start, target, outdoor) == pytest.approx(truth, abs=1)
    # ...and within one 15-minute step for the learned ones.
    fitted = ThermalModel().fit(simulate(28, 0))
    assert abs(fitted.heat_up_minutes(start, target, outdoor) - truth) <= 15


def test_heat_up_edge_cases():
    model = _true_model()
    assert model.heat_up_minutes(21.0, 20.0, 0.0) == 0.0
    # The heater holds at most outdoor + (b + d) / a = -20 + 33 = 13 °C.
    assert model.heat_up_minutes(10.0, 20.0, -20.0) == math.inf
    assert model.heat_up_minutes(17.0, 21.0, 0.0, duty=0.5) > model.heat_up_minutes(17, 21, 0)
    minutes = model.heat_up_minutes(np.array([17.0, 21.0, 10.0]), 20.0, np.array([0.0, 0.0, -20]))
    assert minutes.shape == (3,) and minutes[1] == 0 and np.isinf(minutes[2])
    assert 0 < minutes[0] < 180


def test_cool_down_minutes_free_drift_and_cooling():
    model = _true_model()
    # Free drift toward outdoor + d / a = 5 + 3 = 8 °C: T(t) = 8 + 13 exp(-0.1 t).
    expected = math.log(13 / 9) / TRUE_A * 60
    assert model.cool_down_minutes(21.0, 17.0, 5.0, cooling=False) == pytest.approx(expected)
    assert model.cool_down_minutes(21.0, 17.0, 15.0, cooling=False) == math.inf
    # With cooling (learned) it is faster, and the default uses it.
    with_cooling = model.cool_down_minutes(21.0, 17.0, 15.0)
    assert math.isfinite(with_cooling)
    assert model.cool_down_minutes(21.0, 17.0, 5.0) < expected
    assert model.cool_down_minutes(17.0, 21.0, 5.0) == 0.0


def test_predict_temperature_steps_and_equilibrium():
    model = _true_model()
    path = model.predict_temperature(17.0, outdoor=5.0, heating=1.0, steps=400)
    assert path.shape == (401,) and path[0] == 17.0
    assert np.all(np.diff(path) > 0)
    assert path[-1] == pytest.approx(5.0 + (TRUE_B + TRUE_D) / TRUE_A, abs=0.1)
    heating = np.r_[np.ones(4), np.zeros(4)]
    short = model.predict_temperature(19.0, np.full(8, 0.0), heating, 8)
    assert np.argmax(short) == 4
    one = model.predict_step(19.0, 0.0, 1.0)
    assert short[1] == pytest.approx(float(one))
    assert model.predict_temperature(19.0, 0.0, 0.0, 0).tolist() == [19.0]
    with pytest.raises(ValueError, match="missing"):
        model.predict_temperature(19.0, [0.0, np.nan], 1.0, 2)


def test_predicted_day_tracks_the_simulation():
    grid = simulate(28, 8)
    model = ThermalModel().fit(grid.iloc[: 21 * 96])
    day = grid.iloc[21 * 96 : 22 * 96 + 1]
    path = model.predict_temperature(
        day["indoor_temp"].iloc[0], day["outdoor_temp"].iloc[:-1], day["heating"].iloc[:-1], 96
    )
    # A free run over a whole day, driven only by the weather and the recorded duty.
    assert np.abs(path - day["indoor_temp"].to_numpy()).mean() < 0.6


# ------------------------------------------------------------------------------- preheat
def _weekday_comfort(slots_per_day: int = 96) -> np.ndarray:
    comfort = np.full(slots_per_day, np.nan)
    comfort[24:36] = 21.0  # 06:00-09:00
    comfort[68:92] = 21.0  # 17:00-23:00
    return comfort


def test_preheat_slots_colder_day_and_weaker_heater_start_earlier():
    comfort = _weekday_comfort()
    model = _true_model()
    mild = model.preheat_slots(comfort, 17.0, np.full(96, 8.0), 15)
    cold = model.preheat_slots(comfort, 17.0, np.full(96, -5.0), 15)
    weak = _true_model(b=2.0).preheat_slots(comfort, 17.0, np.full(96, 8.0), 15)
    assert mild.dtype == np.int64 and mild.shape == (96,)
    assert set(np.flatnonzero(mild)) == {24, 68}
    assert 0 < mild[24] < cold[24] and 0 < mild[24] < weak[24]
    # The lead time is the fewest slots that get there, in line with the closed form.
    minutes = model.heat_up_minutes(17.0, 21.0, 8.0)
    assert mild[24] == math.ceil(minutes / 15)


def test_preheat_slots_follows_the_outdoor_forecast_and_caps():
    comfort = _weekday_comfort()
    model = _true_model()
    outdoor = np.full(96, 8.0)
    outdoor[12:24] = -10.0  # a cold night before the morning start only
    lead = model.preheat_slots(comfort, 17.0, outdoor, 15)
    assert lead[24] > lead[68]
    # Unreachable within the cap (or at all): start as early as allowed.
    assert model.preheat_slots(comfort, 17.0, -40.0, 15, max_slots=6)[24] == 6
    # A comfort start at slot 0 wraps around to the previous evening's slots.
    wrapped = np.roll(comfort, -24)
    assert model.preheat_slots(wrapped, 17.0, 8.0, 15)[0] == lead[68]
    assert model.preheat_slots(wrapped, 17.0, 8.0, 15, wrap=False)[0] == 0


def test_preheat_slots_uses_eco_and_rising_targets_only():
    model = _true_model()
    comfort = np.array([np.nan, np.nan, 20.0, 20.0, 21.0, np.nan, 19.0, 19.0])
    lead = model.preheat_slots(comfort, 18.0, 5.0, 15)
    assert lead[2] > 0 and lead[4] > 0  # 18 -> 20 and 20 -> 21
    assert lead[3] == 0 and lead[5] == 0 and lead[7] == 0
    assert lead[6] > 0  # 18 -> 19
    assert lead[4] < lead[2]
    with pytest.raises(ValueError, match="outdoor"):
        model.preheat_slots(comfort, 18.0, [np.nan] * 8, 15)
    with pytest.raises(ValueError, match="comfort or an eco"):
        model.preheat_slots(comfort, np.nan, 5.0, 15)


# -------------------------------------------------------------------------- default, save
def test_default_rates_are_documented_and_sensible():
    model = ThermalModel.default()
    assert model.is_default_ and model.n_rows_ == 0
    assert model.loss_rate_ == DEFAULT_RATES["loss_rate"]
    assert model.heat_rate_ == DEFAULT_RATES["heat_rate"]
    assert 60 < model.heat_up_minutes(17.0, 21.0, 5.0) < 180
    assert model.heat_up_minutes(17.0, 60.0, 5.0) == math.inf


def test_to_dict_round_trips_through_json():
    model = ThermalModel(min_rows=100).fit(simulate(7, 9))
    text = json.dumps(model.to_dict(), allow_nan=False)
    loaded = ThermalModel.from_dict(json.loads(text))
    assert loaded.min_rows == 100
    assert loaded.loss_rate_ == model.loss_rate_ and loaded.heat_rate_ == model.heat_rate_
    assert math.isnan(loaded.cool_rate_)
    assert loaded.heat_up_minutes(17, 21, 0) == model.heat_up_minutes(17, 21, 0)
    default = ThermalModel.from_dict(json.loads(json.dumps(ThermalModel.default().to_dict())))
    assert default.is_default_ and math.isnan(default.residual_sd_)


def test_from_dict_rejects_foreign_or_broken_data():
    with pytest.raises(ValueError, match="not a saved ThermalModel"):
        ThermalModel.from_dict({"model": "something else"})
    data = ThermalModel.default().to_dict()
    with pytest.raises(ValueError, match="format_version"):
        ThermalModel.from_dict({**data, "format_version": 99})
    with pytest.raises(ValueError, match="non-positive"):
        ThermalModel.from_dict({**data, "heat_rate": -1.0})
