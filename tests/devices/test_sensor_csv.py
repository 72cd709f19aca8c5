from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailor.datasets.base import DataNotFoundError, dataset_path
from tailor.devices.sensor_csv import LabelledSensors, SensorCsvError, read_labelled_sensor_csv


def write(tmp_path: Path, content: str | bytes, name: str = "sensors.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


BASIC = (
    "date,temp,co2,Occupancy\n"
    "2015-02-04 17:51:00,23.1,426,1\n"
    "2015-02-04 17:52:00,23.2,430,0\n"
    "2015-02-04 17:53:00,23.3,431,1\n"
)


def test_basic_iso_file(tmp_path: Path) -> None:
    data = read_labelled_sensor_csv(write(tmp_path, BASIC))
    assert isinstance(data, LabelledSensors)
    assert data.feature_names == ["temp", "co2"]
    assert list(data.labels) == [1, 0, 1] and data.labels.dtype == np.int64
    assert data.labels.name == "Occupancy"
    assert str(data.features.index.dtype) == "datetime64[ns, UTC]"
    assert data.features.index[0] == utc("2015-02-04 17:51")
    assert data.features["co2"].tolist() == [426.0, 430.0, 431.0]
    assert data.header_line == 1 and not data.row_ids
    assert list(data.frame.columns) == ["temp", "co2", "Occupancy"]
    summary = data.summary()
    assert summary["rows"] == 3 and summary["positive_rate"] == pytest.approx(2 / 3)


def test_bom_and_crlf(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbf" + BASIC.replace("\n", "\r\n").encode()
    data = read_labelled_sensor_csv(write(tmp_path, content))
    assert len(data) == 3 and data.feature_names == ["temp", "co2"]
    assert data.features["co2"].iloc[-1] == 431.0


def test_utf16_and_cp1252(tmp_path: Path) -> None:
    data = read_labelled_sensor_csv(write(tmp_path, BASIC.encode("utf-16")))
    assert len(data) == 3
    cp = BASIC.replace("temp", "Temp (°F)").encode("cp1252")
    data = read_labelled_sensor_csv(write(tmp_path, cp, "cp.csv"))
    assert data.feature_names == ["Temp (°F)", "co2"]


def test_metadata_lines_before_the_header(tmp_path: Path) -> None:
    # like the ecobee export: a metadata line mentions "date" in lower case
    content = (
        "#,Thermostat,identifier,Anon,,\n"
        "#,Start,date,6/9/23,,\n"
        ",,,,,\n"
        "Date,Time,Mode,Temp (F),Motion,Room2\n"
        "6/9/23,0:00:00,cool,70.1,0,1\n"
        "6/9/23,0:05:00,cool,70.3,1,0\n"
    )
    data = read_labelled_sensor_csv(
        write(tmp_path, content), time_cols=("Date", "Time"), label_col="Motion"
    )
    assert data.header_line == 4
    assert data.feature_names == ["Temp (F)", "Room2"]
    assert data.text_columns == ["Mode"]
    assert data.features.index[1] == utc("2023-06-09 00:05")
    # the same, told where the header is; and the string form of time_cols
    again = read_labelled_sensor_csv(
        write(tmp_path, content), time_cols="Date, Time", label_col="Motion", skip_rows=3
    )
    pd.testing.assert_frame_equal(again.features, data.features)
    with pytest.raises(SensorCsvError, match="after skip_rows=2"):
        read_labelled_sensor_csv(
            write(tmp_path, content), time_cols="Date,Time", label_col="Motion", skip_rows=2
        )


def test_local_time_to_utc(tmp_path: Path) -> None:
    content = "Date,Time,t,occ\n6/9/23,0:00:00,1,0\n6/9/23,13:05,2,1\n"
    data = read_labelled_sensor_csv(
        write(tmp_path, content),
        time_cols=("Date", "Time"),
        label_col="occ",
        timezone="America/New_York",
    )
    assert list(data.features.index) == [utc("2023-06-09 04:00"), utc("2023-06-09 17:05")]
    assert data.timezone == "America/New_York"


def test_mdyyyy_with_am_pm(tmp_path: Path) -> None:
    content = "when,t,occ\n2/4/2015 5:51 PM,1,0\n2/4/2015 11:02:30 AM,2,1\n2/5/2015,3,1\n"
    data = read_labelled_sensor_csv(write(tmp_path, content), time_cols="when", label_col="occ")
    assert list(data.features.index) == [
        utc("2015-02-04 11:02:30"),
        utc("2015-02-04 17:51"),
        utc("2015-02-05 00:00"),
    ]
    assert data.features["t"].tolist() == [2.0, 1.0, 3.0]


def test_iso_offsets_are_taken_as_written(tmp_path: Path) -> None:
    content = "ts,t,occ\n2015-02-04T17:51:00+01:00,1,0\n2015-02-04T17:52:00Z,2,1\n"
    data = read_labelled_sensor_csv(
        write(tmp_path, content), time_cols="ts", label_col="occ", timezone="Asia/Tokyo"
    )
    assert list(data.features.index) == [utc("2015-02-04 16:51"), utc("2015-02-04 17:52")]
    mixed = "ts,t,occ\n2015-02-04T17:51:00+01:00,1,0\n2015-02-04T17:52:00,2,1\n"
    with pytest.raises(SensorCsvError, match=r"line 3.*no UTC offset"):
        read_labelled_sensor_csv(write(tmp_path, mixed), time_cols="ts", label_col="occ")


def test_autumn_dst_repeat_in_file_order(tmp_path: Path) -> None:
    content = (
        "date,t,occ\n"
        "2023-10-29 01:30,1,0\n2023-10-29 02:30,2,0\n2023-10-29 02:30,3,1\n2023-10-29 03:30,4,1\n"
    )
    data = read_labelled_sensor_csv(
        write(tmp_path, content), timezone="Europe/Brussels", label_col="occ"
    )
    assert data.dropped_duplicates == 0
    assert list(data.features.index) == [
        utc("2023-10-28 23:30"),
        utc("2023-10-29 00:30"),
        utc("2023-10-29 01:30"),
        utc("2023-10-29 02:30"),
    ]


def test_rows_sorted_and_duplicates_dropped(tmp_path: Path) -> None:
    content = (
        "date,t,occ\n"
        "2015-02-04 17:53:00,3,1\n"
        "2015-02-04 17:51:00,1,0\n"
        "2015-02-04 17:53:00,99,0\n"
        "2015-02-04 17:52:00,2,1\n"
    )
    data = read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")
    assert data.dropped_duplicates == 1
    assert data.features["t"].tolist() == [1.0, 2.0, 3.0]  # the first 17:53 row is kept
    assert list(data.labels) == [0, 1, 1]
    assert data.features.index.is_monotonic_increasing


def test_mixed_date_formats_are_refused(tmp_path: Path) -> None:
    content = "date,t,occ\n2015-02-04 17:51:00,1,0\n2/4/15 17:52,2,1\n"
    with pytest.raises(SensorCsvError, match=r"mixed date formats.*line 2.*ISO.*line 3.*m/d/yy"):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")
    content = "date,t,occ\n2/4/2015 17:51,1,0\n2/4/15 17:52,2,1\n"
    with pytest.raises(SensorCsvError, match="mixed date formats"):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")


def test_unreadable_dates_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "date,t,occ\n2015-02-04 17:51:00,1,0\nyesterday,2,1\n")
    with pytest.raises(
        SensorCsvError, match=r"sensors.csv: line 3, column\(s\) 'date'.*'yesterday'"
    ):
        read_labelled_sensor_csv(path, label_col="occ")
    day_first = write(tmp_path, "date,t,occ\n04/02/2015 10:00,1,0\n13/02/2015 10:00,2,1\n")
    with pytest.raises(SensorCsvError, match=r"line 3.*day-first"):
        read_labelled_sensor_csv(day_first, label_col="occ")
    bad_time = write(tmp_path, "date,t,occ\n2015-02-04 25:61,1,0\n")
    with pytest.raises(SensorCsvError, match=r"line 2.*unreadable date"):
        read_labelled_sensor_csv(bad_time, label_col="occ")


def test_blank_time_is_refused(tmp_path: Path) -> None:
    content = "Date,Time,t,occ\n6/9/23,0:00,1,0\n6/9/23,,2,1\n"
    with pytest.raises(SensorCsvError, match="line 3, column 'Time': the time is blank"):
        read_labelled_sensor_csv(write(tmp_path, content), time_cols="Date,Time", label_col="occ")


def test_missing_time_column_lists_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC)
    with pytest.raises(SensorCsvError, match=r"\['Date', 'Time'\] not found.*'co2'.*--time-cols"):
        read_labelled_sensor_csv(path, time_cols=("Date", "Time"))


def test_time_column_matched_ignoring_case(tmp_path: Path) -> None:
    data = read_labelled_sensor_csv(write(tmp_path, BASIC), time_cols="DATE", label_col="occupancy")
    assert data.time_cols == ("date",) and data.label_col == "Occupancy"


def test_missing_label_column_lists_the_header(tmp_path: Path) -> None:
    with pytest.raises(
        SensorCsvError, match=r"label column 'occupied'.*\['date', 'temp'.*--label-col"
    ):
        read_labelled_sensor_csv(write(tmp_path, BASIC), label_col="occupied")
    with pytest.raises(SensorCsvError, match="also a time column"):
        read_labelled_sensor_csv(write(tmp_path, BASIC), label_col="date")


def test_label_words_and_numbers(tmp_path: Path) -> None:
    values = [
        "yes",
        "No",
        "OCCUPIED",
        "unoccupied",
        "home",
        "away",
        "true",
        "FALSE",
        "2",
        "0",
        "-1",
        "0.5",
        "",
        "NA",
    ]
    rows = "".join(f"2015-02-04 10:{i:02d},{i},{v}\n" for i, v in enumerate(values))
    data = read_labelled_sensor_csv(write(tmp_path, "date,t,occ\n" + rows), label_col="occ")
    assert list(data.labels) == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1]
    assert data.dropped_unlabelled == 2
    assert len(data) == 12


def test_bad_label_names_the_row(tmp_path: Path) -> None:
    content = "date,t,occ\n2015-02-04 10:00,1,1\n2015-02-04 10:01,2,maybe\n"
    with pytest.raises(SensorCsvError, match=r"line 3, column 'occ': label 'maybe'"):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")
    content = "date,t,occ\n2015-02-04 10:00,1,\n2015-02-04 10:01,2,\n"
    with pytest.raises(SensorCsvError, match="blank on every row"):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")


def test_feature_columns_blank_text_and_partly_numeric(tmp_path: Path) -> None:
    content = (
        "date,temp,empty,mode,co2,occ\n"
        "2015-02-04 10:00,21.5,,cool,400,1\n"
        "2015-02-04 10:01,err,,cool,410,0\n"
        "2015-02-04 10:02,21.7,,heat,inf,1\n"
        "2015-02-04 10:03,,,cool,NA,1\n"
    )
    data = read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")
    assert data.feature_names == ["temp", "co2"]
    assert data.blank_columns == ["empty"] and data.text_columns == ["mode"]
    assert data.non_numeric == {"temp": 1, "co2": 1}  # blanks and NA are missing, not bad
    assert data.features["temp"].isna().tolist() == [False, True, False, True]
    assert data.features["co2"].isna().tolist() == [False, False, True, True]


def test_no_numeric_feature_is_refused(tmp_path: Path) -> None:
    content = "date,mode,note,occ\n2015-02-04 10:00,cool,a,1\n2015-02-04 10:01,heat,,0\n"
    with pytest.raises(
        SensorCsvError, match=r"no numeric sensor column.*text columns: \['mode', 'note'\]"
    ):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")


@pytest.mark.parametrize("content", [b"", b"   \n\r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(SensorCsvError, match=r"sensors\.csv is empty"):
        read_labelled_sensor_csv(write(tmp_path, content))


def test_header_without_rows(tmp_path: Path) -> None:
    with pytest.raises(SensorCsvError, match="no data rows below the header on line 1"):
        read_labelled_sensor_csv(write(tmp_path, "date,t,Occupancy\n\n"))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00rest", "xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls"),
        (b"date,t\x00\x01\x02,occ\n", "binary"),
    ],
)
def test_binary_files(tmp_path: Path, content: bytes, match: str) -> None:
    with pytest.raises(SensorCsvError, match=match):
        read_labelled_sensor_csv(write(tmp_path, content))


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SensorCsvError, match="not found"):
        read_labelled_sensor_csv(tmp_path / "nope.csv")
    with pytest.raises(SensorCsvError, match="is a folder"):
        read_labelled_sensor_csv(tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC)
    with pytest.raises(SensorCsvError, match="unknown timezone 'Mars/Olympus'"):
        read_labelled_sensor_csv(path, timezone="Mars/Olympus")
    with pytest.raises(SensorCsvError, match="time_cols"):
        read_labelled_sensor_csv(path, time_cols="date,,")
    with pytest.raises(SensorCsvError, match="skip_rows"):
        read_labelled_sensor_csv(path, skip_rows=-1)
    with pytest.raises(SensorCsvError, match="skips all"):
        read_labelled_sensor_csv(path, skip_rows=10)
    assert isinstance(SensorCsvError("x"), ValueError)


def test_row_ids_the_header_does_not_name(tmp_path: Path) -> None:
    # the UCI files' quirk: 7 names in the header, a quoted row id first in each row
    content = (
        '"date","Temperature","Occupancy"\n'
        '"1","2015-02-04 17:51:00",23.18,1\n'
        '"2",2015-02-04 17:51:59,23.15,0\n'
    )
    data = read_labelled_sensor_csv(write(tmp_path, content))
    assert data.row_ids and data.feature_names == ["Temperature"]
    assert data.features["Temperature"].tolist() == [23.18, 23.15]
    assert data.features.index[1] == utc("2015-02-04 17:51:59")


def test_ragged_rows(tmp_path: Path) -> None:
    # a short row is padded with blanks: here its label is blank, so the row is dropped
    short = "date,a,b,occ\n2015-02-04 10:00,1,2,1\n2015-02-04 10:01,3\n2015-02-04 10:02,4,5,0\n"
    data = read_labelled_sensor_csv(write(tmp_path, short), label_col="occ")
    assert data.dropped_unlabelled == 1 and data.features["a"].tolist() == [1.0, 4.0]
    trailing = "date,a,occ\n2015-02-04 10:00,1,1,,\n"
    assert len(read_labelled_sensor_csv(write(tmp_path, trailing), label_col="occ")) == 1
    extra = "date,a,occ\n2015-02-04 10:00,1,1\n2015-02-04 10:01,1,1,7,8\n"
    with pytest.raises(SensorCsvError, match="line 3 has 5 fields but the header"):
        read_labelled_sensor_csv(write(tmp_path, extra), label_col="occ")


def test_duplicate_header_names(tmp_path: Path) -> None:
    content = "date,t,t,occ\n2015-02-04 10:00,1,2,1\n"
    with pytest.raises(SensorCsvError, match=r"line 1: column name\(s\) \['t'\]"):
        read_labelled_sensor_csv(write(tmp_path, content), label_col="occ")


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    content = "Datum;Temp;Occupied\n2015-02-04 10:00;21,5;1\n2015-02-04 10:01;21,75;0\n"
    data = read_labelled_sensor_csv(
        write(tmp_path, content), time_cols="Datum", label_col="Occupied"
    )
    assert data.features["Temp"].tolist() == [21.5, 21.75]
    tabs = "date\tt\tocc\n2015-02-04 10:00\t1.5\t1\n"
    assert (
        read_labelled_sensor_csv(write(tmp_path, tabs), label_col="occ").features["t"].iloc[0]
        == 1.5
    )


def test_split_by_time(tmp_path: Path) -> None:
    rows = "".join(f"2015-02-04 10:{i:02d},{i},{i % 2}\n" for i in range(11))
    data = read_labelled_sensor_csv(write(tmp_path, "date,t,occ\n" + rows), label_col="occ")
    learn, test = data.split_by_time()  # span 10 min: boundary at 10:07
    assert learn.features["t"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert test.features["t"].tolist() == [7, 8, 9, 10]
    assert list(learn.labels) == [0, 1, 0, 1, 0, 1, 0]
    assert learn.label_col == test.label_col == "occ" and test.path == data.path
    half, rest = data.split_by_time(0.5)
    assert len(half) == 5 and len(rest) == 6
    for bad in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="frac"):
            data.split_by_time(bad)
    with pytest.raises(TypeError):
        data.split_by_time("0.7")  # type: ignore[arg-type]
    one = read_labelled_sensor_csv(
        write(tmp_path, "date,t,occ\n2015-02-04 10:00,1,1\n"), label_col="occ"
    )
    with pytest.raises(ValueError, match="too few"):
        one.split_by_time()


# --- the real files -----------------------------------------------------------------------


def shared_file(*parts: str) -> Path:
    try:
        return dataset_path(*parts)
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")


def test_reads_the_ecobee_export() -> None:
    path = shared_file("ecobee-home", "SecondTestBed", "report_thermostat.csv")
    data = read_labelled_sensor_csv(
        path, time_cols="Date,Time", label_col="Thermostat Motion", timezone="America/New_York"
    )
    assert data.header_line == 6
    assert len(data) == 9_095 and data.dropped_unlabelled == 121
    assert data.dropped_duplicates == 0 and data.blank_columns == []
    assert data.text_columns == ["System Setting", "System Mode", "Calendar Event", "Program Mode"]
    assert "Bedroom2" in data.feature_names and "Thermostat Motion" not in data.feature_names
    assert data.features.index[0] == utc("2023-06-09 04:00")
    assert int(data.labels.sum()) == 1_165
    assert data.features["Thermostat Temperature (F)"].iloc[0] == 71.3
    learn, test = data.split_by_time(0.7)
    assert learn.features.index.max() < test.features.index.min()
    assert len(learn) + len(test) == len(data)


@pytest.mark.parametrize(
    ("name", "rows", "occupied"),
    [
        ("datatraining.txt", 8_143, 1_729),
        ("datatest.txt", 2_665, 972),
        ("datatest2.txt", 9_752, 2_049),
    ],
)
def test_reads_the_uci_files(name: str, rows: int, occupied: int) -> None:
    path = shared_file("uci-occupancy", name)
    data = read_labelled_sensor_csv(
        path, time_cols="date", label_col="Occupancy", timezone="Europe/Brussels"
    )
    assert len(data) == rows and int(data.labels.sum()) == occupied and data.row_ids
    assert data.feature_names == ["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]
    from tailor.datasets.uci_occupancy import load_uci_occupancy

    part = {"datatraining.txt": "train", "datatest.txt": "test", "datatest2.txt": "test2"}[name]
    expected = load_uci_occupancy().parts()[part]
    pd.testing.assert_frame_equal(data.frame, expected, check_freq=False)
