"""GET /v1/devices/{id}/schedule, GET /v1/homes/{id}/insights, POST /v1/devices/{id}/feedback:
scopes, the household's settings kept in the store across requests, feedback stored as a
``device_adjustment`` event, consent and erasure, and a 4xx (never a 5xx) for every mistake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tailor.api.app import build_tenant, create_app
from tailor.api.keys import KeyRing
from tailor.config import Settings
from tailor.devices.model import HomeSettings
from tailor.devices.service import fit_homes, save_settings
from tests.api._serving import KEY, auth
from tests.devices.test_service import homes_workspace, simulated

THERMOSTAT = simulated().truth["home-000"].thermostat_id
MOTION = simulated().truth["home-000"].motion_id
OTHER = simulated().truth["home-001"].thermostat_id
SCHEDULE = f"/v1/devices/{THERMOSTAT}/schedule"
FEEDBACK = f"/v1/devices/{THERMOSTAT}/feedback"
INSIGHTS = "/v1/homes/home-000/insights"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices-api")
    ws = homes_workspace(folder)
    fit_homes(ws.store, folder / "devices")
    (folder / "empty").mkdir()
    settings = Settings(store=str(folder / "unused.duckdb"), secret_key=KEY)
    tenants = {
        "default": build_tenant("default", ws, settings.api, poll_interval_s=None,
                                devices_path=folder / "devices"),
        "plain": build_tenant("plain", ws, settings.api, poll_interval_s=None),
        "broken": build_tenant("broken", ws, settings.api, poll_interval_s=None,
                               devices_path=folder / "empty"),
    }  # fmt: skip
    ring = KeyRing(folder / "keys.json")
    keys = {}
    for name, scopes, tenant in (
        ("admin", ["admin"], None),
        ("ingest", ["ingest"], None),
        ("recommend", ["recommend"], None),
        ("plain", ["recommend", "ingest"], "plain"),
        ("broken", ["recommend", "ingest"], "broken"),
    ):
        _, keys[name] = ring.create(
            name=name, scopes=scopes, tenant=tenant, rate_per_s=1000.0, burst=1000
        )
    app = create_app(settings=settings, tenants=tenants, keys=ring)
    with TestClient(app) as client:
        yield client, keys, ws
    ws.close()


@pytest.fixture
def fresh_settings(served):
    """Every home back on the default settings after the test."""
    yield
    ws = served[2]
    for raw in ("home-000", "home-001"):
        save_settings(ws.store, ws.pseudonymizer.pseudonymize("subject", raw), HomeSettings())


def test_a_device_gets_its_schedule(served) -> None:
    client, keys, _ = served
    answer = client.get(SCHEDULE, params={"hours": 6}, headers=auth(keys["recommend"]))
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["device_id"] == THERMOSTAT and plan["personalized"] and plan["mode"] == "auto"
    assert plan["bounds_c"] == [15.0, 24.0] and plan["changes"]
    now = datetime.now(UTC)
    for change in plan["changes"]:
        when = datetime.fromisoformat(change["from"])
        assert now - timedelta(minutes=15) <= when < now + timedelta(hours=6)
        assert 15.0 <= change["setpoint_c"] <= 24.0 and change["why"]
    # The motion sensor belongs to the same home: the same plan.
    same = client.get(f"/v1/devices/{MOTION}/schedule", params={"hours": 6},
                      headers=auth(keys["recommend"]))  # fmt: skip
    assert same.status_code == 200 and same.json()["model_version"] == plan["model_version"]


def test_a_home_gets_its_insights(served) -> None:
    client, keys, ws = served
    answer = client.get(INSIGHTS, headers=auth(keys["recommend"]))
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["home_id"] == "home-000" and found["habits"]
    assert len(found["devices"]) == 2 and THERMOSTAT not in found["devices"]  # pseudonyms
    assert found["devices"] == sorted(
        ws.pseudonymizer.pseudonymize("device", d) for d in (THERMOSTAT, MOTION)
    )
    assert set(found["learned_schedule"]) >= {"monday", "sunday"}


def test_who_may_ask(served) -> None:
    client, keys, _ = served
    body = {"home_id": "home-000", "setpoint_c": 21.0}
    assert client.get(SCHEDULE).status_code == 401
    assert client.get(INSIGHTS, headers=auth("nope")).status_code == 401
    assert client.post(FEEDBACK, json=body).status_code == 401
    for path in (SCHEDULE, INSIGHTS):
        answer = client.get(path, headers=auth(keys["ingest"]))
        assert answer.status_code == 403 and "recommend" in answer.json()["detail"]
    answer = client.post(FEEDBACK, json=body, headers=auth(keys["recommend"]))
    assert answer.status_code == 403 and "ingest" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("tenant", "said"),
    [
        ("plain", "tailor devices fit --model DIR"),
        ("broken", "not a devices model folder"),
    ],
)
def test_a_tenant_without_device_models_is_told_how_to_load_them(
    served, tenant: str, said: str
) -> None:
    client, keys, _ = served
    headers = auth(keys[tenant], tenant)
    for answer in (
        client.get(SCHEDULE, headers=headers),
        client.get(INSIGHTS, headers=headers),
        client.post(FEEDBACK, json={"home_id": "home-000", "setpoint_c": 21.0}, headers=headers),
    ):
        assert answer.status_code == 404, answer.text
        detail = answer.json()["detail"]
        assert "tailor serve --devices DIR" in detail and said in detail


def test_unknown_devices_and_homes_are_404(served) -> None:
    client, keys, _ = served
    unknown = client.get("/v1/devices/no-such-thing/schedule", headers=auth(keys["recommend"]))
    assert unknown.status_code == 404 and "'no-such-thing'" in unknown.json()["detail"]
    feedback = client.post(
        "/v1/devices/no-such-thing/feedback",
        json={"home_id": "home-000", "setpoint_c": 21.0},
        headers=auth(keys["ingest"]),
    )
    assert feedback.status_code == 404
    home = client.get("/v1/homes/nobody/insights", headers=auth(keys["recommend"]))
    assert home.status_code == 404 and "'nobody'" in home.json()["detail"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "home_id"),
        ({"setpoint_c": 21.0}, "home_id"),
        ({"home_id": "home-000"}, "send setpoint_c"),
        ({"home_id": "home-000", "modes": {}}, "modes"),
        ({"home_id": "home-000", "setpoint_c": None}, "send setpoint_c"),
        ({"home_id": "", "setpoint_c": 21.0}, "home_id"),
        ({"home_id": "home-000", "setpoint_c": 21.0, "colour": "red"}, "colour"),
        ({"home_id": "home-000", "setpoint_c": 50.0}, "setpoint_c"),
        ({"home_id": "home-000", "setpoint_c": -3.0}, "setpoint_c"),
        ({"home_id": "home-000", "setpoint_c": "warm"}, "setpoint_c"),
        ({"home_id": "home-000", "setpoint_c": 21.0, "previous_c": 99.0}, "previous_c"),
        ({"home_id": "home-000", "lower_c": 4.0}, "lower_c"),
        ({"home_id": "home-000", "upper_c": 36.0}, "upper_c"),
        ({"home_id": "home-000", "away_c": 1e308}, "away_c"),
        ({"home_id": "home-000", "lower_c": 22.0, "upper_c": 20.0}, "must be below"),
        ({"home_id": "home-000", "lower_c": 24.0}, "must be below"),  # the saved upper is 24
        ({"home_id": "home-000", "upper_c": 15.0}, "must be below"),
        ({"home_id": "home-000", "modes": {"heating": "auto"}}, "modes"),
        ({"home_id": "home-000", "modes": {"schedule": "maybe"}}, "modes"),
        ({"home_id": "home-000", "modes": ["schedule"]}, "modes"),
        ({"home_id": "home-000", "setpoint_c": 21.0, "occurred_at": "2026-01-01T00:00:00"},
         "occurred_at"),
        ({"home_id": "home-000", "setpoint_c": 21.0, "occurred_at": "yesterday"}, "occurred_at"),
        ({"home_id": "home-001", "setpoint_c": 21.0}, "does not belong to that home"),
        ({"home_id": "nobody", "lower_c": 16.0}, "does not belong to that home"),
        ({"home_id": "x" * 129, "setpoint_c": 21.0}, "home_id"),
    ],
)  # fmt: skip
def test_bad_feedback_is_422_and_changes_nothing(served, body: dict, named: str) -> None:
    client, keys, _ = served
    answer = client.post(FEEDBACK, json=body, headers=auth(keys["ingest"]))
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    insights = client.get(INSIGHTS, headers=auth(keys["recommend"])).json()
    assert insights["settings"] == HomeSettings().to_dict()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"home_id": "home-000", "setpoint_c": NaN}',
        b'{"home_id": "home-000", "lower_c": Infinity}',
        b'{"home_id": "home-000", "setpoint_c": 21',
        b"[]",
        b"",
        b"\xff\xfe",
    ],
)
def test_broken_json_is_422(served, raw: bytes) -> None:
    client, keys, _ = served
    headers = {**auth(keys["ingest"]), "Content-Type": "application/json"}
    assert client.post(FEEDBACK, content=raw, headers=headers).status_code == 422


@pytest.mark.parametrize("hours", ["0", "169", "-1", "two", "1.5", ""])
def test_hours_out_of_range_are_422(served, hours: str) -> None:
    client, keys, _ = served
    answer = client.get(SCHEDULE, params={"hours": hours}, headers=auth(keys["recommend"]))
    assert answer.status_code == 422 and "hours" in answer.text


def test_a_manual_adjustment_is_stored_as_an_event(served) -> None:
    client, keys, ws = served
    when = datetime(2026, 1, 18, 19, 30, tzinfo=UTC)
    body = {"home_id": "home-000", "setpoint_c": 21.5, "previous_c": 20.0,
            "occurred_at": when.isoformat()}  # fmt: skip
    answer = client.post(FEEDBACK, json=body, headers=auth(keys["ingest"]))
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["recorded_event_id"]
    assert event_id and answer.json()["settings"] == HomeSettings().to_dict()
    stored = ws.store.read_events(purpose=None, event_types=["device_adjustment"]).to_pylist()
    row = next(r for r in stored if r["event_id"] == event_id)
    assert row["subject_id"] == ws.pseudonymizer.pseudonymize("subject", "home-000")
    assert row["device_id"] == ws.pseudonymizer.pseudonymize("device", THERMOSTAT)
    assert (row["metric"], row["value"], row["previous_value"]) == ("setpoint", 21.5, 20.0)
    assert row["occurred_at"] == when
    # Without a time it is now; the next fit reads it like any adjustment.
    now = client.post(FEEDBACK, json={"home_id": "home-000", "setpoint_c": 19.0},
                      headers=auth(keys["ingest"]))  # fmt: skip
    assert now.status_code == 200, now.text
    from tailor.devices.data import read_device_events

    _, adjustments = read_device_events(ws.store)
    assert {21.5, 19.0} <= set(adjustments["value"])
    latest = adjustments.iloc[-1]
    assert latest["value"] == 19.0
    assert abs(latest["ts"] - datetime.now(UTC)) < timedelta(minutes=5)


def test_settings_hold_across_requests(served, fresh_settings) -> None:
    client, keys, _ = served
    body = {"home_id": "home-000", "lower_c": 18.0, "upper_c": 19.0, "modes": {"away": "off"}}
    answer = client.post(FEEDBACK, json=body, headers=auth(keys["ingest"]))
    assert answer.status_code == 200, answer.text
    settings = answer.json()["settings"]
    assert answer.json()["recorded_event_id"] is None  # no adjustment: no event
    assert (settings["lower_c"], settings["upper_c"]) == (18.0, 19.0)
    assert settings["modes"] == {"schedule": "auto", "away": "off", "preheat": "auto"}
    plan = client.get(SCHEDULE, params={"hours": 48}, headers=auth(keys["recommend"])).json()
    assert plan["bounds_c"] == [18.0, 19.0]
    assert all(18.0 <= c["setpoint_c"] <= 19.0 for c in plan["changes"])
    assert not any(c["why"].startswith("eco") for c in plan["changes"])
    found = client.get(INSIGHTS, headers=auth(keys["recommend"])).json()
    assert found["settings"] == settings
    # A later change keeps the earlier ones; everything off hands back the device's program.
    off = client.post(FEEDBACK, json={"home_id": "home-000", "modes": {"all": "off"}},
                      headers=auth(keys["ingest"]))  # fmt: skip
    assert off.status_code == 200 and off.json()["settings"]["lower_c"] == 18.0
    plan = client.get(SCHEDULE, headers=auth(keys["recommend"])).json()
    assert plan["mode"] == "off" and plan["personalized"] is False
    assert {c["why"] for c in plan["changes"]} == {"your own program: personalization is off"}
    # The other home is untouched.
    other = client.get(f"/v1/devices/{OTHER}/schedule", headers=auth(keys["recommend"])).json()
    assert other["bounds_c"] == [15.0, 24.0] and other["personalized"]


def test_a_withdrawn_consent_gets_the_program_back(served) -> None:
    client, keys, _ = served
    path = f"/v1/devices/{OTHER}/schedule"
    consent = "/v1/users/home-001/consent"
    withdrawn = client.put(consent, json={"purpose": "personalization", "granted": False},
                           headers=auth(keys["ingest"]))  # fmt: skip
    assert withdrawn.status_code == 200, withdrawn.text
    try:
        plan = client.get(path, headers=auth(keys["recommend"])).json()
        assert plan["personalized"] is False and plan["mode"] == "off"
        insights = client.get("/v1/homes/home-001/insights", headers=auth(keys["recommend"]))
        assert insights.status_code == 404 and "consent" in insights.json()["detail"]
    finally:
        granted = client.put(consent, json={"purpose": "personalization", "granted": True},
                             headers=auth(keys["ingest"]))  # fmt: skip
        assert granted.status_code == 200
    assert client.get(path, headers=auth(keys["recommend"])).json()["personalized"] is True


def test_the_openapi_spec_lists_the_routes(served) -> None:
    client, _, _ = served
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "get" in paths["/v1/devices/{device_id}/schedule"]
    assert "get" in paths["/v1/homes/{home_id}/insights"]
    feedback = paths["/v1/devices/{device_id}/feedback"]["post"]
    assert "422" in feedback["responses"]
    assert json.dumps(spec).count("setpoint_c") >= 1


@pytest.mark.parametrize(
    "device", ["x" * 129, "%00", "caf%C3%A9", "a%2Fb", "..", "%F0%9F%94%A5" * 10]
)
def test_odd_device_ids_are_4xx(served, device: str) -> None:
    client, keys, _ = served
    answer = client.get(f"/v1/devices/{device}/schedule", headers=auth(keys["recommend"]))
    assert answer.status_code in (404, 422), answer.text
    answer = client.post(f"/v1/devices/{device}/feedback", json={"home_id": "h", "upper_c": 20},
                         headers=auth(keys["ingest"]))  # fmt: skip
    assert answer.status_code in (404, 422), answer.text


def test_an_erased_household_is_gone_at_once(served) -> None:
    """Last: it erases home-001 from the shared store."""
    client, keys, _ = served
    erased = client.delete("/v1/users/home-001", headers=auth(keys["admin"]))
    assert erased.status_code == 200, erased.text
    path = f"/v1/devices/{OTHER}"
    assert client.get(f"{path}/schedule", headers=auth(keys["recommend"])).status_code == 404
    insights = client.get("/v1/homes/home-001/insights", headers=auth(keys["recommend"]))
    assert insights.status_code == 404
    feedback = client.post(f"{path}/feedback", json={"home_id": "home-001", "setpoint_c": 20.0},
                           headers=auth(keys["ingest"]))  # fmt: skip
    assert feedback.status_code == 404
    assert client.get(SCHEDULE, headers=auth(keys["recommend"])).status_code == 200
