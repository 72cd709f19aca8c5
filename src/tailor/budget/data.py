"""The media-mix model's data: a regular series of periods with each channel's spend, the
target (conversions or revenue) and control regressors, from the event log or a CSV.

Every check names the column and row (or period) at fault, and nothing is fitted on data
that failed one: a gap in the calendar, a negative or missing spend, a missing target.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailor.store.base import EventReader

Frequency = Literal["D", "W"]
FREQUENCIES: dict[str, int] = {"D": 1, "W": 7}
MIN_PERIODS = 20
"""Fewer periods than this cannot separate a channel's carry-over from its saturation."""
MAX_PERIODS = 20_000
"""Over 50 years of days: more is a mistake (or not a series of periods), not a media mix."""
MAX_CHANNELS = 50
PURPOSE = "analytics"
TARGETS = ("conversions", "revenue")


class MediaDataError(ValueError):
    """The data cannot be fitted; the message names the column and row or period."""


@dataclass(frozen=True)
class MediaData:
    """``T`` consecutive periods (``dates``, each the first day of its period).

    spend : ``(T, C)`` spend per period and channel, in the data's currency, >= 0.
    target : ``(T,)`` conversions or revenue per period.
    controls : ``(T, K)`` other regressors (promotions, holidays, prices), any sign.
    """

    dates: np.ndarray
    spend: np.ndarray
    target: np.ndarray
    channels: tuple[str, ...]
    controls: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    control_names: tuple[str, ...] = ()
    target_name: str = "target"
    frequency: Frequency = "W"

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        object.__setattr__(self, "dates", dates)
        spend = np.asarray(self.spend, dtype=float)
        target = np.asarray(self.target, dtype=float)
        controls = np.asarray(self.controls, dtype=float)
        if controls.size == 0:
            controls = np.zeros((len(dates), 0))
        object.__setattr__(self, "spend", spend)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "controls", controls)
        if self.frequency not in FREQUENCIES:
            raise MediaDataError(f"frequency: {self.frequency!r}; use 'D' or 'W'")
        t = len(dates)
        if spend.shape != (t, len(self.channels)):
            raise MediaDataError(
                f"spend: expected {t} periods x {len(self.channels)} channels, got {spend.shape}"
            )
        if target.shape != (t,):
            raise MediaDataError(f"target: expected {t} values, got {target.shape}")
        if controls.shape != (t, len(self.control_names)):
            raise MediaDataError(
                f"controls: expected {t} periods x {len(self.control_names)}, got {controls.shape}"
            )
        if not self.channels:
            raise MediaDataError("channels: at least one spend channel is needed")
        if len(self.channels) > MAX_CHANNELS:
            raise MediaDataError(
                f"channels: {len(self.channels)}; at most {MAX_CHANNELS} (group small campaigns "
                "into channels)"
            )
        if t > MAX_PERIODS:
            raise MediaDataError(f"{t} periods; at most {MAX_PERIODS} (weeks or days)")
        for names, what in ((self.channels, "channel"), (self.control_names, "control")):
            if len(set(names)) != len(names):
                raise MediaDataError(f"{what} names repeat: {list(names)}")
        step = np.diff(dates).astype(int)
        bad = np.flatnonzero(step != FREQUENCIES[self.frequency])
        if bad.size:
            i = int(bad[0])
            raise MediaDataError(
                f"dates: {dates[i]} is followed by {dates[i + 1]}; periods must be consecutive "
                f"{'days' if self.frequency == 'D' else 'weeks'} with none missing (fill a "
                "period with no spend with zeros)"
            )
        _finite(spend, self.channels, dates, "spend")
        _finite(target[:, None], (self.target_name,), dates, "target")
        _finite(controls, self.control_names, dates, "control")
        negative = np.argwhere(spend < 0)
        if negative.size:
            row, col = negative[0]
            raise MediaDataError(
                f"spend: channel {self.channels[col]!r} is negative ({spend[row, col]}) "
                f"in the period of {dates[row]}"
            )

    @property
    def periods(self) -> int:
        return len(self.dates)

    def head(self, periods: int) -> MediaData:
        """The first ``periods`` periods (time-series cross-validation, back-tests)."""
        return self.slice(0, periods)

    def slice(self, start: int, stop: int) -> MediaData:
        return MediaData(
            dates=self.dates[start:stop],
            spend=self.spend[start:stop],
            target=self.target[start:stop],
            channels=self.channels,
            controls=self.controls[start:stop],
            control_names=self.control_names,
            target_name=self.target_name,
            frequency=self.frequency,
        )

    def check_fittable(self) -> None:
        if self.periods < MIN_PERIODS:
            raise MediaDataError(
                f"only {self.periods} periods; a media-mix model needs at least {MIN_PERIODS} "
                "(two years of weeks is usual)"
            )
        totals = self.spend.sum(axis=0)
        silent = [c for c, total in zip(self.channels, totals, strict=True) if total <= 0]
        if silent:
            raise MediaDataError(
                f"spend: channel(s) {', '.join(map(repr, silent))} never spent; drop them "
                "(nothing can be learned about a channel that never ran)"
            )


def _finite(values: np.ndarray, names: Sequence[str], dates: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        row, col = bad[0]
        raise MediaDataError(
            f"{what}: {names[col]!r} is missing or not a number in the period of {dates[row]}"
        )


def read_csv(
    path: str | Path,
    *,
    date_col: str,
    target_col: str,
    spend_cols: Sequence[str],
    control_cols: Sequence[str] = (),
    frequency: Frequency | None = None,
    target_scale: float = 1.0,
) -> MediaData:
    """One row per period. Dates are ISO (``2024-01-29``) or m/d/yyyy; the frequency is
    inferred from the first two rows unless given. ``target_scale`` divides the target
    (e.g. 1000 for data kept in thousands)."""
    path = Path(path)
    if not path.is_file():
        raise MediaDataError(f"{path}: no such file")
    wanted = [date_col, target_col, *spend_cols, *control_cols]
    if not spend_cols:
        raise MediaDataError("spend columns: name at least one (--spend-cols a,b,c)")
    repeated = sorted({c for c in wanted if wanted.count(c) > 1})
    if repeated:
        raise MediaDataError(f"columns named more than once: {', '.join(repeated)}")
    try:
        return _read_rows(
            path, wanted, date_col, target_col, spend_cols, control_cols, frequency, target_scale
        )
    except UnicodeDecodeError as exc:
        raise MediaDataError(f"{path.name}: not a UTF-8 text CSV ({exc.reason})") from None


@contextmanager
def csv_records(path: Path, wanted: Sequence[str]) -> Iterator[csv.DictReader]:
    """The rows of a UTF-8 CSV as dicts, once its header is checked to hold each of
    ``wanted`` exactly once (an error names the file and the columns at fault); a row the
    csv module cannot read is a :class:`MediaDataError` naming its line."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in wanted if c not in header]
        if missing:
            raise MediaDataError(
                f"{path.name}: no column(s) {', '.join(map(repr, missing))}; the file has "
                + (", ".join(header[:20]) if header else "no header line")
            )
        doubled = [c for c in wanted if header.count(c) > 1]
        if doubled:  # csv.DictReader would silently keep the last of them
            raise MediaDataError(
                f"{path.name}: column(s) {', '.join(map(repr, doubled))} appear more than once "
                "in the header; rename or drop the copies"
            )
        try:
            yield reader
        except csv.Error as exc:  # a field past the csv module's limit, a broken quote
            raise MediaDataError(
                f"{path.name} row {reader.line_num + 1}: not a readable CSV row ({exc})"
            ) from None


def _read_rows(
    path: Path,
    wanted: list[str],
    date_col: str,
    target_col: str,
    spend_cols: Sequence[str],
    control_cols: Sequence[str],
    frequency: Frequency | None,
    target_scale: float,
) -> MediaData:
    with csv_records(path, wanted) as reader:
        dates, rows = [], []
        for line, record in enumerate(reader, 2):
            if line - 1 > MAX_PERIODS:  # stop reading: the rest of a huge file is not needed
                raise MediaDataError(
                    f"{path.name}: more than {MAX_PERIODS} rows; one row per period is expected"
                )
            dates.append(_parse_date(record[date_col], f"{path.name} row {line}, {date_col}"))
            rows.append(
                [
                    parse_number(record[c], f"{path.name} row {line}, {c}")
                    for c in (target_col, *spend_cols, *control_cols)
                ]
            )
    if len(rows) < 2:
        raise MediaDataError(f"{path.name}: {len(rows)} data rows; a series needs many periods")
    values = np.asarray(rows, dtype=float)
    day = np.asarray(dates, dtype="datetime64[D]")
    if frequency is None:
        frequency = "D" if int((day[1] - day[0]).astype(int)) == 1 else "W"
    c = len(spend_cols)
    return MediaData(
        dates=day,
        target=values[:, 0] / target_scale,
        spend=values[:, 1 : 1 + c],
        controls=values[:, 1 + c :],
        channels=tuple(spend_cols),
        control_names=tuple(control_cols),
        target_name=target_col,
        frequency=frequency,
    )


def _parse_date(text: str, where: str) -> date:
    text = (text or "").strip()
    try:
        if "/" in text:
            month, day, year = (int(p) for p in text.split("/"))
            return date(year, month, day)
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise MediaDataError(f"{where}: {text!r} is not a date (2024-01-29 or 1/29/2024)") from None


def parse_number(text: str, where: str) -> float:
    """A CSV cell as a finite number; the error names ``where`` (file, row and column)."""
    try:
        value = float((text or "").strip())
    except ValueError:
        raise MediaDataError(f"{where}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise MediaDataError(f"{where}: {text!r} is not a finite number")
    return value


def from_events(
    store: EventReader,
    *,
    target: str = "conversions",
    frequency: Frequency = "W",
    control_keys: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
) -> MediaData:
    """Periods of ``ad_spend`` (cost per channel) and ``ad_result`` (``target``: the sum of
    ``conversions`` or ``revenue`` over every result event of the period, whatever its
    channel, since a shop's total is what the channels drive). Controls are numeric keys of
    the result events' ``properties`` (summed per period, 0 where absent). Weeks start on
    the weekday of the first event; periods with no event of a channel count as no spend."""
    if target not in TARGETS:
        raise MediaDataError(f"target: {target!r}; use one of {', '.join(TARGETS)}")
    if frequency not in FREQUENCIES:
        raise MediaDataError(f"frequency: {frequency!r}; use 'D' or 'W'")
    table = store.read_events(
        purpose=PURPOSE,
        event_types=["ad_spend", "ad_result"],
        start=start,
        end=end,
        columns=["event_type", "occurred_at", "channel", "cost", target, "properties"],
    )
    spends = table.filter(pc.equal(table["event_type"], "ad_spend"))
    results = table.filter(pc.equal(table["event_type"], "ad_result"))
    if spends.num_rows == 0 or results.num_rows == 0:
        raise MediaDataError(
            f"the event log holds {spends.num_rows} ad_spend and {results.num_rows} ad_result "
            "events; send both (POST /v1/events or tailor import) before fitting"
        )
    first = min(_days(spends).min(), _days(results).min())
    step = FREQUENCIES[frequency]
    last = max(_days(spends).max(), _days(results).max())
    periods = int((last - first) // step) + 1
    channels = tuple(sorted(set(spends["channel"].to_pylist())))
    spend = np.zeros((periods, len(channels)))
    index = {c: i for i, c in enumerate(channels)}
    period = (_days(spends) - first) // step
    channel = np.array([index[c] for c in spends["channel"].to_pylist()])
    np.add.at(spend, (period, channel), spends["cost"].to_numpy(zero_copy_only=False))
    value = np.nan_to_num(results[target].to_numpy(zero_copy_only=False).astype(float))
    result_period = (_days(results) - first) // step
    outcome = np.zeros(periods)
    np.add.at(outcome, result_period, value)
    seen = np.zeros(periods, bool)
    seen[result_period] = True
    if not seen.all():
        missing = np.datetime64(int(first), "D") + int(np.flatnonzero(~seen)[0]) * step
        raise MediaDataError(
            f"ad_result: no result event in the period of {missing}; every period needs its "
            "result (send 0 conversions for a period without any)"
        )
    controls = np.zeros((periods, len(control_keys)))
    if control_keys:
        for row, props in zip(result_period, results["properties"].to_pylist(), strict=True):
            data = json.loads(props) if props else {}
            for k, key in enumerate(control_keys):
                value_k = data.get(key, 0)
                if not isinstance(value_k, int | float) or isinstance(value_k, bool):
                    raise MediaDataError(f"ad_result properties.{key}: {value_k!r} is not a number")
                controls[row, k] += value_k
    dates = np.datetime64(int(first), "D") + np.arange(periods) * step
    return MediaData(
        dates=dates,
        spend=spend,
        target=outcome,
        channels=channels,
        controls=controls,
        control_names=tuple(control_keys),
        target_name=target,
        frequency=frequency,
    )


def _days(table: pa.Table) -> np.ndarray:
    micros = table["occurred_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False) // 86_400_000_000
