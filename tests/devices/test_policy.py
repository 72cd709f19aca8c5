"""The server's decision function: features, parameters, decisions, bounds, pre-heat."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.devices.features import slots_per_week, time_features
from tailor.devices.policy import (
    OCCUPANCY_FEATURE_NAMES,
    DecisionParams,
    decide,
    decide_reference,
    history_slots,
    occupancy_features,
    occupancy_features_online,
    slots_for,
)


def make_params(
    rng: np.random.Generator | None = None, *, slot_minutes: int = 15, **overrides: Any
) -> DecisionParams:
    rng = rng or np.random.default_rng(0)
    size = slots_per_week(slot_minutes)
    fields: dict[str, Any] = {
        "slot_minutes": slot_minutes,
        "timezone": "Europe/Berlin",
        "feature_names": OCCUPANCY_FEATURE_NAMES,
        "occupancy_coef": rng.normal(size=len(OCCUPANCY_FEATURE_NAMES)),
        "occupancy_intercept": 0.2,
        "threshold": 0.5,
        "comfort": rng.uniform(19, 23, size),
        "eco": rng.uniform(14, 18, size),
        "lower_c": 16.0,
        "upper_c": 22.0,
        "preheat_slots": rng.integers(0, 8, size),
        "expected_occupied": rng.random(size) < 0.4,
        "mode": "auto",
        "version": "v7",
    }
    fields.update(overrides)
    return DecisionParams(**fields)


def grid(n: int, start: str = "2024-03-29 20:00", minutes: int = 15) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq=f"{minutes}min", tz="UTC")


# --- features ----------------------------------------------------------------------------


def test_features_follow_the_definition_by_hand() -> None:
    motion = pd.Series([1.0, np.nan, 0.0, 1.0, 0.0], index=grid(5))
    lags = occupancy_features(motion)[:, 9:]
    assert lags.shape == (5, 5)
    np.testing.assert_allclose(lags[0], [0, 0, 0, 1, 1])  # nothing known yet
    # Slot 4 sees 1, NaN, 0, 1: last motion one slot (15 min) before.
    np.testing.assert_allclose(lags[4], [1, 2 / 4, 2 / 16, 0.25 / 12, 13 / 16])
    # Slot 3 sees 1, NaN, 0: last motion three slots (45 min) before.
    np.testing.assert_allclose(lags[3], [0, 1 / 4, 1 / 16, 0.75 / 12, 14 / 16])
    np.testing.assert_allclose(occupancy_features(motion)[:, :9], time_features(motion.index))


def test_hours_since_motion_saturates_at_twelve_hours() -> None:
    values = np.zeros(60)
    values[0] = 1.0
    features = occupancy_features(pd.Series(values, index=grid(60)))
    hours = features[:, OCCUPANCY_FEATURE_NAMES.index("hours_since_motion")] * 12
    np.testing.assert_allclose(hours[1:49], np.arange(1, 49) * 0.25)
    assert (hours[48:] == 12).all()


def test_features_use_only_the_past() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2, 80).astype(float)
    changed = values.copy()
    changed[50:] = 1 - changed[50:]
    before = occupancy_features(pd.Series(values, index=grid(80)))
    after = occupancy_features(pd.Series(changed, index=grid(80)))
    np.testing.assert_array_equal(before[:51], after[:51])
    assert not np.array_equal(before[51], after[51])


@pytest.mark.parametrize("slot_minutes", [15, 60])
@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/St_Johns"])
def test_streaming_features_equal_the_batch_form_row_for_row(
    slot_minutes: int, timezone: str
) -> None:
    rng = np.random.default_rng(slot_minutes)
    n = 300
    values = rng.choice([0.0, 1.0, np.nan], size=n, p=[0.6, 0.25, 0.15])
    values[120:190] = np.nan  # a long outage
    index = grid(n, minutes=slot_minutes)  # crosses the spring DST change in Berlin
    batch = occupancy_features(
        pd.Series(values, index=index), timezone=timezone, slot_minutes=slot_minutes
    )
    lookback = history_slots(slot_minutes)
    for t in range(n):
        recent = values[max(0, t - lookback) : t]
        online = occupancy_features_online(
            recent, index[t], timezone=timezone, slot_minutes=slot_minutes
        )
        np.testing.assert_allclose(online, batch[t], rtol=0, atol=1e-12, err_msg=f"row {t}")
    # A longer buffer than needed reads only its newest slots.
    longer = occupancy_features_online(
        values[: n - 1], index[-1], timezone=timezone, slot_minutes=slot_minutes
    )
    np.testing.assert_allclose(longer, batch[-1], atol=1e-12)


def test_features_reject_bad_motion_and_irregular_grids() -> None:
    with pytest.raises(ValueError, match="motion must be 0"):
        occupancy_features(pd.Series([0.0, 2.0], index=grid(2)))
    with pytest.raises(ValueError, match="exactly 15 minutes"):
        occupancy_features(pd.Series([0.0, 1.0], index=grid(2, minutes=30)))
    irregular = grid(3).delete(1)
    with pytest.raises(ValueError, match="slot grid"):
        occupancy_features(pd.Series([0.0, 1.0], index=irregular))
    with pytest.raises(TypeError, match="DatetimeIndex"):
        occupancy_features(pd.Series([0.0, 1.0]))
    with pytest.raises(ValueError, match="recent_motion"):
        occupancy_features_online(np.array([0.0, -1.0]), pd.Timestamp("2024-01-01", tz="UTC"))
    assert occupancy_features(pd.Series([], index=grid(0), dtype=float)).shape == (0, 14)


# --- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"lower_c": 22.0, "upper_c": 22.0}, "lower_c"),
        ({"upper_c": 40.0}, "upper_c"),
        ({"lower_c": 2.0}, "lower_c"),
        ({"comfort": np.full(671, 21.0)}, "comfort"),
        ({"comfort": np.r_[np.nan, np.full(671, 21.0)]}, "comfort"),
        ({"eco": np.full(672, 50.0)}, "eco"),
        ({"occupancy_coef": np.ones(3)}, "occupancy_coef"),
        ({"occupancy_coef": np.r_[np.inf, np.ones(13)]}, "occupancy_coef"),
        ({"occupancy_intercept": float("nan")}, "occupancy_intercept"),
        ({"preheat_slots": np.full(672, -1)}, "preheat_slots"),
        ({"preheat_slots": np.full(672, 1.5)}, "preheat_slots"),
        ({"preheat_slots": np.full(672, 672)}, "preheat_slots"),
        ({"expected_occupied": np.zeros(672)}, "expected_occupied"),
        ({"expected_occupied": np.zeros(10, dtype=bool)}, "expected_occupied"),
        ({"mode": "manual"}, "mode"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"version": ""}, "version"),
        ({"feature_names": ("a",) * 14}, "feature_names"),
    ],
)
def test_invalid_params_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"DecisionParams\.{field}"):
        make_params(**overrides)


def test_slot_minutes_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match=r"DecisionParams\.slot_minutes"):
        dataclasses.replace(make_params(), slot_minutes=7)
    with pytest.raises(ValueError, match=r"DecisionParams\.slot_minutes"):
        dataclasses.replace(make_params(), slot_minutes=15.0)


def test_params_arrays_are_read_only_copies() -> None:
    comfort = np.full(672, 21.0)
    params = make_params(comfort=comfort)
    comfort[:] = 30.0
    assert (params.comfort == 21.0).all()
    with pytest.raises(ValueError, match="read-only"):
        params.comfort[0] = 25.0


def test_save_load_round_trip(tmp_path: Path) -> None:
    params = make_params(np.random.default_rng(3), mode="suggest")
    loaded = DecisionParams.load(params.save(tmp_path / "home" / "params.npz"))
    for name in ("slot_minutes", "timezone", "feature_names", "mode", "version"):
        assert getattr(loaded, name) == getattr(params, name)
    for name in ("occupancy_intercept", "threshold", "lower_c", "upper_c"):
        assert getattr(loaded, name) == getattr(params, name)
    for name in ("occupancy_coef", "comfort", "eco", "preheat_slots", "expected_occupied"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(params, name))
        assert getattr(loaded, name).dtype == getattr(params, name).dtype


def test_damaged_params_files_say_what_to_do(tmp_path: Path) -> None:
    path = make_params().save(tmp_path / "params.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:300])
    other = tmp_path / "other.npz"
    np.savez(other, x=np.ones(3))
    for bad in (truncated, other, tmp_path / "missing.npz"):
        with pytest.raises(ValueError, match="re-export"):
            DecisionParams.load(bad)


# --- decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "suggest", "off"])
def test_decide_equals_the_reference_loop(mode: str) -> None:
    rng = np.random.default_rng(4)
    params = make_params(rng, mode=mode)
    features = rng.normal(scale=2.0, size=(2000, 14))
    slot = rng.integers(0, 672, 2000)
    fast, slow = decide(params, features, slot), decide_reference(params, features, slot)
    np.testing.assert_allclose(fast.occupied_probability, slow.occupied_probability, atol=1e-12)
    np.testing.assert_array_equal(fast.occupied, slow.occupied)
    np.testing.assert_array_equal(fast.preheating, slow.preheating)
    np.testing.assert_allclose(fast.setpoint, slow.setpoint, atol=1e-12)  # NaN == NaN here
    assert 0 < fast.occupied.mean() < 1 and fast.preheating.any()
    if mode == "off":
        assert np.isnan(fast.setpoint).all()
    else:
        expected = decide(make_params(np.random.default_rng(4)), features, slot).setpoint
        np.testing.assert_array_equal(fast.setpoint, expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lower=st.floats(5.0, 34.0),
    width=st.floats(0.01, 30.0),
    threshold=st.floats(0.001, 0.999),
    scale=st.floats(0.0, 50.0),
    slot_minutes=st.sampled_from([60, 240]),
)
def test_setpoints_never_leave_the_comfort_bounds(
    seed: int, lower: float, width: float, threshold: float, scale: float, slot_minutes: int
) -> None:
    rng = np.random.default_rng(seed)
    upper = min(lower + width, 35.0)
    size = slots_per_week(slot_minutes)
    params = make_params(
        rng,
        slot_minutes=slot_minutes,
        occupancy_coef=rng.normal(scale=scale, size=14),
        occupancy_intercept=float(rng.normal(scale=scale)),
        threshold=threshold,
        comfort=rng.uniform(5, 35, size),
        eco=rng.uniform(5, 35, size),
        lower_c=lower,
        upper_c=upper,
        preheat_slots=rng.integers(0, size, size),
    )
    features = rng.normal(scale=scale + 1, size=(200, 14))
    slot = rng.integers(0, size, 200)
    setpoint = decide(params, features, slot).setpoint
    assert np.isfinite(setpoint).all()
    assert (setpoint >= lower).all() and (setpoint <= upper).all()


def preheat_params(**overrides: Any) -> DecisionParams:
    comfort = np.full(672, 21.0)
    comfort[100] = 21.5
    expected = np.zeros(672, dtype=bool)
    expected[[100, 1]] = True
    fields: dict[str, Any] = {
        "occupancy_coef": np.zeros(14),
        "occupancy_intercept": -10.0,  # the occupancy model says: nobody home
        "comfort": comfort,
        "eco": np.full(672, 16.0),
        "lower_c": 15.0,
        "upper_c": 23.0,
        "preheat_slots": np.full(672, 4),
        "expected_occupied": expected,
    }
    fields.update(overrides)
    return make_params(**fields)


def test_preheat_starts_comfort_early() -> None:
    params = preheat_params()
    slot = np.arange(93, 103)
    decision = decide(params, np.zeros((slot.size, 14)), slot)
    assert not decision.occupied.any()
    # Slots 96..99 see slot 100 within 4 slots ahead and heat to its comfort setpoint.
    expected = {93: 16.0, 94: 16.0, 95: 16.0, 96: 21.5, 97: 21.5, 98: 21.5, 99: 21.5}
    expected |= {100: 16.0, 101: 16.0, 102: 16.0}
    np.testing.assert_array_equal(decision.setpoint, [expected[s] for s in slot])
    np.testing.assert_array_equal(decision.preheating, np.isin(slot, [96, 97, 98, 99]))
    # Over the week's end: Sunday's last slots pre-heat for Monday's slot 1.
    wrap = decide(params, np.zeros((3, 14)), np.array([668, 669, 671]))
    np.testing.assert_array_equal(wrap.setpoint, [16.0, 21.0, 21.0])
    # No pre-heat horizon, no pre-heating; an occupied home gets its own slot's comfort.
    none = decide(preheat_params(preheat_slots=np.zeros(672, dtype=int)), np.zeros((1, 14)), [97])
    assert none.setpoint[0] == 16.0
    home = decide(preheat_params(occupancy_intercept=10.0), np.zeros((1, 14)), [97])
    assert home.occupied[0] and home.setpoint[0] == 21.0 and not home.preheating[0]


def test_preheat_target_is_clipped_to_the_bounds() -> None:
    params = preheat_params(upper_c=21.2)
    assert decide(params, np.zeros((1, 14)), [98]).setpoint[0] == 21.2


def test_decide_rejects_bad_inputs() -> None:
    params = make_params()
    with pytest.raises(ValueError, match=r"features: expected shape \(n, 14\)"):
        decide(params, np.zeros((3, 5)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        decide(params, np.full((1, 14), np.nan), [0])
    with pytest.raises(ValueError, match=r"0\.\.671"):
        decide(params, np.zeros((1, 14)), [672])
    with pytest.raises(ValueError, match="integer"):
        decide(params, np.zeros((1, 14)), [1.5])
    with pytest.raises(ValueError, match="one per row"):
        decide(params, np.zeros((2, 14)), [1])
    single = decide(params, np.zeros(14), [5])  # one row as a flat vector
    assert single.setpoint.shape == (1,)


def test_slots_come_from_the_home_clock() -> None:
    # Monday 00:00 in Berlin (winter) is Sunday 23:00 UTC: slot 0 of the home's week.
    index = pd.DatetimeIndex([pd.Timestamp("2024-01-07 23:00", tz="UTC")])
    assert slots_for(index, make_params())[0] == 0
    assert slots_for(index, make_params(timezone="UTC"))[0] == 6 * 96 + 23 * 4
