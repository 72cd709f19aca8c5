"""Arrow tables in the canonical event and entity shapes."""

from __future__ import annotations

import pyarrow as pa

from tailor.events.columns import ENTITIES, EVENT_SCHEMA


def conform(table: pa.Table, schema: pa.Schema, *, what: str = "table") -> pa.Table:
    """Reorder, add missing columns as nulls and cast to ``schema``.

    Raises ``ValueError`` naming an unknown column or one that cannot be cast safely.
    """
    unknown = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if unknown:
        raise ValueError(f"{what}: unknown column(s) {', '.join(unknown)}")
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            try:
                arrays.append(column.cast(field.type) if column.type != field.type else column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(
                    f"{what}: column {field.name} ({column.type}) is not {field.type}: {exc}"
                ) from exc
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def conform_events(table: pa.Table) -> pa.Table:
    """An import-ready event table: canonical column order and types, missing columns null."""
    return conform(table, EVENT_SCHEMA, what="events")


def conform_entities(kind: str, table: pa.Table) -> pa.Table:
    """An entity table (``users``, ``items`` or ``devices``) in its canonical shape."""
    if kind not in ENTITIES:
        raise ValueError(f"unknown entity {kind!r}; expected one of {', '.join(ENTITIES)}")
    return conform(table, ENTITIES[kind].schema, what=kind)


def empty_events() -> pa.Table:
    return EVENT_SCHEMA.empty_table()
