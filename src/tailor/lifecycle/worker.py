"""``tailor worker``: the scheduled and triggered jobs of the lifecycle.

Each job has a cadence (``[lifecycle]`` in ``tailor.toml``). Its state lives in the store's
``jobs`` table: when it runs next, who holds its lease and until when, how its last run
ended. A worker runs a job only after taking its lease (one UPDATE that only one worker can
win), so two workers, or a worker and its restarted self, never run the same job at once; a
worker that dies mid-job leaves a lease that expires after the job's time limit, and the
job's schedule survives in the store. Triggered jobs are scheduled for now by another job
(drift detected → retrain).

Jobs (:mod:`tailor.lifecycle.jobs`): ``retrain-recommend``, ``retrain-audience``,
``rescore-audience`` (the stored scores, recomputed by the production model as days pass),
``experiments`` (canary steps and rollbacks, bandit learning, SRM alarms), ``kpis``,
``drift`` and, with ``budget_model`` set, ``replan-budget`` (the media-mix model re-fitted on
the ad events and the budget re-planned) and, with ``devices_model`` set, ``refit-devices``
(every home's habits re-learned from its telemetry and adjustments).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tailor.config import LifecycleSettings, parse_duration
from tailor.lifecycle import alerts, journal
from tailor.workspace import Workspace

log = logging.getLogger(__name__)

JobFunction = Callable[["JobContext"], str]


@dataclass(frozen=True)
class Job:
    name: str
    every_s: float
    run: JobFunction
    lease_s: float = 3600.0
    """The longest a run may take before another worker may take the job over."""


@dataclass
class JobContext:
    workspace: Workspace
    settings: LifecycleSettings
    now: datetime

    @property
    def store(self):
        return self.workspace.store

    def alert(self, source: str, message: str, **details: object) -> None:
        alerts.raise_alert(self.store, self.settings.alerts, source, message, details=details)


@dataclass(frozen=True)
class JobRun:
    job: str
    status: str
    message: str
    seconds: float


def scheduled_jobs(settings: LifecycleSettings) -> list[Job]:
    from tailor.lifecycle import jobs

    out = [
        Job("experiments", parse_duration(settings.experiments_every), jobs.experiments, 600),
        Job("kpis", parse_duration(settings.kpis_every), jobs.kpis, 600),
        Job("rescore-audience", parse_duration(settings.rescore_every), jobs.rescore_audience),
        Job("drift", parse_duration(settings.drift_every), jobs.drift, 1800),
    ]
    if settings.budget_model is not None:
        out.append(Job("replan-budget", parse_duration(settings.replan_every), jobs.replan_budget))
    if settings.devices_model is not None:
        every = parse_duration(settings.refit_devices_every)
        out.append(Job("refit-devices", every, jobs.refit_devices, 4 * 3600))
    retrain = {"recommend": jobs.retrain_recommend, "audience": jobs.retrain_audience}
    for engine, every in settings.retrain_every.items():
        if engine in retrain:
            out.append(Job(f"retrain-{engine}", parse_duration(every), retrain[engine], 4 * 3600))
    return out


class Worker:
    """Runs the due jobs of one workspace, each under its lease."""

    def __init__(
        self,
        workspace: Workspace,
        settings: LifecycleSettings,
        *,
        only: list[str] | None = None,
        owner: str | None = None,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.jobs = scheduled_jobs(settings)
        if only:
            known = {job.name for job in self.jobs}
            unknown = sorted(set(only) - known)
            if unknown:
                raise ValueError(
                    f"unknown job {', '.join(unknown)}; the jobs are {', '.join(sorted(known))} "
                    "(retrain-ENGINE needs the engine in [lifecycle] retrain_every, replan-budget "
                    "needs [lifecycle] budget_model, refit-devices [lifecycle] devices_model)"
                )
            self.jobs = [job for job in self.jobs if job.name in only]
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    @property
    def store(self):
        return self.workspace.store

    def due(self, now: datetime) -> list[Job]:
        state = {row["name"]: row for row in self.store.jobs()}
        return [
            job
            for job in self.jobs
            if state.get(job.name, {}).get("next_run_at") is None
            or state[job.name]["next_run_at"] <= now
        ]

    def run_due(self, now: datetime | None = None, *, force: bool = False) -> list[JobRun]:
        """Run every job that is due (``force``: every job), each only if its lease is won."""
        now = now or datetime.now(UTC)
        runs = []
        for job in self.jobs if force else self.due(now):
            run = self.run_job(job, now)
            if run is not None:
                runs.append(run)
        return runs

    def run_job(self, job: Job, now: datetime | None = None) -> JobRun | None:
        """Run ``job`` under its lease; None when another worker holds it."""
        now = now or datetime.now(UTC)
        until = now + timedelta(seconds=job.lease_s)
        if not self.store.lease_job(job.name, self.owner, now=now, until=until):
            log.info("job %s is running elsewhere; skipped", job.name)
            return None
        started = time.perf_counter()
        context = JobContext(self.workspace, self.settings, now)
        try:
            message, status = job.run(context), "ok"
        except Exception as exc:  # a failed job is recorded and alerted, the worker goes on
            log.exception("job %s failed", job.name)
            message, status = f"{type(exc).__name__}: {exc}", "failed"
            context.alert(f"job {job.name}", f"job {job.name} failed: {message}")
        seconds = time.perf_counter() - started
        finished = datetime.now(UTC)
        if not self.store.finish_job(
            job.name,
            self.owner,
            status=status,
            message=message[:2000],
            finished_at=finished,
            next_run_at=now + timedelta(seconds=job.every_s),
        ):
            log.warning("job %s ran past its lease; another worker may have run it too", job.name)
        journal.write(
            self.store,
            "job",
            {
                "job": job.name,
                "status": status,
                "message": message[:2000],
                "seconds": round(seconds, 3),
            },
        )
        return JobRun(job.name, status, message, seconds)

    def run_forever(
        self,
        *,
        tick_s: float = 10.0,
        stop: threading.Event | None = None,
        on_run: Callable[[JobRun], None] | None = None,
    ) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            for run in self.run_due():
                if on_run is not None:
                    on_run(run)
            stop.wait(tick_s)
