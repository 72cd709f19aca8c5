"""The learned setpoint schedule: repeated adjustments count, one-offs do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailor.devices.schedule import SetpointSchedule, default_program, describe_rule

START = pd.Timestamp("2026-01-05", tz="UTC")  # a Monday
WEEKS = 6


def _habits(seed: int = 0, one_off_day: int | None = 10) -> pd.DataFrame:
    """A household: up at 06:40 (weekdays) or 08:30 (weekends) to 21.5 °C, bed at 22:40 to 18 °C."""
    rng = np.random.default_rng(seed)
    rows = []
    for day_number in range(7 * WEEKS):
        day = START + pd.Timedelta(days=day_number)
        wake = (6 * 60 + 40) if day.day_of_week < 5 else (8 * 60 + 30)
        rows.append((day + pd.Timedelta(minutes=wake + rng.normal(0, 8)), 21.5, 17.0))
        rows.append((day + pd.Timedelta(minutes=22 * 60 + 40 + rng.normal(0, 8)), 18.0, 21.5))
        if day_number == one_off_day:
            rows.append((day + pd.Timedelta(hours=19), 24.0, 21.5))
    return pd.DataFrame(rows, columns=["ts", "value", "previous_value"])


def _fit(adjustments: pd.DataFrame, **kwargs) -> SetpointSchedule:
    end = START + pd.Timedelta(weeks=WEEKS)
    return SetpointSchedule().fit(adjustments, start=START, end=end, **kwargs)


def _at(schedule: SetpointSchedule, day: int, hour: int, minute: int = 0) -> float:
    when = START + pd.Timedelta(days=day, hours=hour, minutes=minute)
    return float(schedule.predict(pd.DatetimeIndex([when]))[0])


def test_repeated_adjustments_become_the_schedule_and_hold_until_the_next_rule():
    schedule = _fit(_habits(), program=default_program())
    assert _at(schedule, 0, 12) == 21.5  # Monday noon: the morning habit holds all day
    assert _at(schedule, 0, 23, 30) == 18.0  # the bedtime wish holds past the program's 23:00
    assert _at(schedule, 1, 3) == 18.0  # and through the night
    assert _at(schedule, 5, 10) == 21.5  # Saturday after the later wake-up
    assert {r.day_type for r in schedule.rules_} == {"weekday", "weekend"}


def test_a_one_off_evening_is_not_learned():
    schedule = _fit(_habits(one_off_day=10), program=default_program())
    assert all(rule.value_c != 24.0 for rule in schedule.rules_)
    assert schedule.rejected_ >= 1
    assert _at(schedule, 3, 19) == 21.5  # Thursday evening keeps the habit, not the guest's 24


def test_a_change_made_on_one_day_only_never_counts_but_two_days_can():
    day = START + pd.Timedelta(days=2, hours=19)
    once = pd.DataFrame({"ts": [day], "value": [23.0], "previous_value": [20.0]})
    assert _fit(once).rules_ == []
    twice = pd.DataFrame(
        {"ts": [day, day + pd.Timedelta(days=1)], "value": [23.0, 23.0], "previous_value": 20.0}
    )
    short = SetpointSchedule(min_share=0.0).fit(
        twice, start=START, end=START + pd.Timedelta(days=7)
    )
    assert len(short.rules_) == 1 and short.rules_[0].support_days == 2
    # Two days out of thirty weekdays is below the default 25% share: still not a habit.
    assert _fit(twice).rules_ == []


def test_the_explanation_counts_recent_days():
    adjustments = _habits()
    # Skip the bedtime adjustment on the last Friday: 4 of the last 5 weekdays.
    last_friday = (START + pd.Timedelta(weeks=WEEKS) - pd.Timedelta(days=3)).date()
    keep = ~((adjustments["ts"].dt.date == last_friday) & (adjustments["value"] == 18.0))
    schedule = _fit(adjustments[keep])
    bedtime = next(r for r in schedule.rules_ if r.day_type == "weekday" and r.value_c == 18.0)
    assert (
        describe_rule(bedtime) == "you lowered it to 18 °C around 22:40 on 4 of the last 5 weekdays"
    )
    text = schedule.explain(START + pd.Timedelta(days=1, hours=23))
    assert text.startswith("18 °C because you lowered it to 18 °C")


def test_program_points_survive_only_where_someone_could_object():
    # Only a morning habit: the program's 23:00 drop to 16 °C is the night setting when the
    # household is awake then and did not object, but not when it is typically asleep.
    adjustments = _habits()
    adjustments = adjustments[adjustments["value"] == 21.5]
    program = default_program() - 1.0  # 19 °C by day, 16 °C at night
    awake_late = np.full(len(program), 0.7)
    asleep_at_23 = awake_late.copy()
    slots = np.arange(len(program)) % 96
    asleep_at_23[(slots >= 22 * 4) | (slots < 6 * 4)] = 0.02
    kept = _fit(adjustments, program=program, activity=awake_late)
    dropped = _fit(adjustments, program=program, activity=asleep_at_23)
    assert _at(kept, 1, 1) == 16.0
    assert _at(dropped, 1, 1) == 21.5


def test_day_types_without_habits_follow_the_program_and_defaults_without_one():
    weekdays_only = _habits()
    weekdays_only = weekdays_only[weekdays_only["ts"].dt.day_of_week < 5]
    program = np.full(7 * 96, 19.0)
    schedule = _fit(weekdays_only, program=program)
    assert _at(schedule, 5, 12) == 19.0  # Saturday: the program
    assert schedule.learned_day_types_ == {"weekday"}
    empty = _fit(weekdays_only.iloc[:0])
    np.testing.assert_array_equal(empty.table_, default_program())
    assert "no repeated adjustment" in empty.explain(START + pd.Timedelta(hours=12))


def test_timezone_moves_habits_to_the_local_clock():
    local = _habits()
    # The same habits recorded by a home in New York: UTC times five hours later.
    shifted = local.assign(ts=local["ts"] + pd.Timedelta(hours=5))
    schedule = SetpointSchedule().fit(
        shifted,
        start=START + pd.Timedelta(hours=5),
        end=START + pd.Timedelta(weeks=WEEKS, hours=5),
        timezone="America/New_York",
    )
    assert any(r.minute == pytest.approx(22 * 60 + 40, abs=10) for r in schedule.rules_)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slot_minutes": 7}, "slot_minutes"),
        ({"day_types": "monthly"}, "day_types"),
        ({"min_share": 1.5}, "min_share"),
        ({"min_days": 0}, "min_days"),
        ({"window_minutes": 0}, "window_minutes"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SetpointSchedule(**kwargs).fit(_habits(), start=START, end=START + pd.Timedelta(days=7))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="lack column"):
        _fit(pd.DataFrame({"ts": [START]}))
    bad = _habits().astype({"value": float})
    bad.loc[3, "value"] = np.nan
    with pytest.raises(ValueError, match="row 3: value"):
        _fit(bad)
    with pytest.raises(ValueError, match="end after it starts"):
        SetpointSchedule().fit(_habits(), start=START, end=START)
    with pytest.raises(ValueError, match="program must have one value per slot"):
        _fit(_habits(), program=np.zeros(10))
