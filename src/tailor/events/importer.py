"""Importing files and datasets into a store: all or nothing, or quarantine the bad rows.

The pipeline per file: read (:mod:`~tailor.events.readers`) → map, convert and validate in
one SQL pass (:mod:`~tailor.events.validate`) → reject duplicates and inconsistent multi-row
events → stop (default) or write the rejected rows to a quarantine CSV → pseudonymize → append
in one store transaction. Nothing reaches the store before every check has passed, and the
store's transaction makes a crash mid-write leave it as it was.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from tailor.errors import ImportFormatError, ImportRejectedError
from tailor.events.columns import (
    COLUMN_NAMES,
    ENTITIES,
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    EVENT_TYPES,
    Column,
)
from tailor.events.mapping import ColumnMapping
from tailor.events.privacy import Pseudonymizer
from tailor.events.readers import FileFormat, SourceData, detect_format, read_source
from tailor.events.validate import (
    Check,
    case_reason,
    convert_expr,
    entity_key_check,
    event_rule_checks,
    ident,
    is_text,
    lit,
    mapped_select,
    raw_name,
    strip_sql,
    text_may_be_padded,
)
from tailor.store.base import Store

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""``(stage, rows done in this step, total rows or None)``."""
SHOWN_REJECTS = 20
_ROW_REF = re.compile(r"\{row:(\d+)\}")
_MULTI_LINE = tuple(t for t, r in EVENT_TYPES.items() if r.multi_line)


@dataclass
class ImportReport:
    source: str
    target: str
    rows_read: int = 0
    written: int = 0
    duplicates: int = 0
    erased_skipped: int = 0
    rejected: int = 0
    quarantine: Path | None = None
    first_rejects: list[tuple[int, str]] = field(default_factory=list)
    unit: str = "line"
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def _hmac_sql(pseudonymizer: Pseudonymizer, namespace: str, x: str) -> str:
    """HMAC-SHA256 in DuckDB SQL, equal to :meth:`Pseudonymizer.pseudonymize` (tested)."""
    inner, outer = pseudonymizer.pads()

    def blob(data: bytes) -> str:
        return "'" + "".join(f"\\x{b:02X}" for b in data) + "'::BLOB"

    prefix = lit(f"{namespace}\x1f")
    return (
        f"substr(sha256({blob(outer)} || unhex(sha256({blob(inner)} || "
        f"encode({prefix} || {x})))), 1, {pseudonymizer.hex_chars})"
    )


class _Checked:
    """Validated rows of one source, inside DuckDB.

    ``checked`` is a view of the mapped, converted rows, so the data is never copied: each
    later query computes only the columns it reads. Only the rejects (row and first reason)
    are materialized. ``engine`` is the DuckDB connection to work in: the store's
    own for a DuckDB store (the final insert then never leaves the database), otherwise an
    in-memory one that hands batches to the store.
    """

    _ids = itertools.count()

    def __init__(
        self,
        source: SourceData,
        targets: Sequence[Column],
        mapping: ColumnMapping | None,
        *,
        events: bool,
        key: str | None = None,
        engine: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.source = source
        self.targets = list(targets)
        self.own_engine = engine is None
        self.con = engine if engine is not None else duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'").fetchall()
        self.p = f"_import{next(self._ids)}_"
        self.created: list[tuple[str, str]] = []
        self._padded: dict[str, bool] = {}
        self._assumed: dict[str, str] = {}
        self.present: set[str] = set()
        self._registered = source.scan_sql() is None
        try:
            if self._registered:
                self.con.register(self.name("src"), source.table)
            else:
                self._make("VIEW", "src", source.scan_sql() or "")
            # A Parquet file's text is assumed free of surrounding whitespace, which the
            # validation pass then confirms; only when it is not is the pass run again.
            while not self._create(mapping, events, key):
                self._drop(keep=0 if self._registered else 1)
            self._build_rejects(events)
        except BaseException:
            self.close()
            raise

    def name(self, base: str) -> str:
        return f"{self.p}{base}"

    def _drop(self, keep: int = 0) -> None:
        """Drop what this import created, newest first, except the ``keep`` oldest."""
        while len(self.created) > keep:
            kind, name = self.created.pop()
            self.con.execute(f"DROP {kind} IF EXISTS {name}").fetchall()

    def _make(self, kind: str, base: str, body: str) -> None:
        self.con.execute(f"CREATE TEMP {kind} {self.name(base)} AS {body}").fetchall()
        self.created.append((kind, self.name(base)))

    def _create(self, mapping: ColumnMapping | None, events: bool, key: str | None) -> bool:
        """Build the converted rows and record the invalid ones; False when a text column
        assumed to need no stripping turned out to (the caller then builds again)."""
        schema = self.source.schema
        try:
            select = mapped_select(schema, self.targets, mapping)
        except ValueError as exc:
            raise ImportFormatError(str(exc)) from exc
        mapped = f"SELECT {select} FROM {self.name('src')}"
        numbered = events and mapping is not None and mapping.number_lines
        if numbered:
            mapped = (
                "SELECT * REPLACE (row_number() OVER (PARTITION BY "
                f"{strip_sql('CAST(event_id AS VARCHAR)')} ORDER BY _row) - 1 AS line) "
                f"FROM ({mapped})"
            )
        converted, raws, column_checks, present = [], [], [], set()
        for column in self.targets:
            stype = _source_type(self.source, mapping, column)
            if numbered and column.name == "line":
                stype = pa.int64()
            if not pa.types.is_null(stype):
                present.add(column.name)
            expr, checks = convert_expr(
                column, stype, mapping, padded=self._may_be_padded(mapping, column)
            )
            name = ident(column.name)
            if column.name == "line" and not pa.types.is_null(stype):
                expr = f"CASE WHEN m.{name} IS NULL THEN 0 ELSE {expr} END"
            elif column.name == "line":
                expr = "CAST(0 AS BIGINT)"
            converted.append(f"{expr} AS {name}")
            if checks or column.name in self._assumed:
                raws.append(f"m.{name} AS {ident(raw_name(column.name))}")
            column_checks += checks
        self.present = present
        rules = event_rule_checks(present) if events else [entity_key_check(key or "")]
        # Subqueries, not CTEs: DuckDB may materialize a CTE, and each later step should read
        # only the columns it needs from the Arrow data.
        values = f"(SELECT m._row, {', '.join(converted + raws)} FROM ({mapped}) m) c"
        names = ", ".join(f"c.{ident(column.name)}" for column in self.targets)
        try:
            self._make("VIEW", "checked", f"SELECT c._row, {names} FROM {values}")
            self._make(
                "TABLE", "rejects", "SELECT 0::BIGINT AS _row, ''::VARCHAR AS reason LIMIT 0"
            )
            return self._reject_invalid(values, column_checks + rules, grouped=events)
        except duckdb.Error as exc:
            if self.source.parquet is not None:
                raise ImportFormatError(
                    f"{self.source.parquet.name}: cannot read it as Parquet ({exc}); "
                    "is the file complete and undamaged?"
                ) from exc
            raise ImportFormatError(f"cannot convert the file's columns: {exc}") from exc

    def _may_be_padded(self, mapping: ColumnMapping | None, column: Column) -> bool:
        """Whether a column's text may carry whitespace to strip (stripping is costly)."""
        mapping = mapping or ColumnMapping()
        if column.name in mapping.values or column.name in mapping.constants:
            return True
        name = mapping.columns.get(column.name, column.name)
        index = self.source.schema.get_field_index(name)
        if index < 0 or not is_text(self.source.schema.field(index).type):
            return False
        if name not in self._padded and self.source.arrow is not None:
            self._padded[name] = text_may_be_padded(self.source.table.column(name))
        elif name not in self._padded:
            self._assumed[column.name] = name
            return False
        return self._padded[name]

    def _reject_invalid(self, values: str, checks: list[Check], *, grouped: bool) -> bool:
        """Record each invalid row with the first reason it fails, in the spec's order.

        One aggregate pass, per event type, probes every check (see :class:`Check`); only the
        checks that may fail somewhere are evaluated row by row, so a clean file (the common
        case) never pays for building reasons. Checks that fail nowhere cannot be any row's
        first reason, so the result is the same as evaluating all of them.
        """
        probes = list(dict.fromkeys(check.aggregate for check in checks))
        # min() of the text starts with its smallest first character, min(reverse()) with
        # its smallest last one: whitespace (<= 32) sorts before any visible character.
        padding = {
            target: (
                f"ascii(min(c.{ident(raw_name(target))}))",
                f"ascii(min(reverse(c.{ident(raw_name(target))})))",
            )
            for target in self._assumed
        }
        probes += [probe for pair in padding.values() for probe in pair]
        group = "c.event_type" if grouped else "NULL"
        rows = self.con.execute(
            f"SELECT {group}, count(*), {', '.join(probes) or 'NULL'} FROM {values}"
            + (" GROUP BY ALL" if grouped else "")
        ).fetchall()
        index = {probe: i + 2 for i, probe in enumerate(probes)}
        for target, pair in padding.items():
            found = [row[index[probe]] for row in rows for probe in pair]
            self._padded[self._assumed[target]] = any(v is not None and v <= 32 for v in found)
        wrong = any(self._padded[name] for name in self._assumed.values())
        self._assumed = {}
        if wrong:
            return False
        failing = [
            check
            for check in checks
            if any(check.fails(row[index[check.aggregate]], row[0], row[1]) for row in rows)
        ]
        if failing:
            self.con.execute(
                f"INSERT INTO {self.name('rejects')} SELECT _row, reason FROM (SELECT c._row, "
                f"{case_reason(failing)} AS reason FROM {values}) WHERE reason IS NOT NULL"
            ).fetchall()
        return True

    def _build_rejects(self, events: bool) -> None:
        if not events:
            return
        checked, rejects = self.name("checked"), self.name("rejects")
        # Rows already rejected are left out by _row: asking for _reason would recompute it.
        accepted = f"_row NOT IN (SELECT _row FROM {rejects})"
        # Later copies of an (event_id, line) pair are rejected, naming the first one. A look
        # by 64-bit hash first, as grouping integers is much cheaper than grouping text: most
        # files have no duplicates, and a rare collision only costs the exact query.
        repeated = self.con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {checked} WHERE {accepted} "
            "GROUP BY hash(event_id, line) HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if repeated:
            self.con.execute(
                f"INSERT INTO {rejects} SELECT _row, 'duplicate event_id ' || event_id || "
                "' (line ' || line || '), first seen at {row:' || first_row || '}' FROM (SELECT "
                f"_row, event_id, line, min(_row) OVER (PARTITION BY event_id, line) AS first_row "
                f"FROM {checked} WHERE {accepted} AND (event_id, line) IN (SELECT (event_id, "
                f"line) FROM {checked} WHERE {accepted} GROUP BY event_id, line HAVING "
                "count(*) > 1)) WHERE _row <> first_row"
            ).fetchall()
        multi = ", ".join(lit(t) for t in _MULTI_LINE)
        self.con.execute(
            f"INSERT INTO {rejects} SELECT c._row, 'rows of event ' || c.event_id || ' disagree: "
            "event_type, subject_id and occurred_at must match and lines run 0..n-1' "
            f"FROM {checked} c WHERE c.{accepted} "
            f"AND c.event_id IN (SELECT event_id FROM {checked} WHERE {accepted} AND "
            f"event_type IN ({multi}) GROUP BY event_id HAVING count(DISTINCT event_type) > 1 "
            "OR count(DISTINCT subject_id) > 1 OR count(DISTINCT occurred_at) > 1 "
            "OR max(line) + 1 <> count(*))"
        ).fetchall()
        if self.reject_count() == len(self.source.structural_rejects):
            return
        # An event is kept whole or rejected whole.
        self.con.execute(
            f"INSERT INTO {rejects} SELECT c._row, 'another row of event ' || c.event_id || "
            f"' was rejected ({{row:' || r.first || '}})' FROM {checked} c JOIN (SELECT "
            f"k.event_id, min(r._row) AS first FROM {rejects} r JOIN {checked} k USING (_row) "
            "WHERE k.event_id IS NOT NULL GROUP BY k.event_id) r USING (event_id) "
            f"WHERE c.{accepted}"
        ).fetchall()

    def reject_count(self) -> int:
        rows = self.con.execute(f"SELECT count(*) FROM {self.name('rejects')}").fetchall()
        return int(rows[0][0]) + len(self.source.structural_rejects)

    def _reasons_sql(self) -> str:
        return f"SELECT _row, min(reason) AS reason FROM {self.name('rejects')} GROUP BY _row"

    def rejects(self, limit: int | None = None) -> list[tuple[int, str]]:
        """(line or row number, reason), in file order."""
        sql = self._reasons_sql() + " ORDER BY _row"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.con.execute(sql).fetchall()
        numbers = self.source.lines_of(np.asarray([r[0] for r in rows], dtype=np.int64))
        found = [
            (int(n), self._name_rows(reason)) for n, (_, reason) in zip(numbers, rows, strict=True)
        ]
        found += [(n, reason) for n, reason, _ in self.source.structural_rejects]
        found.sort()
        return found[:limit] if limit is not None else found

    def _name_rows(self, reason: str) -> str:
        """Replace ``{row:N}`` placeholders (record ordinals) by the line a person can find."""

        def line(match: re.Match[str]) -> str:
            number = self.source.lines_of(np.asarray([int(match.group(1))], dtype=np.int64))
            return f"{self.source.unit} {int(number[0])}"

        return _ROW_REF.sub(line, reason)

    def write_quarantine(self, path: Path) -> None:
        """Every rejected record: its line number, the reason and the original fields."""
        reasons = self.con.sql(self._reasons_sql() + " ORDER BY _row").to_arrow_table()
        original = self.source.table
        columns = [c for c in original.column_names if c != "_row"]
        rows = np.asarray(reasons.column("_row").to_pylist(), dtype=np.int64)
        records: list[dict[str, object]] = []
        if rows.size:
            picked = original.take(pa.array(rows - 1)).select(columns)
            fields = picked.cast(pa.schema([(c, pa.string()) for c in columns])).to_pylist()
            for line, reason, values in zip(
                self.source.lines_of(rows),
                reasons.column("reason").to_pylist(),
                fields,
                strict=True,
            ):
                records.append(
                    {**values, "tailor_line": int(line), "tailor_reason": self._name_rows(reason)}
                )
        for line, reason, text in self.source.structural_rejects:
            records.append(
                {"tailor_line": line, "tailor_reason": reason, "tailor_raw": text or None}
            )
        # Prefixed names cannot collide with the file's own columns.
        names = ["tailor_line", "tailor_reason", *columns]
        if self.source.structural_rejects:
            names.append("tailor_raw")
        schema = pa.schema([(n, pa.int64() if n == "tailor_line" else pa.string()) for n in names])
        records.sort(key=lambda r: r["tailor_line"])  # type: ignore[arg-type, return-value]
        path.parent.mkdir(parents=True, exist_ok=True)
        pa_csv.write_csv(pa.Table.from_pylist(records, schema=schema), path)

    def valid_relation(
        self,
        pseudonymizer: Pseudonymizer,
        *,
        stamp: dict[str, datetime],
        defaults: dict[str, str],
    ) -> str:
        """A view of the valid rows, personal ids replaced by pseudonyms (each hashed once)."""
        checked = self.name("checked")
        joins, select = [], []
        for column in self.targets:
            name = ident(column.name)
            if column.name in stamp:
                select.append(f"{lit(stamp[column.name].isoformat())}::TIMESTAMPTZ AS {name}")
            elif column.pseudonym_namespace and column.name in self.present:
                table = self.name(f"ps_{column.name}")
                self._make(
                    "TABLE",
                    f"ps_{column.name}",
                    f"SELECT x, {_hmac_sql(pseudonymizer, column.pseudonym_namespace, 'x')} AS p "
                    f"FROM (SELECT DISTINCT {name} AS x FROM {checked} WHERE {name} IS NOT NULL)",
                )
                joins.append(f"LEFT JOIN {table} ON {table}.x = c.{name}")
                select.append(f"{table}.p AS {name}")
            elif column.name in defaults:
                select.append(f"{defaults[column.name]} AS {name}")
            else:
                select.append(f"c.{name}")
        where = ""
        if self.reject_count() > len(self.source.structural_rejects):
            where = f"WHERE c._row NOT IN (SELECT _row FROM {self.name('rejects')})"
        self._make(
            "VIEW",
            "valid",
            f"SELECT {', '.join(select)} FROM {checked} c {' '.join(joins)} {where}",
        )
        return self.name("valid")

    def batches(self, relation: str, batch_rows: int) -> Iterator[pa.Table]:
        reader = self.con.sql(f"SELECT * FROM {relation}").to_arrow_reader(batch_rows)
        pending: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            pending.append(batch)
            size += batch.num_rows
            if size >= batch_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
        if pending:
            yield pa.Table.from_batches(pending)

    def count(self, relation: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0])

    def close(self) -> None:
        if self.own_engine:
            self.con.close()
            return
        self._drop()
        if self._registered:
            self.con.unregister(self.name("src"))


def _source_type(source: SourceData, mapping: ColumnMapping | None, column: Column) -> pa.DataType:
    """The type of the values a target column gets; null when it gets none at all (a column
    the file lacks or leaves empty needs neither conversion nor checks)."""
    mapping = mapping or ColumnMapping()
    if column.name in mapping.values or column.name in mapping.constants:
        if column.name in mapping.constants and not isinstance(mapping.constants[column.name], str):
            return pa.scalar(mapping.constants[column.name]).type
        return pa.string()
    name = mapping.columns.get(column.name, column.name)
    index = source.schema.get_field_index(name)
    if index < 0 or source.null_count(name) == source.num_rows:
        return pa.null()
    return source.schema.field(index).type


def _reject_message(report: ImportReport, rejects: list[tuple[int, str]]) -> str:
    shown = "\n".join(f"  {report.unit} {n}: {reason}" for n, reason in rejects)
    more = report.rejected - len(rejects)
    tail = f"\n  ... and {more:,} more" if more > 0 else ""
    return (
        f"{report.source}: {report.rejected:,} of {report.rows_read:,} records rejected; "
        f"nothing was imported.\n{shown}{tail}\n"
        "Fix the file, or pass --quarantine BAD.csv to import the valid rows and write the "
        "rejected ones (with line numbers and reasons) to BAD.csv."
    )


def _run_import(
    store: Store,
    source: SourceData,
    label: str,
    *,
    targets: Sequence[Column],
    mapping: ColumnMapping | None,
    pseudonymizer: Pseudonymizer,
    quarantine: Path | None,
    entity: str | None,
    batch_rows: int,
    progress: Progress | None,
    started: float,
) -> ImportReport:
    report = ImportReport(source=label, target=entity or "events", unit=source.unit)
    report.rows_read = source.num_rows + len(source.structural_rejects)
    key = ENTITIES[entity].key if entity else None
    with ExitStack() as stack:
        # A DuckDB store validates inside its own engine: the valid rows then go into the
        # event table in one INSERT ... SELECT and never leave the database.
        in_store = entity is None and hasattr(store, "append_events_from")
        engine = stack.enter_context(store.engine()) if in_store else None  # type: ignore[attr-defined]
        checked = _Checked(source, targets, mapping, events=entity is None, key=key, engine=engine)
        stack.callback(checked.close)
        if progress:
            progress("validated", report.rows_read, report.rows_read)
        report.rejected = checked.reject_count()
        report.first_rejects = checked.rejects(SHOWN_REJECTS)
        if report.rejected and quarantine is None:
            raise ImportRejectedError(
                _reject_message(report, report.first_rejects),
                report.first_rejects,
                report.rejected,
            )
        if report.rejected and quarantine is not None:
            checked.write_quarantine(quarantine)
            report.quarantine = quarantine
        now = datetime.now(UTC)
        stamp = {"received_at": now} if entity is None else {"updated_at": now}
        defaults = {}
        if entity is None:
            defaults["quantity"] = (
                "CASE WHEN c.quantity IS NULL AND c.event_type IN ('add_to_cart', "
                "'remove_from_cart') THEN 1.0 ELSE c.quantity END"
            )
        valid = checked.valid_relation(pseudonymizer, stamp=stamp, defaults=defaults)
        on_rows = (lambda n: progress("written", n, None)) if progress else None
        if entity is None and in_store:
            rows = source.num_rows - (report.rejected - len(source.structural_rejects))
            result = store.append_events_from(  # type: ignore[attr-defined]
                valid, rows, ids_relation=checked.name("checked")
            )
            if on_rows:
                on_rows(rows)
        elif entity is None:
            result = store.append_events(
                checked.batches(valid, batch_rows),
                batch_rows=batch_rows,
                on_progress=on_rows,
                unique=True,
            )
        if entity is None:
            report.written = result.inserted
            report.duplicates = result.duplicates
            report.erased_skipped = result.erased_skipped
        else:
            table = pa.concat_tables(list(checked.batches(valid, batch_rows)))
            if table.num_rows:
                table = table.select(_present_entity_columns(mapping, source, entity))
                upserted = store.upsert_entities(entity, table)
                report.written = upserted.upserted
                report.erased_skipped = upserted.erased_skipped
                if on_rows:
                    on_rows(table.num_rows)
    report.seconds = time.perf_counter() - started
    log.info(
        "imported %s into %s: %d read, %d written, %d duplicates, %d rejected in %.2fs",
        label,
        report.target,
        report.rows_read,
        report.written,
        report.duplicates,
        report.rejected,
        report.seconds,
    )
    return report


def _present_entity_columns(
    mapping: ColumnMapping | None, source: SourceData, entity: str
) -> list[str]:
    """Entity columns the file provides: an upsert leaves the others as stored."""
    mapping = mapping or ColumnMapping()
    names = set(source.schema.names)
    present = []
    for column in ENTITIES[entity].columns:
        if (
            column.name == "updated_at"
            or column.name in mapping.constants
            or column.name in mapping.columns
            or (column.name in names and column.name not in mapping.columns.values())
        ):
            present.append(column.name)
    return present


def import_file(
    store: Store,
    path: Path,
    *,
    pseudonymizer: Pseudonymizer,
    entity: str | None = None,
    mapping: ColumnMapping | None = None,
    quarantine: Path | None = None,
    file_format: FileFormat | None = None,
    max_record_bytes: int = 1_048_576,
    batch_rows: int = 500_000,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one file of events (``entity=None``) or of ``users``/``items``/``devices``.

    All or nothing by default: any invalid record raises :class:`ImportRejectedError` and the
    store is left unchanged. With ``quarantine``, invalid records go to that CSV (line number,
    reason, original fields) and the rest is imported.
    """
    started = time.perf_counter()
    if entity is not None and entity not in ENTITIES:
        raise ImportFormatError(f"unknown entity {entity!r}; use one of {', '.join(ENTITIES)}")
    targets = EVENT_COLUMNS if entity is None else ENTITIES[entity].columns
    if mapping is not None:
        mapping.check_targets(tuple(c.name for c in targets), entity or "events")
    fmt = detect_format(path, file_format)
    timestamps = {c.name for c in targets if c.kind == "timestamp"}
    if mapping is not None:
        timestamps |= {mapping.columns[n] for n in timestamps if n in mapping.columns}
    source = read_source(
        path, fmt, max_record_bytes=max_record_bytes, text_columns=frozenset(timestamps)
    )
    if progress:
        progress("read", source.num_rows, None)
    return _run_import(
        store,
        source,
        path.name,
        targets=targets,
        mapping=mapping,
        pseudonymizer=pseudonymizer,
        quarantine=quarantine,
        entity=entity,
        batch_rows=batch_rows,
        progress=progress,
        started=started,
    )


def import_table(
    store: Store,
    table: pa.Table,
    *,
    pseudonymizer: Pseudonymizer,
    entity: str | None = None,
    label: str = "table",
    quarantine: Path | None = None,
    batch_rows: int = 500_000,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an Arrow table whose columns carry tailor's names (loaders, simulator, API)."""
    started = time.perf_counter()
    targets = EVENT_COLUMNS if entity is None else ENTITIES[entity].columns
    rows = table.append_column("_row", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    source = SourceData(rows, "parquet", "row")
    return _run_import(
        store,
        source,
        label,
        targets=targets,
        mapping=None,
        pseudonymizer=pseudonymizer,
        quarantine=quarantine,
        entity=entity,
        batch_rows=batch_rows,
        progress=progress,
        started=started,
    )


def raw_event_table(rows: Sequence[dict]) -> pa.Table:
    """Flat event rows (as from :func:`tailor.events.schema.to_flat_rows`) as an Arrow table."""
    return pa.Table.from_pylist(
        [{k: r.get(k) for k in COLUMN_NAMES} for r in rows], schema=EVENT_SCHEMA
    )
