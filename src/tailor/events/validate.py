"""Vectorized validation and conversion of import data, generated from the column spec.

One SQL query (run by an in-memory DuckDB over the Arrow data) maps the file's columns,
converts every value to its canonical type and gives each row the first reason it is invalid,
in a fixed order so reports are reproducible. The rules mirror the pydantic models in
:mod:`tailor.events.schema`; a property test checks that both agree row by row.

Reasons never quote values of pseudonymized columns: raw ids must not reach reports or logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.events.columns import (
    COMMON_REQUIRED,
    EVENT_COLUMNS,
    EVENT_TYPES,
    PURPOSES,
    SET_BY_TAILOR,
    Column,
)
from tailor.events.mapping import ColumnMapping

EARLIEST_SQL = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_TRUE = ("true", "t", "1", "yes", "y", "on")
_FALSE = ("false", "f", "0", "no", "n", "off")
_OFFSET_RE = r"(Z|z|[+-]\d{2}(:?\d{2})?)$"
# What Python's str.strip() (and so pydantic) removes, in ASCII; DuckDB's trim() alone
# removes only spaces.
_WHITESPACE = "".join(map(chr, [9, 10, 11, 12, 13, 28, 29, 30, 31, 32]))


def strip_sql(text: str) -> str:
    """``text`` without surrounding whitespace; copies only values that have some (fast)."""
    return (
        f"CASE WHEN ascii({text}) <= 32 OR ascii(right({text}, 1)) <= 32 "
        f"THEN trim({text}, {lit(_WHITESPACE)}) ELSE {text} END"
    )


_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


Verdict = Callable[[Any, "str | None", int], bool]
"""``(probe value, event type of the group, rows in the group)`` → may any row fail?"""


def _any_true(value: Any, event_type: str | None, rows: int) -> bool:
    return bool(value)


@dataclass(frozen=True)
class Check:
    """One row rule: ``condition`` (SQL over ``c``, true where a row fails) and its ``reason``.

    ``probe`` is an aggregate over ``c``, computed per event type in one pass over the file, and
    ``fails`` says from its value whether any row of that group may fail. A probe may
    over-report (the rows are then checked one by one and the exact reasons found) but must
    never miss a failing row; the property tests hold both paths to the pydantic models. The
    default probe evaluates the condition on every row; counts, minima and maxima are much
    cheaper, which is what makes validating a clean file cost little more than reading it.
    """

    condition: str
    reason: str
    probe: str = ""
    fails: Verdict = _any_true

    @property
    def aggregate(self) -> str:
        return self.probe or f"bool_or(coalesce({self.condition}, FALSE))"

    def substitute(self, old: str, new: str) -> Check:
        return replace(
            self,
            condition=self.condition.replace(old, new),
            reason=self.reason.replace(old, new),
            probe=self.probe.replace(old, new),
        )


def _above(limit: float) -> Verdict:
    return lambda value, event_type, rows: value is not None and value > limit


def _below(limit: Any) -> Verdict:
    return lambda value, event_type, rows: value is not None and value < limit


def _lost(x: str, expr: str, reason: str) -> Check:
    """A value present in the file that did not convert."""
    return Check(
        f"{x} IS NOT NULL AND {expr} IS NULL", reason, f"count({x}) - count({expr})", _above(0)
    )


def _present(x: str, reason: str) -> Check:
    """Any value at all is an error (the column needs a map option to be read)."""
    return Check(f"{x} IS NOT NULL", reason, f"count({x})", _above(0))


def is_text(kind: pa.DataType) -> bool:
    """Whether values of this Arrow type are read as text (and so may need stripping)."""
    return not (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_null(kind)
    )


def text_may_be_padded(values: pa.ChunkedArray) -> bool:
    """Whether any string may start or end with whitespace (ASCII <= 32): stripping costs
    far more than this look at the first and last byte of each value in Arrow's buffers."""
    if values.null_count == len(values) or not is_text(values.type):
        return False
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return True  # e.g. dictionary-encoded: not worth a special case, strip to be safe
    width = np.int32 if pa.types.is_string(values.type) else np.int64
    for chunk in values.chunks:
        if len(chunk) == 0 or chunk.null_count == len(chunk):
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        data = (
            np.frombuffer(data_buf, dtype=np.uint8)
            if data_buf is not None
            else np.empty(0, np.uint8)
        )
        starts, ends = offsets[:-1], offsets[1:]
        filled = ends > starts
        if chunk.null_count:
            filled &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if (data[starts[filled]] <= 32).any() or (data[ends[filled] - 1] <= 32).any():
            return True
    return False


def _shown(raw: str, column: Column) -> str:
    """SQL for how a bad value appears in a reason: quoted and cut, or hidden if personal."""
    if column.pseudonym_namespace:
        return "'(value hidden)'"
    return f"'''' || left({raw}, 40) || ''''"


def mapped_select(
    source: pa.Schema, targets: Sequence[Column], mapping: ColumnMapping | None
) -> str:
    """SELECT list turning the source columns into target columns.

    Without a mapping, file columns must carry target names (unknown ones are an error).
    """
    mapping = mapping or ColumnMapping()
    names = set(source.names) - {"_row"}
    target_names = {c.name for c in targets}
    if not mapping.columns and not mapping.constants:
        unknown = sorted(names - target_names)
        if unknown:
            raise ValueError(
                f"unknown column(s) {', '.join(unknown)}: not in tailor's schema; rename them or "
                "pass --map with a [columns] table"
            )
    missing = sorted(src for src in mapping.columns.values() if src not in names)
    if missing:
        raise ValueError(
            f"column(s) {', '.join(missing)} named in the map are not in the file "
            f"(it has: {', '.join(sorted(names))})"
        )
    parts = ["_row"]
    for column in targets:
        if column.name in mapping.constants:
            expr = lit(mapping.constants[column.name])
        elif column.name in mapping.columns:
            expr = ident(mapping.columns[column.name])
        elif column.name in names and column.name not in mapping.columns.values():
            expr = ident(column.name)
        else:
            expr = "NULL"
        if column.name in mapping.values and expr != "NULL":
            cases = " ".join(
                f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.values[column.name].items()
            )
            expr = f"CASE CAST({expr} AS VARCHAR) {cases} ELSE CAST({expr} AS VARCHAR) END"
        parts.append(f"{expr} AS {ident(column.name)}")
    return ", ".join(parts)


def raw_name(name: str) -> str:
    """The column of the converted relation that keeps a column's value as read."""
    return f"_raw_{name}"


def convert_expr(
    column: Column, stype: pa.DataType, mapping: ColumnMapping | None, *, padded: bool = True
) -> tuple[str, list[Check]]:
    """(conversion SQL over the ``m`` relation, checks over ``c``).

    ``c`` is the relation that holds each converted value under the column's name and the
    value as read under :func:`raw_name` (the relation the rule checks read as well). The
    checks read the converted value from there instead of recomputing the conversion in every
    condition, which is most of the cost of validating a wide file. ``padded=False`` promises
    that no value has surrounding whitespace, so stripping it (costly on long string columns)
    is left out.
    """
    expr, checks = _convert(column, stype, mapping, strip_sql if padded else _unchanged)
    x = f"m.{ident(column.name)}"
    value, raw = f"c.{ident(column.name)}", f"c.{ident(raw_name(column.name))}"
    return expr, [check.substitute(expr, value).substitute(x, raw) for check in checks]


def _unchanged(text: str) -> str:
    return text


def _convert(
    column: Column,
    stype: pa.DataType,
    mapping: ColumnMapping | None,
    strip: Callable[[str], str],
) -> tuple[str, list[Check]]:
    mapping = mapping or ColumnMapping()
    if pa.types.is_null(stype):  # not in the file: nothing to convert or check
        return f"CAST(NULL AS {_DUCKDB_TYPES[column.kind]})", []
    x = f"m.{ident(column.name)}"
    raw = f"CAST({x} AS VARCHAR)"
    name = column.name
    checks: list[Check] = []
    is_str = pa.types.is_string(stype) or pa.types.is_large_string(stype) or pa.types.is_null(stype)
    if column.kind == "string":
        if pa.types.is_floating(stype):
            expr = (
                f"CASE WHEN {x} = floor({x}) AND abs({x}) < 1e18 "
                f"THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END"
            )
        else:
            expr = strip(f"CAST({x} AS VARCHAR)")
        checks.append(
            Check(
                f"{x} IS NOT NULL AND {expr} = ''",
                f"'{name} is empty'",
                f"min(strlen({expr}))",
                lambda value, event_type, rows: value == 0,
            )
        )
        if column.max_length:
            # strlen (bytes) is free and never below the character count: test it first.
            checks.append(
                Check(
                    f"strlen({expr}) > {column.max_length} "
                    f"AND length({expr}) > {column.max_length}",
                    f"'{name} is longer than {column.max_length} characters'",
                    f"max(strlen({expr}))",
                    _above(column.max_length),
                )
            )
        return expr, checks
    if column.kind == "float":
        expr = f"TRY_CAST({x} AS DOUBLE)"
        checks.append(_lost(x, expr, f"'{name}: ' || {_shown(raw, column)} || ' is not a number'"))
        checks.append(Check(f"NOT isfinite({expr})", f"'{name} must be a finite number'"))
    elif column.kind == "int":
        if pa.types.is_floating(stype):
            expr = f"CASE WHEN {x} = floor({x}) THEN TRY_CAST({x} AS BIGINT) END"
        elif is_str:
            text = strip(f"CAST({x} AS VARCHAR)")
            expr = (
                f"CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+') "
                f"THEN TRY_CAST({text} AS BIGINT) END"
            )
        else:
            expr = f"TRY_CAST({x} AS BIGINT)"
        checks.append(
            _lost(x, expr, f"'{name}: ' || {_shown(raw, column)} || ' is not a whole number'")
        )
    elif column.kind == "bool":
        if pa.types.is_boolean(stype):
            expr = x
        else:
            low = f"lower({strip(f'CAST({x} AS VARCHAR)')})"
            expr = (
                f"CASE WHEN {low} IN ({', '.join(map(lit, _TRUE))}) THEN TRUE "
                f"WHEN {low} IN ({', '.join(map(lit, _FALSE))}) THEN FALSE END"
            )
        checks.append(
            _lost(x, expr, f"'{name}: ' || {_shown(raw, column)} || ' is not true/false'")
        )
    elif column.kind == "timestamp":
        expr, tchecks = _timestamp_expr(x, raw, column, stype, mapping, strip)
        checks += tchecks
        checks.append(
            Check(
                f"{expr} < {EARLIEST_SQL}",
                f"'{name} is before 1970-01-01'",
                f"min({expr})",
                _below(_EARLIEST),
            )
        )
    elif column.kind == "json":
        expr = f"CAST({x} AS VARCHAR)" if is_str else f"CAST(to_json({x}) AS VARCHAR)"
        checks.append(
            Check(
                f"{x} IS NOT NULL AND NOT coalesce(json_valid({expr}), FALSE)",
                f"'{name} is not valid JSON'",
            )
        )
        checks.append(
            Check(
                f"json_type(CASE WHEN json_valid({expr}) THEN {expr} END) <> 'OBJECT'",
                f"'{name} must be a JSON object'",
            )
        )
        if column.max_length:
            checks.append(
                Check(
                    f"length({expr}) > {column.max_length}",
                    f"'{name} is longer than {column.max_length} characters'",
                    f"max(strlen({expr}))",
                    _above(column.max_length),
                )
            )
    else:  # pragma: no cover - the spec has no other kinds
        raise AssertionError(column.kind)
    if column.minimum is not None:
        checks.append(
            Check(
                f"{expr} < {column.minimum!r}",
                f"'{name} must be at least {column.minimum:g}'",
                f"min({expr})",
                _below(column.minimum),
            )
        )
    return expr, checks


def _timestamp_expr(
    x: str,
    raw: str,
    column: Column,
    stype: pa.DataType,
    mapping: ColumnMapping,
    strip: Callable[[str], str],
) -> tuple[str, list[Check]]:
    name = column.name
    tz = mapping.timezone
    bad = f"'{name}: ' || {_shown(raw, column)} || ' is not a timestamp'"
    if pa.types.is_timestamp(stype):
        if stype.tz is not None:
            return x, []
        if tz:
            return f"timezone({lit(tz)}, {x})", []
        return f"CAST({x} AS TIMESTAMPTZ)", [
            _present(x, f"'{name} has no time zone: set options.timezone in the map'")
        ]
    if pa.types.is_date(stype):
        return f"timezone({lit(tz or 'UTC')}, CAST({x} AS TIMESTAMP))", []
    if pa.types.is_integer(stype) or pa.types.is_floating(stype) or mapping.epoch_unit:
        scale = {"s": 1, "ms": 1_000, "us": 1_000_000}[mapping.epoch_unit or "s"]
        if not mapping.epoch_unit:
            return "CAST(NULL AS TIMESTAMPTZ)", [
                _present(
                    x,
                    f"'{name} is a number: set options.epoch_unit in the map to read epoch times'",
                )
            ]
        number = f"TRY_CAST({x} AS DOUBLE)"
        expr = f"CASE WHEN isfinite({number}) THEN to_timestamp({number} / {scale}) END"
        return expr, [_lost(x, expr, bad)]
    text = strip(raw)
    if mapping.timestamp_format:
        fmt = lit(mapping.timestamp_format)
        has_zone = "%z" in mapping.timestamp_format or "%Z" in mapping.timestamp_format
        parsed = f"try_strptime({text}, {fmt})"
        if has_zone:
            expr = f"CAST({parsed} AS TIMESTAMPTZ)"
        else:
            expr = f"timezone({lit(tz or 'UTC')}, {parsed})"
        return expr, [_lost(x, expr, bad)]
    has_offset = f"regexp_matches({text}, {lit(_OFFSET_RE)})"
    aware = f"TRY_CAST({text} AS TIMESTAMPTZ)"
    if tz:
        naive = f"timezone({lit(tz)}, TRY_CAST({text} AS TIMESTAMP))"
        expr = f"CASE WHEN {has_offset} THEN {aware} ELSE {naive} END"
        return expr, [_lost(x, expr, bad)]
    expr = f"CASE WHEN {has_offset} THEN {aware} END"
    lost = _lost(x, expr, bad)
    # Only a value that did not convert can lack its zone: the cheap count tells whether to look.
    no_zone = Check(
        f"{x} IS NOT NULL AND NOT {has_offset} AND TRY_CAST({text} AS TIMESTAMP) IS NOT NULL",
        f"'{name} has no time zone (add Z or +01:00, or set options.timezone in the map)'",
        lost.probe,
        lost.fails,
    )
    return expr, [no_zone, lost]


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(lit(v) for v in values) + ")"


def _missing_for(types: Collection[str] | None) -> Verdict:
    """Some row of a group (all groups when ``types`` is None) lacks the value."""
    return lambda value, event_type, rows: (
        (types is None or event_type in types) and (value or 0) < rows
    )


def _carried_by(types: Collection[str]) -> Verdict:
    return lambda value, event_type, rows: event_type in types and bool(value)


def event_rule_checks(present: Collection[str] | None = None) -> list[Check]:
    """Per event type: required, allowed and special rules over converted columns ``c``.

    ``present`` names the columns the file provides; rules about what an absent column must
    not contain are skipped (they cannot fail), which keeps wide-but-sparse files fast. The
    required and allowed rules are probed by counting values per event type, so a clean file
    pays for one count per column, not for a condition per rule and row.
    """
    types = list(EVENT_TYPES)
    present = set(present) if present is not None else {c.name for c in EVENT_COLUMNS}
    checks: list[Check] = [
        Check(
            "c.event_type IS NULL",
            "'event_type is missing'",
            "count(*)",
            lambda value, event_type, rows: event_type is None,
        ),
        Check(
            f"c.event_type NOT IN {_in(types)}",
            "'unknown event_type ''' || left(c.event_type, 40) || ''' (expected one of "
            + ", ".join(types)
            + ")'",
            "count(*)",
            lambda value, event_type, rows: event_type is not None and event_type not in types,
        ),
    ]
    for name in ("event_id", "occurred_at"):
        checks.append(
            Check(
                f"c.{name} IS NULL", f"'{name} is missing'", f"count(c.{name})", _missing_for(None)
            )
        )
    subject_types = [t for t, r in EVENT_TYPES.items() if r.subject_required]
    checks.append(
        Check(
            f"c.subject_id IS NULL AND c.event_type IN {_in(subject_types)}",
            "'subject_id is required for ' || c.event_type || ' events'",
            "count(c.subject_id)",
            _missing_for(subject_types),
        )
    )
    for column in EVENT_COLUMNS:
        name = column.name
        if name in COMMON_REQUIRED or name in SET_BY_TAILOR:
            continue
        needing = [t for t, r in EVENT_TYPES.items() if name in r.required]
        if needing:
            checks.append(
                Check(
                    f"c.{name} IS NULL AND c.event_type IN {_in(needing)}",
                    f"'{name} is required for ' || c.event_type || ' events'",
                    f"count(c.{name})",
                    _missing_for(needing),
                )
            )
        not_allowed = [t for t, r in EVENT_TYPES.items() if name not in r.allowed]
        if not_allowed and name in present:
            checks.append(
                Check(
                    f"c.{name} IS NOT NULL AND c.event_type IN {_in(not_allowed)}",
                    f"'{name} is not allowed on ' || c.event_type || ' events'",
                    f"count(c.{name})",
                    _carried_by(not_allowed),
                )
            )
    single = [t for t, r in EVENT_TYPES.items() if not r.multi_line]
    special = [
        Check(
            f"c.line <> 0 AND c.event_type IN {_in(single)}",
            "'line must be 0 for ' || c.event_type || ' events (one row each)'",
        ),
        Check(
            "NOT regexp_full_match(c.country, '[A-Z]{2}')",
            "'country must be an ISO 3166 alpha-2 code such as DE, got ''' || left(c.country, 40)"
            " || ''''",
        ),
        Check(
            "NOT regexp_full_match(c.currency, '[A-Z]{3}')",
            "'currency must be an ISO 4217 code such as EUR, got '''"
            " || left(c.currency, 40) || ''''",
        ),
        Check(
            f"c.purpose NOT IN {_in(PURPOSES)}",
            "'purpose must be one of " + ", ".join(PURPOSES) + "'",
        ),
        Check("c.event_type = 'purchase' AND c.quantity = 0", "'quantity must not be 0'"),
        Check(
            "c.event_type IN ('add_to_cart', 'remove_from_cart') AND c.quantity <= 0",
            "'quantity must be greater than 0 for ' || c.event_type || ' events'",
        ),
    ]
    return checks + [check for check in special if _mentions_present(check.condition, present)]


def entity_key_check(key: str) -> Check:
    return Check(f"c.{key} IS NULL", f"'{key} is missing'", f"count(c.{key})", _missing_for(None))


def _mentions_present(condition: str, present: set[str]) -> bool:
    return all(
        name in present for name in re.findall(r"c\.(\w+)", condition) if name != "event_type"
    )


def case_reason(checks: Sequence[Check]) -> str:
    """First failing check's reason, or NULL. ``coalesce`` turns NULL conditions into passes."""
    if not checks:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(f"WHEN coalesce({c.condition}, FALSE) THEN {c.reason}" for c in checks)
    return f"CASE {whens} END"
