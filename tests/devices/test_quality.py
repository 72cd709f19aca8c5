"""Telemetry cleaning: every step against the inputs that break naive code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.devices.quality import (
    QualityError,
    QualityReport,
    clean,
    correct_clock_skew,
    detect_stuck,
    drop_duplicates,
    flag_outliers,
    normalize_units,
    resample,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")
COLUMNS = ["home_id", "device_id", "metric", "ts", "value"]


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def frame(rows, columns=COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def series(minutes, values, *, metric="indoor_temp", device="d1", home="h1") -> pd.DataFrame:
    pairs = zip(minutes, values, strict=True)
    return frame([(home, device, metric, at(m), float(v)) for m, v in pairs])


# --------------------------------------------------------------------------- resample


def test_burst_inside_a_slot_weighs_only_the_time_it_spans():
    # 10 until 00:15, a linear rise to 30 at 00:20, then 30 held by 50 readings within one
    # minute and two more readings: the slot [00:15, 00:30) averages
    # (5 min * 20 + 10 min * 30) / 15 min = 80/3, not the readings' mean (~29.6).
    minutes = [0, 15] + [20 + s / 60 for s in range(50)] + [30, 45]
    values = [10, 10] + [30] * 50 + [30, 30]
    grid = resample(series(minutes, values))
    assert grid["indoor_temp"].tolist() == pytest.approx([10.0, 80 / 3, 30.0, 30.0])
    readings_mean = np.mean(values[1:-2])
    assert readings_mean == pytest.approx(29.6078, abs=1e-3)
    assert not grid["indoor_temp_gap"].any()


def test_irregular_ramp_gives_exact_slot_averages():
    minutes = [0, 3, 11, 29, 30, 47, 60]
    grid = resample(series(minutes, minutes))  # value = minutes: a straight line
    assert grid.index[0] == T0
    assert grid["indoor_temp"].tolist() == pytest.approx([7.5, 22.5, 37.5, 52.5, 60.0])
    # 00:15-00:30 holds the 00:29 reading, so no slot is a gap.
    assert grid["indoor_temp_gap"].tolist() == [False] * 5


def test_long_gap_stays_empty_and_marked():
    minutes = list(range(0, 61, 5)) + list(range(180, 241, 5))
    grid = resample(series(minutes, minutes), max_gap="1h")
    inside = grid.loc[at(75) : at(165), "indoor_temp"]
    assert len(inside) == 7
    assert inside.isna().all()
    assert grid.loc[at(75) : at(165), "indoor_temp_gap"].all()
    # The slots at the edges of the gap average only the part they cover.
    assert grid.loc[at(60), "indoor_temp"] == pytest.approx(60.0)
    assert grid.loc[at(180), "indoor_temp"] == pytest.approx(187.5)
    assert grid["indoor_temp_gap"].sum() == 7


def test_short_gap_is_interpolated_linearly_and_marked():
    grid = resample(series([0, 40, 44], [0, 40, 44]), max_gap="1h")
    assert grid["indoor_temp"].tolist() == pytest.approx([7.5, 22.5, 37.0])
    assert grid["indoor_temp_gap"].tolist() == [False, True, False]


def test_gap_longer_than_max_gap_is_not_bridged_but_the_same_with_a_larger_max_gap_is():
    readings = series([0, 90], [10, 20])
    strict = resample(readings, max_gap="1h")
    assert strict["indoor_temp"].isna().sum() == 5
    loose = resample(readings, max_gap="2h")
    assert loose["indoor_temp"].notna().all()
    assert loose.loc[at(45), "indoor_temp"] == pytest.approx(10 + 10 * 52.5 / 90)


def test_two_devices_are_averaged():
    readings = pd.concat(
        [
            series([0, 15, 30], [20, 20, 20], device="a"),
            series([0, 15, 30], [22, 22, 22], device="b"),
        ]
    )
    grid = resample(readings)
    assert grid["indoor_temp"].tolist() == pytest.approx([21.0, 21.0, 21.0])


def test_binary_takes_the_max_and_leaves_empty_slots_missing():
    readings = pd.concat(
        [
            series([1, 2, 3, 31], [0, 1, 0, 0], metric="motion", device="hall"),
            series([5], [0], metric="motion", device="kitchen"),
        ]
    )
    grid = resample(readings)
    assert grid["motion"].iloc[0] == 1.0
    assert np.isnan(grid["motion"].iloc[1])
    assert grid["motion"].iloc[2] == 0.0
    assert grid["motion_gap"].tolist() == [False, True, False]


def test_heating_is_the_mean_of_the_slot():
    grid = resample(series([0, 5, 10, 20], [0.0, 1.0, 0.5, 0.2], metric="heating"))
    assert grid["heating"].tolist() == pytest.approx([0.5, 0.2])


def test_setpoint_holds_its_value_between_readings():
    grid = resample(series([0, 10, 30], [18, 21, 21], metric="setpoint"))
    # 18 for ten minutes then 21 for five: (10*18 + 5*21) / 15.
    assert grid["setpoint"].iloc[0] == pytest.approx(19.0)


def test_resample_refuses_several_homes_and_an_empty_frame():
    readings = pd.concat([series([0], [20], home="a"), series([0], [20], home="b")])
    with pytest.raises(QualityError, match="one home"):
        resample(readings)
    with pytest.raises(QualityError, match="no finite readings"):
        resample(series([0], [np.nan]))


def test_resample_honours_start_end_and_requested_metrics():
    grid = resample(series([20], [20.0]), start=T0, end=at(60), metrics=("indoor_temp", "humidity"))
    assert len(grid) == 4
    assert grid.index.freq == pd.Timedelta("15min")
    assert grid["humidity"].isna().all()
    assert grid["humidity_gap"].all()
    assert grid["indoor_temp"].iloc[1] == 20.0
    with pytest.raises(QualityError, match="'pressure'"):
        resample(series([20], [20.0]), metrics=("pressure",))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2),
            st.integers(min_value=0, max_value=6 * 3600),
            st.floats(min_value=-20, max_value=40, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["5min", "15min", "1h"]),
)
def test_resample_stays_within_the_input_range_on_a_regular_index(points, freq):
    readings = frame(
        [
            ("h", f"d{device}", "indoor_temp", T0 + pd.Timedelta(seconds=s), v)
            for device, s, v in points
        ]
    )
    grid = resample(readings, freq=freq, max_gap="30min")
    values = grid["indoor_temp"].dropna().to_numpy()
    low, high = readings["value"].min(), readings["value"].max()
    assert len(values) > 0
    assert (values >= low - 1e-9).all() and (values <= high + 1e-9).all()
    assert str(grid.index.tz) == "UTC"
    assert (np.diff(grid.index.asi8) == pd.Timedelta(freq).value).all()
    assert grid.index[0] == readings["ts"].min().floor(freq)
    assert grid.index[-1] == readings["ts"].max().floor(freq)
    # A slot that holds a reading is never marked a gap.
    own = set(readings["ts"].dt.floor(freq))
    assert not grid.loc[sorted(own), "indoor_temp_gap"].any()


# --------------------------------------------------------------------------- outliers


def test_nan_and_inf_are_flagged_nan():
    readings = series([0, 5, 10, 15], [20.0, np.nan, np.inf, -np.inf])
    assert flag_outliers(readings).tolist() == [None, "nan", "nan", "nan"]


def test_out_of_range_per_metric():
    readings = frame(
        [
            ("h", "d", "indoor_temp", at(0), 85.0),
            ("h", "d", "indoor_temp", at(5), 21.0),
            ("h", "d", "humidity", at(0), -3.0),
            ("h", "d", "motion", at(0), 0.5),
            ("h", "d", "motion", at(5), 1.0),
            ("h", "d", "heating", at(0), 1.5),
            ("h", "d", "setpoint", at(0), 2.0),
            ("h", "d", "co2", at(0), 12_000.0),
            ("h", "d", "outdoor_temp", at(0), -45.0),
        ]
    )
    reasons = flag_outliers(readings).tolist()
    assert reasons == [
        "out_of_range",
        None,
        "out_of_range",
        "out_of_range",
        None,
        "out_of_range",
        "out_of_range",
        "out_of_range",
        None,
    ]


def _noisy(minutes, level):
    return [level + 0.05 * np.sin(m / 7.0) for m in minutes]


def test_spike_is_flagged_but_a_sustained_step_is_not():
    minutes = list(range(0, 361, 5))
    spiky = _noisy(minutes, 20.0)
    spiky[36] = 26.0  # one reading at 03:00
    spiky[50] = 14.0  # and a two-reading dip
    spiky[51] = 14.2
    reasons = flag_outliers(series(minutes, spiky))
    assert sorted(np.flatnonzero(reasons.notna())) == [36, 50, 51]
    assert set(reasons.dropna()) == {"spike"}

    base = _noisy(minutes, 20.0)
    step = [v + (3.0 if m >= 180 else 0.0) for m, v in zip(minutes, base, strict=True)]
    assert flag_outliers(series(minutes, step)).isna().all()


def test_flat_signal_noise_is_not_a_spike():
    minutes = list(range(0, 241, 5))
    flat = [21.0 + (0.01 if i % 7 == 0 else 0.0) for i in range(len(minutes))]
    assert flag_outliers(series(minutes, flat)).isna().all()


def test_outlier_result_is_aligned_on_the_input_index():
    readings = series([0, 5], [20.0, np.nan])
    readings.index = [10, 3]
    assert flag_outliers(readings).to_dict() == {10: None, 3: "nan"}


# --------------------------------------------------------------------------- stuck


def test_stuck_sensor_is_detected_and_a_varying_one_is_not():
    minutes = list(range(0, 301, 10))
    stuck = series(minutes, [19.5] * len(minutes), device="dead")
    alive = series(minutes, _noisy(minutes, 19.5), device="alive")
    short = series(minutes[:10], [19.5] * 10, device="brief")  # 90 min flat: fine
    flags = detect_stuck(pd.concat([stuck, alive, short], ignore_index=True))
    assert flags.iloc[: len(minutes)].all()
    assert not flags.iloc[len(minutes) :].any()


def test_stuck_run_only_covers_the_frozen_part():
    minutes = list(range(0, 601, 10))
    values = _noisy(minutes, 20.0)
    values[10:40] = [22.0] * 30  # frozen from 100 to 390 min
    flags = detect_stuck(series(minutes, values))
    assert np.flatnonzero(flags).tolist() == list(range(10, 40))


# --------------------------------------------------------------------------- units


def test_fahrenheit_and_kelvin_become_celsius():
    readings = frame(
        [
            ("h", "d", "indoor_temp", at(0), 68.0, "°F"),
            ("h", "d", "indoor_temp", at(5), 293.15, "K"),
            ("h", "d", "outdoor_temp", at(0), 32.0, "degF"),
            ("h", "d", "setpoint", at(0), 294.15, "kelvin"),
            ("h", "d", "indoor_temp", at(10), 21.0, "°C"),
            ("h", "d", "indoor_temp", at(15), 21.5, None),
            ("h", "d", "heating", at(0), 50.0, "%"),
            ("h", "d", "heating", at(5), 150.0, "s"),
            ("h", "d", "cooling", at(5), 900.0, "sec"),
            ("h", "d", "humidity", at(0), 45.0, "%"),
        ],
        [*COLUMNS, "unit"],
    )
    out = normalize_units(readings)
    assert out["value"].tolist() == pytest.approx(
        [20.0, 20.0, 0.0, 21.0, 21.0, 21.5, 0.5, 0.5, 1.0, 45.0]
    )
    assert out["unit"].tolist() == ["°C"] * 6 + ["fraction"] * 3 + ["%"]
    assert normalize_units(readings, interval_seconds=600)["value"].iloc[7] == 0.25


def test_unknown_unit_names_the_row_and_the_unit():
    readings = frame(
        [
            ("h", "d", "indoor_temp", at(0), 20.0, "°C"),
            ("h", "d", "humidity", at(0), 45.0, "%"),
            ("h", "d", "indoor_temp", at(5), 1.0, "bar"),
        ],
        [*COLUMNS, "unit"],
    )
    with pytest.raises(QualityError, match=r"row 2.*'unit'.*'bar'.*indoor_temp"):
        normalize_units(readings)


def test_unknown_metric_is_refused_with_the_row():
    readings = series([0, 5], [20, 20])
    readings.loc[1, "metric"] = "temperature"
    with pytest.raises(QualityError, match=r"row 1.*'temperature'"):
        normalize_units(readings)


# --------------------------------------------------------------------------- clock skew


def _device_clock(true_minutes, device_time, *, seed=0, device="d1"):
    rng = np.random.default_rng(seed)
    latency = pd.to_timedelta(rng.uniform(1, 20, len(true_minutes)), unit="s")
    true = pd.DatetimeIndex([at(m) for m in true_minutes])
    readings = frame(
        [("h", device, "indoor_temp", t, 20.0) for t in device_time],
    )
    readings["device_time"] = device_time
    readings["received_at"] = true + latency
    return readings, true


def test_clock_three_hours_fast_is_corrected_to_within_the_latency():
    minutes = list(range(0, 360, 5))
    true = pd.DatetimeIndex([at(m) for m in minutes])
    readings, true = _device_clock(minutes, true + pd.Timedelta("3h"))
    assert (readings["ts"] - true).min() >= pd.Timedelta("3h")  # as reported
    fixed, skew = correct_clock_skew(readings)
    error = (fixed["ts"] - true).abs()
    assert error.max() <= pd.Timedelta(seconds=20)
    assert skew["d1"] == pytest.approx(3 * 3600 - 10, abs=10)


def test_clock_reset_mid_stream_is_corrected_in_both_segments():
    minutes = list(range(0, 300, 5))
    true = pd.DatetimeIndex([at(m) for m in minutes])
    device_time = true.copy().to_series().reset_index(drop=True)
    reset = 30
    epoch = pd.Timestamp("2000-01-01", tz="UTC")
    device_time.iloc[reset:] = epoch + (true[reset:] - true[reset])
    readings, true = _device_clock(minutes, pd.DatetimeIndex(device_time), seed=1)
    fixed, skew = correct_clock_skew(readings)
    error = (fixed["ts"] - true).abs()
    assert error.iloc[:reset].max() <= pd.Timedelta(seconds=20)
    assert error.iloc[reset:].max() <= pd.Timedelta(seconds=20)
    # The reported skew is the clock as it stands now: about 24 years slow.
    assert skew["d1"] == pytest.approx((epoch - true[reset]).total_seconds(), abs=30)


def test_clock_jumping_ahead_starts_a_new_segment():
    minutes = list(range(0, 300, 5))
    true = pd.DatetimeIndex([at(m) for m in minutes])
    shift = pd.Series(pd.Timedelta(0), index=range(len(minutes)))
    shift.iloc[40:] = pd.Timedelta("2h")  # NTP sets the clock two hours ahead
    readings, true = _device_clock(minutes, true + pd.TimedeltaIndex(shift), seed=2)
    fixed, _ = correct_clock_skew(readings)
    assert (fixed["ts"] - true).abs().max() <= pd.Timedelta(seconds=20)


def test_rows_without_device_time_keep_their_ts_and_late_rows_do_not_move_the_device():
    minutes = list(range(0, 120, 5))
    true = pd.DatetimeIndex([at(m) for m in minutes])
    readings, true = _device_clock(minutes, true + pd.Timedelta("1h"), seed=3)
    readings.loc[3, "received_at"] += pd.Timedelta("2h")  # one delivery very late
    readings.loc[5, "device_time"] = pd.NaT
    readings.loc[5, "ts"] = at(999)
    fixed, _ = correct_clock_skew(readings)
    assert fixed.loc[5, "ts"] == at(999)
    others = fixed.drop(index=[3, 5])
    assert (others["ts"] - true[others.index]).abs().max() <= pd.Timedelta(seconds=20)
    other = frame([("h", "solo", "indoor_temp", at(0), 20.0)])
    _, skew = correct_clock_skew(other)
    assert np.isnan(skew["solo"])


# --------------------------------------------------------------------------- duplicates


def test_duplicates_collapse_keeping_the_last_received():
    readings = frame(
        [
            ("h", "d", "indoor_temp", at(0), 20.0, at(0.1)),
            ("h", "d", "indoor_temp", at(0), 20.0, at(0.1)),  # exact duplicate
            ("h", "d", "indoor_temp", at(5), 21.0, at(9)),  # re-sent later, corrected
            ("h", "d", "indoor_temp", at(5), 20.5, at(5.1)),  # the original
            ("h", "d", "humidity", at(5), 40.0, at(5.1)),  # another metric: kept
            ("h", "e", "indoor_temp", at(5), 19.0, at(5.1)),  # another device: kept
        ],
        [*COLUMNS, "received_at"],
    )
    kept, removed = drop_duplicates(readings)
    assert removed == 2
    assert kept.index.tolist() == [1, 2, 4, 5]
    assert kept["value"].tolist() == [20.0, 21.0, 40.0, 19.0]


def test_duplicates_without_received_at_keep_the_last_in_input_order():
    readings = series([0, 0, 0], [1.0, 2.0, 3.0])
    kept, removed = drop_duplicates(readings)
    assert removed == 2
    assert kept["value"].tolist() == [3.0]


# --------------------------------------------------------------------------- clean


def _messy() -> pd.DataFrame:
    rows = []
    # Home A: a Fahrenheit thermostat ramping 0.1 °C per slot, one NaN, one duplicate.
    for i in range(9):
        rows.append(("A", "a1", "indoor_temp", at(15 * i), 68.0 + 0.18 * i, "°F"))
    rows.append(("A", "a1", "indoor_temp", at(7), np.nan, None))
    rows.append(("A", "a1", "indoor_temp", at(30), 68.0 + 0.36, "°F"))
    # A humidity sensor every 30 min with one impossible value.
    for i, v in enumerate([40.0, 41.0, 42.0, 43.0, 45.0]):
        rows.append(("A", "a2", "humidity", at(30 * i), v, "%"))
    rows.append(("A", "a2", "humidity", at(20), 140.0, "%"))
    # A CO2 sensor frozen at 800 ppm for four hours.
    for i in range(25):
        rows.append(("A", "a3", "co2", at(10 * i), 800.0, "ppm"))
    frame_a = frame(rows, [*COLUMNS, "unit"])
    frame_a["device_time"] = pd.NaT
    frame_a["received_at"] = pd.NaT

    # Home B: a thermostat whose clock is 3 h fast, heating reported in seconds.
    rows, device_time, received = [], [], []
    for i in range(5):
        true = at(60 + 15 * i)
        for metric, value, unit in (("indoor_temp", 19.0 + i, "C"), ("heating", 150.0, "s")):
            rows.append(("B", "b1", metric, true + pd.Timedelta("3h"), value, unit))
            device_time.append(true + pd.Timedelta("3h"))
            received.append(true + pd.Timedelta(seconds=4))
    frame_b = frame(rows, [*COLUMNS, "unit"])
    frame_b["device_time"] = pd.DatetimeIndex(device_time)
    frame_b["received_at"] = pd.DatetimeIndex(received)
    return pd.concat([frame_a, frame_b], ignore_index=True)


def test_clean_end_to_end_with_its_report():
    readings = _messy()
    grids, report = clean(readings)
    assert isinstance(report, QualityReport)
    assert report.rows_in == len(readings) == 42 + 10
    assert report.unit_converted == 10 + 5  # the °F rows and the heating seconds
    assert report.duplicates == 1
    assert report.outliers == {"nan": 1, "out_of_range": 1}
    assert report.stuck == 25
    assert report.rows_out == 52 - 1 - 2 - 25
    assert report.skew_seconds["b1"] == pytest.approx(3 * 3600 - 4)
    assert np.isnan(report.skew_seconds["a1"])
    assert report.gap_slots == {"indoor_temp": 0, "humidity": 4, "heating": 0}
    assert report.homes_without_data == []

    a, b = grids["A"], grids["B"]
    assert list(a.columns) == ["indoor_temp", "humidity", "indoor_temp_gap", "humidity_gap"]
    assert a.index[0] == T0 and len(a) == 9
    expected = [20.0 + 0.1 * k + 0.05 for k in range(8)] + [20.8]
    assert a["indoor_temp"].tolist() == pytest.approx(expected)
    assert a.loc[at(0), "humidity"] == pytest.approx(40.25)
    assert a.loc[at(15), "humidity"] == pytest.approx(40.75)
    assert a["humidity_gap"].sum() == 4
    # B lands on the true time (minus its 4 s latency it keeps), not three hours later.
    assert b.index[0] == at(60) and len(b) == 5
    assert b["heating"].tolist() == pytest.approx([0.5] * 5)
    assert b["indoor_temp"].iloc[0] == pytest.approx(19.5, abs=0.01)
    assert report.slots == 14

    as_dict = report.to_dict()
    json.dumps(as_dict)
    assert as_dict["skew_seconds"]["a1"] is None


def test_clean_reports_a_home_with_nothing_left():
    readings = pd.concat([series([0, 5], [20, 21], home="ok"), series([0], [99.0], home="bad")])
    grids, report = clean(readings)
    assert list(grids) == ["ok"]
    assert report.homes_without_data == ["bad"]
    assert report.outliers == {"out_of_range": 1}


def test_clean_refuses_empty_and_incomplete_input():
    with pytest.raises(QualityError, match="no readings"):
        clean(frame([]))
    with pytest.raises(QualityError, match=r"device_id, value"):
        clean(series([0], [20]).drop(columns=["device_id", "value"]))
    bad_ts = series([0, 5], [20, 21]).astype({"ts": object})
    bad_ts.loc[1, "ts"] = "yesterday-ish"
    with pytest.raises(QualityError, match=r"row 1, field 'ts'"):
        clean(bad_ts)
    bad_value = series([0, 5], [20, 21]).astype({"value": object})
    bad_value.loc[1, "value"] = "warm"
    with pytest.raises(QualityError, match=r"row 1, field 'value'"):
        clean(bad_value)


def test_clean_handles_a_month_of_dense_readings():
    # A month of 4 devices x 4 metrics at about one reading a minute comes out as a full grid.
    rng = np.random.default_rng(0)
    n = 40_000
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 30 * 86400, n)), unit="s")
    readings = pd.DataFrame(
        {
            "home_id": "h",
            "device_id": rng.choice(["a", "b", "c", "d"], n),
            "metric": rng.choice(["indoor_temp", "humidity", "motion", "heating"], n),
            "ts": ts,
            "value": rng.uniform(0, 1, n),
        }
    )
    motion = readings["metric"] == "motion"
    readings.loc[motion, "value"] = rng.integers(0, 2, int(motion.sum())).astype(float)
    grids, report = clean(readings)
    assert len(grids["h"]) == 30 * 96
    assert report.rows_out == n
    assert grids["h"]["motion"].max() == 1.0
    assert grids["h"][["indoor_temp", "humidity"]].stack().between(0, 1).all()
