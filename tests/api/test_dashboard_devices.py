"""The dashboard's Homes section (devices engine): the homes' table, a week of readings
against the learned schedule as inline SVG, the habits in words, ``?home=``, and what it
does without the engine, with a damaged model or an unreadable store."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from html import escape

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tailor.api import dashboard
from tailor.api.app import build_tenant, create_app
from tailor.api.charts import line_chart
from tailor.api.keys import KeyRing
from tailor.config import Settings
from tailor.datasets.simulate.homes import simulate_homes
from tailor.devices.service import DevicesService, fit_homes
from tailor.events.importer import import_table
from tailor.workspace import open_workspace
from tests.api._serving import KEY, auth

SLOTS_PER_WEEK = 7 * 96


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard-devices")
    settings = Settings(
        store=str(folder / "t.duckdb"), secret_key=KEY, secret_key_file=folder / "secret.key"
    )
    ws = open_workspace(settings, create=True)
    sim = simulate_homes(n_homes=2, weeks=2, seed=1)
    import_table(ws.store, sim.to_events(), pseudonymizer=ws.pseudonymizer, label="homes")
    fit_homes(ws.store, folder / "homes")
    tenants = {
        "default": build_tenant("default", ws, settings.api, poll_interval_s=None,
                                devices_path=folder / "homes"),
        "plain": build_tenant("plain", ws, settings.api, poll_interval_s=None),
    }  # fmt: skip
    ring = KeyRing(folder / "keys.json")
    keys = {}
    for name, tenant in (("admin", "default"), ("plain", "plain")):
        _, keys[name] = ring.create(
            name=name, scopes=["admin"], tenant=tenant, rate_per_s=1000.0, burst=1000
        )
    app = create_app(settings=settings, tenants=tenants, keys=ring)
    with TestClient(app) as client:
        yield client, keys, tenants["default"], folder
    ws.close()


def _page(client, keys, name: str = "admin", **params) -> str:
    answer = client.get(
        "/dashboard", headers=auth(keys[name], "plain" if name == "plain" else None), params=params
    )
    assert answer.status_code == 200, answer.text[:300]
    return answer.text


def _json(client, keys, name: str = "admin", **params) -> dict:
    answer = client.get(
        "/v1/admin/dashboard",
        headers=auth(keys[name], "plain" if name == "plain" else None),
        params=params,
    )
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()


def _svgs(page: str) -> list[str]:
    return re.findall(r'<svg class="chart" data-testid="chart-home".*?</svg>', page, re.S)


def test_the_page_draws_each_homes_week_against_its_learned_schedule(served) -> None:
    client, keys, tenant, _ = served
    service = tenant.extras["devices"]
    page = _page(client, keys)
    assert 'data-testid="homes"' in page and 'data-testid="homes-table"' in page
    assert "<script" not in page
    svgs = _svgs(page)
    assert len(svgs) == 2  # both homes, under the cap
    for svg in svgs:
        for name in ("learned schedule", "indoor temperature", "setpoint (actual)"):
            assert f'data-series="{name}"' in svg
        assert 'class="band"' in svg and "expected home (learned)" in svg
        assert "<circle" not in svg  # a week of slots is drawn as lines only
    for home in service.homes:
        assert f'data-home="{home}"' in page
        assert f">{home[:10]}…</a>" in page  # the pseudonym, shortened, links to its chart
        habits = service.model(home).insights()["habits"]
        assert habits, "the simulated households repeat their adjustments"
        assert f"<li>{escape(habits[0]['explanation'])}</li>" in page


def test_the_json_holds_the_homes_and_their_week(served) -> None:
    client, keys, tenant, _ = served
    service = tenant.extras["devices"]
    homes = _json(client, keys)["homes"]
    assert homes["total"] == 2 and homes["note"] is None and homes["selected"] is None
    assert [row["home"] for row in homes["homes"]] == service.homes
    for row, chart in zip(homes["homes"], homes["charts"], strict=True):
        model = service.model(row["home"])
        assert row["habits"] == len(model.schedule_.rules_) > 0
        assert row["one_offs_ignored"] == model.schedule_.rejected_
        assert 0 < row["home_share"] < 1 and row["error"] is None
        assert chart["home"] == row["home"] and chart["note"] is None
        # Nothing was sent in the week up to now (the simulation ran in January 2026): the
        # chart shows the last week the model learned from.
        until = pd.Timestamp(chart["until"])
        assert until == model.window_[1]
        index = pd.to_datetime(chart["t"], unit="s", utc=True)
        assert len(index) == SLOTS_PER_WEEK and index[0] == until - pd.Timedelta(days=7)
        learned = model.schedule_.predict(pd.DatetimeIndex(index))
        assert np.allclose(chart["learned_schedule"], learned, atol=0.01)
        assert len(set(chart["learned_schedule"])) > 1  # the day and night settings
        indoor = [v for v in chart["indoor_temp"] if v is not None]
        assert len(indoor) > SLOTS_PER_WEEK * 0.9 and 10 < np.mean(indoor) < 26
        expected = chart["expected_occupied"]
        assert 0 < sum(expected) < len(expected)
        assert chart["habits"] == [h["explanation"] for h in model.insights()["habits"]]


def test_the_week_up_to_now_when_readings_are_that_recent(served, monkeypatch) -> None:
    client, keys, _, _ = served
    now = datetime(2026, 1, 15, 12, tzinfo=UTC)
    monkeypatch.setattr(dashboard, "_now", lambda: now)
    chart = _json(client, keys)["homes"]["charts"][0]
    index = pd.to_datetime(chart["t"], unit="s", utc=True)
    assert index[-1] < now and index[0] >= now - pd.Timedelta(days=7)
    assert pd.Timestamp(chart["until"]) == now


def test_home_picks_the_home_to_chart(served) -> None:
    client, keys, tenant, _ = served
    second = tenant.extras["devices"].homes[1]
    page = _page(client, keys, home=second[:10] + "…")  # as the table shows it
    assert len(_svgs(page)) == 1 and f'data-home="{second}"' in page
    homes = _json(client, keys, home=second)["homes"]
    assert homes["selected"] == second and [c["home"] for c in homes["charts"]] == [second]
    assert len(homes["homes"]) == 2  # the table still lists every home
    unknown = _page(client, keys, home='<b>"x"</b>')
    assert not _svgs(unknown) and 'data-testid="homes-note"' in unknown
    assert "<b>" not in unknown and "&lt;b&gt;" in unknown
    too_long = client.get(
        "/v1/admin/dashboard", headers=auth(keys["admin"]), params={"home": "x" * 129}
    )
    assert too_long.status_code == 422


def test_without_the_devices_engine_there_is_no_homes_section(served) -> None:
    client, keys, _, _ = served
    page = _page(client, keys, "plain")
    assert 'data-testid="kpis"' in page and 'data-testid="homes"' not in page
    assert _json(client, keys, "plain")["homes"] is None


def test_an_unreadable_store_is_a_note_not_a_failure(served, monkeypatch) -> None:
    client, keys, _, _ = served

    def broken(*args, **kwargs):
        raise OSError("the disk <went> away")

    monkeypatch.setattr("tailor.devices.data.read_device_events", broken)
    page = _page(client, keys)
    assert 'data-testid="homes-table"' in page  # the models still answer
    assert "could not be read: the disk &lt;went&gt; away" in page
    assert not _svgs(page) and 'data-testid="chart-home-empty"' in page
    assert 'data-testid="kpis"' in page


def test_a_damaged_home_model_is_named_in_its_row(served, monkeypatch, tmp_path) -> None:
    client, keys, tenant, folder = served
    copy = tmp_path / "homes"
    shutil.copytree(folder / "homes", copy)
    service = DevicesService(copy)
    first = service.homes[0]
    (copy / "homes" / service._index["homes"][first] / "home.json").write_text("{not json")
    monkeypatch.setitem(tenant.extras, "devices", service)
    homes = _json(client, keys)["homes"]
    broken = next(row for row in homes["homes"] if row["home"] == first)
    assert "damaged home model" in broken["error"]
    assert [c["home"] for c in homes["charts"]] == [service.homes[1]]
    page = _page(client, keys)
    assert 'class="bad">' in page and len(_svgs(page)) == 1


def test_line_chart_breaks_lines_at_gaps_and_shades_bands() -> None:
    svg = line_chart(
        {"a<b": [(0, 20.0), (1, None), (2, 21.0), (3, float("nan")), (4, 19.5), (5, 19.0)]},
        title="t",
        x_label="x",
        y_label="°C",
        testid="c",
        y_format=str,
        x_format=str,
        from_zero=False,
        markers=False,
        bands=[(-3, 1), (4, 9), (20, 30)],
        band_label="home",
    )
    assert svg.count('data-series="a&lt;b"') == 3  # [0], [2], [4, 5]
    assert svg.count('class="band"') == 2  # the one past the data is left out
    assert "<circle" not in svg and "home</text>" in svg
    ticks = re.findall(r'text-anchor="end">([\d.]+)</text>', svg)
    assert float(ticks[0]) >= 18  # fitted to the values, not from zero
