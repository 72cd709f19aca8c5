"""Importing files: mappings, formats, and bad files that must leave the store unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.errors import ImportFormatError, ImportRejectedError
from tailor.events.importer import import_file
from tailor.events.mapping import load_mapping, mapping_from_dict

HEADER = "event_id,event_type,subject_id,occurred_at,item_id,quantity,price,currency,line\n"
GOOD = [
    "e1,view,u1,2024-01-01T10:00:00Z,i1,,,,\n",
    "e2,purchase,u1,2024-01-01T10:05:00+01:00,i1,1,3.5,EUR,0\n",
    "e2,purchase,u1,2024-01-01T10:05:00+01:00,i2,2,1.25,EUR,1\n",
]


def snapshot(store) -> list[tuple]:
    """Everything the store holds, to prove a failed import changed nothing."""
    events = store.read_events(purpose=None).to_pylist()
    items = store.read_entities("items").to_pylist()
    keys = sorted((r["event_id"], r["line"], r["subject_id"]) for r in events)
    return [*keys, tuple(sorted(items[0].items())) if items else ()]


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_csv_import_pseudonymizes_and_is_idempotent(store, pseudonymizer, tmp_path):
    path = write(tmp_path, "good.csv", HEADER + "".join(GOOD))
    report = import_file(store, path, pseudonymizer=pseudonymizer)
    assert (report.rows_read, report.written, report.rejected) == (3, 3, 0)
    stored = store.read_events(purpose=None).to_pylist()
    assert {r["subject_id"] for r in stored} == {pseudonymizer.pseudonymize("subject", "u1")}
    assert all("u1" not in json.dumps(r, default=str) for r in stored)
    assert stored[1]["occurred_at"].hour == 9  # +01:00 converted to UTC
    again = import_file(store, path, pseudonymizer=pseudonymizer)
    assert (again.written, again.duplicates) == (0, 3)
    assert store.count_events() == 3


def test_jsonl_and_parquet_give_the_same_rows(store, pseudonymizer, tmp_path):
    rows = [
        {
            "event_id": "j1",
            "event_type": "rating",
            "subject_id": "u9",
            "value": 4,
            "occurred_at": "2024-02-01T00:00:00Z",
            "item_id": "m1",
            "properties": {"src": "app"},
        },
        {
            "event_id": "j2",
            "event_type": "consent",
            "subject_id": "u9",
            "purpose": "analytics",
            "granted": True,
            "occurred_at": "2024-02-01T00:00:00Z",
        },
    ]
    jsonl = write(tmp_path, "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert import_file(store, jsonl, pseudonymizer=pseudonymizer).written == 2
    parquet = tmp_path / "e.parquet"
    keys = sorted({k for r in rows for k in r})
    table = pa.Table.from_pylist(
        [
            {k: r.get(k) for k in keys}
            | {
                "event_id": r["event_id"] + "p",
                "properties": json.dumps(r["properties"]) if "properties" in r else None,
            }
            for r in rows
        ]
    )
    pq.write_table(table, parquet)
    assert import_file(store, parquet, pseudonymizer=pseudonymizer).written == 2
    stored = {r["event_id"]: r for r in store.read_events(purpose=None).to_pylist()}
    assert stored["j1"]["value"] == stored["j1p"]["value"] == 4.0
    assert json.loads(stored["j1"]["properties"]) == {"src": "app"}
    assert stored["j2"]["granted"] is True and stored["j2p"]["granted"] is True


def test_mapping_renames_translates_and_numbers_lines(store, pseudonymizer, tmp_path):
    path = write(
        tmp_path,
        "retail.csv",
        textwrap.dedent("""\
        Invoice,Code,Qty,When,Unit,Customer,Land
        100,A,2,2010-12-01 08:26:00,1.5,17850,United Kingdom
        100,B,1,2010-12-01 08:26:00,2.5,17850,United Kingdom
        C101,A,-1,2010-07-01 08:26:00,1.5,17850,Unspecified
        """),
    )
    mapping = mapping_from_dict(
        {
            "columns": {
                "event_id": "Invoice",
                "item_id": "Code",
                "quantity": "Qty",
                "occurred_at": "When",
                "price": "Unit",
                "subject_id": "Customer",
                "country": "Land",
                "order_id": "Invoice",
            },
            "constants": {"event_type": "purchase", "currency": "GBP"},
            "values": {"country": {"United Kingdom": "GB", "Unspecified": ""}},
            "options": {
                "timezone": "Europe/London",
                "timestamp_format": "%Y-%m-%d %H:%M:%S",
                "number_lines": True,
            },
        }
    )
    report = import_file(store, path, pseudonymizer=pseudonymizer, mapping=mapping)
    assert report.written == 3
    rows = {(r["event_id"], r["line"]): r for r in store.read_events(purpose=None).to_pylist()}
    assert rows[("100", 1)]["item_id"] == "B" and rows[("100", 1)]["country"] == "GB"
    assert rows[("C101", 0)]["country"] is None and rows[("C101", 0)]["quantity"] == -1
    assert rows[("100", 0)]["occurred_at"].hour == 8  # GMT in December
    assert rows[("C101", 0)]["occurred_at"].hour == 7  # BST in July


def test_entity_import_upserts_only_mapped_columns(store, pseudonymizer, tmp_path):
    store.upsert_entities("items", pa.table({"item_id": ["A"], "brand": ["Acme"]}))
    path = write(tmp_path, "items.csv", "Code,Name\nA,Mug\nA,Big mug\nB,Plate\n")
    mapping = mapping_from_dict(
        {"columns": {"item_id": "Code", "title": "Name"}, "constants": {"available": True}}
    )
    report = import_file(store, path, pseudonymizer=pseudonymizer, entity="items", mapping=mapping)
    assert report.written == 2
    rows = {r["item_id"]: r for r in store.read_entities("items").to_pylist()}
    assert rows["A"]["title"] == "Big mug" and rows["A"]["brand"] == "Acme"
    assert rows["A"]["available"] is True and rows["B"]["updated_at"] is not None


def test_users_file_pseudonymizes_the_key(store, pseudonymizer, tmp_path):
    path = write(tmp_path, "users.jsonl", '{"user_id": "alice", "attributes": {"tier": 1}}\n')
    import_file(store, path, pseudonymizer=pseudonymizer, entity="users")
    assert store.read_entities("users").column("user_id").to_pylist() == [
        pseudonymizer.pseudonymize("subject", "alice")
    ]


BAD_FILES = {
    "wrong type": (
        HEADER + GOOD[0] + "e9,view,u1,2024-01-01T00:00:00Z,i1,,abc,,\n",
        "line 3: price: 'abc' is not a number",
    ),
    "unknown type": (
        HEADER + "e9,vue,u1,2024-01-01T00:00:00Z,i1,,,,\n",
        "line 2: unknown event_type 'vue'",
    ),
    "missing required": (
        HEADER + "e9,view,u1,2024-01-01T00:00:00Z,,,,,\n",
        "line 2: item_id is required for view events",
    ),
    "duplicate ids": (
        HEADER + GOOD[0] + GOOD[0],
        "line 3: duplicate event_id e1 (line 0), first seen at line 2",
    ),
    "no time zone": (
        HEADER + "e9,view,u1,2024-01-01 00:00:00,i1,,,,\n",
        "line 2: occurred_at has no time zone",
    ),
    "ragged row": (HEADER + "e9,view,u1\n", "line 2: expected 9 fields, found 3"),
    "truncated csv": (
        HEADER + "".join(GOOD) + 'e9,view,"u1,2024-01-01T',
        "line 5: expected 9 fields, found 3",
    ),
    "half of a basket": (
        HEADER + GOOD[1] + GOOD[2].replace("1.25", "-2"),
        "line 2: another row of event e2 was rejected (line 3)",
    ),
    "subject hidden": (
        HEADER + "e9,view," + "u" * 200 + ",2024-01-01T00:00:00Z,i1,,,,\n",
        "line 2: subject_id is longer than 128 characters",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_csv_is_rejected_whole_with_line_and_reason(store, pseudonymizer, tmp_path, case):
    import_file(
        store,
        write(tmp_path, "seed.csv", HEADER + GOOD[0].replace("e1", "seed")),
        pseudonymizer=pseudonymizer,
    )
    before = snapshot(store)
    text, expected = BAD_FILES[case]
    with pytest.raises(ImportRejectedError) as info:
        import_file(store, write(tmp_path, "bad.csv", text), pseudonymizer=pseudonymizer)
    assert expected in str(info.value)
    assert "nothing was imported" in str(info.value)
    assert "u" * 50 not in str(info.value)  # raw ids are never echoed
    assert snapshot(store) == before


def test_quarantine_imports_the_rest_and_reports_each_line(store, pseudonymizer, tmp_path):
    text = HEADER + "".join(GOOD) + "e9,vue,u1,2024-01-01T00:00:00Z,i1,,,,\ne10,view,u1\n"
    bad = tmp_path / "rejected.csv"
    report = import_file(
        store, write(tmp_path, "mixed.csv", text), pseudonymizer=pseudonymizer, quarantine=bad
    )
    assert (report.written, report.rejected) == (3, 2)
    lines = bad.read_text().splitlines()
    assert lines[0].startswith('"tailor_line","tailor_reason","event_id"')
    assert lines[1].startswith('5,"unknown event_type') and '"e9"' in lines[1]
    assert lines[2].startswith('6,"expected 9 fields, found 3"')


def test_jsonl_broken_lines_are_numbered(store, pseudonymizer, tmp_path):
    good = json.dumps(
        {
            "event_id": "a",
            "event_type": "view",
            "subject_id": "u",
            "occurred_at": "2024-01-01T00:00:00Z",
            "item_id": "i",
        }
    )
    text = good + "\n[1, 2]\n" + good.replace('"a"', '"b"')[:-15]
    with pytest.raises(ImportRejectedError) as info:
        import_file(store, write(tmp_path, "bad.jsonl", text), pseudonymizer=pseudonymizer)
    message = str(info.value)
    assert "line 2: a line must hold one JSON object" in message
    assert "line 3: not valid JSON" in message and "truncated" in message
    assert store.count_events() == 0


def test_single_100mb_line_is_refused_without_loading_it(store, pseudonymizer, tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as handle:
        handle.write(b'{"event_id": "x", "properties": {"blob": "')
        chunk = b"a" * (1 << 20)
        for _ in range(100):
            handle.write(chunk)
        handle.write(b'"}}\n')
    with pytest.raises(ImportRejectedError, match="line 1: line is longer than the 1,048,576"):
        import_file(store, path, pseudonymizer=pseudonymizer)
    csv_path = tmp_path / "huge.csv"
    csv_path.write_bytes(
        HEADER.encode()
        + b"e1,view,u1,"
        + b"z" * (100 << 20)
        + b"\n"
        + GOOD[0].replace("e1", "e2").encode()
    )
    report = import_file(
        store, csv_path, pseudonymizer=pseudonymizer, quarantine=tmp_path / "q.csv"
    )
    assert (report.written, report.rejected) == (1, 1)
    assert report.first_rejects[0][0] == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("empty.jsonl", b"", "the file is empty"),
        ("cut.parquet", b"PAR1\x00\x01", "cannot read it as Parquet"),
        ("events.xml", b"<x/>", "cannot tell the format"),
        ("missing.csv", None, "no such file"),
        ("extra.csv", b"event_id,colour\ne1,red\n", "unknown column(s) colour"),
    ],
)
def test_unreadable_files_get_a_clear_error(store, pseudonymizer, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_file(store, path, pseudonymizer=pseudonymizer)
    assert store.count_events() == 0


def test_truncated_parquet_leaves_store_unchanged(store, pseudonymizer, tmp_path):
    full = tmp_path / "full.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": ["a"],
                "event_type": ["view"],
                "subject_id": ["u"],
                "occurred_at": ["2024-01-01T00:00:00Z"],
                "item_id": ["i"],
            }
        ),
        full,
    )
    cut = write(tmp_path, "cut.parquet", full.read_bytes()[:-20])
    with pytest.raises(ImportFormatError, match="is the file complete"):
        import_file(store, cut, pseudonymizer=pseudonymizer)
    assert store.count_events() == 0


def test_mapping_errors_name_what_to_fix(store, pseudonymizer, tmp_path):
    path = write(tmp_path, "m.toml", '[columns]\nitem = "Code"\n')
    with pytest.raises(ImportFormatError, match="item not a column of events"):
        import_file(
            store,
            write(tmp_path, "f.csv", "Code\nA\n"),
            pseudonymizer=pseudonymizer,
            mapping=load_mapping(path),
        )
    with pytest.raises(ImportFormatError, match="Customer ID named in the map are not in"):
        import_file(
            store,
            write(tmp_path, "g.csv", "Code\nA\n"),
            pseudonymizer=pseudonymizer,
            mapping=mapping_from_dict({"columns": {"subject_id": "Customer ID"}}),
        )
    for bad, message in [
        ({"option": {}}, "unknown section"),
        ({"options": {"timezone": "Mars/Base"}}, "unknown timezone"),
        ({"options": {"epoch_unit": "days"}}, "epoch_unit"),
        ({"options": {"colour": 1}}, "unknown option"),
    ]:
        with pytest.raises(ImportFormatError, match=message):
            mapping_from_dict(bad)


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
from tailor.store import open_store
from tailor.events.privacy import Pseudonymizer
from tailor.events.importer import import_file

store = open_store(sys.argv[1])
# Both ways rows reach the events table: through a staged relation, or (PostgreSQL, rows
# known to be distinct) by COPY straight into it.
def dying(original):
    def append(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        assert result.inserted > 0  # rows are written inside the still open transaction...
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the process dies
    return append
for name in ("_append_relation", "_append_batch"):
    setattr(type(store), name, dying(getattr(type(store), name)))
import_file(store, Path(sys.argv[2]), pseudonymizer=Pseudonymizer(bytes(range(32))),
            batch_rows=2)
"""


def test_killed_import_leaves_store_as_it_was(store_url, pseudonymizer, tmp_path):
    from tailor.store import open_store

    store = open_store(store_url)
    import_file(store, write(tmp_path, "seed.csv", HEADER + GOOD[0]), pseudonymizer=pseudonymizer)
    before = snapshot(store)
    store.close()
    rows = "".join(f"k{i},view,u{i},2024-01-01T00:00:00Z,i1,,,,\n" for i in range(10))
    big = write(tmp_path, "big.csv", HEADER + rows)
    script = write(tmp_path, "crash.py", CRASH_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), store_url, str(big)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == -9, done.stderr
    store = open_store(store_url)
    try:
        assert snapshot(store) == before
    finally:
        store.close()
