"""Ingestion: validate, pseudonymize, group-commit, acknowledge (behind ``POST /v1/events``,
the MQTT ingestor and the device feedback route).

A request's events are checked one by one against the pydantic models (:func:`validate_batch`),
flattened into the store's rows and pseudonymized in the caller's thread (:func:`to_event_table`),
then handed to a :class:`GroupCommitWriter`. Its one thread writes every pending submission in
one store transaction and resolves each submission's future only after that transaction has
committed, so an acknowledged event is durable. If the write fails (the database went away),
every submission in that group fails with :class:`~tailor.errors.StoreUnavailable` and nothing is
acknowledged; the client retries with the same ``event_id``s, which are stored once.

Examples
--------
>>> from tailor.events.privacy import Pseudonymizer, pseudonymize_column
>>> from tailor.store import open_store
>>> store = open_store(":memory:")
>>> raw = [{"event_id": "e1", "event_type": "view", "subject_id": "u1",
...         "occurred_at": "2024-05-01T10:00:00Z", "item_id": "sku-1"},
...        {"event_id": "e2", "event_type": "view", "subject_id": "u1",
...         "occurred_at": "2024-05-01T10:00:00Z"}]
>>> events, rejected = validate_batch(raw, max_events=500)
>>> rejected[0].reason
'events[1].item_id: field required'
>>> with GroupCommitWriter(store, Pseudonymizer(b"k" * 32)) as writer:
...     result = writer.submit(events, rejected=rejected).result()
>>> result.accepted, result.duplicates, [r.index for r in result.rejected]
(1, 0, [1])
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from tailor.errors import StoreUnavailable
from tailor.events.columns import (
    COLUMNS_BY_NAME,
    EVENT_SCHEMA,
    EVENT_TYPES,
    ID_LENGTH,
    PSEUDONYMIZED_EVENT_COLUMNS,
)
from tailor.events.privacy import Pseudonymizer, pseudonymize_column
from tailor.events.schema import EVENT_ADAPTER, Context, Event, EventBase, to_flat_rows
from tailor.store.base import AppendResult, Store

log = logging.getLogger(__name__)

ERASED_REASON = "the subject was erased (right to erasure); its events are not stored"
_TIMESTAMP = EVENT_SCHEMA.field("received_at").type
_NAMES_TYPES = tuple((f.name, f.type) for f in EVENT_SCHEMA)  # Field.name is slow in loops
_LINE = EVENT_SCHEMA.get_field_index("line")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CONTEXT_FIELDS = tuple(Context.model_fields)
_DEFAULT_CONTEXT = EventBase.model_fields["context"].default
_JSON_SEPARATORS = (",", ":")  # as tailor.events.schema.to_flat_rows writes properties
_PSEUDONYMIZED = tuple(
    (EVENT_SCHEMA.get_field_index(name), name, COLUMNS_BY_NAME[name].pseudonym_namespace or "")
    for name in PSEUDONYMIZED_EVENT_COLUMNS
)


# --- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """One event of a request that was not stored, and why (never quoting personal ids).

    ``index`` is the event's position in the request; ``event_id`` is echoed when it was a
    usable string.
    """

    index: int
    event_id: str | None
    reason: str


@dataclass(frozen=True)
class IngestResult:
    """What happened to one submission, once its events are durable.

    ``accepted`` events were stored now; ``duplicates`` were already stored (or repeated an
    ``event_id`` earlier in the same request or group) and are acknowledged without being
    stored again; ``rejected`` lists the rest by request index. The three add up to the number
    of events in the request.
    """

    accepted: int
    duplicates: int
    rejected: list[Rejection] = field(default_factory=list)


class BatchTooLarge(ValueError):
    """A request holds more events than the configured limit (HTTP 413)."""


def validate_batch(raw: Sequence[Any], *, max_events: int) -> tuple[list[Event], list[Rejection]]:
    """Validate a request's events against the pydantic models, each on its own.

    Parameters
    ----------
    raw : the request's events, as decoded from JSON (normally dicts).
    max_events : the most events one request may hold.

    Returns
    -------
    events : the valid events, in request order.
    rejected : one :class:`Rejection` per invalid event, naming every failing field, e.g.
        ``"events[3].item_id: field required"``. Unknown fields are rejected (the models
        forbid extras). Together with ``events`` it covers every index of ``raw`` once, which
        :meth:`GroupCommitWriter.submit` relies on to number the valid events.

    Raises
    ------
    BatchTooLarge
        (a ``ValueError``) when ``raw`` has more than ``max_events`` events.
    """
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, got {max_events}")
    if len(raw) > max_events:
        raise BatchTooLarge(
            f"{len(raw)} events in one request; at most {max_events} are accepted: "
            "split them into several requests"
        )
    events: list[Event] = []
    rejected: list[Rejection] = []
    validate = EVENT_ADAPTER.validate_python
    for index, item in enumerate(raw):
        try:
            events.append(validate(item))
        except ValidationError as exc:
            rejected.append(Rejection(index, _echo_id(item), _reason(index, exc)))
    return events, rejected


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event]


def validate_batch_json(body: bytes, *, max_events: int) -> list[Event] | None:
    """A ``{"events": [...]}`` body whose events are all valid, parsed and validated in one
    pass of pydantic-core (about 40% less work per event than ``json.loads`` followed by
    :func:`validate_batch`); None when anything is wrong, so the caller takes the per-event
    path, which names each problem.

    Raises
    ------
    BatchTooLarge
        when the batch holds more than ``max_events`` events.
    """
    if not body.lstrip().startswith(b'{"events"'):
        return None
    try:
        events = _Batch.model_validate_json(body).events
    except ValidationError:
        return None
    if len(events) > max_events:
        raise BatchTooLarge(
            f"{len(events)} events in one request; at most {max_events} are accepted: "
            "split them into several requests"
        )
    return events


class RequestBodyError(ValueError):
    """A request body that is not JSON (``status`` 400) or not an event or a batch of them
    (422); the message names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


def read_request(body: bytes, *, max_events: int) -> tuple[list[Event], list[Rejection]]:
    """The events of a ``POST /v1/events`` body (one event object or ``{"events": [...]}``):
    the valid ones and a rejection per invalid one (see :func:`validate_batch`).

    Raises
    ------
    RequestBodyError
        when the body is not JSON or not an event or a batch of them.
    BatchTooLarge
        when it holds more than ``max_events`` events.
    """
    events = validate_batch_json(body, max_events=max_events)
    if events is not None:
        return events, []
    try:  # something is wrong: the per-event path names every problem
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestBodyError(400, f"body: not valid JSON ({exc})") from None
    return validate_batch(_events_of(parsed), max_events=max_events)


def _events_of(body: Any) -> list[Any]:
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            extra = sorted(set(body) - {"events"})
            raise RequestBodyError(
                422, f"body: a batch is {{'events': [...]}} only; unknown {extra}"
            )
        if not isinstance(body["events"], list):
            raise RequestBodyError(422, "events: must be a list of event objects")
        return body["events"]
    if isinstance(body, dict):
        return [body]
    raise RequestBodyError(422, "body: send one event object or {'events': [...]}")


def _echo_id(item: object) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    if isinstance(value, str) and 0 < len(value.strip()) <= ID_LENGTH:
        return value.strip()
    return None


def _reason(index: int, exc: ValidationError) -> str:
    """``events[i].field: message`` for each error; the union's tag is left out of the path."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
        if kind == "union_tag_not_found":
            loc, message = ("event_type",), "field required"
        elif kind == "union_tag_invalid":
            loc = ("event_type",)
            message = f"unknown event type {ctx.get('tag')!r}; use one of {', '.join(EVENT_TYPES)}"
        else:
            if loc and isinstance(loc[0], str) and loc[0] in EVENT_TYPES:
                loc = loc[1:]  # a discriminated union puts the matched tag first
            message = str(ctx["error"]) if kind == "value_error" else error["msg"]
            if message[:1].isupper() and not message[1:2].isupper():
                message = message[0].lower() + message[1:]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        parts.append(f"events[{index}]{path}: {message}")
    return "; ".join(parts)


# --- conversion -----------------------------------------------------------------------------


@functools.cache
def _plain_columns(cls: type[EventBase]) -> tuple[str, ...] | None:
    """The columns a class fills field by field, or None when :func:`to_flat_rows` must flatten
    it: several rows per event (basket lines, shown items) or a field that is also a context
    field (the two must agree). ``received_at`` is left out: tailor stamps it."""
    names = tuple(cls.model_fields)
    shaped = {"context", "properties"}
    if any(n not in COLUMNS_BY_NAME and n not in shaped for n in names):
        return None
    if set(names) & set(_CONTEXT_FIELDS):
        return None
    return tuple(n for n in names if n in COLUMNS_BY_NAME and n != "received_at")


def _plain_table(classes: dict[type, tuple[str, ...]], events: Sequence[EventBase]) -> pa.Table:
    """Rows of single-row events whose fields are columns (``classes``: each class present
    and its columns), built column by column from the models' ``__dict__`` in one pass over
    every class: the fast path of :func:`to_flat_rows`
    (``test_fast_flatten_agrees_with_to_flat_rows`` checks they agree for every event type)."""
    n = len(events)
    dicts = [e.__dict__ for e in events]  # pydantic keeps every field there, defaults too
    everywhere = set.intersection(*(set(c) for c in classes.values()))
    values: dict[str, list[Any]] = {}
    for name in dict.fromkeys(c for columns in classes.values() for c in columns):
        if name in everywhere:
            values[name] = list(map(itemgetter(name), dicts))
        else:
            values[name] = [d.get(name) for d in dicts]
    contexts = list(map(itemgetter("context"), dicts))
    if contexts.count(_DEFAULT_CONTEXT) < n:  # most events carry no context: no per-field pass
        for name in _CONTEXT_FIELDS:
            values[name] = list(map(attrgetter(name), contexts))
    properties = list(map(itemgetter("properties"), dicts))
    if properties.count(None) < n:
        values["properties"] = [
            None if p is None else json.dumps(p, separators=_JSON_SEPARATORS) for p in properties
        ]
    arrays = [_array(values.get(name), n, dtype) for name, dtype in _NAMES_TYPES]
    arrays[_LINE] = pa.array(np.zeros(n, np.int64))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _array(values: list[Any] | None, n: int, dtype: pa.DataType) -> pa.Array:
    if values is None or values.count(None) == n:
        return pa.nulls(n, dtype)  # several times faster than converting a list of None
    if dtype == _TIMESTAMP:  # integer microseconds convert faster than aware datetimes
        micros = [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
        return pa.array(micros, pa.int64()).view(_TIMESTAMP)
    return pa.array(values, dtype)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """:func:`~tailor.events.importer.raw_event_table` for rows from :func:`to_flat_rows`
    (which carry every column), built column by column: over twice as fast."""
    n = len(rows)
    arrays = [_array([row[name] for row in rows], n, dtype) for name, dtype in _NAMES_TYPES]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


@dataclass
class _Flat:
    table: pa.Table
    positions: np.ndarray
    """Index into the given events of each flattened event, in table order."""
    rows: np.ndarray
    """Rows of each flattened event; an event's rows are contiguous."""
    failed: list[tuple[int, str]]


def _flatten(events: Sequence[EventBase], *, keep_order: bool = True) -> _Flat:
    """The events' rows (raw ids): single-row events in one table, the others class by
    class; back in the given order of events unless ``keep_order=False`` (then the single-row
    events first: ``positions`` says where each is)."""
    kinds = dict.fromkeys(map(type, events))
    plain = {cls: _plain_columns(cls) for cls in kinds}
    if None not in plain.values():  # the common case (views, carts...): no grouping at all
        if not events:
            empty = np.empty(0, np.int64)
            return _Flat(EVENT_SCHEMA.empty_table(), empty, empty, [])
        n = len(events)
        table = _plain_table(plain, events)  # type: ignore[arg-type]
        return _Flat(table, np.arange(n, dtype=np.int64), np.ones(n, np.int64), [])
    simple, by_class = [], {}
    for position, event in enumerate(events):
        if plain[type(event)] is not None:
            simple.append(position)
        else:
            by_class.setdefault(type(event), []).append(position)
    tables, positions, rows, failed = [], [], [], []
    if simple:
        classes = {c: cols for c, cols in plain.items() if cols is not None}
        tables.append(_plain_table(classes, [events[i] for i in simple]))  # type: ignore[arg-type]
        positions.append(np.asarray(simple, np.int64))
        rows.append(np.ones(len(simple), np.int64))
    for members in by_class.values():
        flat, done, counts = [], [], []
        for i in members:
            try:
                event_rows = to_flat_rows(events[i])
            except ValueError as exc:
                failed.append((i, str(exc)))
                continue
            flat += event_rows
            done.append(i)
            counts.append(len(event_rows))
        if flat:
            tables.append(_rows_table(flat))
            positions.append(np.asarray(done, np.int64))
            rows.append(np.asarray(counts, np.int64))
    if not tables:
        empty = np.empty(0, np.int64)
        return _Flat(EVENT_SCHEMA.empty_table(), empty, empty, sorted(failed))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    position, count = np.concatenate(positions), np.concatenate(rows)
    if keep_order and len(tables) > 1:
        order = np.argsort(position, kind="stable")
        table = table.take(_row_indices(_starts(count), count, order))
        position, count = position[order], count[order]
    return _Flat(table, position, count, sorted(failed))


def _starts(rows: np.ndarray) -> np.ndarray:
    return np.cumsum(rows) - rows


def _row_indices(starts: np.ndarray, rows: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Row numbers of the events ``which`` (each event's rows kept together, in order)."""
    count = rows[which]
    shift = starts[which] - _starts(count)
    return np.repeat(shift, count) + np.arange(int(count.sum()), dtype=np.int64)


def pseudonymize_events(table: pa.Table, pseudonymizer: Pseudonymizer | PseudonymCache) -> pa.Table:
    """Replace every personal id column (``subject_id``, ``session_id``, ``device_id``: the
    columns with a pseudonym namespace) by its keyed pseudonym."""
    for index, name, namespace in _PSEUDONYMIZED:
        column = table.column(index)
        if column.null_count < len(column):
            table = table.set_column(
                index, name, pseudonymizer.pseudonymize_array(namespace, column)
            )
    return table


class PseudonymCache:
    """Remembers recent pseudonyms, as an HMAC costs microseconds and live traffic repeats ids.

    Holds raw ids in memory only (never logged or stored), at most ``max_entries`` of them
    and for at most ``max_age_s`` seconds: the whole cache is dropped when either is reached,
    so an erased person's raw id does not linger in the process.

    Examples
    --------
    >>> p = Pseudonymizer(b"k" * 32)
    >>> cache = PseudonymCache(p)
    >>> cache.pseudonymize_many("subject", ["alice"]) == p.pseudonymize_many("subject", ["alice"])
    True
    """

    def __init__(
        self, pseudonymizer: Pseudonymizer, *, max_entries: int = 200_000, max_age_s: float = 600
    ) -> None:
        self.pseudonymizer = pseudonymizer
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._known: dict[tuple[str, str], str] = {}
        self._since = time.monotonic()

    def clear(self) -> None:
        """Forget every cached id (e.g. after an erasure)."""
        self._known = {}
        self._since = time.monotonic()

    def pseudonymize_many(self, namespace: str, raws: Sequence[str]) -> list[str]:
        if len(self._known) >= self.max_entries or time.monotonic() - self._since > self.max_age_s:
            self.clear()
        known = self._known  # another thread may swap in a new dict: keep using this one
        keys = [(namespace, raw) for raw in raws]
        found = list(map(known.get, keys))
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            made = self.pseudonymizer.pseudonymize_many(namespace, [raws[i] for i in missing])
            for i, value in zip(missing, made, strict=True):
                found[i] = known[keys[i]] = value
        return found  # type: ignore[return-value]

    def pseudonymize_array(self, namespace: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """:meth:`Pseudonymizer.pseudonymize_array` through the cache."""
        return pseudonymize_column(self.pseudonymize_many, namespace, values)


def _stamp(table: pa.Table, received_at: datetime) -> pa.Table:
    index = EVENT_SCHEMA.get_field_index("received_at")
    stamp = pa.repeat(pa.scalar(received_at, _TIMESTAMP), table.num_rows)
    return table.set_column(index, "received_at", stamp)


def to_event_table(
    events: Sequence[EventBase],
    pseudonymizer: Pseudonymizer,
    *,
    received_at: datetime | None = None,
) -> pa.Table:
    """Validated events as the store's rows: flattened, stamped and pseudonymized.

    Equal to ``raw_event_table([row for e in events for row in to_flat_rows(e)])`` with
    ``received_at`` set and ids pseudonymized, but several times faster for single-row events.

    Raises
    ------
    ValueError
        naming the event (``events[i]: ...``) when one cannot be flattened, e.g. an ad event
        whose ``channel`` differs from its ``context.channel``.
    """
    flat = _flatten(events)
    if flat.failed:
        position, message = flat.failed[0]
        raise ValueError(f"events[{position}]: {message}")
    table = _stamp(flat.table, received_at or datetime.now(UTC))
    return pseudonymize_events(table, pseudonymizer)


# --- group commit ---------------------------------------------------------------------------


class WriterClosedError(StoreUnavailable):
    """The writer is shutting down or was never started; nothing from the request is stored."""


@dataclass
class PreparedRequest:
    """One request's events converted for the writer (:func:`prepare_events`): plain data,
    so another process may prepare it (see :mod:`tailor.api.ingest_pool`)."""

    table: pa.Table
    ids: list[str]
    """Distinct event ids, in table order."""
    index: np.ndarray
    """Request index of each event in ``ids``."""
    rows: np.ndarray
    repeats: list[tuple[int, int]]
    """(request index, position in ``ids`` of the first copy) of repeated event ids."""
    rejected: list[Rejection]


@dataclass
class _Submission(PreparedRequest):
    """A prepared request waiting for the writer, and the future its caller waits on."""

    future: Future[IngestResult] = field(default_factory=Future)


_NEW, _DUP, _ERASED = 0, 1, 2
_MAX_ROUNDS = 64


class _Ambiguous(Exception):
    """Some piece of the group was partly new and partly stored: roll back and split it."""

    def __init__(self, outcome: list[tuple[np.ndarray, AppendResult]]) -> None:
        super().__init__("ambiguous append")
        self.outcome = outcome


class _Group:
    """The submissions of one commit, their repeated ids across submissions removed."""

    def __init__(self, subs: list[_Submission]) -> None:
        self.subs = subs
        owner: dict[str, int] = {}
        tables, rows, sub_of = [], [], []
        self.first: list[int] = []
        """Global position of each submission's first kept event."""
        self.gpos: list[np.ndarray] = []
        """Per submission, the global position of each event: its own when kept, else that of
        the earlier submission's copy (always before ``first``)."""
        total = 0
        for k, sub in enumerate(subs):
            n = len(sub.ids)
            self.first.append(total)
            if owner.keys().isdisjoint(sub.ids):
                owner.update(zip(sub.ids, range(total, total + n), strict=True))
                keep = None
                gpos = np.arange(total, total + n, dtype=np.int64)
                kept = n
            else:
                keep = np.ones(n, bool)
                gpos = np.empty(n, np.int64)
                kept = 0
                for j, event_id in enumerate(sub.ids):
                    found = owner.get(event_id)
                    if found is None:
                        found = owner[event_id] = total + kept
                        kept += 1
                    else:
                        keep[j] = False
                    gpos[j] = found
            self.gpos.append(gpos)
            table, counts = sub.table, sub.rows
            if keep is not None:
                table, counts = table.filter(pa.array(np.repeat(keep, counts))), counts[keep]
            tables.append(table)
            rows.append(counts)
            sub_of.append(np.full(kept, k, np.int64))
            total += kept
        self.events = total
        self.table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        self.rows = np.concatenate(rows)
        self.starts = _starts(self.rows)
        self.sub_of = np.concatenate(sub_of)

    def rows_of(self, piece: np.ndarray) -> pa.Table:
        if len(piece) == self.events:
            return self.table
        return self.table.take(_row_indices(self.starts, self.rows, piece))

    def subjects(self, piece: np.ndarray) -> list[str | None]:
        column = self.table.column("subject_id")
        return column.take(pa.array(self.starts[piece])).to_pylist()

    def split(self, piece: np.ndarray) -> list[np.ndarray]:
        """Smaller pieces: one per submission, then halves."""
        subs = self.sub_of[piece]
        if subs[0] != subs[-1]:
            return np.split(piece, np.flatnonzero(np.diff(subs)) + 1)
        if len(piece) < 2:
            raise RuntimeError("an event was reported both stored and new")
        return np.array_split(piece, 2)


def prepare_events(
    events: Sequence[EventBase],
    rejected: list[Rejection],
    received_at: datetime,
    pseudonyms: Pseudonymizer | PseudonymCache,
) -> PreparedRequest:
    """A request's valid events as the writer takes them: repeated ids folded into their
    first copy, rows flattened, stamped ``received_at`` and pseudonymized. ``rejected``
    (from :func:`validate_batch`) numbers the events around their request indices and is
    passed through; a row that cannot be flattened joins it.

    Raises
    ------
    ValueError
        when ``rejected`` names an index twice or one outside the request.
    """
    taken = {r.index for r in rejected}
    if len(taken) != len(rejected):
        raise ValueError("rejected holds the same request index twice")
    size = len(events) + len(rejected)
    index = np.arange(size, dtype=np.int64)
    if taken:
        index = np.asarray([i for i in range(size) if i not in taken], np.int64)
    if len(index) != len(events):
        raise ValueError("rejected indices must lie within the request")
    ids = [e.event_id for e in events]
    unique: list[EventBase] = list(events)
    repeats: list[tuple[int, int]] = []  # (request index, position in `unique` of first)
    if len(set(ids)) != len(ids):
        first: dict[str, int] = {}
        unique, kept = [], []
        for position, (event, event_id) in enumerate(zip(events, ids, strict=True)):
            seen = first.get(event_id)
            if seen is None:
                first[event_id] = len(unique)
                unique.append(event)
                kept.append(position)
            else:
                repeats.append((int(index[position]), seen))
        index = index[kept]
    flat = _flatten(unique, keep_order=False)
    if flat.failed:  # each failed event, and its repeats, becomes a rejection
        reasons = {p: m for p, m in flat.failed}
        for p, message in flat.failed:
            rejected.append(
                Rejection(int(index[p]), unique[p].event_id, f"events[{index[p]}]: {message}")
            )
        for request_index, p in repeats:
            if p in reasons:
                message = f"events[{request_index}]: {reasons[p]}"
                rejected.append(Rejection(request_index, unique[p].event_id, message))
        repeats = [(i, p) for i, p in repeats if p not in reasons]
    if repeats:  # refer to the first copies by their place in the flattened table
        renumber = np.full(len(unique), -1, np.int64)
        renumber[flat.positions] = np.arange(len(flat.positions))
        repeats = [(i, int(renumber[p])) for i, p in repeats]
    table = pseudonymize_events(_stamp(flat.table, received_at), pseudonyms)
    return PreparedRequest(
        table=table,
        ids=[unique[p].event_id for p in flat.positions],
        index=index[flat.positions],
        rows=flat.rows,
        repeats=repeats,
        rejected=rejected,
    )


class GroupCommitWriter:
    """Writes submissions of events in group commits and acknowledges only what is durable.

    One thread takes every pending submission (up to ``max_batch_events`` events, waiting at
    most ``max_wait_ms`` for more after the first) and appends them in one store transaction.
    Each submission's future then resolves with its own :class:`IngestResult`. Repeated
    ``event_id``s inside a submission or across the submissions of a group are stored once;
    the store tells which events were already stored or belong to erased subjects.

    Parameters
    ----------
    store : the event store (shared; its own lock serializes statements).
    pseudonymizer : the store's key.
    max_batch_events : the most events one commit takes (a larger submission goes alone).
    max_wait_ms : how long the writer waits for more submissions before committing a group
        smaller than ``max_batch_events``; 0 commits whatever is pending at once.
    on_committed : called in the writer thread after each commit, before the futures resolve,
        with the rows just stored (pseudonymized); an exception there is logged and the
        events stay acknowledged. Keep it fast: it delays the acknowledgements.
    pseudonym_cache : how many recent (namespace, raw id) pseudonyms to remember (see
        :class:`PseudonymCache`, reachable as ``pseudonyms``; :meth:`forget_raw_ids` after
        an erasure); 0 computes every HMAC anew.

    Attributes
    ----------
    events_accepted, events_duplicate, events_rejected, commits, commit_failures : int
        Running totals (monotonic counters, e.g. for Prometheus).
    commit_seconds_total : float
        Time spent in store transactions, failed ones included.

    Notes
    -----
    Duplicates are attributed per event, not just counted: the group is first appended in one
    call, the common case. When that append reports some events new and some already stored,
    the transaction is rolled back and the group is appended again in pieces (per submission,
    then halves of a piece that is still mixed) until each piece is all new or all stored; the
    last round commits. A retry of an earlier request thus costs one extra round.
    """

    def __init__(
        self,
        store: Store,
        pseudonymizer: Pseudonymizer,
        *,
        max_batch_events: int = 20_000,
        max_wait_ms: float = 2.0,
        on_committed: Callable[[pa.Table], None] | None = None,
        pseudonym_cache: int = 200_000,
    ) -> None:
        if max_batch_events < 1:
            raise ValueError(f"max_batch_events must be at least 1, got {max_batch_events}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.store = store
        self.pseudonymizer = pseudonymizer
        self.max_batch_events = max_batch_events
        self.max_wait_ms = max_wait_ms
        self.on_committed = on_committed
        self.pseudonym_cache = pseudonym_cache
        self.pseudonyms: Pseudonymizer | PseudonymCache = (
            PseudonymCache(pseudonymizer, max_entries=pseudonym_cache)
            if pseudonym_cache > 0
            else pseudonymizer
        )
        self.events_accepted = 0
        self.events_duplicate = 0
        self.events_rejected = 0
        self.commits = 0
        self.commit_failures = 0
        self.commit_seconds_total = 0.0
        self._cond = threading.Condition()
        self._queue: list[_Submission] = []
        self._queued_events = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._counters = threading.Lock()

    def forget_raw_ids(self) -> None:
        """Drop every cached raw id (after an erasure: the person's raw id must not linger)."""
        if isinstance(self.pseudonyms, PseudonymCache):
            self.pseudonyms.clear()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> GroupCommitWriter:
        """Start the writer thread (once)."""
        with self._cond:
            if self._closing:
                raise WriterClosedError("this event writer was closed; create a new one")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tailor-event-writer", daemon=True
                )
                self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> bool:
        """Write everything already submitted, then stop; later submissions fail.

        Returns False when the writer did not finish within ``timeout`` seconds: submissions
        it had not started then fail with :class:`WriterClosedError` (nothing of them stored).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with self._cond:
                    left, self._queue, self._queued_events = self._queue, [], 0
                for sub in left:
                    if sub.future.set_running_or_notify_cancel():
                        sub.future.set_exception(
                            WriterClosedError("the event writer stopped before storing these")
                        )
                log.warning(
                    "event writer did not drain in %ss; %d requests failed", timeout, len(left)
                )
                return False
        return True

    def __enter__(self) -> GroupCommitWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- submitting -----------------------------------------------------------------------
    def submit(
        self,
        events: Sequence[EventBase],
        *,
        rejected: Sequence[Rejection] = (),
        received_at: datetime | None = None,
    ) -> Future[IngestResult]:
        """Queue a request's valid events; the future resolves once they are durable.

        Flattening and pseudonymizing run here, in the caller's thread.

        Parameters
        ----------
        events : the valid events of one request, in request order.
        rejected : the request's rejections from :func:`validate_batch`; they are passed
            through to the result, and the events are numbered around their indices.
        received_at : the time of receipt stamped on every row (default: now).

        Returns
        -------
        Future[IngestResult]
            Raises :class:`~tailor.errors.StoreUnavailable` from ``result()`` when the store
            failed: nothing of the request is acknowledged, retrying it is safe.

        Raises
        ------
        WriterClosedError
            when the writer is not running (never started, or closing).
        """
        self._check_open()
        prepared = prepare_events(
            events, list(rejected), received_at or datetime.now(UTC), self.pseudonyms
        )
        return self.submit_prepared(prepared)

    def submit_prepared(self, prepared: PreparedRequest) -> Future[IngestResult]:
        """Queue a request prepared by :func:`prepare_events` (perhaps in another process,
        with the same key); otherwise as :meth:`submit`."""
        self._check_open()
        sub = _Submission(**vars(prepared))
        if not sub.ids:
            result = IngestResult(0, len(sub.repeats), sorted(sub.rejected, key=_by_index))
            self._count(result)
            sub.future.set_running_or_notify_cancel()
            sub.future.set_result(result)
            return sub.future
        with self._cond:
            if self._closing:
                raise WriterClosedError("the event writer is closed; nothing was stored")
            self._queue.append(sub)
            self._queued_events += len(sub.ids)
            self._cond.notify()
        return sub.future

    def _check_open(self) -> None:
        with self._cond:
            if self._thread is None or self._closing:
                state = "closed" if self._closing else "not started (call start())"
                raise WriterClosedError(f"the event writer is {state}; nothing was stored")

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.store.prepare_appends()
        except Exception:
            log.exception("preparing the event store for appends failed; appends will try again")
        while True:
            subs = self._take()
            if subs is None:
                return
            if subs:
                self._commit(subs)

    def _take(self) -> list[_Submission] | None:
        """The next group (None when closed and drained)."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if self.max_wait_ms > 0:
                deadline = time.monotonic() + self.max_wait_ms / 1000
                while self._queued_events < self.max_batch_events and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            taken, events = 0, 0
            for sub in self._queue:
                if taken and events + len(sub.ids) > self.max_batch_events:
                    break
                taken += 1
                events += len(sub.ids)
            subs, self._queue = self._queue[:taken], self._queue[taken:]
            self._queued_events -= events
        # A future cancelled while queued (the client went away) is dropped unwritten.
        return [s for s in subs if s.future.set_running_or_notify_cancel()]

    def _commit(self, subs: list[_Submission]) -> None:
        started = time.perf_counter()
        try:
            group = _Group(subs)
            status = self._write(group)
        except Exception as exc:
            with self._counters:
                self.commit_failures += 1
                self.commit_seconds_total += time.perf_counter() - started
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            log.warning(
                "event store write failed (%s: %s); %d requests answered as unavailable",
                type(exc).__name__,
                detail,
                len(subs),
            )
            for sub in subs:
                error = StoreUnavailable(
                    f"the event store is unavailable ({type(exc).__name__}); nothing from this "
                    "request was acknowledged: retry it with the same event_ids"
                )
                error.__cause__ = exc
                sub.future.set_exception(error)
            return
        elapsed = time.perf_counter() - started
        if self.on_committed is not None:
            stored = np.flatnonzero(status == _NEW)
            if stored.size:
                try:
                    self.on_committed(group.rows_of(stored))
                except Exception:
                    log.exception("on_committed callback failed; the events are stored")
        results = [self._attribute(group, k, status) for k in range(len(subs))]
        with self._counters:
            self.commits += 1
            self.commit_seconds_total += elapsed
        for sub, result in zip(subs, results, strict=True):
            self._count(result)
            sub.future.set_result(result)

    def _write(self, group: _Group) -> np.ndarray:
        """Append the group in one committed transaction; the status of each kept event."""
        status = np.full(group.events, _NEW, np.int8)
        pending = [np.arange(group.events, dtype=np.int64)]
        trusted = np.empty(0, np.int64)  # found new in a rolled-back round; checked again
        for _ in range(_MAX_ROUNDS):
            pieces = ([trusted] if trusted.size else []) + pending
            try:
                with self.store.transaction():
                    outcome = []
                    for piece in pieces:
                        result = self.store.append_events(group.rows_of(piece), unique=True)
                        outcome.append((piece, result))
                    if any(r.inserted and r.duplicates for _, r in outcome):
                        raise _Ambiguous(outcome)
                    for piece, result in outcome:
                        self._settle(group, piece, result, status)
                return status
            except _Ambiguous as ambiguous:
                pending, news = [], []
                for piece, result in ambiguous.outcome:
                    if result.inserted and result.duplicates:
                        pending += group.split(piece)
                        continue
                    self._settle(group, piece, result, status)
                    news.append(piece[status[piece] == _NEW])
                trusted = np.sort(np.concatenate(news)) if news else np.empty(0, np.int64)
        raise RuntimeError(f"could not attribute duplicates in {_MAX_ROUNDS} rounds")

    def _settle(
        self, group: _Group, piece: np.ndarray, result: AppendResult, status: np.ndarray
    ) -> None:
        """Status of a piece that was all new or all stored, erased subjects' events found."""
        status[piece] = _NEW if result.duplicates == 0 else _DUP
        if result.erased_skipped:
            subjects = group.subjects(piece)
            erased = {s for s in set(subjects) if s is not None and self.store.is_erased(s)}
            hit = np.fromiter((s in erased for s in subjects), bool, len(subjects))
            status[piece[hit]] = _ERASED

    def _attribute(self, group: _Group, k: int, status: np.ndarray) -> IngestResult:
        """One submission's result. A repeated id takes its first copy's fate: stored once
        (counted as a duplicate) or rejected with it when its subject was erased."""
        sub, gpos, first = group.subs[k], group.gpos[k], group.first[k]
        state = status[gpos]
        own = gpos >= first
        accepted = int(np.count_nonzero(own & (state == _NEW)))
        erased = np.flatnonzero(state == _ERASED)
        rejected = list(sub.rejected)
        rejected += [Rejection(int(sub.index[j]), sub.ids[j], ERASED_REASON) for j in erased]
        duplicates = len(gpos) - accepted - len(erased)
        for request_index, p in sub.repeats:
            if state[p] == _ERASED:
                rejected.append(Rejection(request_index, sub.ids[p], ERASED_REASON))
            else:
                duplicates += 1
        return IngestResult(accepted, duplicates, sorted(rejected, key=_by_index))

    def _count(self, result: IngestResult) -> None:
        with self._counters:
            self.events_accepted += result.accepted
            self.events_duplicate += result.duplicates
            self.events_rejected += len(result.rejected)


def _by_index(rejection: Rejection) -> int:
    return rejection.index


def ingest_batch(
    writer: GroupCommitWriter, raw: Sequence[Any], *, max_events: int
) -> Future[IngestResult]:
    """Validate one request and submit its valid events (see :func:`validate_batch`)."""
    events, rejected = validate_batch(raw, max_events=max_events)
    return writer.submit(events, rejected=rejected)
