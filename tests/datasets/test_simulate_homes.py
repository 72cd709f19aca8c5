"""The heated-homes simulator: reproducible, its occupants behave as their truth says, its data
is as nasty as promised, its events are valid, and run_thermostat replays it exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from tailor.datasets.simulate.homes import (
    HOUSEHOLD_KINDS,
    METRICS,
    SimulatedHomes,
    fixed_schedule,
    run_thermostat,
    simulate_homes,
)

N_HOMES, WEEKS = 12, 2
MINUTES = WEEKS * 7 * 1440


@pytest.fixture(scope="module")
def sim() -> SimulatedHomes:
    return simulate_homes(n_homes=N_HOMES, weeks=WEEKS, seed=5)


def _comfort(sim: SimulatedHomes) -> np.ndarray:
    return np.array([sim.truth[h].household.comfort_c for h in sim.home_ids])


def _minute_of(ts: pd.Series, start: pd.Timestamp) -> np.ndarray:
    return ((ts - start) // pd.Timedelta(minutes=1)).to_numpy().astype(int)


def test_reproducible_by_seed() -> None:
    a = simulate_homes(n_homes=2, weeks=1, seed=9)
    b = simulate_homes(n_homes=2, weeks=1, seed=9)
    pd.testing.assert_frame_equal(a.readings, b.readings)
    pd.testing.assert_frame_equal(a.adjustments, b.adjustments)
    pd.testing.assert_series_equal(a.outdoor, b.outdoor)
    assert a.truth["home-001"].household == b.truth["home-001"].household
    assert a.to_events().equals(b.to_events())
    c = simulate_homes(n_homes=2, weeks=1, seed=10)
    assert not np.array_equal(a.outdoor.to_numpy(), c.outdoor.to_numpy())
    assert a.truth["home-001"].household != c.truth["home-001"].household


def test_shapes_and_columns(sim) -> None:
    r = sim.readings
    assert list(r.columns) == [
        "home_id", "device_id", "metric", "ts", "value", "unit", "device_time", "received_at",
    ]  # fmt: skip
    for column in ("ts", "device_time", "received_at"):
        assert str(r[column].dtype) == "datetime64[ns, UTC]"
    assert set(r["metric"]) == set(METRICS)
    assert set(r["home_id"]) == set(sim.home_ids) and len(sim.home_ids) == N_HOMES
    assert set(r["device_id"]) == {
        f"{h}-{d}" for h in sim.home_ids for d in ("thermostat", "motion")
    }
    assert (r.loc[r["metric"] == "motion", "device_id"].str.endswith("-motion")).all()
    assert set(r.loc[r["metric"].isin(["indoor_temp", "setpoint", "outdoor_temp"]), "unit"]) == {
        "C"
    }
    assert r.loc[r["metric"].isin(["heating", "motion"]), "unit"].isna().all()
    # about one reading per device-metric per 10 minutes, less the outages
    per_stream = r.groupby(["device_id", "metric"]).size()
    assert per_stream.max() <= MINUTES / 10 * 1.01 and per_stream.min() > MINUTES / 10 * 0.85
    assert len(sim.outdoor) == MINUTES and str(sim.outdoor.index.tz) == "UTC"
    assert sim.outdoor.index[0] == pd.Timestamp("2026-01-05", tz="UTC")
    np.testing.assert_array_equal(sim.program, fixed_schedule())
    truth = sim.truth["home-003"]
    assert len(truth.occupied) == len(truth.asleep) == len(truth.preferred) == WEEKS * 672
    assert truth.occupied.index.freq == pd.Timedelta(minutes=15)
    assert truth.occupied.dtype == bool and truth.household.kind in HOUSEHOLD_KINDS
    assert list(sim.adjustments.columns) == [
        "home_id", "device_id", "ts", "value", "previous_value", "metric", "is_one_off",
    ]  # fmt: skip


def test_values_are_plausible(sim) -> None:
    r = sim.readings
    by = {m: r.loc[r["metric"] == m, "value"].dropna() for m in METRICS}
    assert by["indoor_temp"].between(12, 28).all()
    assert by["heating"].between(0, 1).all() and 0.1 < by["heating"].mean() < 0.9
    assert set(by["motion"].unique()) == {0.0, 1.0}
    assert by["outdoor_temp"].between(-20, 20).all()
    # winter: a daily cycle, coldest near 05:00 and warmest near 15:00
    hourly = sim.outdoor.groupby(sim.outdoor.index.hour).mean()
    assert hourly.idxmin() in (4, 5, 6) and hourly.idxmax() in (14, 15, 16)
    assert -5 < sim.outdoor.mean() < 10 and 4 < hourly.max() - hourly.min() < 12
    comfort = _comfort(sim)
    assert set(np.unique(comfort * 2) % 1) == {0.0} and (comfort >= 19.5).all()
    # the thermostat holds the setpoint: once warm, indoor tracks it within the band
    for h in sim.home_ids[:4]:
        m = sim.minutes(h)
        steady = m["setpoint"].rolling(360).std().fillna(1.0).eq(0) & (
            m["heating"].rolling(360).sum() > 0
        )
        miss = (m.loc[steady, "indoor_temp"] - m.loc[steady, "setpoint"]).abs()
        assert len(miss) > 100 and miss.quantile(0.95) < 0.4


def test_occupancy_matches_routines(sim) -> None:
    checked = 0
    for h in sim.home_ids:
        truth = sim.truth[h]
        hh = truth.household
        grid = truth.occupied.index

        def slot(day: pd.Timestamp, minute: float, grid=grid) -> int:
            return grid.get_loc((day + pd.Timedelta(minutes=int(minute))).floor("15min"))

        days = truth.days
        for i, (day, row) in enumerate(days.iterrows()):
            routine = hh.routine(day.day_of_week)
            if i:  # the middle of the night before this day
                night = slot(day, (days["sleep"].iloc[i - 1] - 1440 + row["wake"]) / 2)
                assert truth.asleep.iloc[night] and truth.occupied.iloc[night]
            if not np.isnan(row["leave"]):
                assert routine.leave is not None
                mid = slot(day, (row["leave"] + row["return_home"]) / 2)
                assert not truth.occupied.iloc[mid] and np.isnan(truth.preferred.iloc[mid])
                checked += 1
            elif day.day_of_week < 5 and hh.kind == "home_worker":
                mid = slot(day, 13 * 60)
                assert truth.occupied.iloc[mid] and not truth.asleep.iloc[mid]
            if row["wake"] + 60 < (row["leave"] if not np.isnan(row["leave"]) else row["sleep"]):
                awake = slot(day, row["wake"] + 30)
                assert truth.occupied.iloc[awake] and not truth.asleep.iloc[awake]
                assert truth.preferred.iloc[awake] == hh.comfort_c
        if hh.kind == "commuter":
            weekday = days[days.index.day_of_week < 5]
            assert weekday["leave"].notna().all()  # commuters go to work every weekday
            assert (weekday["wake"] - hh.weekday.wake).abs().median() < 30  # jitter ~15-20 min
        if hh.kind == "home_worker":
            assert days.loc[days.index.day_of_week < 5, "leave"].isna().all()
        asleep = truth.preferred[truth.asleep]
        assert (asleep == hh.sleep_c).all() and len(asleep) > 0
        assert (truth.occupied | ~truth.asleep).all()
    assert checked > N_HOMES * 5


def test_adjustments_only_when_home_and_awake_towards_preference(sim) -> None:
    a = sim.adjustments
    assert len(a) > N_HOMES * WEEKS * 7  # more than one a day per home on average
    assert (a["metric"] == "setpoint").all()
    assert (a["device_id"] == a["home_id"] + "-thermostat").all()
    assert ((a["value"] - a["previous_value"]).abs() >= 0.5).all()
    for h in sim.home_ids:
        rows = a[a["home_id"] == h]
        minutes = sim.minutes(h)
        at = minutes.iloc[_minute_of(rows["ts"], sim.start)]
        assert at["occupied"].all() and not at["asleep"].any()
        # the new setpoint is in force from that minute
        np.testing.assert_array_equal(at["setpoint"].to_numpy(), rows["value"].to_numpy())
        hh = sim.truth[h].household
        habit = rows[~rows["is_one_off"]]
        assert set(habit["value"]) <= {hh.comfort_c, hh.sleep_c}
        boost = rows.loc[rows["is_one_off"], "value"] - hh.comfort_c
        assert boost.between(1.5, 3.0).all()


def test_adjustments_are_habits_and_one_offs_are_flagged(sim) -> None:
    a = sim.adjustments
    habit = a[~a["is_one_off"]]
    for h in sim.home_ids:
        rows = habit[habit["home_id"] == h]
        days_with = rows["ts"].dt.normalize().nunique()
        assert days_with >= WEEKS * 7 * 0.7, h  # repeated nearly every day
        # ... at the same times: most fall within an hour of the same time the day before
        hour = rows.groupby(rows["ts"].dt.normalize())["ts"].min().dt.hour
        assert (hour.diff().abs().dropna() <= 2).mean() > 0.5
    one_off = a[a["is_one_off"]]
    assert 0 < len(one_off) <= N_HOMES * WEEKS
    days = one_off.assign(day=one_off["ts"].dt.normalize())
    assert not days.duplicated(["home_id", "day"]).any()
    assert one_off["ts"].dt.hour.between(17, 22).all()  # evenings
    assert len(one_off) < 0.1 * len(a)


def test_occupants_react_with_a_median_delay_near_ten_minutes(sim) -> None:
    # Rising after 07:00 the program says 20 °C; whoever wants something else fixes it.
    a = sim.adjustments
    delays = []
    for h in sim.home_ids:
        hh = sim.truth[h].household
        if abs(hh.comfort_c - 20.0) < 0.5:
            continue
        ts = a.loc[a["home_id"] == h, "ts"]
        for day, row in sim.truth[h].days.iterrows():
            if 7 * 60 < row["wake"] < 20 * 60:
                woke = day + pd.Timedelta(minutes=int(row["wake"]))
                after = ts[ts >= woke]
                if len(after):
                    delays.append((after.iloc[0] - woke) / pd.Timedelta(minutes=1))
    assert len(delays) > 30
    assert 5 <= np.median(delays) <= 16


def test_nasty_cases_are_present(sim) -> None:
    r = sim.readings
    # outages: no readings inside any, and each is a gap in every stream of the home
    for h in sim.home_ids:
        ts = r.loc[r["home_id"] == h, "ts"]
        spans = sim.truth[h].outages
        assert 1 <= len(spans) <= 3
        for begin, end in spans:
            assert pd.Timedelta(hours=1) <= end - begin <= pd.Timedelta(hours=6)
            assert not ((ts >= begin + pd.Timedelta(minutes=1)) & (ts < end)).any()
    gaps = r[r["metric"] == "indoor_temp"].groupby("device_id")["ts"].diff().max()
    assert gaps >= pd.Timedelta(hours=1)
    # duplicates: ~0.5%, re-sent later
    dup = r.duplicated(["device_id", "metric", "ts"], keep="first")
    assert 0.002 < dup.mean() < 0.01
    assert (r.loc[dup, "received_at"] > r.loc[dup, "ts"] + pd.Timedelta(seconds=5)).all()
    assert (r["received_at"] > r["ts"]).all()
    assert (r["received_at"] - r["ts"]).max() < pd.Timedelta(minutes=6)
    # skewed clocks: exactly the homes the truth names, by its offset
    offsets = (
        (r["device_time"] - r["ts"]).dt.total_seconds().groupby(r["home_id"]).agg(["min", "max"])
    )
    for h in sim.home_ids:
        expected = sim.truth[h].clock_offset_s
        assert offsets.loc[h, "min"] == offsets.loc[h, "max"] == expected
        assert abs(expected) <= 7200
    assert (offsets["min"] != 0).any() and (offsets["min"] == 0).any()
    # a few NaN readings; reading times are irregular (jittered by up to ±30 s)
    assert 0 < r["value"].isna().sum() < 0.002 * len(r)
    step = r[r["metric"] == "setpoint"].groupby("device_id")["ts"].diff().dropna()
    assert step.median() == pd.Timedelta(minutes=10) or abs(
        step.median() - pd.Timedelta(minutes=10)
    ) < pd.Timedelta(seconds=5)
    assert step.nunique() > 20


def test_events_validate(sim, check_events) -> None:
    events = sim.to_events(limit_homes=2)
    check_events(events, sample=400)
    kinds = events.group_by("event_type").aggregate([([], "count_all")]).to_pydict()
    counts = dict(zip(kinds["event_type"], kinds["count_all"], strict=True))
    r = sim.readings[sim.readings["home_id"].isin(sim.home_ids[:2])]
    a = sim.adjustments[sim.adjustments["home_id"].isin(sim.home_ids[:2])]
    assert counts == {
        "consent": 2,
        "telemetry": int(r["value"].notna().sum()),
        "device_adjustment": len(a),
    }
    assert set(pc.unique(events["subject_id"]).to_pylist()) == set(sim.home_ids[:2])
    adjust = events.filter(pc.equal(events["event_type"], "device_adjustment"))
    assert adjust["metric"].to_pylist() == ["setpoint"] * len(a)
    np.testing.assert_array_equal(adjust["previous_value"].to_numpy(), a["previous_value"])
    assert set(sim.to_events(limit_homes=1, consent=False)["event_type"].to_pylist()) == {
        "telemetry",
        "device_adjustment",
    }
    # ids do not depend on how many homes are exported
    first = sim.to_events(limit_homes=1, consent=False)["event_id"].to_pylist()
    assert set(first) <= set(events["event_id"].to_pylist())
    dataset = sim.to_dataset(limit_homes=2)
    assert dataset.devices.num_rows == 4 and dataset.events.num_rows == events.num_rows


def _sim_setpoints(sim: SimulatedHomes, ids) -> np.ndarray:
    return np.stack([sim.minutes(h)["setpoint"].to_numpy() for h in ids])


def test_run_thermostat_replays_the_simulation_exactly(sim) -> None:
    ids = sim.home_ids[:4]
    run = run_thermostat(sim, ids, _sim_setpoints(sim, ids))
    for i, h in enumerate(ids):
        m = sim.minutes(h)
        np.testing.assert_array_equal(run.indoor[i], m["indoor_temp"].to_numpy())
        np.testing.assert_array_equal(run.heating[i], m["heating"].to_numpy())
        np.testing.assert_array_equal(run.occupied[i], m["occupied"].to_numpy())
    # a window in the middle starts from the simulated state and stays on it
    start, end = sim.start + pd.Timedelta(days=3, hours=5), sim.start + pd.Timedelta(days=4)
    m0, m1 = 3 * 1440 + 300, 4 * 1440
    part = run_thermostat(sim, ids[1:3], _sim_setpoints(sim, ids[1:3])[:, m0:m1], start, end)
    np.testing.assert_array_equal(part.indoor, run.indoor[1:3, m0:m1])
    assert part.index[0] == start and len(part.index) == m1 - m0
    # a callable gives the same as the array it computes
    table = _sim_setpoints(sim, ids[1:3])[:, m0:m1]
    again = run_thermostat(sim, ids[1:3], lambda t, indoor: table[:, t], start, end)
    np.testing.assert_array_equal(again.indoor, part.indoor)


def test_run_thermostat_energy_and_discomfort(sim) -> None:
    week = 7 * 1440
    end = sim.start + pd.Timedelta(days=7)
    comfort = _comfort(sim)
    sleep = np.array([sim.truth[h].household.sleep_c for h in sim.home_ids])

    def run(setpoints: np.ndarray):
        return run_thermostat(sim, None, setpoints, None, end)

    at = lambda c: np.repeat(c[:, None], week, axis=1)  # noqa: E731
    warm, cool = run(at(comfort)), run(at(comfort - 3))
    assert (warm.energy_kwh > cool.energy_kwh).all() and (cool.energy_kwh >= 0).all()
    np.testing.assert_array_equal(run(at(comfort)).energy_kwh, warm.energy_kwh)  # deterministic
    # at comfort all the time: within a band as wide as the comfort-sleep gap, no discomfort
    wide = float((comfort - sleep).max()) + 0.5
    assert warm.discomfort_degree_hours(band=wide).max() < 0.05
    too_cold = cool.discomfort_degree_hours(cold_only=True)
    assert (too_cold > warm.discomfort_degree_hours(cold_only=True) + 5).all()
    assert (cool.discomfort_degree_hours() >= too_cold).all()
    assert (warm.discomfort_degree_hours(band=0.0) >= warm.discomfort_degree_hours()).all()
    # the fixed 20/16 schedule never asks for more than comfort >= 20.5, so it costs less
    fixed = run(np.tile(np.repeat(fixed_schedule(), 15), (N_HOMES, 1)))
    warmer = comfort >= 20.5
    assert warmer.any() and (fixed.energy_kwh[warmer] < warm.energy_kwh[warmer]).all()
    # following the preference (comfort while away): once warmed up, no discomfort awake
    preferred = np.stack([sim.minutes(h)["preferred"].to_numpy()[:week] for h in sim.home_ids])
    follow = np.where(np.isnan(preferred), comfort[:, None], preferred)
    tracked = run(follow)
    changed = np.concatenate([np.ones((N_HOMES, 1), bool), np.diff(follow, axis=1) != 0], axis=1)
    last = np.maximum.accumulate(np.where(changed, np.arange(week), 0), axis=1)
    settled = tracked.occupied & (follow == comfort[:, None]) & (np.arange(week) - last >= 240)
    assert settled.sum() > N_HOMES * 600
    assert np.abs(tracked.indoor - follow)[settled].max() < 1.0


def test_fixed_schedule() -> None:
    p = fixed_schedule()
    assert p.shape == (672,) and set(p) == {16.0, 20.0}
    hours = (np.arange(672) % 96) / 4
    np.testing.assert_array_equal(p == 20.0, (hours >= 7) & (hours < 23))
    q = fixed_schedule(60, day_c=21, night_c=15, start_hour=6, end_hour=22)
    assert q.shape == (168,) and q[6] == 21 and q[5] == 15 and q[22] == 15
    with pytest.raises(ValueError, match="start_hour"):
        fixed_schedule(start_hour=23, end_hour=7)
    with pytest.raises(ValueError, match="slot_minutes"):
        fixed_schedule(7)


def test_custom_program_is_followed() -> None:
    program = fixed_schedule(30, day_c=19.0, night_c=17.0, start_hour=6, end_hour=22)
    sim = simulate_homes(n_homes=2, weeks=1, seed=3, slot_minutes=30, program=program)
    assert sim.truth["home-000"].occupied.shape == (336,)
    for h in sim.home_ids:
        m = sim.minutes(h)
        held = set(sim.adjustments.loc[sim.adjustments["home_id"] == h, "value"])
        assert set(m["setpoint"].unique()) <= {17.0, 19.0} | held


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_homes": 0}, "n_homes"),
        ({"n_homes": 2.5}, "n_homes"),
        ({"weeks": 0}, "weeks"),
        ({"weeks": True}, "weeks"),
        ({"seed": -1}, "seed"),
        ({"start": "2026-01-06"}, "Monday"),
        ({"start": "2026-01-05T06:00"}, "Monday"),
        ({"start": "not a date"}, "start"),
        ({"slot_minutes": 7}, "slot_minutes"),
        ({"reading_minutes": 0}, "reading_minutes"),
        ({"reading_minutes": 61}, "reading_minutes"),
        ({"program": np.full(10, 20.0)}, "program"),
        ({"program": np.full(672, np.nan)}, "program"),
        ({"program": np.full(672, 45.0)}, "program"),
    ],
)
def test_bad_arguments_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        simulate_homes(**{"n_homes": 2, "weeks": 1, **kwargs})


def test_bad_run_thermostat_arguments_raise(sim) -> None:
    good = np.full((2, MINUTES), 20.0)
    ids = sim.home_ids[:2]
    with pytest.raises(ValueError, match="shape"):
        run_thermostat(sim, ids, np.full((3, MINUTES), 20.0))
    with pytest.raises(ValueError, match="finite"):
        run_thermostat(sim, ids, np.where(good > 0, np.nan, good))
    with pytest.raises(KeyError, match="unknown home"):
        run_thermostat(sim, ["home-999"], good[:1])
    with pytest.raises(ValueError, match="before end"):
        run_thermostat(sim, ids, good, "2026-01-06", "2026-01-06")
    with pytest.raises(ValueError, match="whole minute"):
        run_thermostat(sim, ids, good, "2026-01-06 00:00:30", None)
    with pytest.raises(ValueError, match="whole minute"):
        run_thermostat(sim, ids, good, "2025-12-31", None)
    with pytest.raises(ValueError, match="returned"):
        run_thermostat(sim, ids, lambda t, indoor: np.full(3, 20.0))
    with pytest.raises(ValueError, match="empty"):
        run_thermostat(sim, [], good)
    with pytest.raises(ValueError, match="band"):
        run_thermostat(sim, ids, good[:, :60], end="2026-01-05 01:00").discomfort_degree_hours(
            band=-1
        )
    with pytest.raises(ValueError, match="limit_homes"):
        sim.to_events(limit_homes=0)


@pytest.mark.slow
def test_full_size_run() -> None:
    sim = simulate_homes(n_homes=200, weeks=8, seed=0)
    assert len(sim.readings) > 7_500_000 and len(sim.truth) == 200
    per_home_day = len(sim.adjustments) / 200 / 56
    assert 1.0 < per_home_day < 5.0
    kinds = pd.Series([sim.truth[h].household.kind for h in sim.home_ids]).value_counts()
    assert set(kinds.index) == set(HOUSEHOLD_KINDS)
    assert sim.to_events(limit_homes=5).num_rows > 100_000
