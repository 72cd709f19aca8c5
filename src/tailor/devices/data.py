"""Device events from the store, as the frames the device models read.

Telemetry and manual adjustments are read for the ``personalization`` purpose: a household
that withdrew that consent (or was erased) is not learned from, and its home model is not
refitted. Ids stay pseudonymized: the models never see a raw id.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from tailor.store.base import EventReader

__all__ = ["PURPOSE", "DeviceDataError", "adjustments_from_table", "read_device_events"]

PURPOSE = "personalization"
_COLUMNS = (
    "event_type",
    "occurred_at",
    "received_at",
    "subject_id",
    "device_id",
    "metric",
    "value",
    "unit",
    "device_time",
    "previous_value",
)


class DeviceDataError(ValueError):
    """The event log cannot give a home model what it needs; the message says what to send."""


def read_device_events(
    store: EventReader,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    homes: set[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(readings, adjustments)`` of every consenting home, or of ``homes`` (pseudonyms).

    ``readings`` is a readings frame (telemetry); ``adjustments`` has ``home_id``,
    ``device_id``, ``ts``, ``metric``, ``value`` and ``previous_value`` in the event's unit,
    converted to °C where it was °F or K.
    """
    table = store.read_events(
        purpose=PURPOSE,
        event_types=["telemetry", "device_adjustment"],
        start=start,
        end=end,
        columns=list(_COLUMNS),
    )
    if table.num_rows == 0:
        raise DeviceDataError(
            "the event log holds no telemetry or device_adjustment events (with "
            "personalization consent); send them (POST /v1/events, MQTT or tailor import) "
            "before fitting"
        )
    frame = _frame(table)
    if homes is not None:
        frame = frame[frame["home_id"].isin(homes)]
    telemetry = _arrival_times_only_when_streamed(frame[frame["event_type"] == "telemetry"])
    readings = telemetry[
        ["home_id", "device_id", "metric", "ts", "value", "unit", "device_time", "received_at"]
    ].reset_index(drop=True)
    adjustments = adjustments_from_table(frame[frame["event_type"] == "device_adjustment"])
    if readings.empty:
        # Adjustments alone say what was wanted, not when anyone is home or how the home
        # heats: nothing can be fitted from them.
        raise DeviceDataError(
            f"no telemetry events{' for those homes' if homes is not None else ''} (with "
            "personalization consent), only adjustments; send the devices' readings "
            "(indoor_temp, motion, setpoint, heating) as telemetry events before fitting"
        )
    return readings, adjustments


def adjustments_from_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Setpoint adjustments in °C (only the ``setpoint`` setting drives the schedule)."""
    frame = frame[frame["metric"] == "setpoint"]
    value = frame["value"].to_numpy(dtype=float, copy=True)
    previous = frame["previous_value"].to_numpy(dtype=float, copy=True)
    unit = frame["unit"].fillna("C").astype(str).str.strip().str.lower().str.lstrip("°")
    fahrenheit = unit.isin(["f", "degf", "fahrenheit"]).to_numpy()
    kelvin = unit.isin(["k", "kelvin"]).to_numpy()
    for array in (value, previous):
        array[fahrenheit] = (array[fahrenheit] - 32.0) * 5.0 / 9.0
        array[kelvin] = array[kelvin] - 273.15
    return pd.DataFrame(
        {
            "home_id": frame["home_id"].to_numpy(),
            "device_id": frame["device_id"].to_numpy(),
            "ts": frame["ts"].to_numpy(),
            "metric": "setpoint",
            "value": np.round(value, 3),
            "previous_value": np.round(previous, 3),
        }
    ).sort_values("ts", kind="stable", ignore_index=True)


IMPORTED_AFTER = pd.Timedelta("1D")


def _arrival_times_only_when_streamed(telemetry: pd.DataFrame) -> pd.DataFrame:
    """Blank ``received_at`` for devices whose readings reached tailor in bulk, long after
    they happened (an import or a backfill): their receipt time is the import's, not an
    arrival time, and re-anchoring their clocks on it would move every reading to the
    import day. Their ``occurred_at`` is kept as sent."""
    if telemetry.empty:
        return telemetry
    delay = (telemetry["received_at"] - telemetry["ts"]).abs()
    typical = delay.groupby(telemetry["device_id"]).transform("median")
    imported = (typical > IMPORTED_AFTER).to_numpy()
    if not imported.any():
        return telemetry
    telemetry = telemetry.copy()
    telemetry.loc[imported, "received_at"] = pd.NaT
    return telemetry


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    frame = frame.rename(columns={"subject_id": "home_id", "occurred_at": "ts"})
    for column in ("ts", "received_at", "device_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["value"] = frame["value"].astype(float)
    frame["previous_value"] = frame["previous_value"].astype(float)
    return frame
