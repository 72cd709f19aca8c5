"""The lifecycle's tables, shared by both SQL stores: scheduled jobs and their leases, the log
of served recommendations (what attributes an impression to a model version and an
experiment's arm), experiments, and the lifecycle log (alerts, KPI snapshots, job runs).

Same ``?`` SQL for DuckDB and PostgreSQL, as in :mod:`tailor.store.sql`.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

SERVED_SCHEMA = pa.schema(
    [
        ("recommendation_id", pa.string()),
        ("subject_id", pa.string()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        ("engine", pa.string()),
        ("model_version", pa.string()),
        ("experiment", pa.string()),
        ("arm", pa.string()),
        ("propensity", pa.float64()),
    ]
)
"""One row per answer served: nothing of an erased subject survives (the erasure deletes it)."""

JOB_COLUMNS = (
    "name",
    "next_run_at",
    "lease_owner",
    "lease_until",
    "last_started",
    "last_finished",
    "last_status",
    "last_message",
    "runs",
)


class LifecycleTables:
    """Mixed into :class:`tailor.store.sql.SqlStore` (which supplies ``_run`` and friends)."""

    def _lifecycle_schema(self) -> list[str]:
        text, stamp = self._sql_type("string"), self._sql_type("timestamp")
        number, integer = self._sql_type("float"), self._sql_type("int")
        return [
            f"CREATE TABLE IF NOT EXISTS jobs (name {text} PRIMARY KEY, next_run_at {stamp}, "
            f"lease_owner {text}, lease_until {stamp}, last_started {stamp}, "
            f"last_finished {stamp}, last_status {text}, last_message {text}, runs {integer})",
            # No key: ids are random UUIDs written once (a failed write is rolled back before
            # it is retried), and DuckDB's index would triple the cost of each second's write
            # (15 ms instead of 5 for 3,000 answers). Readers de-duplicate all the same.
            f"CREATE TABLE IF NOT EXISTS served_recommendations (recommendation_id {text}, "
            f"subject_id {text}, served_at {stamp}, engine {text}, "
            f"model_version {text}, experiment {text}, arm {text}, propensity {number})",
            f"CREATE TABLE IF NOT EXISTS experiments (name {text} PRIMARY KEY, spec {text}, "
            f"updated_at {stamp})",
            f"CREATE TABLE IF NOT EXISTS lifecycle_log (kind {text}, logged_at {stamp}, "
            f"payload {text})",
            "CREATE INDEX IF NOT EXISTS lifecycle_log_kind_at ON lifecycle_log (kind, logged_at)",
        ]

    # --- jobs -------------------------------------------------------------------------------
    def lease_job(self, name: str, owner: str, *, now: datetime, until: datetime) -> bool:
        """Take the job's lease when it is free, expired or already ``owner``'s: one UPDATE,
        so two workers racing for it cannot both win."""
        with self.transaction():
            self._run(
                "INSERT INTO jobs (name, runs) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", [name]
            )
            taken = self._insert_count(
                "UPDATE jobs SET lease_owner = ?, lease_until = ?, last_started = ? "
                "WHERE name = ? AND (lease_owner IS NULL OR lease_until <= ? OR lease_owner = ?)",
                [owner, until, now, name, now, owner],
            )
        return taken == 1

    def finish_job(
        self,
        name: str,
        owner: str,
        *,
        status: str,
        message: str,
        finished_at: datetime,
        next_run_at: datetime,
    ) -> bool:
        """Record a run's end and free the lease; False when ``owner`` no longer held it."""
        return (
            self._insert_count(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, last_finished = ?, "
                "last_status = ?, last_message = ?, next_run_at = ?, runs = runs + 1 "
                "WHERE name = ? AND lease_owner = ?",
                [finished_at, status, message, next_run_at, name, owner],
            )
            == 1
        )

    def schedule_job(self, name: str, next_run_at: datetime) -> None:
        """Set when the job runs next (a trigger: now)."""
        with self.transaction():
            self._run(
                "INSERT INTO jobs (name, runs) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", [name]
            )
            self._run("UPDATE jobs SET next_run_at = ? WHERE name = ?", [next_run_at, name])

    def jobs(self) -> list[dict]:
        rows = self._run(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY name")
        return [dict(zip(JOB_COLUMNS, row, strict=True)) for row in rows]

    # --- served recommendations ----------------------------------------------------------------
    def record_served(self, rows: pa.Table) -> int:
        """Append served answers (:data:`SERVED_SCHEMA`); nothing of a subject erased
        meanwhile is written."""
        if not rows.num_rows:
            return 0
        rows = rows.select(SERVED_SCHEMA.names).cast(SERVED_SCHEMA)
        names = ", ".join(SERVED_SCHEMA.names)
        with self.transaction(), self._staged(rows) as stage:
            return self._insert_count(
                f"INSERT INTO served_recommendations ({names}) "
                f"SELECT {names} FROM {stage} s WHERE s.subject_id IS NULL "
                "OR s.subject_id NOT IN (SELECT subject_id FROM tombstones)"
            )

    def read_served(
        self, *, experiment: str | None = None, since: datetime | None = None
    ) -> pa.Table:
        where, params = [], []
        if experiment is not None:
            where.append("experiment = ?")
            params.append(experiment)
        if since is not None:
            where.append("served_at >= ?")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._arrow(
            f"SELECT DISTINCT ON (served_at, recommendation_id) {', '.join(SERVED_SCHEMA.names)} "
            f"FROM served_recommendations{clause} ORDER BY served_at, recommendation_id",
            params,
            SERVED_SCHEMA,
        )

    # --- experiments -------------------------------------------------------------------------
    def put_experiment(self, name: str, spec: str, updated_at: datetime) -> None:
        self._run(
            "INSERT INTO experiments (name, spec, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
            "updated_at = excluded.updated_at",
            [name, spec, updated_at],
        )

    def experiments(self) -> list[tuple[str, str, datetime]]:
        return [
            tuple(r)
            for r in self._run("SELECT name, spec, updated_at FROM experiments ORDER BY name")
        ]

    # --- lifecycle log -----------------------------------------------------------------------
    def add_log(self, kind: str, at: datetime, payload: str) -> None:
        self._run("INSERT INTO lifecycle_log VALUES (?, ?, ?)", [kind, at, payload])

    def read_log(
        self, kind: str, *, since: datetime | None = None, limit: int = 1000
    ) -> list[tuple[datetime, str]]:
        """The newest ``limit`` entries of ``kind``, oldest first."""
        sql, params = "SELECT logged_at, payload FROM lifecycle_log WHERE kind = ?", [kind]
        if since is not None:
            sql += " AND logged_at >= ?"
            params.append(since)
        rows = self._run(sql + " ORDER BY logged_at DESC LIMIT ?", [*params, int(limit)])
        return [tuple(r) for r in reversed(rows)]

    def _erase_lifecycle(self, subject_id: str) -> None:
        self._run("DELETE FROM served_recommendations WHERE subject_id = ?", [subject_id])
