"""Fixtures for the dataset loader tests: skip cleanly without the shared data, and check
loader output against the event rules and the pydantic reference models."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailor.datasets.base import DataNotFoundError, Dataset
from tailor.events.columns import COLUMNS_BY_NAME, COMMON_REQUIRED, ENTITIES, EVENT_TYPES
from tailor.events.schema import EARLIEST, from_flat_rows


@pytest.fixture(scope="session")
def load_or_skip() -> Callable[..., Any]:
    """Call a loader; skip the test (with the reason) when the shared data is missing."""

    def load(loader: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return loader(*args, **kwargs)
        except DataNotFoundError as exc:
            pytest.skip(f"public dataset not available: {exc}")

    return load


def _check_rules(events: pa.Table) -> None:
    assert events.column("received_at").null_count == events.num_rows
    for event_type in pc.unique(events["event_type"]).to_pylist():
        rule = EVENT_TYPES[event_type]
        rows = events.filter(pc.equal(events["event_type"], event_type))
        required = COMMON_REQUIRED | rule.required
        if rule.subject_required:
            required |= {"subject_id"}
        for name in events.column_names:
            nulls = rows.column(name).null_count
            if name not in rule.allowed:
                assert nulls == rows.num_rows, f"{event_type}: {name} must be null"
            if name in required:
                assert nulls == 0, f"{event_type}: {name} is required"
    for name in events.column_names:
        spec = COLUMNS_BY_NAME[name]
        column = events.column(name)
        if spec.max_length and column.null_count < len(column):
            longest = pc.max(pc.utf8_length(column)).as_py()
            assert longest <= spec.max_length, f"{name}: {longest} > {spec.max_length}"
        if spec.kind == "float" and column.null_count < len(column):
            assert pc.all(pc.is_finite(column.drop_null())).as_py(), f"{name} not finite"
        if spec.minimum is not None and column.null_count < len(column):
            assert pc.min(column).as_py() >= spec.minimum, f"{name} below {spec.minimum}"
    keys = events.group_by(["event_id", "line"]).aggregate([([], "count_all")])
    assert keys.num_rows == events.num_rows, "(event_id, line) must be unique"


@pytest.fixture(scope="session")
def check_events() -> Callable[..., int]:
    """Check a loader's events; ``sample`` limits the pydantic check to that many events.

    Every row is checked against EVENT_TYPES (required and disallowed columns, lengths,
    finite numbers, minimums) with Arrow; then each (sampled) event's rows, grouped by
    ``event_id``, must parse with :func:`tailor.events.schema.from_flat_rows`. Returns the
    number of events parsed.
    """

    def check(events: pa.Table, sample: int | None = None) -> int:
        assert events.num_rows > 0
        _check_rules(events)
        ids = pc.unique(events["event_id"]).to_pylist()
        if sample is not None and sample < len(ids):
            ids = random.Random(0).sample(ids, sample)
            events = events.filter(pc.is_in(events["event_id"], pa.array(ids)))
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in events.to_pylist():
            grouped.setdefault(row["event_id"], []).append(row)
        for event_id, rows in grouped.items():
            try:
                from_flat_rows(rows)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise AssertionError(f"event {event_id!r} is invalid: {exc}") from exc
        return len(grouped)

    return check


@pytest.fixture(scope="session")
def check_entities() -> Callable[[Dataset], None]:
    """Check a dataset's entity tables: unique non-null keys, lengths, JSON objects."""

    def check(dataset: Dataset) -> None:
        for kind, table in dataset.entities().items():
            spec = ENTITIES[kind]
            key = table.column(spec.key)
            assert key.null_count == 0, f"{kind}: null {spec.key}"
            assert len(pc.unique(key)) == table.num_rows, f"{kind}: duplicate {spec.key}"
            for column in spec.columns:
                values = table.column(column.name)
                if column.max_length and values.null_count < len(values):
                    assert pc.max(pc.utf8_length(values)).as_py() <= column.max_length
                if column.minimum is not None and values.null_count < len(values):
                    assert pc.min(values).as_py() >= column.minimum
                if column.kind == "timestamp" and values.null_count < len(values):
                    assert pc.min(values).as_py() >= EARLIEST, f"{kind}.{column.name} < 1970"
            assert table.column("updated_at").null_count == table.num_rows
            if "currency" in table.column_names:
                for code in pc.unique(table.column("currency").drop_null()).to_pylist():
                    assert len(code) == 3 and code.isalpha() and code.isupper(), code
            for text in table.column("attributes").drop_null().to_pylist():
                assert isinstance(json.loads(text), dict)

    return check
