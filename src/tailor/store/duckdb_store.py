"""The embedded default store: one DuckDB file, Arrow in and out without copies."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from tailor.errors import StoreError
from tailor.events.columns import ColumnKind
from tailor.store.base import AppendResult
from tailor.store.sql import SqlStore
from tailor.store.stored_ids import StoredIdFilter, shared_filter

_TYPES: dict[ColumnKind, str] = {
    "string": "VARCHAR",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "JSON",
}

CHECKPOINT_THRESHOLD = "64MB"
"""WAL size at which a commit also checkpoints (DuckDB's default is 16 MB, about 80,000 events).

A checkpoint recompresses what the WAL holds, 2 to 3 us per event, and the commit that
triggers it waits for it; at 16 MB the last, partly filled row group is recompressed at every
checkpoint. Measured on 1.28 M appended events in groups of 20,000 (2 cores): 16 MB 6.0 us
per event (stall 0.3 s), 64 MB 5.4 (stall 0.65 to 1.1 s), 128 MB 4.6 (stall 0.9 s);
``bench.serve --quick`` ingests 42,000 events/s at 16 MB and 47,800 at 64 MB. The price is
the WAL replayed when a crashed process reopens the store: 0.1 s at 16 MB, 0.3 s at 64 MB
(1.1 s at 256 MB). 64 MB keeps both the stall and the replay well under a second."""


class DuckDBStore(SqlStore):
    """A DuckDB file (or ``:memory:``). One process writes at a time, as DuckDB requires."""

    _events_primary_key = False

    def __init__(self, path: str | Path, **kwargs: object) -> None:
        super().__init__(str(path), **kwargs)  # type: ignore[arg-type]
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            raise StoreError(
                f"cannot open DuckDB store {path}: {exc}. Another tailor process may hold it "
                "open; stop it or point TAILOR_STORE elsewhere. While `tailor serve` runs on "
                "it, make changes through its API (e.g. DELETE /v1/users/{id} to erase)."
            ) from exc
        self._con.execute("SET TimeZone = 'UTC'").fetchall()
        self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'").fetchall()
        self._names = itertools.count()
        self._create_schema()
        if str(path) == ":memory:":  # each connection to :memory: is a database of its own
            self._stored_ids = StoredIdFilter()
            self._release_ids = None
        else:
            self._stored_ids, self._release_ids = shared_filter(str(Path(path).resolve()), self)

    def _sql_type(self, kind: ColumnKind) -> str:
        return _TYPES[kind]

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._con.execute(sql, list(params)).fetchall()

    def _insert_count(self, sql: str, params: Sequence[object] = ()) -> int:
        rows = self._run(sql, params)
        return int(rows[0][0]) if rows else 0

    def _arrow(self, sql: str, params: Sequence[object], schema: pa.Schema) -> pa.Table:
        with self._lock:
            table = self._con.sql(sql, params=list(params) or None).to_arrow_table()
        return table.rename_columns(schema.names).cast(schema)

    def _id_hashes(self, relation: str) -> np.ndarray:
        # DuckDB's hash may change between versions; the filter lives in this process only.
        with self._lock:
            found = self._con.execute(f"SELECT hash(event_id) AS h FROM {relation}").fetchnumpy()
        return np.asarray(found["h"], np.uint64)

    @contextmanager
    def _staged(self, table: pa.Table) -> Iterator[str]:
        name = f"_stage_{next(self._names)}"
        with self._lock:
            self._con.register(name, table)
            try:
                yield name
            finally:
                self._con.unregister(name)

    @contextmanager
    def engine(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The store's own connection, for work that should not leave DuckDB (bulk import)."""
        with self._lock:
            yield self._con

    def append_events_from(
        self, relation: str, rows: int, *, ids_relation: str | None = None
    ) -> AppendResult:
        """Append the unique, validated rows of a relation on :meth:`engine` in one statement."""
        with self.transaction():
            return self._append_relation(relation, rows, self._has_tombstones(), True, ids_relation)

    def close(self) -> None:
        with self._lock:
            self._con.close()
            if self._release_ids is not None:
                self._release_ids()
