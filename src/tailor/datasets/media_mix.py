"""PyMC-Marketing example media-mix data: weekly spend on two channels and weekly sales.

Synthetic data with known generating parameters (see the datasets README), for checking that a
media-mix model recovers them. ``mmm_example.csv`` (179 weeks, re-saved by a spreadsheet:
m/d/yyyy dates, CRLF) has columns ``date_week, y, x1, x2, event_1, event_2, dayofyear, t``;
``mmm_roas_data.csv`` (131 weeks, ISO ``date``) also carries each channel's true effects.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from tailor.datasets.base import Dataset, dataset_path

CITATION = (
    "PyMC Labs, PyMC-Marketing example data (data/mmm_example.csv, data/mmm_roas_data.csv), "
    "https://github.com/pymc-labs/pymc-marketing (Apache-2.0); synthetic."
)

FILES: tuple[str, ...] = ("mmm_example.csv", "mmm_roas_data.csv")
CHANNELS: tuple[str, ...] = ("x1", "x2")
CONTROLS: tuple[str, ...] = ("event_1", "event_2")
CURRENCY = "USD"
"""Nominal: the data is synthetic and unitless; a currency is needed for spend events."""


def _file(path: str | Path | None, file: str) -> Path:
    if path is None:
        return dataset_path("mmm-pymc-marketing", file)
    path = Path(path)
    return path / file if path.is_dir() else path


def _week(text: str) -> datetime:
    text = text.strip()
    if "/" in text:  # m/d/yyyy, as the spreadsheet re-saved mmm_example.csv
        month, day, year = (int(p) for p in text.split("/"))
        return datetime(year, month, day, tzinfo=UTC)
    return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)


def _number(text: str, where: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text!r} is not a finite number")
    return value


def load_media_mix(path: str | Path | None = None, *, file: str = "mmm_example.csv") -> Dataset:
    """Load a PyMC-Marketing media-mix file as weekly ``ad_spend`` and ``ad_result`` events.

    Parameters
    ----------
    path : the ``mmm-pymc-marketing`` folder or a CSV file; default the folder below
        :func:`~tailor.datasets.base.data_dir`.
    file : ``"mmm_example.csv"`` or ``"mmm_roas_data.csv"`` (used when ``path`` is a folder).

    Returns
    -------
    Dataset
        ``events``, per week (``occurred_at`` = the week's date, ``date_week`` or ``date``, at
        00:00 UTC): one ``ad_spend`` per channel column ``x1``, ``x2`` (``channel`` = the
        column name, ``cost`` = its value, zero weeks kept, ``currency`` USD, nominal),
        ``event_id = "mmm-{file stem}-{yyyy-mm-dd}-{channel}-spend"``; and one ``ad_result``
        with ``channel = "all"``, ``revenue`` = ``y``, ``currency`` USD,
        ``event_id = "mmm-{file stem}-{yyyy-mm-dd}-all-result"`` and, where the file has
        them, ``properties = {"event_1", "event_2"}`` (the control events). No subject,
        users or items.
    """
    source = _file(path, file)
    stem = source.stem
    columns: dict[str, list] = {
        k: [] for k in ("event_id", "event_type", "occurred_at", "channel", "cost", "revenue")
    }
    properties: list[str | None] = []
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        date_column = "date_week" if "date_week" in fields else "date"
        missing = [c for c in (date_column, "y", *CHANNELS) if c not in fields]
        if missing:
            raise ValueError(f"{source}: missing column(s) {', '.join(missing)}")
        controls = [c for c in CONTROLS if c in fields]
        weeks = 0
        for number, record in enumerate(reader, 2):
            where = f"{source.name}:{number}"
            week = _week(record[date_column])
            day = week.date().isoformat()
            for channel in CHANNELS:
                columns["event_id"].append(f"mmm-{stem}-{day}-{channel}-spend")
                columns["event_type"].append("ad_spend")
                columns["occurred_at"].append(week)
                columns["channel"].append(channel)
                columns["cost"].append(_number(record[channel], where))
                columns["revenue"].append(None)
                properties.append(None)
            columns["event_id"].append(f"mmm-{stem}-{day}-all-result")
            columns["event_type"].append("ad_result")
            columns["occurred_at"].append(week)
            columns["channel"].append("all")
            columns["cost"].append(None)
            columns["revenue"].append(_number(record["y"], where))
            properties.append(
                json.dumps({c: _number(record[c], where) for c in controls}, separators=(",", ":"))
                if controls
                else None
            )
            weeks += 1
    n = len(columns["event_id"])
    events = pa.table(
        {
            **columns,
            "occurred_at": pa.array(columns["occurred_at"], pa.timestamp("us", tz="UTC")),
            "cost": pa.array(columns["cost"], pa.float64()),
            "revenue": pa.array(columns["revenue"], pa.float64()),
            "properties": pa.array(properties, pa.string()),
            "line": pa.repeat(0, n).cast(pa.int64()),
            "currency": pa.repeat(CURRENCY, n),
        }
    )
    return Dataset(
        name="media-mix" if stem == "mmm_example" else f"media-mix-{stem}",
        events=events,
        citation=CITATION,
        notes=[
            f"{source.name}: {weeks} weeks x {len(CHANNELS)} channels of spend and one "
            "total result per week; synthetic data.",
            "currency USD is nominal: the data is synthetic and unitless"
            + (
                "; y is about 1000 times the documented generating formula."
                if stem == "mmm_example"
                else "."
            ),
            "Zero-spend weeks are kept as ad_spend events with cost 0 (they are data).",
        ],
    )
