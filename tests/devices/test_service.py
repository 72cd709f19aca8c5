"""The devices service: fit every home from the store into one folder (atomically), then the
schedule with its reasons inside the household's bounds and modes, insights, settings and
erasure, on two simulated homes (a fit takes about a second)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pytest

from tailor.config import Settings
from tailor.datasets.simulate.homes import SimulatedHomes, simulate_homes
from tailor.devices import service
from tailor.devices.data import DeviceDataError
from tailor.devices.model import HomeModel, HomeSettings
from tailor.devices.schedule import default_program
from tailor.devices.service import (
    DevicesService,
    fit_homes,
    load_settings,
    may_personalize,
    save_settings,
    settings_with,
)
from tailor.events.erasure import erase
from tailor.events.importer import import_table, raw_event_table
from tailor.events.schema import parse_event, to_flat_rows
from tailor.workspace import Workspace, open_workspace

KEY = "ab" * 32
SIM = {"n_homes": 2, "weeks": 2, "seed": 3}
START = datetime(2026, 1, 19, tzinfo=UTC)
"""A Monday midnight just after the simulated fortnight: what the schedules plan from."""


@cache
def simulated() -> SimulatedHomes:
    return simulate_homes(**SIM)


def events(rows: list[dict]) -> pa.Table:
    """Raw event dicts as an import-ready table."""
    return raw_event_table([flat for data in rows for flat in to_flat_rows(parse_event(data))])


def homes_workspace(folder: Path, *, limit_homes: int | None = None) -> Workspace:
    """A store holding the simulated homes' telemetry, adjustments and consents."""
    settings = Settings(
        store=str(folder / "tailor.duckdb"), secret_key=KEY, secret_key_file=folder / "secret.key"
    )
    ws = open_workspace(settings, create=True)
    table = simulated().to_events(limit_homes)
    import_table(ws.store, table, pseudonymizer=ws.pseudonymizer, label="homes")
    return ws


def consent(raw_home: str, when: datetime, *, granted: bool = True) -> dict:
    """A household's personalization consent, granted or withdrawn."""
    return {
        "event_id": f"consent-{raw_home}-{when.isoformat()}",
        "event_type": "consent",
        "subject_id": raw_home,
        "occurred_at": when.isoformat(),
        "purpose": "personalization",
        "granted": granted,
    }


def home(ws: Workspace, raw: str = "home-000") -> str:
    return ws.pseudonymizer.pseudonymize("subject", raw)


def devices_of(ws: Workspace, raw: str = "home-000") -> set[str]:
    truth = simulated().truth[raw]
    return {
        ws.pseudonymizer.pseudonymize("device", truth.thermostat_id),
        ws.pseudonymizer.pseudonymize("device", truth.motion_id),
    }


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Iterator[tuple[Workspace, Path, dict]]:
    folder = tmp_path_factory.mktemp("devices")
    ws = homes_workspace(folder)
    summary = fit_homes(ws.store, folder / "model")
    yield ws, folder / "model", summary
    ws.close()


@pytest.fixture
def devices(fitted) -> DevicesService:
    """A service of its own (forget changes it)."""
    return DevicesService(fitted[1])


# -- fit --------------------------------------------------------------------------------------


def test_fit_maps_every_device_to_its_home(fitted) -> None:
    ws, folder, summary = fitted
    assert summary["homes"] == 2 and summary["devices"] == 4 and summary["skipped"] == {}
    assert summary["quality"]["rows_in"] > 10_000
    index = json.loads((folder / "index.json").read_text())
    expected = {d: home(ws, h) for h in ("home-000", "home-001") for d in devices_of(ws, h)}
    assert index["devices"] == expected
    assert set(index["homes"]) == {home(ws, "home-000"), home(ws, "home-001")}
    for name in index["homes"].values():
        assert (folder / "homes" / name / "home.json").is_file()
        assert (folder / "homes" / name / "decision.npz").is_file()
    # The models see pseudonyms only: no raw id lands in the folder.
    text = "".join(p.read_text() for p in folder.rglob("*.json"))
    assert "home-000" not in text and "thermostat" not in text
    service_ = DevicesService(folder)
    assert service_.homes == sorted(set(expected.values()))
    assert service_.home_of(next(iter(devices_of(ws, "home-001")))) == home(ws, "home-001")
    assert service_.home_of("no-such-device") is None


def test_a_home_with_too_little_data_is_skipped_with_the_reason(tmp_path: Path) -> None:
    ws = homes_workspace(tmp_path, limit_homes=1)
    t0 = datetime(2026, 1, 10, tzinfo=UTC)
    few = [
        {"event_id": "tiny-1", "event_type": "telemetry", "subject_id": "tiny",
         "occurred_at": t0.isoformat(), "device_id": "tiny-th", "metric": "indoor_temp",
         "value": 20.0, "unit": "C"},
        {"event_id": "lone-1", "event_type": "device_adjustment", "subject_id": "lone",
         "occurred_at": t0.isoformat(), "device_id": "lone-th", "metric": "setpoint",
         "value": 21.0, "unit": "C"},
    ]  # fmt: skip
    few += [consent(h, t0 - timedelta(days=1)) for h in ("tiny", "lone")]
    import_table(ws.store, events(few), pseudonymizer=ws.pseudonymizer)
    calls: list[tuple[int, int]] = []
    try:
        summary = fit_homes(ws.store, tmp_path / "m", progress=lambda d, t: calls.append((d, t)))
    finally:
        ws.close()
    assert summary["homes"] == 1
    assert set(summary["skipped"]) == {home(ws, "tiny"), home(ws, "lone")}
    assert "at least a day" in summary["skipped"][home(ws, "tiny")]
    assert "no telemetry" in summary["skipped"][home(ws, "lone")]
    assert calls == [(1, 2), (2, 2)]  # skipped homes advance the bar too
    index = json.loads((tmp_path / "m" / "index.json").read_text())
    assert list(index["homes"]) == [home(ws, "home-000")]
    assert ws.pseudonymizer.pseudonymize("device", "tiny-th") not in index["devices"]


def test_a_refit_is_atomic(fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _, _ = fitted
    target = tmp_path / "model"
    fit_homes(ws.store, target)
    reader = DevicesService(target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(HomeModel, "fit", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        fit_homes(ws.store, target)

    def short(self, *args, **kwargs):
        raise ValueError("too short")

    monkeypatch.setattr(HomeModel, "fit", short)
    with pytest.raises(DeviceDataError, match=r"no home could be fitted.*too short"):
        fit_homes(ws.store, target)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before  # the old models are still there, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left
    assert not reader.reload_if_changed()
    monkeypatch.undo()
    fit_homes(ws.store, target)  # a good refit replaces it, and a server picks it up
    assert reader.reload_if_changed() and len(reader.homes) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_fit_will_not_overwrite_a_folder_that_is_not_a_model(fitted, tmp_path: Path) -> None:
    ws, _, _ = fitted
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="not a devices model folder"):
        fit_homes(ws.store, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="not a devices model folder"):
        fit_homes(ws.store, tmp_path / "notes.txt")


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tailor devices fit --model"):
        DevicesService(tmp_path)
    (tmp_path / "index.json").write_text('{"homes": []}')
    with pytest.raises(ValueError, match="not a devices model folder"):
        DevicesService(tmp_path)


# -- schedule ---------------------------------------------------------------------------------


def changes(plan: dict) -> list[tuple[datetime, float, str]]:
    return [(datetime.fromisoformat(c["from"]), c["setpoint_c"], c["why"]) for c in plan["changes"]]


def test_the_schedule_plans_changes_with_reasons(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    plan = devices.schedule(home(ws), HomeSettings(), start=START + timedelta(minutes=7), hours=24)
    assert plan["mode"] == "auto" and plan["personalized"] and not plan["suggestion"]
    assert plan["bounds_c"] == [15.0, 24.0] and plan["slot_minutes"] == 15
    steps = changes(plan)
    assert steps[0][0] == START  # the slot the plan starts in
    assert all(a[0] < b[0] for a, b in pairwise(steps))
    assert all(START <= t < START + timedelta(hours=24) for t, _, _ in steps)
    assert all(a[1:] != b[1:] for a, b in pairwise(steps))  # only changes
    reasons = " ".join(why for _, _, why in steps)
    # The learned habit, the setback while the home is usually empty, and pre-heating.
    assert "because you raised it" in reasons and "pre-heating" in reasons
    assert "coasting into eco:" in reasons  # it stops heating before they usually leave
    assert all(15.0 <= value <= 24.0 for _, value, _ in steps)
    assert plan["model_version"] == devices.model(home(ws)).params_.version


def test_bounds_set_later_hold_for_every_slot(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    settings = HomeSettings(lower_c=18.0, upper_c=19.0)
    plan = devices.schedule(home(ws), settings, start=START, hours=48)
    assert plan["bounds_c"] == [18.0, 19.0]
    values = [value for _, value, _ in changes(plan)]
    assert all(18.0 <= v <= 19.0 for v in values) and {18.0, 19.0} <= set(values)
    why = [w for _, v, w in changes(plan) if v == 19.0 and "pre-heating" not in w]
    # Held at the bound because the household asked for it, not "coasting".
    assert why and all("upper bound" in w for w in why)


def test_modes_switch_personalization_off_piece_by_piece(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    program = default_program(15)
    off = settings_with(HomeSettings(), {"modes": {"schedule": "off"}})
    plan = devices.schedule(home(ws), off, start=START, hours=24)
    assert plan["personalized"] and plan["mode"] == "auto"
    own = [(t, v) for t, v, w in changes(plan) if "own program" in w]
    assert own and all(v == program[t.hour * 4 + t.minute // 15] for t, v in own)
    assert not any("because you" in w for _, _, w in changes(plan))

    away = settings_with(HomeSettings(), {"modes": {"away": "off"}})
    steps = changes(devices.schedule(home(ws), away, start=START, hours=24))
    assert not any(w.startswith("eco") for _, _, w in steps)
    assert min(v for _, v, _ in steps) > HomeSettings().away_c

    default = changes(devices.schedule(home(ws), HomeSettings(), start=START, hours=168))
    assert any(w.startswith("pre-heating") for _, _, w in default)
    no_preheat = settings_with(HomeSettings(), {"modes": {"preheat": "off"}})
    steps = changes(devices.schedule(home(ws), no_preheat, start=START, hours=168))
    assert not any(w.startswith("pre-heating") for _, _, w in steps)

    suggest = settings_with(HomeSettings(), {"modes": {"preheat": "suggest"}})
    assert devices.schedule(home(ws), suggest, start=START)["suggestion"] is True

    for plan in (
        devices.schedule(home(ws), settings_with(HomeSettings(), {"modes": {"all": "off"}}),
                         start=START),
        devices.schedule(home(ws), HomeSettings(), start=START, personalized=False),
    ):  # fmt: skip
        assert plan["mode"] == "off" and plan["personalized"] is False
        steps = changes(plan)
        assert {w for _, _, w in steps} == {"your own program: personalization is off"}
        assert [(t.hour, v) for t, v, _ in steps] == [(0, 17.0), (7, 20.0), (23, 17.0)]


@pytest.mark.parametrize("hours", [0, -1, 169, 10_000])
def test_hours_out_of_range_are_refused(fitted, devices: DevicesService, hours: int) -> None:
    with pytest.raises(ValueError, match=r"hours: .*use 1 to 168"):
        devices.schedule(home(fitted[0]), HomeSettings(), start=START, hours=hours)


def test_one_hour_and_a_week_ahead(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    short = changes(devices.schedule(home(ws), HomeSettings(), start=START, hours=1))
    assert short and all(t < START + timedelta(hours=1) for t, _, _ in short)
    week = changes(devices.schedule(home(ws), HomeSettings(), start=START, hours=168))
    assert week[-1][0] >= START + timedelta(days=6)


# -- insights, settings, erasure ---------------------------------------------------------------


def test_insights_say_what_was_learned(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    settings = HomeSettings(lower_c=16.0)
    found = devices.insights(home(ws), settings)
    assert found["home_id"] == home(ws) and found["devices"] == sorted(devices_of(ws))
    assert found["settings"]["lower_c"] == 16.0
    assert found["habits"] and all(h["explanation"].startswith("you ") for h in found["habits"])
    assert found["adjustments"] == int((simulated().adjustments["home_id"] == "home-000").sum())
    days = found["learned_schedule"]
    assert next(iter(days)) == "monday" and len(days) == 7
    assert all(len(values) == 96 for values in days.values())
    json.dumps(found, allow_nan=False)  # JSON-ready as it is
    with pytest.raises(KeyError):
        devices.insights("nobody", settings)


def test_forget_stops_answering_for_the_household_at_once(fitted, devices: DevicesService) -> None:
    ws = fitted[0]
    gone, kept = home(ws, "home-001"), home(ws, "home-000")
    devices.schedule(gone, HomeSettings(), start=START)  # loaded before it is forgotten
    devices.forget([gone])
    assert all(devices.home_of(d) is None for d in devices_of(ws, "home-001"))
    assert devices.model(gone) is None and devices.homes == [kept]
    with pytest.raises(KeyError):
        devices.schedule(gone, HomeSettings(), start=START)
    with pytest.raises(KeyError):
        devices.insights(gone, HomeSettings())
    assert devices.schedule(kept, HomeSettings(), start=START)["changes"]


def test_settings_are_saved_in_the_store(fitted) -> None:
    store = fitted[0].store
    assert load_settings(store, "settings-test") == HomeSettings()
    changed = settings_with(
        HomeSettings(), {"lower_c": 17.0, "away_c": None, "modes": {"away": "suggest"}}
    )
    assert (changed.lower_c, changed.upper_c, changed.away_c) == (17.0, 24.0, 16.0)
    save_settings(store, "settings-test", changed)
    assert load_settings(store, "settings-test") == changed
    everything_off = settings_with(changed, {"modes": {"all": "off"}})
    assert set(everything_off.modes.values()) == {"off"} and everything_off.lower_c == 17.0


@pytest.mark.parametrize(
    ("changes_", "message"),
    [
        ({"lower_c": 22.0, "upper_c": 20.0}, "must be below"),
        ({"lower_c": 24.0}, "must be below"),
        ({"upper_c": float("nan")}, "finite"),
        ({"away_c": float("inf")}, "finite"),
        ({"away_c": 40.0}, "outside what a thermostat holds"),
        ({"modes": {"heating": "auto"}}, "unknown feature"),
        ({"modes": {"schedule": "maybe"}}, "modes.schedule"),
    ],
)
def test_bad_settings_are_refused(changes_: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_with(HomeSettings(), changes_)


def test_consent_and_erasure_decide_who_is_personalized(tmp_path: Path) -> None:
    ws = homes_workspace(tmp_path, limit_homes=2)
    try:
        assert may_personalize(ws.store, home(ws, "home-000"))
        assert not may_personalize(ws.store, home(ws, "stranger"))  # opt-in: none recorded
        import_table(
            ws.store,
            events([consent("home-001", START, granted=False)]),
            pseudonymizer=ws.pseudonymizer,
        )
        assert not may_personalize(ws.store, home(ws, "home-001"))
        summary = fit_homes(ws.store, tmp_path / "m")  # the revoked home is not learned from
        assert summary["homes"] == 1
        assert DevicesService(tmp_path / "m").homes == [home(ws, "home-000")]
        erase(ws.store, home(ws, "home-000"))
        assert not may_personalize(ws.store, home(ws, "home-000"))
    finally:
        ws.close()


def test_the_folder_name_is_stable_and_safe() -> None:
    name = service._folder_name("../../etc/passwd")
    assert name == service._folder_name("../../etc/passwd") and name.isalnum()
