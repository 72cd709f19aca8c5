"""The fast SQL validator and the pydantic models (the reference) accept the same rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailor.events.columns import EVENT_COLUMNS, EVENT_TYPES
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


@st.composite
def rows(draw):
    row = {}
    event_type = draw(st.sampled_from(SPECIAL["event_type"]))
    rule = EVENT_TYPES.get(str(event_type))
    for column in GENERATED:
        pool = SPECIAL.get(column.name, POOLS[column.kind])
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=40))
def test_sql_validator_agrees_with_pydantic(batch):
    table = pa.table({c.name: pa.array([r[c.name] for r in batch], pa.string()) for c in GENERATED})
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
