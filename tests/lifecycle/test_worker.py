"""tailor worker: leased jobs in the store, retrain → promote → rollback, and drift that
triggers a retraining."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tailor.api.state import ServingState
from tailor.config import LifecycleSettings, Settings
from tailor.lifecycle import journal, registry
from tailor.lifecycle.worker import Worker
from tailor.workspace import Workspace
from tests.api._serving import workspace
from tests.conftest import events_table
from tests.lifecycle._traffic import EVERYONE
from tests.lifecycle.test_monitor import AS_OF, shop_log


@pytest.fixture
def ws(tmp_path):
    ws = workspace(tmp_path, consent=EVERYONE)
    yield ws
    ws.close()


def _settings(tmp_path, **changes) -> LifecycleSettings:
    base = {"holdout": "3d", "model_dir": tmp_path / "models", "retrain_every": {"recommend": "1d"}}
    return LifecycleSettings(**{**base, **changes})


def test_retrain_promote_and_roll_back(ws, tmp_path):
    worker = Worker(ws, _settings(tmp_path), only=["retrain-recommend"])
    serving = ServingState(ws, model_alias="production", poll_interval_s=None)
    serving.start()
    assert serving.loaded.fallback  # nothing promoted yet: the popularity fallback

    first = worker.run_due()
    assert [(r.job, r.status) for r in first] == [("retrain-recommend", "ok")], first
    assert "promoted to production" in first[0].message
    v1 = registry.resolve(ws.store, "recommend", "production")
    assert registry.resolve(ws.store, "recommend", "candidate").version == v1.version
    assert v1.metrics["ndcg_at_10"] > 0 and v1.metrics["holdout_users"] > 10
    assert v1.data_window["holdout_events"] > 0 and v1.config["model"] == "itemknn"
    assert registry.verify(v1)
    assert serving.reload_if_changed() and serving.loaded.version == v1.version

    # Not due again for a day: a second pass runs nothing; the schedule is in the store.
    assert worker.run_due() == []
    (job,) = ws.store.jobs()
    assert job["runs"] == 1 and job["last_status"] == "ok" and job["lease_owner"] is None
    assert job["next_run_at"] > datetime.now(UTC) + timedelta(hours=23)

    # A retraining that does as well is promoted; the server follows the alias.
    second = worker.run_due(force=True)[0]
    v2 = registry.resolve(ws.store, "recommend", "production")
    assert v2.version != v1.version and "promoted" in second.message
    assert serving.reload_if_changed() and serving.loaded.version == v2.version

    # Rollback: production points at v1 again, with who and why; the server follows.
    assert registry.rollback(ws.store, "recommend", by="ops", reason="bad week") == v1.version
    assert serving.reload_if_changed() and serving.loaded.version == v1.version
    moves = registry.history(ws.store, "recommend", "production")
    assert [m.version for m in moves] == [v1.version, v2.version, v1.version]
    assert moves[-1].moved_by == "ops" and "bad week" in moves[-1].reason
    decisions = journal.read(ws.store, "decision")
    assert [d["promoted"] for d in decisions] == [True, True]
    assert decisions[1]["champion"] == v1.version
    serving.close()


def test_a_worse_model_stays_candidate_and_an_alert_says_why(ws, tmp_path):
    Worker(ws, _settings(tmp_path), only=["retrain-recommend"]).run_due()
    champion = registry.resolve(ws.store, "recommend", "production")
    # Popularity ignores who the user is: on a shop of coffee and tea lovers it loses.
    worse = Worker(
        ws,
        _settings(tmp_path, recommend_model="popularity", promotion_tolerance=0.0),
        only=["retrain-recommend"],
    )
    (run,) = worse.run_due(force=True)
    assert "stays candidate" in run.message, run.message
    assert registry.resolve(ws.store, "recommend", "production").version == champion.version
    candidate = registry.resolve(ws.store, "recommend", "candidate")
    assert candidate.version != champion.version and candidate.config["model"] == "popularity"
    decision = journal.read(ws.store, "decision")[-1]
    assert not decision["promoted"]
    assert decision["metrics"]["ndcg_at_10"] < decision["champion_metrics"]["ndcg_at_10"]
    (alert,) = journal.read(ws.store, "alert")
    assert alert["source"] == "retrain-recommend" and "stays candidate" in alert["message"]


def test_a_job_runs_once_at_a_time_and_survives_a_dead_worker(ws, tmp_path):
    now = datetime.now(UTC)
    first = Worker(ws, _settings(tmp_path), only=["kpis"], owner="w1")
    second = Worker(ws, _settings(tmp_path), only=["kpis"], owner="w2")
    job = first.jobs[0]
    # w1 took the lease and died mid-run: w2 may not run the job until the lease expires.
    assert ws.store.lease_job("kpis", "w1", now=now, until=now + timedelta(minutes=10))
    assert second.run_job(job, now) is None
    assert second.run_job(job, now + timedelta(minutes=11)).status == "ok"
    (state,) = ws.store.jobs()
    assert state["runs"] == 1 and state["lease_owner"] is None
    # w1's late finish cannot overwrite w2's record.
    assert not ws.store.finish_job(
        "kpis", "w1", status="ok", message="late", finished_at=now, next_run_at=now
    )
    assert ws.store.jobs()[0]["last_message"] != "late"


def test_a_failing_job_is_recorded_and_alerted(ws, tmp_path):
    worker = Worker(ws, _settings(tmp_path, promotion_metric="auc"), only=["retrain-recommend"])
    (run,) = worker.run_due()
    assert run.status == "failed" and "promotion_metric 'auc'" in run.message
    (state,) = ws.store.jobs()
    assert state["last_status"] == "failed" and state["lease_owner"] is None
    assert "auc" in journal.read(ws.store, "alert")[0]["message"]


def test_drift_alerts_and_schedules_a_retraining(store, tmp_path):
    store.append_events(events_table(*shop_log()))
    ws = Workspace(Settings(), store, None)  # the worker needs the store only
    worker = Worker(ws, _settings(tmp_path), only=["drift"])
    now = datetime.combine(AS_OF, datetime.min.time(), UTC) + timedelta(hours=12)
    (run,) = worker.run_due(now)
    assert "drift in purchase_value" in run.message
    features = journal.read(store, "drift")[0]["features"]
    assert features["purchase_value"]["drifted"] and not features["basket_lines"]["drifted"]
    retrain = {row["name"]: row for row in store.jobs()}["retrain-recommend"]
    assert retrain["next_run_at"] == now  # triggered: due at once
    assert "purchase_value" in journal.read(store, "alert")[0]["message"]


def test_unknown_jobs_and_durations_are_refused(ws, tmp_path):
    with pytest.raises(ValueError, match="unknown job retrain-budget"):
        Worker(ws, _settings(tmp_path), only=["retrain-budget"])
    with pytest.raises(ValueError, match="not a duration"):
        _settings(tmp_path, kpis_every="often")


def test_retrain_audience_is_judged_on_the_churn_horizon_and_rescores(tmp_path):
    from tailor.events.importer import import_table
    from tailor.workspace import open_workspace
    from tests.api._serving import KEY, raw_events
    from tests.api.test_audience import purchase_log

    settings = Settings(
        store=str(tmp_path / "shop.duckdb"), secret_key=KEY, privacy={"consent_default": EVERYONE}
    )
    ws = open_workspace(settings, create=True)  # purchases of 2024 only
    import_table(ws.store, raw_events(purchase_log(300)), pseudonymizer=ws.pseudonymizer)
    worker = Worker(
        ws, _settings(tmp_path, retrain_every={"audience": "7d"}), only=["retrain-audience"]
    )
    (run,) = worker.run_due()
    assert run.status == "ok" and "promoted to production" in run.message, run.message
    first = registry.resolve(ws.store, "audience", "production")
    assert 0.6 < first.metrics["churn_auc"] <= 1 and first.metrics["customers"] > 100
    assert first.data_window["holdout_from"] < first.data_window["to"]
    stored = ws.store.read_scores("audience")
    assert len(stored) == first.data_window["customers"]  # re-scored on promotion

    rescore = Worker(ws, _settings(tmp_path), only=["rescore-audience"])
    ws.store.replace_scores("audience", [], [], datetime.now(UTC))  # scores gone stale
    (scored,) = rescore.run_due()
    assert scored.status == "ok" and first.version in scored.message, scored.message
    assert len(ws.store.read_scores("audience")) == len(stored)

    (again,) = worker.run_due(force=True)
    second = registry.resolve(ws.store, "audience", "production")
    assert second.version != first.version and first.version in again.message
    decisions = journal.read(ws.store, "decision")
    assert [d["engine"] for d in decisions] == ["audience", "audience"]
    ws.close()


def test_prediction_drift_of_the_stored_scores_alerts_once(tmp_path):
    from datetime import date

    import pyarrow.compute as pc

    from tailor.audience.model import AudienceModel
    from tailor.audience.service import store_scores
    from tailor.events.importer import import_table
    from tailor.workspace import open_workspace
    from tests.api._serving import KEY, raw_events
    from tests.api.test_audience import purchase_log

    settings = Settings(
        store=str(tmp_path / "shop.duckdb"), secret_key=KEY, privacy={"consent_default": EVERYONE}
    )
    ws = open_workspace(settings, create=True)
    import_table(ws.store, raw_events(purchase_log(300)), pseudonymizer=ws.pseudonymizer)
    day = date(2024, 12, 31)
    scores = AudienceModel().fit(ws.store, day).score(ws.store, day)
    store_scores(ws.store, scores, day, datetime.now(UTC))
    worker = Worker(ws, _settings(tmp_path), only=["drift"])

    def features():
        worker.run_due(force=True)
        return journal.read(ws.store, "drift")[-1]["features"]

    first = features()
    assert first["prediction:churn_risk"]["note"] == "reference set"
    assert not features()["prediction:churn_risk"]["drifted"]  # the same scores
    # A model that suddenly sees everyone as at risk.
    risk = pc.min_element_wise(pc.add(scores["churn_risk"], 0.4), 1.0)
    shifted = scores.set_column(scores.schema.get_field_index("churn_risk"), "churn_risk", risk)
    store_scores(ws.store, shifted, day, datetime.now(UTC))
    found = features()["prediction:churn_risk"]
    assert found["drifted"] and found["psi"] > 0.5
    assert any("prediction:churn_risk" in a["message"] for a in journal.read(ws.store, "alert"))
    assert not features()["prediction:churn_risk"]["drifted"]  # the new reference: once
    ws.close()


def test_rescoring_without_a_production_model_says_so(ws, tmp_path):
    (run,) = Worker(ws, _settings(tmp_path), only=["rescore-audience"]).run_due()
    assert run.status == "ok" and "no production audience model yet" in run.message


def test_the_server_runs_the_worker_with_with_worker(tmp_path):
    """`tailor serve --with-worker`: the jobs run in the server's process (a DuckDB store can
    be opened by one process only)."""
    import time as clock

    from fastapi.testclient import TestClient

    from tailor.api.app import build_tenant, create_app
    from tailor.api.keys import KeyRing
    from tests.api._serving import KEY

    ws = workspace(tmp_path, consent=EVERYONE)
    settings = Settings(
        store=str(tmp_path / "unused.duckdb"),
        secret_key=KEY,
        lifecycle={"holdout": "3d", "model_dir": str(tmp_path / "models")},
    )
    tenant = build_tenant("default", ws, settings.api, poll_interval_s=None)
    app = create_app(
        settings=settings,
        tenants={"default": tenant},
        keys=KeyRing(tmp_path / "keys.json"),
        with_worker=True,
        worker_tick_s=0.2,
    )
    with TestClient(app):
        deadline = clock.monotonic() + 60
        while clock.monotonic() < deadline:
            done = {row["name"]: row for row in ws.store.jobs() if row["runs"]}
            if {"retrain-recommend", "kpis", "experiments", "drift"} <= set(done):
                break
            clock.sleep(0.2)
    assert done["retrain-recommend"]["last_status"] == "ok", done
    assert registry.resolve(ws.store, "recommend", "production").metrics["ndcg_at_10"] > 0
    ws.close()
