"""UCI Occupancy Detection: an office room's sensors and its true occupancy, February 2015.

Candanedo and Feldheim (2016) logged an office room in Mons, Belgium about once a minute:
temperature (°C), relative humidity (%), light (lux), CO2 (ppm), the humidity ratio
(kg water per kg air) and occupancy (0/1, from time-stamped pictures). The authors' three
files, as published (``uci-occupancy/`` below :func:`~tailor.datasets.base.data_dir`):

============== ======= ================================== ============
file           rows    span (local time)                  occupied
============== ======= ================================== ============
datatraining   8,143   2015-02-04 17:51 .. 02-10 09:33     1,729
datatest       2,665   2015-02-02 14:19 .. 02-04 10:43       972
datatest2      9,752   2015-02-11 14:48 .. 02-18 09:19     2,049
============== ======= ================================== ============

Quirks: the header names 7 columns but each row has 8 fields, the first a quoted row id
(dropped here); ``datatest2.txt`` leaves the date unquoted; the steps alternate between 59,
60 and 61 seconds. The timestamps carry no zone: they are read as the office's wall clock
(Europe/Brussels, UTC+1 in February) and given as UTC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tailor.datasets.base import DataNotFoundError, dataset_path

__all__ = ["CITATION", "FEATURES", "LABEL", "TIMEZONE", "UciOccupancy", "load_uci_occupancy"]

logger = logging.getLogger(__name__)

CITATION = (
    "Candanedo, L. M. and Feldheim, V. (2016). Accurate occupancy detection of an office room "
    "from light, temperature, humidity and CO2 measurements using statistical learning "
    "models. Energy and Buildings 112, 28-39. Data: UCI ML Repository (CC BY 4.0)."
)
TIMEZONE = "Europe/Brussels"
"""The office is in Mons, Belgium; the files' times are its wall clock."""
FEATURES = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")
LABEL = "Occupancy"
FOLDER = "uci-occupancy"
FILES = {"train": "datatraining.txt", "test": "datatest.txt", "test2": "datatest2.txt"}


@dataclass
class UciOccupancy:
    """The three published parts, each indexed by UTC timestamps (index name ``ts``).

    Attributes
    ----------
    train, test, test2 : DataFrames with float columns ``Temperature``, ``Humidity``,
        ``Light``, ``CO2``, ``HumidityRatio`` and the int64 label ``Occupancy`` (0/1).
    timezone : the office's IANA time zone, for local-time features.
    source : the folder read.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    test2: pd.DataFrame
    timezone: str = TIMEZONE
    source: Path | None = None

    def parts(self) -> dict[str, pd.DataFrame]:
        """The three frames by name, in the authors' order."""
        return {"train": self.train, "test": self.test, "test2": self.test2}


def _folder(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        return dataset_path(FOLDER)
    root = Path(data_dir)
    for candidate in (root, root / FOLDER):
        if (candidate / FILES["train"]).is_file():
            return candidate
    raise DataNotFoundError(
        f"no {FILES['train']} in {root} or {root / FOLDER}. Pass the public data folder or "
        f"the uci-occupancy folder, or set TAILOR_DATA."
    )


def _localize(naive: pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    # a repeated autumn hour is read as standard time, a skipped spring hour moved forward;
    # February never hits either, but the loader should not crash on a re-cut file
    local = naive.tz_localize(
        timezone, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward"
    )
    return local.tz_convert("UTC").as_unit("ns")


def _read(file: Path, timezone: str) -> pd.DataFrame:
    if not file.is_file():
        raise DataNotFoundError(f"{file} not found; set TAILOR_DATA or pass data_dir")
    # the header is one field short: pandas then takes the row id as the index
    raw = pd.read_csv(file, index_col=0)
    expected = {"date", *FEATURES, LABEL}
    if set(raw.columns) != expected:
        raise ValueError(f"{file}: columns {list(raw.columns)}, expected {sorted(expected)}")
    naive = pd.DatetimeIndex(pd.to_datetime(raw["date"], format="%Y-%m-%d %H:%M:%S"))
    frame = raw[list(FEATURES)].astype(float)
    frame[LABEL] = raw[LABEL].astype(np.int64)
    frame.index = _localize(naive, timezone).rename("ts")
    if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
        frame = frame[~frame.index.duplicated()].sort_index(kind="stable")
    return frame


def load_uci_occupancy(data_dir: str | Path | None = None) -> UciOccupancy:
    """Load the UCI Occupancy Detection train, test and test2 files.

    Parameters
    ----------
    data_dir : the public data folder or its ``uci-occupancy`` folder; default below
        :func:`~tailor.datasets.base.data_dir`.

    Returns
    -------
    UciOccupancy
        8,143 / 2,665 / 9,752 rows, UTC-indexed, ``timezone`` Europe/Brussels.

    Raises
    ------
    DataNotFoundError
        When the files are not there; set ``TAILOR_DATA`` or pass ``data_dir``.
    """
    folder = _folder(data_dir)
    frames = {name: _read(folder / file, TIMEZONE) for name, file in FILES.items()}
    logger.info("loaded %s: %s", folder, ", ".join(f"{k} {len(v)} rows" for k, v in frames.items()))
    return UciOccupancy(**frames, timezone=TIMEZONE, source=folder)
