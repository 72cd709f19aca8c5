"""The setpoint in force: the device's program plus the deviations the household repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailor.devices.program import ProgramDeviations

INDEX = pd.date_range("2026-06-01", periods=14 * 288, freq="5min", tz="UTC")  # two weeks
MODES = {"Home": 25.0, "Away": 28.0, "Sleep": 24.0}


def _program(index: pd.DatetimeIndex) -> pd.Series:
    hour = index.hour
    mode = np.where(
        hour < 6, "Sleep", np.where(hour < 9, "Home", np.where(hour < 17, "Away", "Home"))
    )
    mode = np.where(hour >= 22, "Sleep", mode)
    return pd.Series(mode, index=index, dtype=object)


def _in_force(index, program: pd.Series, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = program.map(MODES).to_numpy(float).copy()
    # A habit: every weekday evening 19:00-21:00 they hold 23 °C. A one-off: 21 °C one night.
    evening = (index.hour >= 19) & (index.hour < 21) & (index.day_of_week < 5)
    values[evening] = 23.0
    one_off = (index.date == index[0].date() + pd.Timedelta(days=2)) & (index.hour == 2)
    values[one_off] = 21.0
    return pd.Series(values + rng.normal(0, 0.01, len(values)), index=index)


def test_repeated_deviations_are_learned_and_one_offs_are_not():
    program = _program(INDEX)
    model = ProgramDeviations(slot_minutes=5).fit(_in_force(INDEX, program), program, MODES)
    monday_evening = INDEX[(INDEX.day_of_week == 0) & (INDEX.hour == 20)][:1]
    predicted = model.predict(monday_evening, program)
    assert predicted[0] == pytest.approx(23.0, abs=0.05)
    night = INDEX[(INDEX.day_of_week == 2) & (INDEX.hour == 2)][:1]
    assert model.predict(night, program)[0] == pytest.approx(24.0, abs=0.05)
    saturday_evening = INDEX[(INDEX.day_of_week == 5) & (INDEX.hour == 20)][:1]
    assert model.predict(saturday_evening, program)[0] == pytest.approx(25.0, abs=0.05)


def test_an_unknown_mode_takes_the_usual_one_for_that_time():
    program = _program(INDEX)
    model = ProgramDeviations(slot_minutes=5).fit(_in_force(INDEX, program), program, MODES)
    blank = pd.Series([None], index=INDEX[(INDEX.day_of_week == 1) & (INDEX.hour == 12)][:1])
    assert model.program_setpoint(blank.index, blank)[0] == MODES["Away"]


def test_bad_input_is_named():
    program = _program(INDEX)
    setpoint = _in_force(INDEX, program)
    with pytest.raises(ValueError, match="share one index"):
        ProgramDeviations(slot_minutes=5).fit(setpoint.iloc[1:], program, MODES)
    with pytest.raises(ValueError, match="mode_setpoints"):
        ProgramDeviations(slot_minutes=5).fit(setpoint, program, {})
    with pytest.raises(ValueError, match="no step carries a known mode"):
        ProgramDeviations(slot_minutes=5).fit(setpoint, program.map(lambda m: "X"), MODES)
    with pytest.raises(ValueError, match="day_types"):
        ProgramDeviations(day_types="monthly").fit(setpoint, program, MODES)
