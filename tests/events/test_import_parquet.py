"""Parquet is scanned in place, not loaded: the same rows and reasons as the other formats."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.errors import ImportFormatError, ImportRejectedError
from tailor.events.importer import import_file

WHEN = datetime(2024, 3, 1, 12, tzinfo=UTC)


def parquet(tmp_path: Path, rows: list[dict], name: str = "e.parquet", **options) -> Path:
    path = tmp_path / name
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("event_id", pa.string()),
                ("event_type", pa.string()),
                ("subject_id", pa.string()),
                ("occurred_at", pa.timestamp("us", tz="UTC")),
                ("item_id", pa.string()),
                ("price", pa.float64()),
                ("quantity", pa.float64()),
                ("currency", pa.string()),
                ("line", pa.int64()),
            ]
        ),
    )
    pq.write_table(table, path, row_group_size=2, **options)
    return path


def view(event_id: str, subject: str = "u1", item: str = "i1") -> dict:
    return {
        "event_id": event_id,
        "event_type": "view",
        "subject_id": subject,
        "occurred_at": WHEN,
        "item_id": item,
    }


def test_surrounding_whitespace_is_stripped_as_in_csv(store, pseudonymizer, tmp_path):
    path = parquet(tmp_path, [view(" p1 ", "u1\t", "\ni1"), view("p2", "u1", "i2 ")])
    report = import_file(store, path, pseudonymizer=pseudonymizer)
    assert (report.written, report.rejected) == (2, 0)
    stored = sorted(store.read_events(purpose=None).to_pylist(), key=lambda r: r["event_id"])
    assert [r["event_id"] for r in stored] == ["p1", "p2"]
    assert [r["item_id"] for r in stored] == ["i1", "i2"]
    assert {r["subject_id"] for r in stored} == {pseudonymizer.pseudonymize("subject", "u1")}


def test_ids_equal_after_stripping_are_duplicates(store, pseudonymizer, tmp_path):
    path = parquet(tmp_path, [view("p1"), view("p1 ")])
    with pytest.raises(ImportRejectedError, match="duplicate event_id p1"):
        import_file(store, path, pseudonymizer=pseudonymizer)
    assert store.count_events() == 0


def test_quarantine_names_the_row_and_keeps_its_fields(store, pseudonymizer, tmp_path):
    purchase = view("p3") | {
        "event_type": "purchase",
        "price": -1.0,
        "quantity": 1.0,
        "currency": "EUR",
        "line": 0,
    }
    rows = [view("p1"), view("p2"), purchase, view("p4"), view("p5") | {"event_type": "vue"}]
    bad = tmp_path / "bad.csv"
    report = import_file(
        store, parquet(tmp_path, rows), pseudonymizer=pseudonymizer, quarantine=bad
    )
    assert (report.rows_read, report.written, report.rejected) == (5, 3, 2)
    with bad.open() as handle:
        rejected = list(csv.DictReader(handle))
    assert [(r["tailor_line"], r["event_id"]) for r in rejected] == [("3", "p3"), ("5", "p5")]
    assert rejected[0]["tailor_reason"] == "price must be at least 0"
    assert rejected[1]["tailor_reason"].startswith("unknown event_type 'vue'")


@pytest.mark.parametrize("statistics", [True, False])
def test_an_empty_column_is_checked_with_or_without_statistics(
    store, pseudonymizer, tmp_path, statistics
):
    # price is all null: with statistics the column is skipped, yet purchases still need it.
    purchase = view("p1") | {"event_type": "purchase", "quantity": 1.0, "currency": "EUR"}
    path = parquet(tmp_path, [view("v1"), purchase], write_statistics=statistics)
    with pytest.raises(ImportRejectedError, match="price is required for purchase events"):
        import_file(store, path, pseudonymizer=pseudonymizer)
    assert store.count_events() == 0


@pytest.mark.parametrize("reserved", ["_row", "file_row_number"])
def test_reserved_column_names_are_refused(store, pseudonymizer, tmp_path, reserved):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"event_id": ["a"], reserved: [1]}), path)
    with pytest.raises(ImportFormatError, match="reserved"):
        import_file(store, path, pseudonymizer=pseudonymizer)


def test_a_damaged_page_is_an_error_and_changes_nothing(store, pseudonymizer, tmp_path):
    rows = [view(f"p{i}", f"u{i}", f"item-{i}" * 20) for i in range(200)]
    path = parquet(tmp_path, rows, compression="none")
    data = bytearray(path.read_bytes())
    middle = data.index(b"item-100")
    data[middle - 40 : middle + 2000] = b"\xff" * 2040
    path.write_bytes(bytes(data))
    with pytest.raises(ImportFormatError, match=r"e\.parquet: cannot read it as Parquet"):
        import_file(store, path, pseudonymizer=pseudonymizer)
    assert store.count_events() == 0
