"""MediaData's checks, the CSV reader and the event-log reader (DuckDB and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailor.budget.data import (
    MAX_CHANNELS,
    MAX_PERIODS,
    MIN_PERIODS,
    MediaData,
    MediaDataError,
    from_events,
    read_csv,
)
from tailor.datasets.simulate.ad_channels import CONTROLS, simulate_channels
from tailor.events.importer import import_table
from tests.conftest import events_table

START = np.datetime64("2024-01-01", "D")  # a Monday


def _data(periods: int = 4, **changes) -> MediaData:
    values = {
        "dates": START + 7 * np.arange(periods),
        "spend": np.arange(1.0, 2 * periods + 1).reshape(periods, 2),
        "target": np.full(periods, 100.0),
        "channels": ("search", "tv"),
        "controls": np.zeros((periods, 1)),
        "control_names": ("promotion",),
        "target_name": "conversions",
    }
    values.update(changes)
    return MediaData(**values)


# --- MediaData -------------------------------------------------------------------------------


def test_valid_data_is_kept_as_float_arrays() -> None:
    data = _data(
        spend=[[1, 2], [3, 4], [5, 6], [7, 8]],
        dates=["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"],
    )
    assert data.periods == 4 and data.spend.dtype == float
    assert data.dates.dtype == np.dtype("datetime64[D]")
    part = data.slice(1, 3)
    assert part.periods == 2 and part.dates[0] == np.datetime64("2024-01-08")
    np.testing.assert_array_equal(part.spend, [[3, 4], [5, 6]])
    assert data.head(2).dates[-1] == np.datetime64("2024-01-08")
    assert _data(controls=np.zeros((0, 0)), control_names=()).controls.shape == (4, 0)


def test_a_gap_in_the_weeks_names_both_dates() -> None:
    dates = START + np.array([0, 7, 21, 28])
    with pytest.raises(MediaDataError, match=r"2024-01-08 is followed by 2024-01-22.*weeks"):
        _data(dates=dates)


def test_a_gap_in_the_days_names_both_dates() -> None:
    dates = START + np.array([0, 1, 2, 4])
    with pytest.raises(MediaDataError, match=r"2024-01-03 is followed by 2024-01-05.*days"):
        _data(dates=dates, frequency="D")
    with pytest.raises(MediaDataError, match="2024-01-01 is followed by 2024-01-08"):
        _data(frequency="D")  # weekly dates are not daily periods


def test_negative_spend_names_channel_and_period() -> None:
    spend = np.ones((4, 2))
    spend[2, 1] = -5.0
    with pytest.raises(
        MediaDataError, match=r"spend: channel 'tv' is negative \(-5.0\).*2024-01-15"
    ):
        _data(spend=spend)


@pytest.mark.parametrize(
    ("field", "row", "col", "match"),
    [
        ("spend", 1, 0, "spend: 'search' is missing or not a number in the period of 2024-01-08"),
        ("spend", 3, 1, "spend: 'tv' is missing or not a number in the period of 2024-01-22"),
        ("target", 2, 0, "target: 'conversions' is missing .* period of 2024-01-15"),
        ("controls", 0, 0, "control: 'promotion' is missing .* period of 2024-01-01"),
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_missing_values_name_column_and_period(field, row, col, match, bad) -> None:
    base = _data()
    values = getattr(base, field).copy()
    if values.ndim == 1:
        values[row] = bad
    else:
        values[row, col] = bad
    with pytest.raises(MediaDataError, match=match):
        _data(**{field: values})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"spend": np.ones((4, 3))}, r"spend: expected 4 periods x 2 channels, got \(4, 3\)"),
        ({"spend": np.ones((3, 2))}, r"spend: expected 4 periods x 2 channels, got \(3, 2\)"),
        ({"target": np.ones(5)}, r"target: expected 4 values, got \(5,\)"),
        ({"controls": np.ones((4, 2))}, r"controls: expected 4 periods x 1, got \(4, 2\)"),
        ({"channels": (), "spend": np.zeros((4, 0))}, "channels: at least one"),
        ({"channels": ("tv", "tv")}, r"channel names repeat: \['tv', 'tv'\]"),
        (
            {"controls": np.zeros((4, 2)), "control_names": ("promo", "promo")},
            "control names repeat",
        ),
        ({"frequency": "M"}, "frequency: 'M'"),
    ],
)
def test_shape_and_name_errors(changes, match) -> None:
    with pytest.raises(MediaDataError, match=match):
        _data(**changes)


def test_check_fittable() -> None:
    with pytest.raises(MediaDataError, match=f"only 4 periods.*at least {MIN_PERIODS}"):
        _data().check_fittable()
    spend = np.ones((MIN_PERIODS, 3))
    spend[:, 2] = 0.0
    silent = _data(MIN_PERIODS, spend=spend, channels=("search", "tv", "radio"))
    with pytest.raises(MediaDataError, match="channel\\(s\\) 'radio' never spent"):
        silent.check_fittable()
    _data(MIN_PERIODS).check_fittable()  # enough periods, every channel spent: no error


def test_media_data_error_is_a_value_error() -> None:
    assert issubclass(MediaDataError, ValueError)


# --- read_csv --------------------------------------------------------------------------------

ROWS = [
    ("2024-01-01", "1/1/2024", "1000", "10.5", "0", "1"),
    ("2024-01-08", "1/8/2024", "2000", "20", "5.25", "0"),
    ("2024-01-15", "1/15/2024", "3000", "0", "7", "0"),
]


def _write(path: Path, header: str, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes((newline.join([header, *lines]) + newline).encode())
    return path


def _csv(tmp_path: Path, *, us_dates: bool = False, newline: str = "\n") -> Path:
    lines = [",".join((us if us_dates else iso, y, a, b, p)) for iso, us, y, a, b, p in ROWS]
    return _write(tmp_path / "media.csv", "week,sales,x1,x2,promo", lines, newline)


def _read(path: Path, **kwargs) -> MediaData:
    options = {
        "date_col": "week",
        "target_col": "sales",
        "spend_cols": ["x1", "x2"],
        "control_cols": ["promo"],
    }
    options.update(kwargs)
    return read_csv(path, **options)


@pytest.mark.parametrize("us_dates", [False, True], ids=["iso", "m/d/yyyy"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_read_csv(tmp_path, us_dates, newline) -> None:
    data = _read(_csv(tmp_path, us_dates=us_dates, newline=newline))
    np.testing.assert_array_equal(data.dates, START + 7 * np.arange(3))
    np.testing.assert_array_equal(data.target, [1000, 2000, 3000])
    np.testing.assert_array_equal(data.spend, [[10.5, 0], [20, 5.25], [0, 7]])
    np.testing.assert_array_equal(data.controls, [[1], [0], [0]])
    assert data.channels == ("x1", "x2") and data.control_names == ("promo",)
    assert data.target_name == "sales" and data.frequency == "W"


def test_read_csv_target_scale_bom_and_daily_frequency(tmp_path) -> None:
    lines = ["2024-03-01,500,1", "2024-03-02,700,2", "2024-03-03,900,3"]
    path = tmp_path / "daily.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(["day,y,x", *lines]) + "\r\n").encode())
    data = read_csv(path, date_col="day", target_col="y", spend_cols=["x"], target_scale=100)
    assert data.frequency == "D"
    np.testing.assert_array_equal(data.target, [5, 7, 9])
    assert data.controls.shape == (3, 0)


def test_read_csv_missing_columns_lists_what_the_file_has(tmp_path) -> None:
    path = _csv(tmp_path)
    with pytest.raises(
        MediaDataError,
        match=r"media.csv: no column\(s\) 'x3', 'tv'; the file has week, sales, x1, x2, promo",
    ):
        _read(path, spend_cols=["x1", "x3", "tv"])


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        ("abc", "media.csv row 3, x2: 'abc' is not a number"),
        ("", "media.csv row 3, x2: '' is not a number"),
        ("inf", "media.csv row 3, x2: 'inf' is not a finite number"),
    ],
)
def test_read_csv_bad_number_names_file_row_and_column(tmp_path, cell, match) -> None:
    lines = ["2024-01-01,1,2,3,0", f"2024-01-08,1,2,{cell},0", "2024-01-15,1,2,3,0"]
    path = _write(tmp_path / "media.csv", "week,sales,x1,x2,promo", lines)
    with pytest.raises(MediaDataError, match=match):
        _read(path)


def test_read_csv_bad_date_names_row(tmp_path) -> None:
    lines = ["2024-01-01,1,2,3,0", "2024-01-08,1,2,3,0", "13/40/2024,1,2,3,0"]
    path = _write(tmp_path / "media.csv", "week,sales,x1,x2,promo", lines)
    with pytest.raises(MediaDataError, match=r"media.csv row 4, week: '13/40/2024' is not a date"):
        _read(path)


def test_read_csv_gap_names_dates(tmp_path) -> None:
    lines = ["2024-01-01,1,2,3,0", "2024-01-08,1,2,3,0", "2024-01-29,1,2,3,0"]
    path = _write(tmp_path / "media.csv", "week,sales,x1,x2,promo", lines)
    with pytest.raises(MediaDataError, match="2024-01-08 is followed by 2024-01-29"):
        _read(path)


def test_read_csv_argument_errors(tmp_path) -> None:
    path = _csv(tmp_path)
    with pytest.raises(MediaDataError, match="columns named more than once: x1"):
        _read(path, control_cols=["x1"])
    with pytest.raises(MediaDataError, match="columns named more than once: sales"):
        _read(path, spend_cols=["sales", "x1"])
    with pytest.raises(MediaDataError, match="spend columns: name at least one"):
        _read(path, spend_cols=[])
    with pytest.raises(MediaDataError, match=r"nowhere.csv: no such file"):
        _read(tmp_path / "nowhere.csv")


def test_read_csv_repeated_header_is_refused(tmp_path) -> None:
    """Two columns called x1 in the file: which one is the spend? Refuse rather than guess."""
    lines = ["2024-01-01,1,2,3,0", "2024-01-08,1,2,3,0", "2024-01-15,1,2,3,0"]
    path = _write(tmp_path / "media.csv", "week,sales,x1,x1,promo", lines)
    with pytest.raises(MediaDataError, match=r"media.csv: column\(s\) 'x1' appear more than once"):
        read_csv(path, date_col="week", target_col="sales", spend_cols=["x1"])


def test_read_csv_needs_two_rows(tmp_path) -> None:
    path = _write(tmp_path / "media.csv", "week,sales,x1", ["2024-01-01,1,2"])
    with pytest.raises(MediaDataError, match=r"media.csv: 1 data rows"):
        read_csv(path, date_col="week", target_col="sales", spend_cols=["x1"])


# --- from_events -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    return simulate_channels(channels=3, periods=12, seed=5)


def _import(store, table: pa.Table, pseudonymizer) -> None:
    report = import_table(store, table, pseudonymizer=pseudonymizer, label="ads")
    assert report.rejected == 0 and report.written == table.num_rows, report.first_rejects


def test_from_events_round_trip(store, pseudonymizer, sim) -> None:
    _import(store, sim.to_events(), pseudonymizer)
    data = from_events(store, target="conversions", control_keys=CONTROLS)
    assert data.channels == tuple(sorted(sim.data.channels))
    order = [data.channels.index(c) for c in sim.data.channels]
    np.testing.assert_allclose(data.spend[:, order], sim.data.spend)
    np.testing.assert_array_equal(data.target, sim.data.target)
    np.testing.assert_array_equal(data.controls, sim.data.controls)
    np.testing.assert_array_equal(data.dates, sim.data.dates)
    assert data.frequency == "W" and data.target_name == "conversions"
    assert data.control_names == CONTROLS


def test_from_events_a_week_without_result_names_it(store, pseudonymizer, sim) -> None:
    events = sim.to_events()
    gone = events["event_id"][0].as_py().replace("search-spend", "all-result")
    gone = gone.replace("2021-01-04", str(sim.data.dates[5]))
    kept = events.filter(pc.not_equal(events["event_id"], gone))
    assert kept.num_rows == events.num_rows - 1
    _import(store, kept, pseudonymizer)
    with pytest.raises(
        MediaDataError, match=f"no result event in the period of {sim.data.dates[5]}"
    ):
        from_events(store)


def _spend(event_id: str, at: str, channel: str, cost: float) -> dict:
    return {
        "event_id": event_id,
        "event_type": "ad_spend",
        "occurred_at": at,
        "channel": channel,
        "cost": cost,
        "currency": "EUR",
    }


def _result(event_id: str, at: str, conversions: float, **properties) -> dict:
    event = {
        "event_id": event_id,
        "event_type": "ad_result",
        "occurred_at": at,
        "channel": "all",
        "conversions": conversions,
        "revenue": 10 * conversions,
        "currency": "EUR",
    }
    if properties:
        event["properties"] = properties
    return event


def test_from_events_buckets_weeks_and_sums(store) -> None:
    """Weeks start on the first event's weekday (a Wednesday here); several spend events of a
    channel in a week add up, a week without a channel's spend counts as zero, and every
    result event of the week counts whatever its channel."""
    store.append_events(
        events_table(
            _spend("s1", "2024-01-03T00:00:00Z", "tv", 100.0),
            _spend("s2", "2024-01-05T12:00:00Z", "tv", 50.0),
            _spend("s3", "2024-01-04T00:00:00Z", "search", 20.0),
            _spend("s4", "2024-01-17T00:00:00Z", "search", 30.0),
            _result("r1", "2024-01-03T00:00:00Z", 5, promo=1),
            _result("r2", "2024-01-09T23:00:00Z", 7, promo=2),
            _result("r3", "2024-01-10T00:00:00Z", 4),
            _result("r4", "2024-01-18T00:00:00Z", 6, promo=1.5),
        )
    )
    data = from_events(store, control_keys=["promo"])
    np.testing.assert_array_equal(data.dates, np.datetime64("2024-01-03") + 7 * np.arange(3))
    assert data.channels == ("search", "tv")
    np.testing.assert_array_equal(data.spend, [[20, 150], [0, 0], [30, 0]])
    np.testing.assert_array_equal(data.target, [12, 4, 6])
    np.testing.assert_array_equal(data.controls, [[3], [0], [1.5]])
    revenue = from_events(store, target="revenue")
    np.testing.assert_array_equal(revenue.target, [120, 40, 60])
    assert revenue.target_name == "revenue"
    with pytest.raises(MediaDataError, match="no result event in the period of 2024-01-04"):
        from_events(store, frequency="D")  # days without a result


def test_from_events_errors(store) -> None:
    with pytest.raises(MediaDataError, match="0 ad_spend and 0 ad_result"):
        from_events(store)
    with pytest.raises(MediaDataError, match="target: 'clicks'"):
        from_events(store, target="clicks")
    with pytest.raises(MediaDataError, match="frequency: 'M'"):
        from_events(store, frequency="M")
    store.append_events(
        events_table(
            _spend("s1", "2024-01-01T00:00:00Z", "tv", 100.0),
            _result("r1", "2024-01-01T00:00:00Z", 5, promo="yes"),
            _result("r2", "2024-01-08T00:00:00Z", 5, promo=1),
        )
    )
    with pytest.raises(MediaDataError, match=r"ad_result properties.promo: 'yes' is not a number"):
        from_events(store, control_keys=["promo"])


def test_read_csv_refuses_binary_empty_and_endless_files(tmp_path) -> None:
    options = {"date_col": "week", "target_col": "y", "spend_cols": ["x1"]}
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\xff\xfe not text")
    with pytest.raises(MediaDataError, match=r"binary\.csv: not a UTF-8 text CSV"):
        read_csv(binary, **options)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MediaDataError, match=r"empty\.csv: no column.*no header line"):
        read_csv(empty, **options)
    endless = tmp_path / "endless.csv"
    with endless.open("w") as handle:
        handle.write("week,y,x1\n")
        handle.writelines("2024-01-01,1,1\n" for _ in range(MAX_PERIODS + 5))
    with pytest.raises(MediaDataError, match=f"more than {MAX_PERIODS} rows"):
        read_csv(endless, **options)


def test_too_many_channels_are_refused() -> None:
    periods = 30
    with pytest.raises(MediaDataError, match=f"at most {MAX_CHANNELS}"):
        MediaData(
            dates=np.datetime64("2024-01-01") + np.arange(periods) * 7,
            spend=np.ones((periods, MAX_CHANNELS + 1)),
            target=np.ones(periods),
            channels=tuple(f"c{i}" for i in range(MAX_CHANNELS + 1)),
        )
