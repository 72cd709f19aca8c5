"""The fast SQL validator and the pydantic models (the reference) accept the same rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailor.events.columns import EVENT_COLUMNS, EVENT_TYPES, arrow_type
from tailor.events.importer import _Checked
from tailor.events.readers import SourceData
from tailor.events.schema import check_flat_row

POOLS: dict[str, list[str | None]] = {
    "string": [
        None,
        None,
        "abc",
        "  padded  ",
        "   ",
        "x" * 129,
        "ok-1",
        "\ttab\n",
        "\x1cfs\x1f",
        "é" * 65,
    ],
    "float": [None, None, "3.5", "-2", "0", "abc", "1e400", "nan", " 7 "],
    "int": [None, None, "3", "-1", "3.0", "x", "+4", "0"],
    "bool": [None, None, "true", "False", "1", "no", "maybe", " t "],
    "timestamp": [
        None,
        "2024-01-01T00:00:00Z",
        "2024-01-01T10:00:00+02:00",
        "2024-01-01 00:00:00",
        "2024-13-01T00:00:00Z",
        "yesterday",
        "1969-12-31T23:00:00Z",
    ],
    "json": [None, None, '{"a": 1}', "[1]", "{bad", '{"k": "v"}'],
}
SPECIAL = {
    "event_type": [*EVENT_TYPES, "vue", None],
    "country": [None, "DE", "de", "DEU", " FR "],
    "currency": [None, "EUR", "eur", "EURO"],
    "purpose": [None, "personalization", "analytics", "marketing"],
    "quantity": [None, "1", "0", "-1", "2.5", "abc"],
    "price": [None, "9.99", "-1", "0", "x"],
}
SKIP = {"event_id", "line", "received_at"}
GENERATED = [c for c in EVENT_COLUMNS if c.name not in SKIP]


# Native types as Parquet and loaders bring them: these take the cheap probes (minima,
# maxima, counts) instead of the text conversions, so they need their own agreement test.
TYPED_POOLS: dict[str, list] = {
    "string": POOLS["string"],
    "float": [None, None, 3.5, -2.0, 0.0, math.nan, math.inf, -math.inf],
    "int": [None, None, 3, -1, 0],
    "bool": [None, None, True, False],
    "timestamp": [
        None,
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
    "json": POOLS["json"],
}
TYPED_SPECIAL = {
    **{k: SPECIAL[k] for k in ("event_type", "country", "currency", "purpose")},
    "quantity": [None, 1.0, 0.0, -1.0, 2.5, math.nan],
    "price": [None, 9.99, -1.0, 0.0, math.inf],
}


@st.composite
def rows(draw, pools=POOLS, special=SPECIAL):
    row = {}
    event_type = draw(st.sampled_from(special["event_type"]))
    rule = EVENT_TYPES.get(str(event_type))
    for column in GENERATED:
        pool = special.get(column.name, pools[column.kind])
        if column.name == "event_type":
            row[column.name] = event_type
        elif rule is not None and column.name not in rule.allowed and draw(st.booleans()):
            row[column.name] = None  # mostly keep rows plausible so type checks get exercised
        else:
            row[column.name] = draw(st.sampled_from(pool))
    return row


def reference_accepts(row: dict) -> bool:
    try:
        check_flat_row(row)
    except ValueError:  # pydantic.ValidationError is a ValueError
        return False
    return True


# Each example runs a batch of up to 40 rows through DuckDB's validator (~0.3 s): 60 batches
# keep the default run quick; hypothesis draws new ones on every run.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=40))
def test_sql_validator_agrees_with_pydantic(batch):
    table = pa.table({c.name: pa.array([r[c.name] for r in batch], pa.string()) for c in GENERATED})
    assert_agrees(batch, table)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(TYPED_POOLS, TYPED_SPECIAL), min_size=1, max_size=40))
def test_sql_validator_agrees_with_pydantic_on_typed_columns(batch):
    table = pa.table(
        {c.name: pa.array([r[c.name] for r in batch], arrow_type(c.kind)) for c in GENERATED}
    )
    assert_agrees(batch, table)


def assert_agrees(batch: list[dict], table: pa.Table) -> None:
    table = table.append_column("event_id", pa.array([f"e{i}" for i in range(len(batch))]))
    table = table.append_column("_row", pa.array(np.arange(1, len(batch) + 1), pa.int64()))
    checked = _Checked(SourceData(table, "csv", "line"), EVENT_COLUMNS, None, events=True)
    try:
        rejected = {line: reason for line, reason in checked.rejects()}
    finally:
        checked.close()
    for i, row in enumerate(batch, start=1):
        expected = reference_accepts(dict(row, event_id=f"e{i - 1}"))
        assert (i not in rejected) == expected, (row, rejected.get(i))
