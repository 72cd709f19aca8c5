"""The budget service: fit and save atomically, warm starts, validated plans, the back-test
and the report, on a small simulated media mix (MAP fits: seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tailor.budget import service
from tailor.budget.data import MediaData, MediaDataError
from tailor.budget.model import MMMConfig
from tailor.config import Settings
from tailor.datasets.simulate.ad_channels import CONTROLS, simulate_channels
from tailor.events.importer import import_table
from tailor.workspace import open_workspace

SIM = {"channels": 3, "periods": 52, "seed": 2}
CONFIG = MMMConfig(laplace_draws=100, yearly_seasonality=0)
KEY = "ab" * 32


def simulated():
    return simulate_channels(**SIM)


def fitted_folder(folder: Path) -> Path:
    """A saved MAP fit of the simulated media mix (what the CLI, API and worker tests use)."""
    service.fit_model(simulated().data, folder, method="map", config=CONFIG)
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return fitted_folder(tmp_path_factory.mktemp("budget") / "model")


def test_fit_save_load_and_plan(saved: Path) -> None:
    model = service.load_model(saved)
    sim = simulated()
    assert set(model.channels_) == set(sim.data.channels)
    plan = service.make_plan(model, budget=30_000.0, horizon=4)
    assert sum(plan["totals"]) == pytest.approx(30_000.0, rel=1e-6)
    assert plan["status"] == "optimal" and plan["reference"] is not None
    assert plan["first_period"] == str(sim.data.dates[-1] + np.timedelta64(7, "D"))
    assert plan["frequency"] == "W" and plan["target"] == "conversions"
    json.dumps(plan, allow_nan=False)  # JSON-ready as it is
    # newer spend moves the plan's first period on and joins the carry-over in flight
    recent = {c: [100.0, 200.0] for c in model.channels_}
    later = service.make_plan(model, budget=30_000.0, horizon=4, recent_spend=recent)
    assert later["first_period"] == str(sim.data.dates[-1] + np.timedelta64(21, "D"))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"budget": 0.0}, "budget"),
        ({"budget": float("nan")}, "budget"),
        ({"budget": 1e308}, "budget"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 367}, "horizon"),
        ({"target_cpa": 50.0, "target_roas": 2.0}, "target_cpa and target_roas"),
        ({"quantile": 1.5}, "quantile"),
        ({"bounds": {"nowhere": (0, 10)}}, "unknown channel 'nowhere'"),
        ({"fixed": {"search": -1.0}}, "fixed['search']"),
        ({"recent_spend": {"search": [1.0]}}, "recent_spend"),
        ({"recent_spend": np.ones((2, 7))}, "recent_spend"),
        ({"bounds": {"search": (1e9, None)}}, "budget"),
    ],
)
def test_plan_options_are_checked(saved: Path, options: dict, named: str) -> None:
    model = service.load_model(saved)
    arguments = {"budget": 10_000.0, "horizon": 4, **options}
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        service.make_plan(model, **arguments)


def test_warm_start_and_what_stops_it(tmp_path: Path) -> None:
    sim = simulated()
    first = service.fit_model(sim.data, tmp_path / "m", warm_start=True, config=CONFIG)
    assert not first.warm_started and "no model" in first.note
    again = service.fit_model(sim.data, tmp_path / "m", warm_start=True)
    assert again.warm_started and again.note == "" and again.model.config == CONFIG
    fewer = MediaData(
        dates=sim.data.dates,
        spend=sim.data.spend[:, :2],
        target=sim.data.target,
        channels=sim.data.channels[:2],
        frequency="W",
    )
    other = service.fit_model(fewer, tmp_path / "m", warm_start=True, config=CONFIG)
    assert not other.warm_started and "fitted from scratch" in other.note
    with pytest.raises(ValueError, match="warm start"):
        service.fit_model(sim.data, tmp_path / "m", method="nuts", warm_start=True)


def test_a_folder_that_is_not_a_model_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a budget model folder"):
        service.fit_model(simulated().data, folder, config=CONFIG)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no temporary left
    with pytest.raises(ValueError, match="tailor budget fit"):
        service.load_model(tmp_path / "missing")


def test_events_in_the_store_are_the_data(tmp_path: Path) -> None:
    sim = simulated()
    settings = Settings(
        store=str(tmp_path / "t.duckdb"), secret_key=KEY, secret_key_file=tmp_path / "k"
    )
    with open_workspace(settings, create=True) as ws:
        with pytest.raises(MediaDataError, match="0 ad_spend"):
            service.load_data(store=ws.store)
        import_table(ws.store, sim.to_events(), pseudonymizer=ws.pseudonymizer, label="ads")
        data = service.load_data(store=ws.store, control_keys=CONTROLS)
    assert data.channels == tuple(sorted(sim.data.channels))
    order = [sim.data.channels.index(c) for c in data.channels]
    np.testing.assert_allclose(data.spend, sim.data.spend[:, order])
    np.testing.assert_allclose(data.controls, sim.data.controls)
    with pytest.raises(ValueError, match="one of the two"):
        service.load_data()


def test_backtest_and_report(saved: Path, tmp_path: Path) -> None:
    model = service.load_model(saved)
    sim = simulated()
    data = MediaData(**{**vars(sim.data)})
    test = service.run_backtest(model, data, last=6, truth=sim.truth)
    assert test["blocks"] == 6 and test["true_uplift"] is not None
    assert len(test["dates"]) == 6
    with pytest.raises(ValueError, match="start and last"):
        service.run_backtest(model, data)
    with pytest.raises(ValueError, match="last"):
        service.run_backtest(model, data, last=52)
    page, twin = service.write_report(model, data, tmp_path / "r.html", truth=sim.truth)
    text = page.read_text()
    for heading in ("The fitted model", "Contributions over time", "Response curves",
                    "The plan against the recent split", "Back-test"):  # fmt: skip
        assert heading in text
    assert text.count("<svg") >= 6
    figures = json.loads(twin.read_text())
    assert figures["plan"]["channels"] == list(model.channels_)
    assert figures["backtest"]["true_uplift"] is not None
    assert set(figures["response_curves"]["curves"]) == set(model.channels_)
    assert len(figures["contributions"]["actual"]) == data.periods
    with pytest.raises(ValueError, match=r"\.html"):
        service.write_report(model, data, tmp_path / "r.txt")


def test_the_server_copy_follows_a_refit(saved: Path, tmp_path: Path) -> None:
    folder = fitted_folder(tmp_path / "served")
    served = service.BudgetService(folder)
    assert not served.reload_if_changed()
    before = served.model
    service.fit_model(simulated().data, folder, warm_start=True)
    assert served.reload_if_changed() and served.model is not before
    assert served.describe()["problems"] == served.model.problems()
    assert served.plan(budget=5_000.0, horizon=2)["horizon"] == 2


def test_negative_recent_spend_names_the_channel(saved: Path) -> None:
    model = service.load_model(saved)
    recent = {c: [1.0] for c in model.channels_} | {model.channels_[0]: [-1.0]}
    with pytest.raises(ValueError, match=f"recent_spend: channel '{model.channels_[0]}'"):
        service.make_plan(model, budget=10_000.0, horizon=4, recent_spend=recent)
