"""Occupancy: the logistic model against the time-of-week majority."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailor.devices.occupancy import (
    OccupancyModel,
    TimeOfWeekBaseline,
    activity_profile,
    occupancy_f1,
    sensor_features,
)

INDEX = pd.date_range("2026-01-05", periods=4 * 7 * 96, freq="15min", tz="UTC")


def _office(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Occupied 9-17 on weekdays, except random days off; light and CO2 follow people."""
    rng = np.random.default_rng(seed)
    hour = INDEX.hour.to_numpy()
    weekday = INDEX.day_of_week.to_numpy() < 5
    day_off = rng.random(len(INDEX) // 96 + 1)[np.arange(len(INDEX)) // 96] < 0.2
    occupied = ((hour >= 9) & (hour < 17) & weekday & ~day_off).astype(int)
    sensors = pd.DataFrame(
        {
            "light": 20 + 400 * occupied + rng.normal(0, 30, len(INDEX)),
            "co2": 420 + 300 * occupied + rng.normal(0, 40, len(INDEX)),
        },
        index=INDEX,
    )
    return sensors, occupied


def test_baseline_is_the_majority_of_each_slot():
    _, occupied = _office()
    baseline = TimeOfWeekBaseline().fit(INDEX, occupied)
    monday_10 = INDEX[(INDEX.day_of_week == 0) & (INDEX.hour == 10)][:1]
    sunday_10 = INDEX[(INDEX.day_of_week == 6) & (INDEX.hour == 10)][:1]
    assert baseline.predict(monday_10)[0] == 1
    assert baseline.predict(sunday_10)[0] == 0


def test_the_sensor_model_beats_the_time_of_week_baseline_on_unseen_weeks():
    sensors, occupied = _office(seed=1)
    X, names = sensor_features(sensors)
    assert "light_change" in names
    learn = slice(0, 2 * 7 * 96)
    test = slice(2 * 7 * 96, None)
    model = OccupancyModel().fit(X[learn], occupied[learn])
    baseline = TimeOfWeekBaseline().fit(INDEX[learn], occupied[learn])
    model_f1 = occupancy_f1(occupied[test], model.predict(X[test]))
    baseline_f1 = occupancy_f1(occupied[test], baseline.predict(INDEX[test]))
    assert model_f1 > 0.95
    assert model_f1 > baseline_f1 + 0.05  # days off fool the calendar, not the sensors


def test_folded_coefficients_reproduce_the_probabilities():
    sensors, occupied = _office(seed=2)
    X, _ = sensor_features(sensors, with_time=False)
    model = OccupancyModel(C=0.5).fit(X, occupied)
    manual = 1 / (1 + np.exp(-(X @ model.coef_ + model.intercept_)))
    np.testing.assert_allclose(model.predict_proba(X), manual)


def test_activity_profile_averages_per_slot_and_leaves_unseen_slots_nan():
    motion = pd.Series(np.nan, index=INDEX[: 96 * 7])
    motion.iloc[0] = 1.0
    profile = activity_profile(motion)
    assert profile[0] == 1.0 and np.isnan(profile[1])


def test_bad_input_is_named():
    sensors, occupied = _office()
    X, _ = sensor_features(sensors)
    with pytest.raises(ValueError, match="both occupied and empty"):
        OccupancyModel().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="threshold"):
        OccupancyModel(threshold=1.0).fit(X, occupied)
    with pytest.raises(ValueError, match="X must be"):
        OccupancyModel().fit(X[:5], occupied)
    model = OccupancyModel().fit(X, occupied)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="numeric"):
        sensor_features(pd.DataFrame({"a": ["x"]}, index=INDEX[:1]))
    with pytest.raises(ValueError, match="no training rows"):
        TimeOfWeekBaseline().fit(INDEX[:0], np.array([]))


def test_home_labels_read_absences_and_nights_from_motion():
    from tailor.devices.occupancy import home_labels

    index = pd.date_range("2026-01-05", periods=2 * 96, freq="15min", tz="UTC")
    motion = pd.Series(0.0, index=index)
    hour = index.hour
    motion[(hour >= 7) & (hour < 8)] = 1.0  # up, then out at 08:00
    motion[(hour >= 18) & (hour < 23)] = 1.0  # back at 18:00, bed at 23:00
    motion[(index.day == 6) & (hour == 3) & (index.minute == 30)] = 1.0  # the cat at 03:30
    labels = pd.Series(home_labels(motion), index=index)
    day = labels[index.day == 5]
    assert day.between_time("08:30", "17:30").eq(0).all()  # the whole absence, from its start
    assert day.between_time("18:00", "23:45").eq(1).all()
    night = labels[(index.day == 6) & (hour < 7)]
    assert night.eq(1).all()  # asleep, though the cat split the night in two
    assert labels[(index.day == 5) & (hour < 7)].eq(0).all()  # no motion before: no night
