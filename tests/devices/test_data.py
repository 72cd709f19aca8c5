"""Device events from the store: readings and adjustments frames for consenting homes only,
ids pseudonymized, setpoints in °C whatever unit they came in, and an error that says what to
send when there is nothing to learn from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailor.devices.data import (
    DeviceDataError,
    _arrival_times_only_when_streamed,
    read_device_events,
)
from tailor.events.importer import import_table
from tailor.workspace import Workspace
from tests.devices.test_service import (
    KEY,
    consent,
    devices_of,
    events,
    home,
    homes_workspace,
    simulated,
)

T0 = datetime(2026, 1, 10, 8, tzinfo=UTC)
READING_COLUMNS = [
    "home_id", "device_id", "metric", "ts", "value", "unit", "device_time", "received_at",
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    ws = homes_workspace(tmp_path_factory.mktemp("device-data"), limit_homes=2)
    yield ws
    ws.close()


def empty_workspace(folder: Path) -> Workspace:
    from tailor.config import Settings
    from tailor.workspace import open_workspace

    settings = Settings(
        store=str(folder / "tailor.duckdb"), secret_key=KEY, secret_key_file=folder / "secret.key"
    )
    return open_workspace(settings, create=True)


def adjustment(n: int, value: float, unit: str | None, previous: float | None = None) -> dict:
    event = {
        "event_id": f"adj-{n}",
        "event_type": "device_adjustment",
        "subject_id": "flat",
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
        "device_id": "flat-th",
        "metric": "setpoint",
        "value": value,
        "previous_value": previous,
    }
    if unit is not None:
        event["unit"] = unit
    return event


def reading(n: int, value: float = 20.0, *, metric: str = "indoor_temp") -> dict:
    return {
        "event_id": f"tel-{metric}-{n}",
        "event_type": "telemetry",
        "subject_id": "flat",
        "occurred_at": (T0 + timedelta(minutes=10 * n)).isoformat(),
        "device_id": "flat-th",
        "metric": metric,
        "value": value,
        "unit": "C",
    }


def test_readings_and_adjustments_of_the_simulated_homes(store: Workspace) -> None:
    readings, adjustments = read_device_events(store.store)
    sim = simulated()
    assert list(readings.columns) == READING_COLUMNS
    assert len(readings) == int(np.isfinite(sim.readings["value"]).sum())
    assert set(readings["home_id"]) == {home(store, "home-000"), home(store, "home-001")}
    assert set(readings["device_id"]) == devices_of(store, "home-000") | devices_of(
        store, "home-001"
    )
    assert set(readings["metric"]) == set(sim.readings["metric"])
    for column in ("ts", "device_time", "received_at"):
        assert str(readings[column].dtype.tz) == "UTC", column
    # Imported long after they happened: the import time is not an arrival time.
    assert readings["received_at"].isna().all()
    assert readings["device_time"].notna().any()
    assert list(adjustments.columns) == [
        "home_id", "device_id", "ts", "metric", "value", "previous_value",
    ]  # fmt: skip
    assert len(adjustments) == len(sim.adjustments)
    assert adjustments["ts"].is_monotonic_increasing
    expected = sim.adjustments.sort_values("ts")["value"].to_numpy()
    assert np.allclose(np.sort(adjustments["value"]), np.sort(expected))
    assert set(adjustments["device_id"]) <= devices_of(store, "home-000") | devices_of(
        store, "home-001"
    )


def test_homes_and_the_time_window_narrow_the_read(store: Workspace) -> None:
    one = {home(store, "home-001")}
    readings, adjustments = read_device_events(store.store, homes=one)
    assert set(readings["home_id"]) == one and set(adjustments["home_id"]) <= one
    start, end = datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 13, tzinfo=UTC)
    readings, adjustments = read_device_events(store.store, start=start, end=end)
    assert readings["ts"].min() >= pd.Timestamp(start) and readings["ts"].max() < pd.Timestamp(end)
    assert len(adjustments) < len(simulated().adjustments)
    with pytest.raises(DeviceDataError, match="no telemetry events for those homes"):
        read_device_events(store.store, homes={"nobody"})


def test_an_empty_log_says_what_to_send(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path)
    try:
        with pytest.raises(DeviceDataError) as raised:
            read_device_events(ws.store)
        message = str(raised.value)
        assert "telemetry" in message and "device_adjustment" in message
        assert "POST /v1/events" in message and "tailor import" in message
        # Adjustments alone: nothing says when anyone is home, or how the home heats.
        flat = [consent("flat", T0 - timedelta(days=1)), adjustment(1, 21.0, "C")]
        import_table(ws.store, events(flat), pseudonymizer=ws.pseudonymizer)
        with pytest.raises(DeviceDataError, match=r"no telemetry events.*send the devices'"):
            read_device_events(ws.store)
    finally:
        ws.close()


def test_a_home_without_personalization_consent_is_not_read(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path)
    try:
        flat = [reading(n) for n in range(6)] + [adjustment(1, 21.0, "C")]
        import_table(ws.store, events(flat), pseudonymizer=ws.pseudonymizer)
        # Personalization is opt-in: without a grant nothing is read.
        with pytest.raises(DeviceDataError, match="personalization consent"):
            read_device_events(ws.store)
        granted = consent("flat", T0 - timedelta(days=1))
        import_table(ws.store, events([granted]), pseudonymizer=ws.pseudonymizer)
        readings, adjustments = read_device_events(ws.store)
        assert len(readings) == 6 and len(adjustments) == 1
        withdrawn = consent("flat", T0 + timedelta(days=1), granted=False)
        import_table(ws.store, events([withdrawn]), pseudonymizer=ws.pseudonymizer)
        with pytest.raises(DeviceDataError):  # the earlier readings are no longer read either
            read_device_events(ws.store)
    finally:
        ws.close()


def test_adjustments_in_fahrenheit_and_kelvin_are_converted(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path)
    try:
        flat = [
            consent("flat", T0 - timedelta(days=1)),
            reading(0),
            adjustment(1, 68.0, "°F", previous=64.4),
            adjustment(2, 71.6, "F"),
            adjustment(3, 294.15, "K", previous=293.15),
            adjustment(4, 19.5, "C", previous=20.0),
            adjustment(5, 18.0, None),
        ]
        import_table(ws.store, events(flat), pseudonymizer=ws.pseudonymizer)
        _, adjustments = read_device_events(ws.store)
    finally:
        ws.close()
    assert adjustments["value"].tolist() == pytest.approx([20.0, 22.0, 21.0, 19.5, 18.0])
    previous = adjustments["previous_value"].to_numpy()
    assert previous[[0, 2, 3]] == pytest.approx([18.0, 20.0, 20.0])
    assert np.isnan(previous[[1, 4]]).all()
    assert set(adjustments["metric"]) == {"setpoint"}


def test_other_settings_than_the_setpoint_are_not_adjustments(tmp_path: Path) -> None:
    ws = empty_workspace(tmp_path)
    try:
        fan = {**adjustment(2, 3.0, None), "metric": "fan_speed"}
        flat = [consent("flat", T0 - timedelta(days=1)), reading(0), adjustment(1, 21.0, "C"), fan]
        import_table(ws.store, events(flat), pseudonymizer=ws.pseudonymizer)
        _, adjustments = read_device_events(ws.store)
    finally:
        ws.close()
    assert adjustments["value"].tolist() == [21.0]


def test_streamed_readings_keep_their_arrival_time() -> None:
    ts = pd.date_range(T0, periods=4, freq="10min", tz="UTC")
    frame = pd.DataFrame(
        {
            "device_id": ["live"] * 4 + ["backfilled"] * 4,
            "ts": ts.append(ts),
            "received_at": (ts + pd.Timedelta(seconds=3)).append(ts + pd.Timedelta(days=10)),
        }
    )
    kept = _arrival_times_only_when_streamed(frame)
    assert (kept["received_at"][:4] - kept["ts"][:4] == pd.Timedelta(seconds=3)).all()
    assert kept["received_at"][4:].isna().all()
    assert frame["received_at"].notna().all()  # the caller's frame is left alone
