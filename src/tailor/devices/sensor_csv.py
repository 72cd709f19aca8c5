"""Read any labelled sensor CSV: timestamps, numeric sensor columns and a 0/1 label.

The reader behind the occupancy benchmark's ``--occupancy-csv PATH --time-cols Date,Time
--label-col NAME`` mode. It takes what loggers and spreadsheets write: a BOM, CRLF line ends,
metadata lines above the header, a date split over two columns, a row id the header does not
name, ``;`` or tab separators, decimal commas, blank and text columns, duplicated rows. What
it cannot read it refuses with a :class:`SensorCsvError` that names the file, the column and
the line, and says what to do.

Examples
--------
>>> data = read_labelled_sensor_csv(  # doctest: +SKIP
...     "report_thermostat.csv", time_cols="Date,Time", label_col="Thermostat Motion",
...     timezone="America/New_York")
>>> learn, test = data.split_by_time(0.7)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zoneinfo
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["LabelledSensors", "SensorCsvError", "read_labelled_sensor_csv"]

logger = logging.getLogger(__name__)

HEADER_SEARCH_LINES = 100
"""How many lines may precede the header (metadata, titles, blank lines)."""
_DELIMITERS = (",", ";", "\t")
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "#n/a"})
_TRUE = frozenset({"true", "yes", "y", "occupied", "home", "present", "on"})
_FALSE = frozenset({"false", "no", "n", "unoccupied", "vacant", "empty", "away", "absent", "off"})
_DATE_FAMILIES = {
    # name: (pattern of the date part, how an error names it)
    "iso": (re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[ T]|$)"), "ISO (2015-02-04 17:51:00)"),
    "mdy4": (re.compile(r"^\d{1,2}/\d{1,2}/\d{4}(?:\s|$)"), "m/d/yyyy (2/4/2015 17:51)"),
    "mdy2": (re.compile(r"^\d{1,2}/\d{1,2}/\d{2}(?:\s|$)"), "m/d/yy (2/4/15 17:51)"),
}
_DATE_PART = {"mdy4": "%m/%d/%Y", "mdy2": "%m/%d/%y"}
_TIME_PARTS = (" %H:%M:%S", " %H:%M", "", " %H:%M:%S.%f", " %I:%M:%S %p", " %I:%M %p")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_BINARY_MAGIC = {
    b"PK\x03\x04": "a zip archive (an .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an old Excel/OLE file (.xls?)",
    b"PAR1": "a Parquet file",
    b"\x1f\x8b": "a gzip archive",
}


class SensorCsvError(ValueError):
    """A sensor CSV that cannot be read; the message says where and what to do."""


@dataclass
class LabelledSensors:
    """Sensor readings with a 0/1 label, sorted by time, one row per timestamp.

    Attributes
    ----------
    features : float DataFrame indexed by UTC timestamps (``ts``), one column per numeric
        sensor column of the file (non-numeric cells are NaN).
    labels : int64 Series (0/1) on the same index, named after the label column.
    label_col, time_cols, timezone : as passed to :func:`read_labelled_sensor_csv`.
    path : the file read.
    header_line : 1-based line of the header (after any metadata lines).
    row_ids : True when each row began with an id the header does not name (dropped).
    dropped_duplicates : rows dropped because an earlier row had the same timestamp.
    dropped_unlabelled : rows dropped because their label cell was blank.
    blank_columns : columns without a single value (dropped).
    text_columns : mostly non-numeric columns (not features).
    non_numeric : per feature column, how many cells were not numbers (now NaN).
    """

    features: pd.DataFrame
    labels: pd.Series
    label_col: str
    time_cols: tuple[str, ...]
    timezone: str = "UTC"
    path: Path | None = None
    header_line: int = 1
    row_ids: bool = False
    dropped_duplicates: int = 0
    dropped_unlabelled: int = 0
    blank_columns: list[str] = field(default_factory=list)
    text_columns: list[str] = field(default_factory=list)
    non_numeric: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def frame(self) -> pd.DataFrame:
        """Features and the label in one DataFrame."""
        return self.features.assign(**{self.label_col: self.labels})

    def summary(self) -> dict[str, object]:
        """What was read and what was dropped, as plain JSON-ready values."""
        return {
            "path": str(self.path) if self.path else None,
            "rows": len(self),
            "start": self.features.index.min().isoformat() if len(self) else None,
            "end": self.features.index.max().isoformat() if len(self) else None,
            "features": self.feature_names,
            "label": self.label_col,
            "positive_rate": float(self.labels.mean()) if len(self) else None,
            "header_line": self.header_line,
            "dropped_duplicates": self.dropped_duplicates,
            "dropped_unlabelled": self.dropped_unlabelled,
            "blank_columns": list(self.blank_columns),
            "text_columns": list(self.text_columns),
            "non_numeric": dict(self.non_numeric),
        }

    def split_by_time(self, frac: float = 0.7) -> tuple[LabelledSensors, LabelledSensors]:
        """Split at ``frac`` of the time span: earlier rows to learn, the rest to test.

        The boundary is ``start + frac * (end - start)``; a row exactly on it goes to test.

        Raises
        ------
        ValueError
            If ``frac`` is not strictly between 0 and 1, or a side would be empty.
        """
        if isinstance(frac, bool) or not isinstance(frac, (int, float, np.floating)):
            raise TypeError(f"frac must be a float, got {type(frac).__name__}")
        if not 0.0 < float(frac) < 1.0 or not np.isfinite(frac):
            raise ValueError(f"frac must lie strictly between 0 and 1, got {frac}")
        index = self.features.index
        if len(index) < 2 or index.min() == index.max():
            raise ValueError(f"{self.path}: {len(index)} distinct time(s), too few to split")
        boundary = index.min() + (index.max() - index.min()) * float(frac)
        learn = index < boundary
        sides = tuple(
            replace(self, features=self.features.loc[keep], labels=self.labels.loc[keep])
            for keep in (learn, ~learn)
        )
        if not len(sides[0]) or not len(sides[1]):
            raise ValueError(f"frac={frac} leaves one side empty; choose a value nearer 0.5")
        return sides[0], sides[1]


def _columns_arg(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names]
    if not names or any(not n for n in names):
        raise SensorCsvError(f"{what} must name at least one column, got {value!r}")
    return tuple(names)


def _decode(path: Path, data: bytes) -> str:
    if not data.strip():
        raise SensorCsvError(f"{path} is empty; export the sensor data again")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    for magic, kind in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise SensorCsvError(f"{path} is {kind}, not a CSV; save it as CSV (UTF-8) first")
    if b"\x00" in data[:8192]:
        raise SensorCsvError(f"{path} looks binary (NUL bytes); pass a text CSV file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # spreadsheets on Windows still write cp1252 (a "°F" in a header is enough)
        logger.warning("%s is not UTF-8; reading it as cp1252", path)
        return data.decode("cp1252", errors="replace")


def _split(line: str, delimiter: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([line], delimiter=delimiter), [])]


def _match(fields: list[str], wanted: tuple[str, ...], *, fold: bool) -> dict[str, str] | None:
    """Map each wanted name to the header field it matches, or None if one is missing."""
    lookup = {(f.casefold() if fold else f): f for f in fields}
    found = {w: lookup.get(w.casefold() if fold else w) for w in wanted}
    return None if any(v is None for v in found.values()) else found  # type: ignore[return-value]


def _find_header(
    path: Path, lines: list[str], time_cols: tuple[str, ...], skip_rows: int | None
) -> tuple[int, str, dict[str, str]]:
    """The header's line index, the delimiter and the actual names of the time columns."""
    if skip_rows is not None:
        if isinstance(skip_rows, bool) or not isinstance(skip_rows, int) or skip_rows < 0:
            raise SensorCsvError(f"skip_rows must be an int >= 0, got {skip_rows!r}")
        if skip_rows >= len(lines):
            raise SensorCsvError(f"{path} has {len(lines)} lines; skip_rows={skip_rows} skips all")
        candidates = [skip_rows]
    else:
        candidates = list(range(min(len(lines), HEADER_SEARCH_LINES)))
    # exact names first, so a metadata line saying "date" does not beat a "Date" header
    for fold in (False, True):
        for i in candidates:
            # of the separators that find every time column, the one giving most columns
            best: tuple[int, str, dict[str, str]] | None = None
            for delimiter in _DELIMITERS:
                fields = _split(lines[i], delimiter)
                found = _match(fields, time_cols, fold=fold)
                if found and (best is None or len(fields) > best[0]):
                    best = (len(fields), delimiter, found)
            if best is not None:
                return i, best[1], best[2]
    shown_i = next((i for i in candidates if lines[i].strip()), candidates[0])
    shown = max((_split(lines[shown_i], d) for d in _DELIMITERS), key=len)
    where = (
        f"line {shown_i + 1} (after skip_rows={skip_rows})"
        if skip_rows is not None
        else f"no line among the first {len(candidates)} has them; line {shown_i + 1}"
    )
    raise SensorCsvError(
        f"{path}: time column(s) {list(time_cols)} not found: {where} reads {shown}. "
        f"Pass --time-cols with the header's date/time column names (e.g. --time-cols "
        f"Date,Time){'' if skip_rows is not None else ' or check the delimiter'}."
    )


def _header_names(path: Path, fields: list[str], line_no: int) -> list[str]:
    names = [f or f"column_{i + 1}" for i, f in enumerate(fields)]
    twice = sorted(n for n, count in Counter(names).items() if count > 1)
    if twice:
        raise SensorCsvError(
            f"{path}: line {line_no}: column name(s) {twice} appear more than once in the "
            f"header; rename them so each column has its own name"
        )
    return names


def _rows(
    path: Path, lines: list[str], header_i: int, delimiter: str, width: int
) -> tuple[list[int], list[list[str]], bool]:
    """The data rows, padded to ``width``, with their line numbers; and whether each row
    carried an extra leading id field that the header does not name."""
    body = "".join(lines[header_i + 1 :])
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    numbers: list[int] = []
    rows: list[list[str]] = []
    row_ids: bool | None = None
    for fields in reader:
        line_no = header_i + 1 + reader.line_num
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        if row_ids is None:
            # the UCI files' quirk: 7 names in the header, 8 fields per row
            row_ids = len(fields) == width + 1 and fields[-1] != ""
        if row_ids and len(fields) == width + 1:
            fields = fields[1:]
        if len(fields) > width:
            if any(fields[width:]):
                raise SensorCsvError(
                    f"{path}: line {line_no} has {len(fields)} fields but the header "
                    f"(line {header_i + 1}) names {width}; fix the row or the header"
                )
            fields = fields[:width]
        elif len(fields) < width:
            fields = fields + [""] * (width - len(fields))
        numbers.append(line_no)
        rows.append(fields)
    if not rows:
        raise SensorCsvError(
            f"{path}: no data rows below the header on line {header_i + 1}; export the data "
            f"with its rows"
        )
    return numbers, rows, bool(row_ids)


def _parse_times(path: Path, text: pd.Series, lines: np.ndarray, columns: str) -> pd.Series:
    """Naive or UTC timestamps from ``text`` (one date format for the whole column)."""
    families = pd.Series(pd.NA, index=text.index, dtype="object")
    for name, (pattern, _) in _DATE_FAMILIES.items():
        hit = families.isna() & text.str.match(pattern)
        families[hit] = name
    blank = text.eq("")
    unknown = families.isna() & ~blank
    if blank.any() or unknown.any():
        pos = int(np.flatnonzero((blank | unknown).to_numpy())[0])
        value = text.iloc[pos]
        raise SensorCsvError(
            f"{path}: line {lines[pos]}, column(s) {columns}: "
            + ("the time is blank" if value == "" else f"unreadable date {value!r}")
            + "; expected "
            + ", ".join(label for _, label in _DATE_FAMILIES.values())
            + ". Fix the cell, or pass --time-cols naming the date and time columns."
        )
    kinds = families.unique().tolist()
    if len(kinds) > 1:
        first = {k: int(np.flatnonzero((families == k).to_numpy())[0]) for k in kinds}
        (a, pa_), (b, pb) = sorted(first.items(), key=lambda kv: kv[1])[:2]
        raise SensorCsvError(
            f"{path}: mixed date formats in {columns}: line {lines[pa_]} {text.iloc[pa_]!r} is "
            f"{_DATE_FAMILIES[a][1]} but line {lines[pb]} {text.iloc[pb]!r} is "
            f"{_DATE_FAMILIES[b][1]}; re-save the column in one format"
        )
    family = kinds[0]
    if family == "iso":
        with_offset = text.str.contains(_OFFSET)
        if with_offset.any() and not with_offset.all():
            pos = int(np.flatnonzero((~with_offset).to_numpy())[0])
            raise SensorCsvError(
                f"{path}: line {lines[pos]}: {text.iloc[pos]!r} has no UTC offset while "
                f"other times in {columns} do; give every time an offset or none"
            )
        parsed = pd.to_datetime(
            text, format="ISO8601", errors="coerce", utc=bool(with_offset.all())
        )
    else:
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        for time_part in _TIME_PARTS:
            todo = parsed.isna()
            if not todo.any():
                break
            parsed[todo] = pd.to_datetime(
                text[todo], format=_DATE_PART[family] + time_part, errors="coerce"
            )
    bad = parsed.isna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        value = text.iloc[pos]
        hint = ""
        if family != "iso" and int(value.split("/")[0]) > 12:
            hint = " (a month above 12: the dates look day-first, which is not supported)"
        raise SensorCsvError(
            f"{path}: line {lines[pos]}, column(s) {columns}: unreadable date {value!r} "
            f"for format {_DATE_FAMILIES[family][1]}{hint}; fix the cell or re-save the "
            f"column as ISO dates"
        )
    return parsed


def _localize(parsed: pd.Series, timezone: str) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(parsed)
    if index.tz is None:
        try:
            index = index.tz_localize(timezone, ambiguous="infer", nonexistent="shift_forward")
        except (ValueError, TypeError):
            # "infer" needs the repeated autumn hour in file order; else read it as standard
            index = index.tz_localize(
                timezone, ambiguous=np.zeros(len(index), dtype=bool), nonexistent="shift_forward"
            )
    return index.tz_convert("UTC").as_unit("ns").rename("ts")


def _labels(path: Path, values: pd.Series, lines: np.ndarray, label: str) -> pd.Series:
    """0/1 as float, NaN where the cell is blank."""
    folded = values.str.casefold()
    out = pd.Series(np.nan, index=values.index)
    numbers = pd.to_numeric(values, errors="coerce")
    number = numbers.notna() & np.isfinite(numbers.fillna(0.0))
    out[number] = (numbers[number] > 0).astype(float)
    out[folded.isin(_TRUE)] = 1.0
    out[folded.isin(_FALSE)] = 0.0
    missing = folded.isin(_MISSING)
    bad = out.isna() & ~missing
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise SensorCsvError(
            f"{path}: line {lines[pos]}, column {label!r}: label {values.iloc[pos]!r} is "
            f"neither a number (> 0 means occupied) nor yes/no, true/false, "
            f"occupied/unoccupied or home/away; fix the cell or pick another --label-col"
        )
    return out


def _numeric_columns(
    frame: pd.DataFrame, decimal_comma: bool
) -> tuple[pd.DataFrame, list[str], list[str], dict[str, int]]:
    features: dict[str, pd.Series] = {}
    blank: list[str] = []
    text: list[str] = []
    non_numeric: dict[str, int] = {}
    for name in frame.columns:
        cells = frame[name]
        present = ~cells.str.casefold().isin(_MISSING)
        if not present.any():
            blank.append(name)
            continue
        if decimal_comma:
            cells = cells.where(~cells.str.match(_DECIMAL_COMMA), cells.str.replace(",", "."))
        numbers = pd.to_numeric(cells.where(present), errors="coerce").astype(float)
        numbers = numbers.where(np.isfinite(numbers))
        parsed = int(numbers.notna().sum())
        # a column is a sensor when most of its cells are numbers; else it is a text field
        if parsed * 2 < int(present.sum()):
            text.append(name)
            continue
        if bad := int(present.sum()) - parsed:
            non_numeric[name] = bad
        features[name] = numbers
    return pd.DataFrame(features, index=frame.index), blank, text, non_numeric


def read_labelled_sensor_csv(
    path: str | Path,
    *,
    time_cols: str | Sequence[str] = ("date",),
    label_col: str = "Occupancy",
    timezone: str = "UTC",
    skip_rows: int | None = None,
) -> LabelledSensors:
    """Read a CSV of timestamped sensor readings with a 0/1 label column.

    Parameters
    ----------
    path : the CSV file (UTF-8 with or without BOM, UTF-16, or cp1252; ``,`` ``;`` or tab).
    time_cols : the column(s) holding the time, joined with a space before parsing (e.g.
        ``("Date", "Time")`` or ``"Date,Time"``). Dates may be ISO (``2015-02-04 17:51``,
        with or without seconds, ``T`` or offset), m/d/yy or m/d/yyyy (with H:MM[:SS] or
        AM/PM times); one format per file.
    label_col : the label column: numbers (> 0 is 1) or yes/no, true/false,
        occupied/unoccupied, home/away (any case); blank cells drop the row.
    timezone : the IANA zone of naive times (the logger's wall clock); times with an
        offset are taken as written.
    skip_rows : lines before the header; by default the header is the first of the first
        100 lines that holds every time column (exact names first, then ignoring case).

    Returns
    -------
    LabelledSensors
        Sorted by time; a repeated timestamp keeps its first row. Feature columns are the
        other mostly numeric columns; blank columns are dropped and text columns ignored
        (both listed); non-numeric cells of a feature become NaN (counted per column).

    Raises
    ------
    SensorCsvError
        A missing, empty or binary file; time or label columns not in the header (the
        message lists it); an unreadable or mixed date format; a label that is not 0/1-like;
        no numeric feature column. Each names the file, the column and the line.
    """
    path = Path(path)
    times = _columns_arg(time_cols, "time_cols")
    if not isinstance(label_col, str) or not label_col.strip():
        raise SensorCsvError(f"label_col must name a column, got {label_col!r}")
    label_col = label_col.strip()
    if label_col in times:
        raise SensorCsvError(f"label_col {label_col!r} is also a time column; pick another")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise SensorCsvError(
            f"unknown timezone {timezone!r}; use an IANA name such as 'Europe/Brussels'"
        ) from exc
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SensorCsvError(f"{path} not found; check the --occupancy-csv path") from exc
    except IsADirectoryError as exc:
        raise SensorCsvError(f"{path} is a folder; pass the CSV file inside it") from exc
    lines = _decode(path, data).splitlines(keepends=True)

    header_i, delimiter, time_names = _find_header(path, lines, times, skip_rows)
    names = _header_names(path, _split(lines[header_i], delimiter), header_i + 1)
    label_match = _match(names, (label_col,), fold=False) or _match(names, (label_col,), fold=True)
    if label_match is None:
        raise SensorCsvError(
            f"{path}: label column {label_col!r} not in the header (line {header_i + 1}): "
            f"{names}; pass --label-col with one of them"
        )
    label = label_match[label_col]
    numbers, rows, row_ids = _rows(path, lines, header_i, delimiter, len(names))
    raw = pd.DataFrame(rows, columns=names, dtype=object).astype(str)
    line_no = np.asarray(numbers)

    for column in time_names.values():
        # a blank Time beside a Date would otherwise parse silently as midnight
        if (blank := raw[column].str.casefold().isin(_MISSING)).any():
            pos = int(np.flatnonzero(blank.to_numpy())[0])
            raise SensorCsvError(
                f"{path}: line {line_no[pos]}, column {column!r}: the time is blank; fill it "
                f"or delete the row"
            )
    time_parts = [raw[c] for c in time_names.values()]
    time_text = time_parts[0]
    for part in time_parts[1:]:
        time_text = time_text + " " + part
    time_text = time_text.str.strip()
    columns = ", ".join(repr(c) for c in time_names.values())
    parsed = _parse_times(path, time_text, line_no, columns)
    labels = _labels(path, raw[label], line_no, label)
    others = raw.drop(columns=[*time_names.values(), label])
    features, blank, text, non_numeric = _numeric_columns(others, decimal_comma=delimiter == ";")
    if features.shape[1] == 0:
        raise SensorCsvError(
            f"{path}: no numeric sensor column besides the time {list(time_names.values())} "
            f"and label {label!r} (text columns: {text}, blank columns: {blank}); the "
            f"file needs at least one numeric reading per row"
        )
    for name, count in non_numeric.items():
        logger.warning("%s: column %r: %d non-numeric cells read as NaN", path, name, count)

    index = _localize(parsed, timezone)
    features.index = index
    labels.index = index
    known = labels.notna().to_numpy()
    unlabelled = int((~known).sum())
    if not known.any():
        raise SensorCsvError(
            f"{path}: column {label!r} is blank on every row; pick the label with --label-col"
        )
    order = np.argsort(index[known].asi8, kind="stable")
    features = features.loc[known].iloc[order]
    labels = labels.loc[known].iloc[order]
    duplicated = features.index.duplicated(keep="first")
    if duplicated.any():
        logger.warning("%s: %d rows repeat a timestamp; kept the first", path, duplicated.sum())
    features = features.loc[~duplicated]
    labels = labels.loc[~duplicated].astype(np.int64).rename(label)
    return LabelledSensors(
        features=features,
        labels=labels,
        label_col=label,
        time_cols=tuple(time_names.values()),
        timezone=timezone,
        path=path,
        header_line=header_i + 1,
        row_ids=row_ids,
        dropped_duplicates=int(duplicated.sum()),
        dropped_unlabelled=unlabelled,
        blank_columns=blank,
        text_columns=text,
        non_numeric=non_numeric,
    )
