"""The worker's replan-budget job: skipped without ad data, then a warm-started re-fit on the
ad events, the plan in plan.json and in the lifecycle log."""

from __future__ import annotations

import json

import pytest

from tailor.config import LifecycleSettings, Settings
from tailor.events.importer import import_table
from tailor.lifecycle import journal
from tailor.lifecycle.worker import Worker, scheduled_jobs
from tailor.workspace import open_workspace
from tests.api._serving import KEY
from tests.budget.test_service import simulated


@pytest.fixture
def ws(tmp_path):
    settings = Settings(
        store=str(tmp_path / "t.duckdb"), secret_key=KEY, secret_key_file=tmp_path / "k"
    )
    ws = open_workspace(settings, create=True)
    yield ws
    ws.close()


def test_replan_budget(ws, tmp_path) -> None:
    folder = tmp_path / "budget"
    settings = LifecycleSettings(budget_model=folder, replan_horizon=3, model_dir=tmp_path)
    worker = Worker(ws, settings, only=["replan-budget"])
    (skipped,) = worker.run_due()
    assert skipped.status == "ok" and "no budget re-plan" in skipped.message
    assert "0 ad_spend" in skipped.message and not folder.exists()

    import_table(ws.store, simulated().to_events(), pseudonymizer=ws.pseudonymizer, label="ads")
    (first,) = worker.run_due(force=True)
    assert first.status == "ok", first.message
    assert "re-fitted on 52 periods" in first.message and "warm-started" not in first.message
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["horizon"] == 3 and len(plan["per_period"]) == 3  # three channels
    (second,) = worker.run_due(force=True)
    assert second.status == "ok" and "warm-started" in second.message
    decisions = [d for d in journal.read(ws.store, "decision") if d["engine"] == "budget"]
    assert len(decisions) == 2 and decisions[-1]["plan"]["horizon"] == 3


def test_no_job_without_a_budget_model(ws, tmp_path) -> None:
    names = [job.name for job in scheduled_jobs(LifecycleSettings())]
    assert "replan-budget" not in names
    with pytest.raises(ValueError, match="budget_model"):
        Worker(ws, LifecycleSettings(), only=["replan-budget"])
