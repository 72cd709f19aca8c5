"""The production store: PostgreSQL through psycopg 3, bulk data through ``COPY`` both ways."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from tailor.errors import StoreError
from tailor.events.columns import ENTITIES, EVENT_COLUMNS, ColumnKind
from tailor.store.base import AppendResult
from tailor.store.sql import SqlStore

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise StoreError(
        "PostgreSQL support needs the postgres extra: pip install 'tailor[postgres]'"
    ) from exc

_TYPES: dict[ColumnKind, str] = {
    "string": "TEXT",
    "float": "DOUBLE PRECISION",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "JSONB",
}


_JSON_COLUMNS = frozenset(
    c.name
    for c in (*EVENT_COLUMNS, *(c for spec in ENTITIES.values() for c in spec.columns))
    if c.kind == "json"
)


def _arrow_to_pg(name: str, dtype: pa.DataType) -> str:
    if name in _JSON_COLUMNS:
        return "JSONB"
    if pa.types.is_floating(dtype):
        return "DOUBLE PRECISION"
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMPTZ"
    return "TEXT"


def _utc_wall_time(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamps as their UTC wall time: Arrow's CSV writer formats aware
    ones over twenty times slower, and the connection's ``TimeZone`` is UTC (set on every
    connect), so PostgreSQL reads the wall time back as the same instant."""
    for index, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            naive = table.column(index).cast(pa.timestamp(column.type.unit))
            table = table.set_column(index, column.name, naive)
    return table


ANALYZE_AFTER_ROWS = 50_000
"""Appends of at least this many events refresh the planner's statistics (``ANALYZE``)."""


def _csv_payload(table: pa.Table) -> tuple[list[str], io.BytesIO]:
    """The columns of ``table`` that hold a value, and its rows as ``COPY`` CSV.

    Only columns holding a value travel: an event uses a handful of the 32 event columns, and
    the server parses every field of the CSV (empty ones too); the others are NULL anyway.
    About a fifth less COPY time for views and carts.
    """
    sent = [
        f.name for f, c in zip(table.schema, table.columns, strict=True) if c.null_count < len(c)
    ]
    if table.num_rows and not sent:  # rows of NULLs only: one column keeps their count
        sent = table.column_names[:1]
    csv = io.BytesIO()
    if sent:
        pa_csv.write_csv(
            _utc_wall_time(table.select(sent)),
            csv,
            pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"),
        )
    return sent, csv


class PostgresStore(SqlStore):
    """A PostgreSQL database given by a ``postgresql://`` URL."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self._con = self._connect()
        self._names = itertools.count()
        self._create_schema()

    def _connect(self) -> psycopg.Connection:
        try:
            # Bounded waits: a silent network (dropped packets, not refusals) must surface as an
            # error the API answers 503 to, not hang the writer and every request behind it.
            con = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL: {str(exc).strip()}. Check the URL in "
                "TAILOR_STORE and that the server is running."
            ) from exc
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _cursor(self) -> psycopg.Cursor:
        """A cursor on a live connection: one lost between transactions (the server restarted,
        an idle timeout) is opened again, so a long-running server recovers by itself. Inside
        a transaction a lost connection is an error: its work is gone."""
        if self._con.closed or self._con.broken:
            if self._depth > 0:
                raise StoreError("the connection to PostgreSQL was lost inside a transaction")
            self._con = self._connect()
        return self._con.cursor()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        except psycopg.Error:
            # With the connection gone the server has rolled back already; keep the error
            # that caused the rollback instead of this one.
            if not (self._con.closed or self._con.broken):
                raise

    def _sql_type(self, kind: ColumnKind) -> str:
        return _TYPES[kind]

    def _create_indexes(self) -> None:
        self._run("CREATE INDEX IF NOT EXISTS events_subject ON events (subject_id)")
        self._run("CREATE INDEX IF NOT EXISTS events_time ON events (occurred_at)")
        self._run("CREATE INDEX IF NOT EXISTS events_received ON events (received_at)")
        # Partial: most events (views, carts...) carry no device, and a full index would take
        # an entry for each of them, about 1 us of the server's time per stored event. The
        # erasure's ``device_id IN (...)`` implies NOT NULL, so it still uses this index.
        self._run(
            "CREATE INDEX IF NOT EXISTS events_device ON events (device_id) "
            "WHERE device_id IS NOT NULL"
        )
        self._run("CREATE INDEX IF NOT EXISTS devices_owner ON devices (owner_id)")
        self._run(
            "CREATE INDEX IF NOT EXISTS served_subject ON served_recommendations (subject_id)"
        )
        self._run("CREATE INDEX IF NOT EXISTS served_time ON served_recommendations (served_at)")
        self._run(
            "CREATE INDEX IF NOT EXISTS served_experiment ON served_recommendations (experiment) "
            "WHERE experiment IS NOT NULL"
        )

    def append_events(self, events: pa.Table | Iterable[pa.Table], **kwargs: Any) -> AppendResult:
        """:meth:`SqlStore.append_events`, then fresh planner statistics after a bulk load.

        Until autovacuum's next round (a minute or more) the planner would otherwise plan on
        statistics from before the load: a server started right after an import had each
        worker's look for rows received in the last second take a parallel sequential scan
        of every event (600 ms of database CPU every half second per worker, measured on 6
        million rows) instead of the ``received_at`` index (0.06 ms).
        """
        result = super().append_events(events, **kwargs)
        if result.inserted >= ANALYZE_AFTER_ROWS:
            self._run("ANALYZE events")
        return result

    @staticmethod
    def _pg(sql: str) -> str:
        return sql.replace("?", "%s")

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock, self._cursor() as cur:
            cur.execute(self._pg(sql), list(params) or None)
            return cur.fetchall() if cur.description else []

    def _insert_count(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock, self._cursor() as cur:
            cur.execute(self._pg(sql), list(params) or None)
            return max(cur.rowcount, 0)

    def _arrow(self, sql: str, params: Sequence[object], schema: pa.Schema) -> pa.Table:
        buffer = io.BytesIO()
        with (
            self._lock,
            self._cursor() as cur,
            cur.copy(
                f"COPY ({self._pg(sql)}) TO STDOUT (FORMAT csv)", list(params) or None
            ) as copy,
        ):
            for chunk in copy:
                buffer.write(chunk)
        if buffer.tell() == 0:
            return schema.empty_table()
        buffer.seek(0)
        return pa_csv.read_csv(
            buffer,
            read_options=pa_csv.ReadOptions(column_names=schema.names),
            # A one-column row holding NULL is an empty line in COPY's CSV: a row, not nothing.
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=schema,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t", "true"],
                false_values=["f", "false"],
            ),
        )

    def _append_batch(self, batch: pa.Table, has_tombstones: bool, unique: bool) -> AppendResult:
        """Rows the caller vouches are distinct go straight into ``events`` with ``COPY``.

        The staged path (a temporary table, then ``INSERT ... SELECT ... ON CONFLICT``) took
        about 12 us of the server's CPU per event, 10 of them in the insert's speculative
        key checks and executor; a ``COPY`` into ``events`` takes about 8 us (4,000-event
        appends to a 1-million-event table on this 2-core machine). The key still guards
        against stored ids: a duplicate fails the ``COPY``, which is rolled back to its
        savepoint and retried through the staged path, which sorts new from stored rows. A
        retried request thus costs two attempts, a new one one. Batches holding an erased
        subject's events take the staged path, which filters them out.
        """
        if (
            not unique
            or batch.num_rows == 0
            or (has_tombstones and self._holds_erased_subject(batch))
        ):
            return super()._append_batch(batch, has_tombstones, unique)
        sent, csv = _csv_payload(batch)
        with self.transaction():
            self._run("SAVEPOINT tailor_copy_events")
            try:
                self._copy_in("events", sent, csv)
            except psycopg.errors.UniqueViolation:
                self._run("ROLLBACK TO SAVEPOINT tailor_copy_events")
                return super()._append_batch(batch, has_tombstones, unique)
            self._run("RELEASE SAVEPOINT tailor_copy_events")
        return AppendResult(batch.num_rows, batch.num_rows, 0, 0)

    def _holds_erased_subject(self, batch: pa.Table) -> bool:
        subjects = pc.unique(batch.column("subject_id").drop_null()).to_pylist()
        if not subjects:
            return False
        return bool(
            self._run(
                "SELECT EXISTS (SELECT 1 FROM tombstones WHERE subject_id = ANY(?))", [subjects]
            )[0][0]
        )

    @contextmanager
    def _staged(self, table: pa.Table) -> Iterator[str]:
        name = f"_stage_{next(self._names)}"
        columns = ", ".join(f"{f.name} {_arrow_to_pg(f.name, f.type)}" for f in table.schema)
        sent, csv = _csv_payload(table)
        with self.transaction():
            # Dropped at commit, and never created at all if the transaction rolls back.
            self._run(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
            if sent:
                self._copy_in(name, sent, csv)
            yield name

    def _copy_in(self, relation: str, sent: Sequence[str], csv: io.BytesIO) -> None:
        with (
            self._lock,
            self._cursor() as cur,
            cur.copy(f"COPY {relation} ({', '.join(sent)}) FROM STDIN (FORMAT csv)") as copy,
        ):
            view = csv.getbuffer()
            try:
                for start in range(0, len(view), 1 << 20):
                    copy.write(view[start : start + (1 << 20)])
            finally:
                del view

    def close(self) -> None:
        with self._lock:
            self._con.close()
