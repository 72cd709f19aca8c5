"""The worker's refit-devices job: skipped without telemetry, then every home re-fitted into
the served folder and the outcome in the lifecycle log."""

from __future__ import annotations

import pytest

from tailor.config import LifecycleSettings
from tailor.datasets.simulate.homes import simulate_homes
from tailor.devices.service import DevicesService
from tailor.events.importer import import_table
from tailor.lifecycle import journal
from tailor.lifecycle.worker import Worker, scheduled_jobs
from tests.lifecycle.test_budget_job import ws  # noqa: F401  (the fixture)


def test_refit_devices(ws, tmp_path) -> None:  # noqa: F811
    folder = tmp_path / "homes"
    worker = Worker(ws, LifecycleSettings(devices_model=folder), only=["refit-devices"])
    (skipped,) = worker.run_due()
    assert skipped.status == "ok" and "no device refit" in skipped.message
    assert not folder.exists()

    sim = simulate_homes(n_homes=2, weeks=2, seed=3)
    import_table(ws.store, sim.to_events(), pseudonymizer=ws.pseudonymizer, label="homes")
    (done,) = worker.run_due(force=True)
    assert done.status == "ok", done.message
    assert "2 home(s), 4 device(s), 0 skipped" in done.message
    service = DevicesService(folder)
    home = ws.pseudonymizer.pseudonymize("subject", "home-000")
    assert service.model(home) is not None
    decisions = [d for d in journal.read(ws.store, "decision") if d["engine"] == "devices"]
    assert decisions[-1]["metrics"]["homes"] == 2


def test_no_job_without_a_devices_model(ws) -> None:  # noqa: F811
    assert "refit-devices" not in [job.name for job in scheduled_jobs(LifecycleSettings())]
    with pytest.raises(ValueError, match="devices_model"):
        Worker(ws, LifecycleSettings(), only=["refit-devices"])
