"""The store contract: small protocols per concern, one shared contract test for every backend.

Engines read through :class:`EventReader` (always with a consent purpose), ingestion writes
through :class:`EventWriter` and :class:`EntityWriter`, privacy goes through
:class:`PrivacyStore`. A backend implements all of them (:class:`Store`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import pyarrow as pa

ProgressCallback = Callable[[int], None]
"""Called with the number of rows just written, after each batch."""


@dataclass(frozen=True)
class AppendResult:
    rows: int
    inserted: int
    duplicates: int
    erased_skipped: int

    def __add__(self, other: AppendResult) -> AppendResult:
        return AppendResult(
            self.rows + other.rows,
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.erased_skipped + other.erased_skipped,
        )


@dataclass(frozen=True)
class UpsertResult:
    rows: int
    upserted: int
    erased_skipped: int


@dataclass(frozen=True)
class ErasureCounts:
    events: int
    users: int
    devices: int


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    granted: bool
    occurred_at: datetime
    policy_version: str | None


class EventWriter(Protocol):
    def append_events(
        self,
        events: pa.Table | Iterable[pa.Table],
        *,
        batch_rows: int = 500_000,
        on_progress: ProgressCallback | None = None,
        unique: bool = False,
    ) -> AppendResult:
        """Append pseudonymized, validated events in one transaction.

        Events whose ``event_id`` is already stored and rows of erased subjects are skipped;
        duplicate (event_id, line) pairs inside ``events`` keep one row, unless the caller
        guarantees there are none (``unique=True``, as the importer does after its checks).
        """
        ...

    def prepare_appends(self) -> None:
        """Build ahead what appends need (an index of stored ids, say), so that the first
        append does not wait for it; appends work without it."""
        ...


class EventReader(Protocol):
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
        """Events in ``[start, end)`` of ``occurred_at``, ordered by time.

        ``received_after`` keeps only rows the store received after that moment (what a
        serving worker tails to see events other workers stored, whatever their event time).

        ``purpose`` keeps only subjects whose latest consent record for it is a grant (or who
        have none, where the purpose defaults to opt-out). Events without a subject (ad
        spend) always pass. ``purpose=None`` reads everything: only for privacy operations
        such as export and erasure, never to feed an engine.
        """
        ...

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
        """Run a read-only query in the store's own SQL engine over the events that
        :meth:`read_events` would give for ``purpose`` and ``event_types``.

        ``sql`` reads them (only ``columns``) from the relation ``scoped_events``, uses ``?``
        placeholders for ``params`` and SQL that DuckDB and PostgreSQL both accept; the
        result comes back as ``schema`` (names by position), in no particular order.
        Aggregates over large logs (RFM summaries) then never leave the database as rows.
        """
        ...

    def count_events(self) -> int: ...

    def event_summary(self) -> pa.Table:
        """Per event type: rows, events, subjects, first and last occurrence."""
        ...


class EntityWriter(Protocol):
    def upsert_entities(self, kind: str, table: pa.Table) -> UpsertResult:
        """Insert or update ``users``, ``items`` or ``devices`` by key, in one transaction.

        Only the columns present in ``table`` are written; others keep their stored values.
        For a key repeated inside ``table`` the last row wins.
        """
        ...


class EntityReader(Protocol):
    def read_entities(self, kind: str) -> pa.Table: ...

    def count_entities(self, kind: str) -> int: ...


class PrivacyStore(Protocol):
    def consent_records(self, subject_id: str) -> list[ConsentRecord]: ...

    def erase_subject(self, subject_id: str, *, erased_at: datetime) -> ErasureCounts:
        """Delete every event and entity row of a subject and record a tombstone, atomically."""
        ...

    def is_erased(self, subject_id: str) -> bool: ...

    def count_tombstones(self) -> int: ...

    def erased_subjects(self, since: datetime | None = None) -> list[tuple[str, datetime]]:
        """(pseudonym, erased at) of every tombstone, or of those recorded at or after
        ``since``: how a running server learns of erasures made elsewhere (the CLI, another
        worker) and how a loaded model sheds the users erased after it was saved."""
        ...

    def purge_events(self, before: datetime) -> int:
        """Delete events that occurred before ``before`` (consent records are kept as proof)
        and the answers served before it."""
        ...


class ScoreStore(Protocol):
    def replace_scores(
        self, kind: str, subject_ids: Sequence[str], payloads: Sequence[str], scored_at: datetime
    ) -> int:
        """Replace every stored score of ``kind`` (one JSON payload per pseudonymous subject)
        in one transaction; erased subjects' rows are skipped. Returns the rows stored."""
        ...

    def read_scores(
        self, kind: str, subject_id: str | None = None
    ) -> list[tuple[str, str, datetime]]:
        """(subject, payload, scored at) of ``kind``, of one subject when given."""
        ...


class RegistryStore(Protocol):
    """Model versions and the aliases that point at them (``tailor.lifecycle.registry``)."""

    def add_model_version(
        self,
        engine: str,
        version: str,
        created_at: datetime,
        artifact: str,
        artifact_sha256: str,
        record: str,
    ) -> None:
        """Record a version (``record``: its JSON description); ``ValueError`` if the
        engine already has this version."""
        ...

    def model_versions(self, engine: str | None = None) -> list[tuple]:
        """(engine, version, created at, artifact, sha256, record) by creation time."""
        ...

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
        """Point ``alias`` at ``version`` (which must exist) and record the move, in one
        transaction; returns the version it pointed at before (None: a new alias)."""
        ...

    def model_aliases(self, engine: str | None = None) -> list[tuple[str, str, str, datetime]]:
        """(engine, alias, version, moved at) of every alias."""
        ...

    def alias_moves(self, engine: str, alias: str) -> list[tuple]:
        """(version, previous version, moved at, moved by, reason), oldest first."""
        ...


class LifecycleStore(Protocol):
    """Jobs and their leases, served answers, experiments and the lifecycle log
    (``tailor.lifecycle``; the SQL is in :mod:`tailor.store.lifecycle_sql`)."""

    def lease_job(self, name: str, owner: str, *, now: datetime, until: datetime) -> bool:
        """Take the job's lease unless another owner holds an unexpired one."""
        ...

    def finish_job(
        self,
        name: str,
        owner: str,
        *,
        status: str,
        message: str,
        finished_at: datetime,
        next_run_at: datetime,
    ) -> bool: ...

    def schedule_job(self, name: str, next_run_at: datetime) -> None: ...

    def jobs(self) -> list[dict]: ...

    def record_served(self, rows: pa.Table) -> int: ...

    def read_served(
        self, *, experiment: str | None = None, since: datetime | None = None
    ) -> pa.Table: ...

    def put_experiment(self, name: str, spec: str, updated_at: datetime) -> None: ...

    def experiments(self) -> list[tuple[str, str, datetime]]: ...

    def add_log(self, kind: str, at: datetime, payload: str) -> None: ...

    def read_log(
        self, kind: str, *, since: datetime | None = None, limit: int = 1000
    ) -> list[tuple[datetime, str]]: ...


class MetaStore(Protocol):
    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


@runtime_checkable
class Store(
    EventWriter,
    EventReader,
    EntityWriter,
    EntityReader,
    PrivacyStore,
    ScoreStore,
    RegistryStore,
    LifecycleStore,
    MetaStore,
    Protocol,
):
    url: str

    def transaction(self) -> AbstractContextManager[None]:
        """Group several writes into one atomic unit (nested calls join the outer one)."""
        ...

    def iter_subject_events(self, subject_id: str) -> Iterator[dict]: ...

    def close(self) -> None: ...
