"""One real home with an ecobee thermostat and 8 room sensors, June 9 to July 10 2023.

The ecobee web portal's "Download Data" export of a single-family house in Pittsburgh
(``ecobee-home/SecondTestBed/report_thermostat.csv``, from INFERLab/Sensors4SingleZoneSystem,
MIT; Mulayim and Berges, BuildSys 2023): 9,216 five-minute steps of the cooling season with
the setpoints, the schedule's comfort setting (Home/Away/Sleep), the occupants' manual holds,
indoor, outdoor and per-room temperatures, humidity, cooling and fan runtime, and motion.

Quirks of the file, all handled by :func:`load_ecobee_home`:

- five metadata lines (``#,Thermostat,identifier,Anon`` ...) precede the header;
- ``Date`` is M/D/YY and ``Time`` H:MM:SS on the home's own wall clock (America/New_York);
- temperatures are °F (converted to °C here); runtimes are seconds within the 5-minute step;
- 121 steps carry no thermostat data (connectivity outages): 108 are blank apart from the
  date and time, 13 hold only the outdoor temperature and wind speed from the weather service;
- the 5-minute value of a setpoint is the time-weighted average over the step, so a step in
  which the setpoint changed shows a value nobody ever set, e.g. 76.4 °F between the
  schedule's 78 °F and a hold at 71.6 °F (129 such steps, 6 of them inside holds, often
  77.3 °F at a Sleep to Home change);
- the 8 room sensors other than the living room's report only from 2023-06-12 20:25 local;
- 2023-06-19 to 06-24 are demand-response experiment days: the schedule uses unusual
  setpoints (Sleep at 82 °F instead of 76 °F, Home pre-cooling at 72 °F) and ``auto``
  calendar events (utility events at 80 to 86 °F) appear;
- ``Calendar Event`` is blank for the plain schedule, ``hold`` for a manual override (364
  steps), ``auto`` for utility/DR events and ``(SmartRecovery)`` for pre-conditioning.

The ``<Room>2`` columns and ``Thermostat Motion`` are 0/1 flags: only 0 and 1 occur, the
runs of 1 last a median 10 to 15 minutes, and their daily profile matches who uses the room
(the bedroom's flag is set mostly from 21:00 to 08:00, the living room's and the
thermostat's from 07:00 to 22:00, the guest room's, office's and basement's almost never):
ecobee's room-sensor occupancy (motion) flags.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tailor.datasets.base import DataNotFoundError, dataset_path

__all__ = [
    "CITATION",
    "STEP",
    "TIMEZONE",
    "EcobeeHome",
    "load_ecobee_home",
    "program_setpoints",
]

logger = logging.getLogger(__name__)

CITATION = (
    "Mulayim, O. B. and Berges, M. (2023). Unmasking the Thermal Behavior of Single-Zone "
    "Multi-Room Houses: An Empirical Study. ACM BuildSys 2023. Data: "
    "INFERLab/Sensors4SingleZoneSystem (MIT)."
)
TIMEZONE = "America/New_York"
"""The house is in Pittsburgh; the export's times are its wall clock."""
STEP = pd.Timedelta(minutes=5)
FILE_PARTS = ("ecobee-home", "SecondTestBed", "report_thermostat.csv")
PROGRAM_MODES = ("Home", "Away", "Sleep")

# grid column <- export column (°F columns are converted, runtimes become fractions)
_FAHRENHEIT = {
    "indoor_temp": "Thermostat Temperature (F)",
    "outdoor_temp": "Outdoor Temp (F)",
    "setpoint": "Cool Set Temp (F)",
    "heat_setpoint": "Heat Set Temp (F)",
}
_RUNTIME = {"cooling": "Cool Stage 1 (sec)", "fan": "Fan (sec)"}
_THERMOSTAT_MOTION = "Thermostat Motion"
# the export's one column that is never blank on a step with thermostat data
_PRESENCE_COLUMN = "System Setting"
_READING_UNITS = {
    "indoor_temp": "°C",
    "outdoor_temp": "°C",
    "humidity": "%",
    "setpoint": "°C",
    "cooling": "fraction",
    "motion": None,
}
_READING_COLUMNS = [
    "home_id",
    "device_id",
    "metric",
    "ts",
    "value",
    "unit",
    "device_time",
    "received_at",
]


def _f_to_c(values: pd.Series) -> pd.Series:
    return (values - 32.0) * 5.0 / 9.0


def _room_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _localize(naive: pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    """Wall-clock times in ``timezone`` as UTC.

    A repeated hour at the autumn change is resolved by order when it can be ("infer"), else
    read as standard time; a skipped spring hour is moved forward. Both only matter for
    exports that cross a DST change (this one does not).
    """
    try:
        local = naive.tz_localize(timezone, ambiguous="infer", nonexistent="shift_forward")
    except (ValueError, TypeError):  # pytz/zoneinfo AmbiguousTimeError is a ValueError
        local = naive.tz_localize(
            timezone, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward"
        )
    return local.tz_convert("UTC")


def _thermostat_file(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        return dataset_path(*FILE_PARTS)
    root = Path(data_dir)
    candidates = [root, *(root.joinpath(*FILE_PARTS[i:]) for i in range(len(FILE_PARTS)))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"no {FILE_PARTS[-1]} in {root} (looked for {', '.join(str(c) for c in candidates[1:])}). "
        f"Pass the public data folder, the ecobee-home folder or the CSV itself, or set "
        f"TAILOR_DATA."
    )


def _read_export(file: Path) -> pd.DataFrame:
    with file.open(encoding="utf-8-sig") as handle:
        head = [next(handle, "") for _ in range(20)]
    header_line = next((i for i, line in enumerate(head) if line.startswith("Date,Time,")), None)
    if header_line is None:
        raise ValueError(
            f"{file}: no 'Date,Time,...' header in the first 20 lines; is this an ecobee "
            f"'Download Data' export?"
        )
    raw = pd.read_csv(file, skiprows=header_line, encoding="utf-8-sig", dtype=str)
    missing = [
        c
        for c in (*_FAHRENHEIT.values(), *_RUNTIME.values(), _THERMOSTAT_MOTION, "Calendar Event")
        if c not in raw.columns
    ]
    if missing:
        raise ValueError(f"{file}: columns {missing} missing; header is {list(raw.columns)}")
    return raw


def _numeric(raw: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(raw[column], errors="coerce").astype(float)


def _mixed_steps(setpoint: pd.Series) -> pd.Series:
    """Steps whose value lies strictly between both neighbours': the average of two
    setpoints over a step in which the setpoint changed, not a setpoint anyone chose."""
    before, after = setpoint.shift(1), setpoint.shift(-1)
    between = ((setpoint > before) & (setpoint < after)) | (
        (setpoint < before) & (setpoint > after)
    )
    return between & before.notna() & after.notna()


def _adjustments(grid: pd.DataFrame) -> pd.DataFrame:
    """A row where a hold starts or its setpoint changes within the hold.

    Averaged change steps (:func:`_mixed_steps`) are skipped, so ``previous_value`` is the
    last setpoint actually in force before the change (78 °F, not the 76.4 °F average of
    the step in which the user pressed the button) and a change inside a hold yields one row
    at the first step showing the new value.
    """
    setpoint = grid["setpoint"]
    clean = setpoint.notna() & ~_mixed_steps(setpoint)
    value = setpoint[clean]
    hold = grid["hold"][clean]
    previous = value.shift(1)
    was_hold = hold.shift(1, fill_value=False).astype(bool)
    starts = hold & (~was_hold | (value != previous))
    return pd.DataFrame(
        {
            "ts": value.index[starts.to_numpy()],
            "value": value[starts].to_numpy(),
            "previous_value": previous[starts].to_numpy(),
            "metric": "setpoint",
        }
    )


def _grid(raw: pd.DataFrame, timezone: str) -> pd.DataFrame:
    naive = pd.to_datetime(raw["Date"] + " " + raw["Time"], format="%m/%d/%y %H:%M:%S")
    index = _localize(pd.DatetimeIndex(naive), timezone).as_unit("ns")
    keep = ~index.duplicated()
    raw, index = raw.loc[keep].reset_index(drop=True), index[keep]
    values: dict[str, pd.Series] = {}
    for name, column in _FAHRENHEIT.items():
        values[name] = _f_to_c(_numeric(raw, column))
    values["humidity"] = _numeric(raw, "Current Humidity (%RH)")
    for name, column in _RUNTIME.items():
        values[name] = (_numeric(raw, column) / STEP.total_seconds()).clip(0.0, 1.0)

    rooms = [
        m.group(1)
        for c in raw.columns
        if (m := re.fullmatch(r"(.+) \(F\)", c)) and f"{m.group(1)}2" in raw.columns
    ]
    motions = {"motion_thermostat": _numeric(raw, _THERMOSTAT_MOTION)}
    motions.update({f"motion_{_room_key(r)}": _numeric(raw, f"{r}2") for r in rooms})
    motions = {k: v.where(v.isna(), (v > 0).astype(float)) for k, v in motions.items()}
    # motion anywhere in the home; unknown only when no sensor reported at all
    values["motion"] = pd.concat(motions, axis=1).max(axis=1, skipna=True)
    values.update(motions)
    for room in rooms:
        values[f"temp_{_room_key(room)}"] = _f_to_c(_numeric(raw, f"{room} (F)"))

    floats = pd.DataFrame(values)
    floats.index = index
    gaps = floats.isna().add_suffix("_gap")
    has_data = raw[_PRESENCE_COLUMN].notna().to_numpy()
    event = raw["Calendar Event"].where(raw["Calendar Event"].notna(), None)
    extras = pd.DataFrame(
        {
            "program_mode": pd.array(raw["Program Mode"].where(has_data, None), dtype="string"),
            "hold": (raw["Calendar Event"] == "hold").fillna(False).to_numpy(dtype=bool),
            "event": pd.array(event, dtype="string"),
        },
        index=index,
    )
    grid = pd.concat([floats, gaps, extras], axis=1)
    full = pd.date_range(index.min(), index.max(), freq=STEP, name="ts").as_unit("ns")
    grid = grid.reindex(full)
    # steps absent from the file are gaps too
    for column in gaps.columns:
        grid[column] = grid[column].fillna(True).astype(bool)
    grid["hold"] = grid["hold"].fillna(False).astype(bool)
    return grid


@dataclass
class EcobeeHome:
    """The ecobee home on a regular 5-minute grid.

    Attributes
    ----------
    grid : Grid frame: UTC ``DatetimeIndex`` (step start, ``freq`` 5 min) with float columns
        in °C (``indoor_temp`` = the thermostat's own sensor, ``outdoor_temp``, ``setpoint`` =
        the cooling setpoint in force, ``heat_setpoint``, ``temp_<room>``), ``humidity`` (%RH),
        ``cooling`` and ``fan`` (fraction of the step the compressor / fan ran, 0..1),
        ``motion`` (1 when the thermostat or any room sensor saw motion in the step),
        ``motion_thermostat`` and ``motion_<room>``; a boolean ``<column>_gap`` per float
        column (True where the value is missing: outages, sensors not yet installed); and
        ``program_mode`` (Home/Away/Sleep, NA in outages), ``hold`` (bool: a manual
        override) and ``event`` (the raw ``Calendar Event``, NA when blank).
    adjustments : Adjustments frame of the occupants' manual holds: one row when a hold
        starts or its setpoint changes within a hold (``ts`` UTC, ``value`` and
        ``previous_value`` in °C, ``metric`` "setpoint"); see :func:`load_ecobee_home`.
    timezone : the home's IANA time zone, for local-time habits.
    source : the file read.
    """

    grid: pd.DataFrame
    adjustments: pd.DataFrame
    timezone: str = TIMEZONE
    source: Path | None = None
    notes: list[str] = field(default_factory=list)

    def readings(
        self,
        home_id: str = "ecobee-home",
        device_id: str = "thermostat",
        *,
        include_rooms: bool = False,
    ) -> pd.DataFrame:
        """The grid as raw telemetry, one row per reported value, for the ingest path.

        Parameters
        ----------
        home_id, device_id : ids to stamp on every row.
        include_rooms : also emit each room sensor as device ``"sensor-<room>"`` with its
            ``indoor_temp`` and ``motion``.

        Returns
        -------
        DataFrame
            Readings frame (``home_id, device_id, metric, ts, value, unit, device_time,
            received_at``) with the thermostat's ``indoor_temp``, ``outdoor_temp``,
            ``humidity``, ``setpoint``, ``cooling`` and ``motion`` (the home's, any sensor);
            missing values (outages) are absent, as they would be from a live device.
            ``device_time`` is the step time (the export's clock), ``received_at`` NaT.
        """
        parts = [(device_id, metric, metric, unit) for metric, unit in _READING_UNITS.items()]
        if include_rooms:
            for column in self.grid.columns:
                if column.startswith("temp_") and not column.endswith("_gap"):
                    room = column.removeprefix("temp_")
                    parts.append((f"sensor-{room}", "indoor_temp", column, "°C"))
                    if f"motion_{room}" in self.grid.columns:
                        parts.append((f"sensor-{room}", "motion", f"motion_{room}", None))
        frames = []
        for device, metric, column, unit in parts:
            series = self.grid[column].dropna()
            frames.append(
                pd.DataFrame(
                    {
                        "home_id": home_id,
                        "device_id": device,
                        "metric": metric,
                        "ts": series.index,
                        "value": series.to_numpy(dtype=float),
                        "unit": unit,
                        "device_time": series.index,
                        "received_at": pd.NaT,
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        for column in ("ts", "device_time", "received_at"):
            out[column] = pd.to_datetime(out[column], utc=True).dt.as_unit("ns")
        out = out.sort_values(["ts", "device_id", "metric"], kind="stable", ignore_index=True)
        return out[_READING_COLUMNS]

    def split(self, train_days: int = 21) -> tuple[EcobeeHome, EcobeeHome]:
        """Split by time: the first ``train_days`` local days to learn, the rest to test.

        The boundary is local midnight ``train_days`` days after the first local day
        (2023-06-30 00:00 in Pittsburgh, 04:00 UTC, for the default 21); adjustments go to
        the side their ``ts`` falls on.
        """
        if isinstance(train_days, bool) or not isinstance(train_days, (int, np.integer)):
            raise TypeError(f"train_days must be an int, got {type(train_days).__name__}")
        first = self.grid.index.min().tz_convert(self.timezone).normalize()
        boundary = (first + pd.DateOffset(days=int(train_days))).tz_convert("UTC")
        if train_days <= 0 or boundary > self.grid.index.max():
            span = (self.grid.index.max() - self.grid.index.min()).days + 1
            raise ValueError(
                f"train_days={train_days} leaves no test part: the data spans {span} days; "
                f"use 1 to {span - 1}"
            )
        sides = []
        for keep, adj_keep in (
            (self.grid.index < boundary, self.adjustments["ts"] < boundary),
            (self.grid.index >= boundary, self.adjustments["ts"] >= boundary),
        ):
            grid = self.grid.loc[keep]
            grid.index.freq = STEP
            sides.append(
                EcobeeHome(
                    grid=grid,
                    adjustments=self.adjustments.loc[adj_keep].reset_index(drop=True),
                    timezone=self.timezone,
                    source=self.source,
                    notes=list(self.notes),
                )
            )
        return sides[0], sides[1]


def program_setpoints(train: EcobeeHome | pd.DataFrame) -> dict[str, float]:
    """The cooling setpoint (°C) each Program Mode uses, learned from ``train``.

    The most common setpoint of each mode over the steps that follow the plain schedule
    (no hold, no utility/DR ``auto`` event, no SmartRecovery ramp): on the first three weeks
    Home 78 °F, Away 82 °F, Sleep 76 °F, despite the DR days' 82 °F nights. Ties go to the
    lower setpoint; a mode never seen is left out.

    Parameters
    ----------
    train : an :class:`EcobeeHome` or its grid (needs ``program_mode``, ``event``,
        ``setpoint``).
    """
    grid = train.grid if isinstance(train, EcobeeHome) else train
    missing = {"program_mode", "event", "setpoint"} - set(grid.columns)
    if missing:
        raise ValueError(f"train lacks columns {sorted(missing)}; pass an EcobeeHome or its grid")
    plain = grid.loc[grid["event"].isna() & grid["program_mode"].notna() & grid["setpoint"].notna()]
    result: dict[str, float] = {}
    for mode, values in plain.groupby(plain["program_mode"].astype(str), sort=True)["setpoint"]:
        counts = values.round(6).value_counts()
        best = counts[counts == counts.max()].index.min()
        result[str(mode)] = float(best)
    return result


def load_ecobee_home(data_dir: str | Path | None = None) -> EcobeeHome:
    """Load the ecobee home (``report_thermostat.csv``) onto a 5-minute UTC grid.

    Parameters
    ----------
    data_dir : the public data folder, the ``ecobee-home`` folder, its ``SecondTestBed``
        folder or the CSV itself; default below :func:`~tailor.datasets.base.data_dir`.

    Returns
    -------
    EcobeeHome
        ``grid`` with 9,216 steps from 2023-06-09 04:00 UTC (00:00 local), ``adjustments``
        (8 for this file: 6 holds started, 2 set again within a hold), ``timezone``
        America/New_York. See the module docstring for the file's quirks.

    Raises
    ------
    DataNotFoundError
        When the file is not there; set ``TAILOR_DATA`` or pass ``data_dir``.
    """
    file = _thermostat_file(data_dir)
    raw = _read_export(file)
    grid = _grid(raw, TIMEZONE)
    outages = int((~raw[_PRESENCE_COLUMN].notna()).sum())
    notes = [
        f"{outages} steps without thermostat data (outages) are NaN with <metric>_gap True",
        f"{int(grid['hold'].sum())} steps under a manual hold",
    ]
    logger.info("loaded %s: %d steps, %s", file, len(grid), "; ".join(notes))
    return EcobeeHome(
        grid=grid, adjustments=_adjustments(grid), timezone=TIMEZONE, source=file, notes=notes
    )
