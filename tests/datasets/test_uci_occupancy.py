from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailor.datasets.base import DataNotFoundError
from tailor.datasets.uci_occupancy import FEATURES, TIMEZONE, UciOccupancy, load_uci_occupancy


@pytest.fixture(scope="module")
def uci(load_or_skip) -> UciOccupancy:
    return load_or_skip(load_uci_occupancy)


def test_row_counts_and_labels(uci: UciOccupancy) -> None:
    counts = {name: (len(f), int(f["Occupancy"].sum())) for name, f in uci.parts().items()}
    assert counts == {"train": (8_143, 1_729), "test": (2_665, 972), "test2": (9_752, 2_049)}


def test_columns_and_types(uci: UciOccupancy) -> None:
    for frame in (uci.train, uci.test, uci.test2):
        assert list(frame.columns) == [*FEATURES, "Occupancy"]
        assert all(frame[c].dtype == np.float64 for c in FEATURES)
        assert frame["Occupancy"].dtype == np.int64
        assert set(frame["Occupancy"].unique()) == {0, 1}
        assert not frame.isna().any().any()
        assert str(frame.index.dtype) == "datetime64[ns, UTC]" and frame.index.name == "ts"
        assert frame.index.is_monotonic_increasing and frame.index.is_unique


def test_local_brussels_time_becomes_utc(uci: UciOccupancy) -> None:
    assert uci.timezone == TIMEZONE == "Europe/Brussels"
    # datatraining.txt line 2: "1","2015-02-04 17:51:00",23.18,27.272,426,721.25,0.0047929...,1
    first = uci.train.iloc[0]
    assert uci.train.index[0] == pd.Timestamp("2015-02-04 16:51", tz="UTC")  # CET = UTC+1
    assert list(first[list(FEATURES)]) == pytest.approx(
        [23.18, 27.272, 426.0, 721.25, 0.00479298817650529]
    )
    assert first["Occupancy"] == 1
    # datatest.txt starts at row id 140, datatest2.txt has its date unquoted
    assert uci.test.index[0] == pd.Timestamp("2015-02-02 13:19", tz="UTC")
    assert uci.test2.index[0] == pd.Timestamp("2015-02-11 13:48", tz="UTC")
    assert uci.test2.index[-1] == pd.Timestamp("2015-02-18 08:19", tz="UTC")
    local = uci.train.index.tz_convert(TIMEZONE)
    assert local[0].hour == 17


def test_parts_do_not_overlap(uci: UciOccupancy) -> None:
    assert uci.test.index.max() < uci.train.index.min()
    assert uci.train.index.max() < uci.test2.index.min()


HEADER = '"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"\n'


def write_parts(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "datatraining.txt").write_text(
        HEADER
        + '"1","2015-02-04 17:51:00",23.18,27.272,426,721.25,0.0048,1\n'
        + '"2","2015-02-04 17:51:59",23.15,27.2675,429.5,714,0.0047,0\n'
    )
    (folder / "datatest.txt").write_text(
        HEADER + '"140","2015-02-02 14:19:00",23.7,26.272,585.2,749.2,0.0047,1\n'
    )
    # datatest2's quirk: the date is not quoted
    (folder / "datatest2.txt").write_text(
        HEADER + '"1",2015-02-11 14:48:00,21.76,31.13,437.33,1029.67,0.0050,1\n'
    )


def test_tiny_copy_of_the_files(tmp_path: Path) -> None:
    write_parts(tmp_path / "uci-occupancy")
    for where in (tmp_path, tmp_path / "uci-occupancy"):
        uci = load_uci_occupancy(where)
        assert [len(f) for f in uci.parts().values()] == [2, 1, 1]
        assert uci.train.index[1] == pd.Timestamp("2015-02-04 16:51:59", tz="UTC")
        assert list(uci.train["Occupancy"]) == [1, 0]
        assert uci.test2["CO2"].iloc[0] == 1029.67
        assert uci.source == tmp_path / "uci-occupancy"


def test_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="TAILOR_DATA"):
        load_uci_occupancy(tmp_path)


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    write_parts(tmp_path / "uci-occupancy")
    (tmp_path / "uci-occupancy" / "datatest2.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"datatest2\.txt"):
        load_uci_occupancy(tmp_path)


def test_unexpected_columns_are_refused(tmp_path: Path) -> None:
    write_parts(tmp_path / "uci-occupancy")
    (tmp_path / "uci-occupancy" / "datatest.txt").write_text(
        '"date","Temp","Occupancy"\n"1","2015-02-02 14:19:00",23.7,1\n'
    )
    with pytest.raises(ValueError, match=r"datatest\.txt"):
        load_uci_occupancy(tmp_path)
