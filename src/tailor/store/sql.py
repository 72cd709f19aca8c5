"""The SQL both stores share; each backend supplies only types and its fast paths.

SQL here uses ``?`` placeholders and syntax that DuckDB and PostgreSQL both accept
(``DISTINCT ON``, ``ON CONFLICT``, ``FILTER``), so one query text serves both stores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import pyarrow as pa

from tailor.events.columns import (
    COLUMN_NAMES,
    ENTITIES,
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    PURPOSES,
    ColumnKind,
)
from tailor.events.table import conform_entities, conform_events
from tailor.store.base import (
    AppendResult,
    ConsentRecord,
    ErasureCounts,
    ProgressCallback,
    UpsertResult,
)
from tailor.store.lifecycle_sql import LifecycleTables
from tailor.store.stored_ids import StoredIdFilter

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_EVENT_COLS = ", ".join(COLUMN_NAMES)


def _check_kind(kind: str) -> None:
    if kind not in ENTITIES:
        raise ValueError(f"unknown entity {kind!r}; expected one of {', '.join(ENTITIES)}")


def _check_purpose(purpose: str | None) -> None:
    if purpose is not None and purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")


class SqlStore(LifecycleTables):
    """Shared implementation of :class:`tailor.store.base.Store`."""

    url: str
    opt_out_purposes: frozenset[str]
    _events_primary_key: bool = True
    _stored_ids: StoredIdFilter | None = None
    """Without the key, a filter that lets appends of new ids skip the duplicate probe."""

    def __init__(self, url: str, *, opt_out_purposes: Sequence[str] = ()) -> None:
        self.url = url
        self.opt_out_purposes = frozenset(opt_out_purposes)
        self._lock = threading.RLock()
        self._depth = 0

    # --- backend hooks --------------------------------------------------------------------
    def _sql_type(self, kind: ColumnKind) -> str:
        raise NotImplementedError

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Execute and fetch everything (DuckDB refuses new work while a result is open)."""
        raise NotImplementedError

    def _arrow(self, sql: str, params: Sequence[object], schema: pa.Schema) -> pa.Table:
        raise NotImplementedError

    @contextmanager
    def _staged(self, table: pa.Table) -> Iterator[str]:
        """Expose ``table`` to SQL under the yielded relation name for the block."""
        raise NotImplementedError
        yield ""  # pragma: no cover

    def _begin(self) -> None:
        self._run("BEGIN")

    def _commit(self) -> None:
        self._run("COMMIT")

    def _rollback(self) -> None:
        self._run("ROLLBACK")

    def _id_hashes(self, relation: str) -> np.ndarray:
        """64-bit hashes of the event ids of ``relation`` (for :attr:`_stored_ids`)."""
        raise NotImplementedError

    def _stored_id_hashes(self) -> np.ndarray:
        return self._id_hashes("events")

    def prepare_appends(self) -> None:
        """Build ahead what appends need, so that the first one does not wait for it."""
        with self._lock:
            if self._stored_ids is not None:
                self._stored_ids.load(self._stored_id_hashes)

    # --- schema ---------------------------------------------------------------------------
    def _create_schema(self) -> None:
        cols = ", ".join(f"{c.name} {self._sql_type(c.kind)}" for c in EVENT_COLUMNS)
        # DuckDB skips the key: its index slows bulk appends several-fold, and appends
        # already remove duplicates with an anti-join under the store's single-writer lock.
        key = ", PRIMARY KEY (event_id, line)" if self._events_primary_key else ""
        text, stamp = self._sql_type("string"), self._sql_type("timestamp")
        statements = [f"CREATE TABLE IF NOT EXISTS events ({cols}{key})"]
        for spec in ENTITIES.values():
            ecols = ", ".join(f"{c.name} {self._sql_type(c.kind)}" for c in spec.columns)
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {spec.name} ({ecols}, PRIMARY KEY ({spec.key}))"
            )
        statements += [
            "CREATE TABLE IF NOT EXISTS tombstones (subject_id "
            + self._sql_type("string")
            + " PRIMARY KEY, erased_at "
            + self._sql_type("timestamp")
            + ")",
            # Running servers look for erasures made since their last look (the CLI's too).
            "CREATE INDEX IF NOT EXISTS tombstones_erased_at ON tombstones (erased_at)",
            # What engines computed per person (the audience's segment, churn risk, value):
            # one JSON payload per (kind, subject), replaced whole by each scoring run.
            "CREATE TABLE IF NOT EXISTS customer_scores (kind "
            + self._sql_type("string")
            + ", subject_id "
            + self._sql_type("string")
            + ", payload "
            + self._sql_type("string")
            + ", scored_at "
            + self._sql_type("timestamp")
            + ", PRIMARY KEY (kind, subject_id))",
            # The model registry: versions, the aliases on them and every alias move.
            f"CREATE TABLE IF NOT EXISTS model_versions (engine {text}, version {text}, "
            f"created_at {stamp}, artifact {text}, artifact_sha256 {text}, record {text}, "
            "PRIMARY KEY (engine, version))",
            f"CREATE TABLE IF NOT EXISTS model_aliases (engine {text}, alias {text}, "
            f"version {text}, moved_at {stamp}, PRIMARY KEY (engine, alias))",
            f"CREATE TABLE IF NOT EXISTS alias_moves (engine {text}, alias {text}, "
            f"version {text}, previous {text}, moved_at {stamp}, moved_by {text}, "
            f"reason {text}, seq {self._sql_type('int')})",
            "CREATE TABLE IF NOT EXISTS meta (key "
            + self._sql_type("string")
            + " PRIMARY KEY, value "
            + self._sql_type("string")
            + ")",
            *self._lifecycle_schema(),
        ]
        with self.transaction():
            for statement in statements:
                self._run(statement)
            self._create_indexes()
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)

    def _create_indexes(self) -> None:
        """Backend-specific secondary indexes (none by default)."""

    # --- transactions ---------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outermost = self._depth == 0
            if outermost:
                self._begin()
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outermost:
                    self._rollback()
                raise
            self._depth -= 1
            if outermost:
                self._commit()

    # --- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._run("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._run(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    # --- events ---------------------------------------------------------------------------
    def append_events(
        self,
        events: pa.Table | Iterable[pa.Table],
        *,
        batch_rows: int = 500_000,
        on_progress: ProgressCallback | None = None,
        unique: bool = False,
    ) -> AppendResult:
        total = AppendResult(0, 0, 0, 0)
        with self.transaction():
            has_tombstones = self._has_tombstones()
            for table in [events] if isinstance(events, pa.Table) else events:
                table = conform_events(table)
                for offset in range(0, table.num_rows, batch_rows):
                    batch = table.slice(offset, batch_rows)
                    total = total + self._append_batch(batch, has_tombstones, unique)
                    if on_progress is not None:
                        on_progress(batch.num_rows)
        return total

    def _append_batch(self, batch: pa.Table, has_tombstones: bool, unique: bool) -> AppendResult:
        with self._staged(batch) as stage:
            return self._append_relation(stage, batch.num_rows, has_tombstones, unique)

    def _append_relation(
        self,
        relation: str,
        rows: int,
        has_tombstones: bool,
        unique: bool,
        ids_relation: str | None = None,
    ) -> AppendResult:
        """Insert the rows of ``relation`` (canonical event columns) that are new.

        Shared by every append path, so duplicate and erasure handling is the same for all.
        ``ids_relation`` may name a cheaper relation holding the same event ids.
        """
        erased = 0
        filters = []
        if has_tombstones:
            erased = self._run(
                f"SELECT count(*) FROM {relation} s WHERE s.subject_id IN "
                "(SELECT subject_id FROM tombstones)"
            )[0][0]
            filters.append(
                "(s.subject_id IS NULL OR s.subject_id NOT IN (SELECT subject_id FROM tombstones))"
            )
        conflict = ""
        if self._events_primary_key:
            # The key skips stored rows in the insert itself: no probe, whose plan over an
            # unanalyzed staging table may scan the whole log, and a concurrent writer (another
            # worker) storing the same id waits for it instead of failing.
            conflict = " ON CONFLICT (event_id, line) DO NOTHING"
        else:
            stored = 0
            known = self._stored_ids
            hashes = self._id_hashes(ids_relation or relation) if known is not None else None
            if known is None or known.may_hold_any(hashes, self._stored_id_hashes):
                # Only stored ids that occur in the new rows matter; with none (a first
                # import, or new ids the filter vouches for) nothing to filter.
                stored = self._run(
                    "SELECT count(*) FROM events e WHERE e.event_id IN "
                    f"(SELECT event_id FROM {ids_relation or relation})"
                )[0][0]
            if known is not None:
                known.add(hashes)
            if stored:
                filters.append(
                    "s.event_id NOT IN (SELECT e.event_id FROM events e WHERE e.event_id IN "
                    f"(SELECT event_id FROM {ids_relation or relation}))"
                )
        distinct = "" if unique else "DISTINCT ON (s.event_id, s.line) "
        order = "" if unique else "ORDER BY s.event_id, s.line"
        where = ("WHERE " + " AND ".join(filters)) if filters else ""
        inserted = self._insert_count(
            f"INSERT INTO events ({_EVENT_COLS}) SELECT {distinct}{_sel('s')} FROM {relation} s "
            f"{where} {order}{conflict}"
        )
        return AppendResult(rows, inserted, rows - inserted - erased, erased)

    def _insert_count(self, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    def read_events(
        self,
        *,
        purpose: str | None,
        event_types: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        received_after: datetime | None = None,
    ) -> pa.Table:
        names = list(columns) if columns else list(COLUMN_NAMES)
        scoped, params = self._scoped_events(
            names, purpose, event_types, start=start, end=end, received_after=received_after
        )
        sql = scoped + " ORDER BY e.occurred_at, e.event_id, e.line"
        schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
        return self._arrow(sql, params, schema)

    def aggregate_events(
        self,
        sql: str,
        params: Sequence[object],
        schema: pa.Schema,
        *,
        purpose: str,
        event_types: Sequence[str],
        columns: Sequence[str],
    ) -> pa.Table:
        if purpose is None:
            raise ValueError("aggregates feed engines: give the purpose whose consent applies")
        scoped, scoped_params = self._scoped_events(list(columns), purpose, event_types)
        # The caller's query (its own WITH clauses included) runs as a subquery that sees
        # the consented events as the relation ``scoped_events``; DuckDB and PostgreSQL both
        # let an inner query read an outer WITH.
        query = f"WITH scoped_events AS ({scoped}) SELECT * FROM ({sql}) AS aggregate"
        return self._arrow(query, [*scoped_params, *params], schema)

    def _scoped_events(
        self,
        names: list[str],
        purpose: str | None,
        event_types: Sequence[str] | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        received_after: datetime | None = None,
    ) -> tuple[str, list[object]]:
        """The SELECT of the events a purpose's consent allows, and its parameters."""
        _check_purpose(purpose)
        unknown = [n for n in names if n not in COLUMN_NAMES]
        if unknown:
            raise ValueError(f"unknown event column(s): {', '.join(unknown)}")
        where, params = [], []
        if event_types:
            where.append("e.event_type IN (" + ", ".join("?" * len(event_types)) + ")")
            params += list(event_types)
        if start is not None:
            where.append("e.occurred_at >= ?")
            params.append(start)
        if end is not None:
            where.append("e.occurred_at < ?")
            params.append(end)
        if received_after is not None:
            where.append("e.received_at > ?")
            params.append(received_after)
        sql = f"SELECT {', '.join('e.' + n for n in names)} FROM events e "
        if purpose is not None:
            default = "TRUE" if purpose in self.opt_out_purposes else "FALSE"
            # The latest consent record per subject, as a scalar subquery: unlike a WITH, it
            # nests inside a caller's WITH (see aggregate_events).
            sql += (
                "LEFT JOIN (SELECT DISTINCT ON (subject_id) subject_id, granted "
                "FROM events WHERE event_type = 'consent' AND purpose = ? "
                "ORDER BY subject_id, occurred_at DESC, received_at DESC, event_id DESC) c "
                "ON c.subject_id = e.subject_id "
            )
            params.insert(0, purpose)
            where.append(f"(e.subject_id IS NULL OR COALESCE(c.granted, {default}))")
        if where:
            sql += "WHERE " + " AND ".join(where)
        return sql, params

    def count_events(self) -> int:
        return int(self._run("SELECT count(*) FROM events")[0][0])

    def event_summary(self) -> pa.Table:
        schema = pa.schema(
            [
                ("event_type", pa.string()),
                ("rows", pa.int64()),
                ("events", pa.int64()),
                ("subjects", pa.int64()),
                ("first", EVENT_SCHEMA.field("occurred_at").type),
                ("last", EVENT_SCHEMA.field("occurred_at").type),
            ]
        )
        return self._arrow(
            "SELECT event_type, count(*), count(DISTINCT event_id), count(DISTINCT subject_id),"
            " min(occurred_at), max(occurred_at) FROM events GROUP BY event_type "
            "ORDER BY count(*) DESC, event_type",
            [],
            schema,
        )

    def iter_subject_events(self, subject_id: str) -> Iterator[dict]:
        table = self._arrow(
            f"SELECT {_EVENT_COLS} FROM events WHERE subject_id = ? "
            "ORDER BY occurred_at, event_id, line",
            [subject_id],
            EVENT_SCHEMA,
        )
        yield from table.to_pylist()

    # --- entities -------------------------------------------------------------------------
    def upsert_entities(self, kind: str, table: pa.Table) -> UpsertResult:
        _check_kind(kind)
        spec = ENTITIES[kind]
        if spec.key not in table.column_names:
            raise ValueError(f"{kind}: the key column {spec.key} is missing")
        present = [n for n in spec.column_names if n in table.column_names]
        staged = conform_entities(kind, table).select(present)
        staged = staged.append_column("_ord", pa.array(range(staged.num_rows), pa.int64()))
        guards = [f"s.{spec.key} IS NOT NULL"]
        erased_filter = "FALSE"
        for col, namespace in spec.pseudonymized.items():
            if namespace == "subject" and col in present:
                guards.append(
                    f"(s.{col} IS NULL OR s.{col} NOT IN (SELECT subject_id FROM tombstones))"
                )
                erased_filter += f" OR s.{col} IN (SELECT subject_id FROM tombstones)"
        cols = ", ".join(present)
        updates = ", ".join(f"{n} = excluded.{n}" for n in present if n != spec.key)
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        with self.transaction(), self._staged(staged) as stage:
            erased = self._run(f"SELECT count(*) FROM {stage} s WHERE {erased_filter}")[0][0]
            upserted = self._insert_count(
                f"INSERT INTO {kind} ({cols}) SELECT DISTINCT ON (s.{spec.key}) "
                f"{', '.join('s.' + n for n in present)} FROM {stage} s "
                f"WHERE {' AND '.join(guards)} ORDER BY s.{spec.key}, s._ord DESC "
                f"ON CONFLICT ({spec.key}) {conflict}"
            )
        return UpsertResult(table.num_rows, upserted, erased)

    def read_entities(self, kind: str) -> pa.Table:
        _check_kind(kind)
        spec = ENTITIES[kind]
        return self._arrow(
            f"SELECT {', '.join(spec.column_names)} FROM {kind} ORDER BY {spec.key}",
            [],
            spec.schema,
        )

    def count_entities(self, kind: str) -> int:
        _check_kind(kind)
        return int(self._run(f"SELECT count(*) FROM {kind}")[0][0])

    # --- privacy --------------------------------------------------------------------------
    def consent_records(self, subject_id: str) -> list[ConsentRecord]:
        rows = self._run(
            "SELECT purpose, granted, occurred_at, policy_version FROM events "
            "WHERE event_type = 'consent' AND subject_id = ? "
            "ORDER BY occurred_at, received_at, event_id",
            [subject_id],
        )
        return [ConsentRecord(p, bool(g), t, v) for p, g, t, v in rows]

    def erase_subject(self, subject_id: str, *, erased_at: datetime) -> ErasureCounts:
        with self.transaction():
            devices = [
                r[0]
                for r in self._run("SELECT device_id FROM devices WHERE owner_id = ?", [subject_id])
            ]
            events = self._delete_count("DELETE FROM events WHERE subject_id = ?", [subject_id])
            if devices:
                marks = ", ".join("?" * len(devices))
                events += self._delete_count(
                    f"DELETE FROM events WHERE device_id IN ({marks})", devices
                )
            users = self._delete_count("DELETE FROM users WHERE user_id = ?", [subject_id])
            removed_devices = self._delete_count(
                "DELETE FROM devices WHERE owner_id = ?", [subject_id]
            )
            self._run("DELETE FROM customer_scores WHERE subject_id = ?", [subject_id])
            self._erase_lifecycle(subject_id)
            self._run(
                "INSERT INTO tombstones (subject_id, erased_at) VALUES (?, ?) "
                "ON CONFLICT (subject_id) DO NOTHING",
                [subject_id, erased_at],
            )
        return ErasureCounts(events=events, users=users, devices=removed_devices)

    # --- scores -----------------------------------------------------------------------------
    def replace_scores(
        self, kind: str, subject_ids: Sequence[str], payloads: Sequence[str], scored_at: datetime
    ) -> int:
        if not kind:
            raise ValueError("scores need a kind (e.g. 'audience')")
        if len(subject_ids) != len(payloads):
            raise ValueError(
                f"{len(subject_ids)} subject ids but {len(payloads)} payloads: one each"
            )
        table = pa.table(
            {
                "subject_id": pa.array(subject_ids, pa.string()),
                "payload": pa.array(payloads, pa.string()),
                "_ord": pa.array(range(len(payloads)), pa.int64()),
            }
        )
        with self.transaction(), self._staged(table) as stage:
            self._run("DELETE FROM customer_scores WHERE kind = ?", [kind])
            return self._insert_count(
                "INSERT INTO customer_scores (kind, subject_id, payload, scored_at) "
                f"SELECT DISTINCT ON (s.subject_id) ?, s.subject_id, s.payload, ? FROM {stage} s "
                "WHERE s.subject_id IS NOT NULL AND s.payload IS NOT NULL "
                "AND s.subject_id NOT IN (SELECT subject_id FROM tombstones) "
                "ORDER BY s.subject_id, s._ord DESC",  # a subject given twice: the last wins
                [kind, scored_at],
            )

    def read_scores(
        self, kind: str, subject_id: str | None = None
    ) -> list[tuple[str, str, datetime]]:
        sql = "SELECT subject_id, payload, scored_at FROM customer_scores WHERE kind = ?"
        params: list[object] = [kind]
        if subject_id is not None:
            sql += " AND subject_id = ?"
            params.append(subject_id)
        return [(r[0], r[1], r[2]) for r in self._run(sql + " ORDER BY subject_id", params)]

    # --- model registry ---------------------------------------------------------------------
    def add_model_version(
        self,
        engine: str,
        version: str,
        created_at: datetime,
        artifact: str,
        artifact_sha256: str,
        record: str,
    ) -> None:
        with self.transaction():
            if self._run(
                "SELECT 1 FROM model_versions WHERE engine = ? AND version = ?", [engine, version]
            ):
                raise ValueError(f"{engine} already has a version {version!r}")
            self._run(
                "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)",
                [engine, version, created_at, artifact, artifact_sha256, record],
            )

    def model_versions(self, engine: str | None = None) -> list[tuple]:
        where, params = ("WHERE engine = ? ", [engine]) if engine else ("", [])
        return self._run(
            "SELECT engine, version, created_at, artifact, artifact_sha256, record "
            f"FROM model_versions {where}ORDER BY created_at, version",
            params,
        )

    def move_alias(
        self,
        engine: str,
        alias: str,
        version: str,
        *,
        moved_at: datetime,
        moved_by: str,
        reason: str,
    ) -> str | None:
        with self.transaction():
            if not self._run(
                "SELECT 1 FROM model_versions WHERE engine = ? AND version = ?", [engine, version]
            ):
                raise ValueError(f"{engine} has no version {version!r} (see `tailor models list`)")
            found = self._run(
                "SELECT version FROM model_aliases WHERE engine = ? AND alias = ?", [engine, alias]
            )
            previous = found[0][0] if found else None
            self._run("DELETE FROM model_aliases WHERE engine = ? AND alias = ?", [engine, alias])
            self._run(
                "INSERT INTO model_aliases VALUES (?, ?, ?, ?)", [engine, alias, version, moved_at]
            )
            seq = self._run(
                "SELECT coalesce(max(seq), 0) + 1 FROM alias_moves WHERE engine = ? AND alias = ?",
                [engine, alias],
            )[0][0]
            self._run(
                "INSERT INTO alias_moves VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [engine, alias, version, previous, moved_at, moved_by, reason, seq],
            )
        return previous

    def model_aliases(self, engine: str | None = None) -> list[tuple[str, str, str, datetime]]:
        where, params = ("WHERE engine = ? ", [engine]) if engine else ("", [])
        return self._run(
            f"SELECT engine, alias, version, moved_at FROM model_aliases {where}"
            "ORDER BY engine, alias",
            params,
        )

    def alias_moves(self, engine: str, alias: str) -> list[tuple]:
        return self._run(
            "SELECT version, previous, moved_at, moved_by, reason FROM alias_moves "
            "WHERE engine = ? AND alias = ? ORDER BY seq",
            [engine, alias],
        )

    def _delete_count(self, sql: str, params: Sequence[object]) -> int:
        return self._insert_count(sql, params)

    def is_erased(self, subject_id: str) -> bool:
        return bool(self._run("SELECT 1 FROM tombstones WHERE subject_id = ?", [subject_id]))

    def count_tombstones(self) -> int:
        return int(self._run("SELECT count(*) FROM tombstones")[0][0])

    def _has_tombstones(self) -> bool:
        """Whether anyone was erased: asked at every append, so it stops at the first row
        where a count would read them all."""
        return bool(self._run("SELECT EXISTS (SELECT 1 FROM tombstones)")[0][0])

    def erased_subjects(self, since: datetime | None = None) -> list[tuple[str, datetime]]:
        if since is None:
            return [tuple(r) for r in self._run("SELECT subject_id, erased_at FROM tombstones")]
        rows = self._run(
            "SELECT subject_id, erased_at FROM tombstones WHERE erased_at >= ?", [since]
        )
        return [tuple(r) for r in rows]

    def purge_events(self, before: datetime) -> int:
        with self.transaction():
            # The served answers hold pseudonyms too: they age out with the events.
            self._run("DELETE FROM served_recommendations WHERE served_at < ?", [before])
            return self._delete_count(
                "DELETE FROM events WHERE occurred_at < ? AND event_type <> 'consent'", [before]
            )


def _sel(alias: str) -> str:
    return ", ".join(f"{alias}.{n}" for n in COLUMN_NAMES)
