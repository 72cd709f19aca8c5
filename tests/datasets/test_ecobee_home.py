from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailor.datasets.base import DataNotFoundError, dataset_path
from tailor.datasets.ecobee_home import (
    FILE_PARTS,
    TIMEZONE,
    EcobeeHome,
    _localize,
    load_ecobee_home,
    program_setpoints,
)


def f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


@pytest.fixture(scope="module")
def home(load_or_skip) -> EcobeeHome:
    return load_or_skip(load_ecobee_home)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The export read independently of the loader, indexed by local wall-clock time."""
    try:
        file = dataset_path(*FILE_PARTS)
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")
    frame = pd.read_csv(file, skiprows=5)
    frame.index = pd.to_datetime(frame["Date"] + " " + frame["Time"], format="%m/%d/%y %H:%M:%S")
    return frame


def local(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=TIMEZONE).tz_convert("UTC")


# --- the real export ---------------------------------------------------------------------


def test_grid_is_a_regular_utc_5min_grid(home: EcobeeHome) -> None:
    grid = home.grid
    assert len(grid) == 9_216
    assert str(grid.index.dtype) == "datetime64[ns, UTC]"
    assert grid.index.freq == pd.Timedelta(minutes=5)
    # 6/9/23 0:00 in Pittsburgh is EDT (UTC-4)
    assert grid.index[0] == pd.Timestamp("2023-06-09 04:00", tz="UTC")
    assert grid.index[-1] == pd.Timestamp("2023-07-11 03:55", tz="UTC")
    assert home.timezone == "America/New_York"
    floats = [c for c in grid.columns if grid[c].dtype == float]
    assert {"indoor_temp", "outdoor_temp", "humidity", "setpoint", "heat_setpoint"} <= set(floats)
    assert {"cooling", "fan", "motion", "motion_thermostat", "motion_bedroom"} <= set(floats)
    assert {"temp_living_room", "temp_basement"} <= set(floats)
    for column in floats:
        assert grid[f"{column}_gap"].dtype == bool
        assert (grid[f"{column}_gap"] == grid[column].isna()).all(), column
    assert grid["hold"].dtype == bool


def test_first_row_in_celsius(home: EcobeeHome) -> None:
    # line 7: 6/9/23,0:00:00,cool,heatOff,auto,Sleep,76,76,70.7,0,46,56.1,...,71.3,46,0,...,70.2,0
    row = home.grid.iloc[0]
    assert row["indoor_temp"] == pytest.approx(f_to_c(71.3))
    assert row["indoor_temp"] == pytest.approx(21.8333, abs=1e-4)
    assert row["outdoor_temp"] == pytest.approx(f_to_c(56.1))
    assert row["setpoint"] == pytest.approx(f_to_c(76.0))
    assert row["heat_setpoint"] == pytest.approx(f_to_c(76.0))
    assert row["humidity"] == 46.0
    assert row["temp_living_room"] == pytest.approx(f_to_c(70.2))
    assert (row["program_mode"], row["event"], row["hold"]) == ("Sleep", "auto", False)
    assert row["motion_thermostat"] == 0.0 and row["cooling"] == 0.0
    # the other rooms' sensors report only from 6/12 20:25 local
    assert np.isnan(row["temp_bedroom"]) and row["temp_bedroom_gap"]


def test_every_value_matches_the_file(home: EcobeeHome, raw: pd.DataFrame) -> None:
    grid = home.grid
    assert (grid.index.tz_convert(TIMEZONE).tz_localize(None) == raw.index).all()
    pairs = {
        "indoor_temp": "Thermostat Temperature (F)",
        "outdoor_temp": "Outdoor Temp (F)",
        "setpoint": "Cool Set Temp (F)",
        "temp_bedroom": "Bedroom (F)",
    }
    for column, source in pairs.items():
        np.testing.assert_allclose(grid[column], f_to_c(raw[source]), equal_nan=True)
    np.testing.assert_allclose(grid["cooling"], raw["Cool Stage 1 (sec)"] / 300, equal_nan=True)
    np.testing.assert_allclose(grid["humidity"], raw["Current Humidity (%RH)"], equal_nan=True)
    assert grid["cooling"].max() == 1.0 and grid["fan"].min() == 0.0


def test_outages_are_nan_and_marked(home: EcobeeHome, raw: pd.DataFrame) -> None:
    grid = home.grid
    outage = grid["indoor_temp_gap"]
    assert outage.sum() == 121
    assert (outage.to_numpy() == raw["System Setting"].isna().to_numpy()).all()
    for column in ("setpoint", "humidity", "cooling", "motion", "motion_thermostat"):
        assert grid.loc[outage, column].isna().all()
        assert grid.loc[outage, f"{column}_gap"].all()
    assert grid.loc[outage, "program_mode"].isna().all()
    assert not grid.loc[outage, "hold"].any()
    # 13 of the outage steps still carry the weather service's outdoor temperature
    assert grid.loc[outage, "outdoor_temp"].notna().sum() == 13
    assert grid["outdoor_temp_gap"].sum() == 138


def test_holds_and_events(home: EcobeeHome) -> None:
    grid = home.grid
    assert grid["hold"].sum() == 364
    counts = grid["event"].value_counts().to_dict()
    assert counts == {"auto": 383, "hold": 364, "(SmartRecovery)": 70}
    assert set(grid["program_mode"].dropna()) == {"Home", "Away", "Sleep"}


def test_motion_flags(home: EcobeeHome, raw: pd.DataFrame) -> None:
    grid = home.grid
    rooms = [c for c in grid.columns if c.startswith("motion_") and not c.endswith("_gap")]
    assert len(rooms) == 10  # the thermostat and 9 room sensors
    for column in rooms:
        assert set(grid[column].dropna().unique()) <= {0.0, 1.0}
    expected = raw[["Thermostat Motion", *(c for c in raw.columns if c.endswith("2"))]].max(axis=1)
    np.testing.assert_array_equal(grid["motion"].to_numpy(), expected.to_numpy())
    # the bedroom is used at night, the living room by day
    hour = grid.index.tz_convert(TIMEZONE).hour
    night = (hour >= 22) | (hour < 6)
    assert (
        grid.loc[night, "motion_bedroom"].mean() > 1.5 * grid.loc[~night, "motion_bedroom"].mean()
    )
    assert (
        grid.loc[~night, "motion_living_room"].mean()
        > 3 * grid.loc[night, "motion_living_room"].mean()
    )


def test_adjustments_on_the_first_hold(home: EcobeeHome) -> None:
    adj = home.adjustments
    assert list(adj.columns) == ["ts", "value", "previous_value", "metric"]
    assert str(adj["ts"].dtype) == "datetime64[ns, UTC]"
    assert (adj["metric"] == "setpoint").all()
    assert len(adj) == 8
    first = adj.iloc[0]
    # 6/10/23 16:40 local: the schedule's 78 °F (16:35 shows the 76.4 °F step average) -> 71.6
    assert first["ts"] == local("2023-06-10 16:40") == pd.Timestamp("2023-06-10 20:40", tz="UTC")
    assert first["value"] == pytest.approx(f_to_c(71.6)) == pytest.approx(22.0)
    assert first["previous_value"] == pytest.approx(f_to_c(78.0))
    # within the hold: 18:50 shows the 75.8 average, 18:55 the new 76.1 °F
    second = adj.iloc[1]
    assert second["ts"] == local("2023-06-10 18:55")
    assert second["value"] == pytest.approx(f_to_c(76.1))
    assert second["previous_value"] == pytest.approx(f_to_c(71.6))
    assert not np.isclose(adj["value"], f_to_c(75.8)).any()
    # every adjustment falls on a hold step and carries the grid's setpoint
    grid = home.grid.loc[adj["ts"]]
    assert grid["hold"].all()
    np.testing.assert_allclose(grid["setpoint"].to_numpy(), adj["value"].to_numpy())
    starts = home.grid["hold"] & ~home.grid["hold"].shift(1, fill_value=False)
    assert starts.sum() == 6
    assert set(starts[starts].index) <= set(adj["ts"])


def test_split_by_days(home: EcobeeHome) -> None:
    train, test = home.split()
    boundary = pd.Timestamp("2023-06-30 04:00", tz="UTC")
    assert len(train.grid) == 21 * 288 and len(test.grid) == 11 * 288
    assert train.grid.index.max() < boundary == test.grid.index.min()
    assert train.grid.index.freq == test.grid.index.freq == pd.Timedelta(minutes=5)
    assert len(train.adjustments) == 6 and len(test.adjustments) == 2
    assert (train.adjustments["ts"] < boundary).all() and (test.adjustments["ts"] >= boundary).all()
    assert train.timezone == test.timezone == TIMEZONE
    short, _ = home.split(train_days=1)
    assert len(short.grid) == 288
    for bad in (0, -1, 32, 40):
        with pytest.raises(ValueError, match="train_days"):
            home.split(train_days=bad)
    with pytest.raises(TypeError):
        home.split(train_days=2.5)


def test_program_setpoints_on_the_first_three_weeks(home: EcobeeHome) -> None:
    train, _ = home.split(train_days=21)
    setpoints = program_setpoints(train)
    assert setpoints.keys() == {"Home", "Away", "Sleep"}
    assert setpoints["Home"] == pytest.approx(f_to_c(78.0))
    assert setpoints["Away"] == pytest.approx(f_to_c(82.0))
    # the DR days' 82 °F nights must not win over the usual 76 °F
    assert setpoints["Sleep"] == pytest.approx(f_to_c(76.0))
    assert program_setpoints(train.grid) == setpoints
    with pytest.raises(ValueError, match="program_mode"):
        program_setpoints(train.grid.drop(columns="program_mode"))


def test_readings_frame(home: EcobeeHome) -> None:
    readings = home.readings()
    expected = ["home_id", "device_id", "metric", "ts", "value", "unit", "device_time"]
    assert list(readings.columns) == [*expected, "received_at"]
    assert str(readings["ts"].dtype) == "datetime64[ns, UTC]"
    assert str(readings["received_at"].dtype) == "datetime64[ns, UTC]"
    assert readings["received_at"].isna().all()
    assert (readings["device_time"] == readings["ts"]).all()
    assert set(readings["home_id"]) == {"ecobee-home"} and set(readings["device_id"]) == {
        "thermostat"
    }
    counts = readings["metric"].value_counts().to_dict()
    assert counts["indoor_temp"] == 9_095 and counts["outdoor_temp"] == 9_078
    assert set(counts) == {
        "indoor_temp",
        "outdoor_temp",
        "humidity",
        "setpoint",
        "cooling",
        "motion",
    }
    assert readings["value"].notna().all() and readings["ts"].is_monotonic_increasing
    units = readings.groupby("metric")["unit"].first().to_dict()
    assert units["indoor_temp"] == "°C" and units["humidity"] == "%"
    first = readings[readings["metric"] == "indoor_temp"].iloc[0]
    assert first["value"] == pytest.approx(f_to_c(71.3))
    rooms = home.readings("h1", "t1", include_rooms=True)
    assert {"t1", "sensor-bedroom", "sensor-living_room"} <= set(rooms["device_id"])
    bedroom = rooms[rooms["device_id"] == "sensor-bedroom"]
    assert set(bedroom["metric"]) == {"indoor_temp", "motion"}
    assert not rooms["device_id"].str.endswith("_gap").any()


def test_data_dir_may_be_the_file_or_a_folder(home: EcobeeHome) -> None:
    file = home.source
    for where in (file, file.parent, file.parent.parent, file.parent.parent.parent):
        assert len(load_ecobee_home(where).grid) == 9_216


# --- without the shared data ---------------------------------------------------------------

HEADER = (
    "Date,Time,System Setting,System Mode,Calendar Event,Program Mode,Cool Set Temp (F),"
    "Heat Set Temp (F),Current Humidity (%RH),Outdoor Temp (F),Cool Stage 1 (sec),Fan (sec),"
    "Thermostat Temperature (F),Thermostat Motion,Living Room (F),Living Room2"
)
ROWS = [
    # time, event, mode, cool, heat, cool_sec, motion, room motion
    ("16:25:00", "", "Home", 78, 68, 0, 0, 0),
    ("16:30:00", "", "Home", 78, 68, 150, 1, 0),
    ("16:35:00", "", "Home", 76.4, 68.9, 300, 0, 1),  # the step in which the hold began
    ("16:40:00", "hold", "Home", 71.6, 71.6, 300, 0, 0),
    ("16:45:00", "hold", "Home", 71.6, 71.6, 400, 0, 0),  # 400 s: clipped to 1
    ("16:50:00", "hold", "Home", 75.8, 75.8, 0, 0, 0),  # averaged change within the hold
    ("16:55:00", "hold", "Home", 76.1, 76.1, 0, 0, 0),
    None,  # an outage
    ("17:05:00", "hold", "Home", 76.1, 76.1, 0, 0, 0),
    ("17:10:00", "hold", "Home", 77.0, 77.0, 0, 0, 0),  # averaged end of the hold
    ("17:15:00", "", "Home", 78, 68, 0, 0, 0),
]


@pytest.fixture
def tiny_export(tmp_path: Path) -> Path:
    lines = [
        "#,Thermostat,identifier,Anon" + "," * 12,
        "#,Thermostat,name,Thermostat" + "," * 12,
        "#,Start,date,6/10/23" + "," * 12,
        "#,End,date,6/10/23" + "," * 12,
        "," * 15,
        HEADER,
    ]
    for i, row in enumerate(ROWS):
        if row is None:
            lines.append(f"6/10/23,{16 + (25 + 5 * i) // 60}:{(25 + 5 * i) % 60:02d}:00" + "," * 14)
            continue
        time, event, mode, cool, heat, sec, motion, room = row
        lines.append(
            f"6/10/23,{time},cool,heatOff,{event},{mode},{cool},{heat},50,80.6,{sec},{sec},"
            f"73.4,{motion},72.5,{room}"
        )
    folder = tmp_path / "ecobee-home" / "SecondTestBed"
    folder.mkdir(parents=True)
    (folder / "report_thermostat.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_tiny_export_grid(tiny_export: Path) -> None:
    home = load_ecobee_home(tiny_export)
    grid = home.grid
    assert len(grid) == len(ROWS)
    assert grid.index[0] == pd.Timestamp("2023-06-10 20:25", tz="UTC")
    assert grid["indoor_temp"].iloc[0] == pytest.approx(23.0)
    assert grid["outdoor_temp"].iloc[0] == pytest.approx(27.0)
    assert list(grid["cooling"].iloc[:5]) == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert list(grid["motion"].iloc[:4]) == [0.0, 1.0, 1.0, 0.0]
    outage = grid.iloc[7]
    assert np.isnan(outage["indoor_temp"]) and outage["indoor_temp_gap"]
    assert np.isnan(outage["outdoor_temp"]) and outage["motion_gap"]
    assert pd.isna(outage["program_mode"]) and not outage["hold"]
    assert grid["indoor_temp_gap"].sum() == 1
    assert grid["hold"].sum() == 6


def test_tiny_export_adjustments_skip_averaged_steps(tiny_export: Path) -> None:
    adj = load_ecobee_home(tiny_export).adjustments
    assert list(adj["ts"]) == [local("2023-06-10 16:40"), local("2023-06-10 16:55")]
    np.testing.assert_allclose(adj["value"], [f_to_c(71.6), f_to_c(76.1)])
    np.testing.assert_allclose(adj["previous_value"], [f_to_c(78.0), f_to_c(71.6)])


def test_missing_data_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="TAILOR_DATA"):
        load_ecobee_home(tmp_path)


def test_not_an_ecobee_export(tmp_path: Path) -> None:
    file = tmp_path / "report_thermostat.csv"
    file.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="Date,Time"):
        load_ecobee_home(file)


def test_localize_across_dst_changes() -> None:
    # autumn: 01:00-01:55 happens twice; spring: 02:00-02:55 does not exist
    autumn = pd.DatetimeIndex(
        pd.to_datetime(
            ["2023-11-05 00:55", "2023-11-05 01:30", "2023-11-05 01:30", "2023-11-05 02:00"]
        )
    )
    utc = _localize(autumn, TIMEZONE)
    assert utc.is_monotonic_increasing and utc.is_unique
    assert utc[1] == pd.Timestamp("2023-11-05 05:30", tz="UTC")
    assert utc[2] == pd.Timestamp("2023-11-05 06:30", tz="UTC")
    spring = pd.DatetimeIndex(pd.to_datetime(["2023-03-12 01:55", "2023-03-12 02:30"]))
    utc = _localize(spring, TIMEZONE)
    assert utc[1] == pd.Timestamp("2023-03-12 07:00", tz="UTC")  # moved to 03:00 EDT
    # out of order, "infer" cannot work: read as standard time rather than fail
    unordered = pd.DatetimeIndex(pd.to_datetime(["2023-11-05 01:30", "2023-11-05 00:30"]))
    assert _localize(unordered, TIMEZONE)[0] == pd.Timestamp("2023-11-05 06:30", tz="UTC")
