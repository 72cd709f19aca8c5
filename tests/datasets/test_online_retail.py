from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailor.datasets.base import Dataset
from tailor.datasets.online_retail import (
    COUNTRY_CODES,
    RAW_COLUMNS,
    load_online_retail,
    online_retail_rows,
)


@pytest.fixture(scope="module")
def raw(load_or_skip) -> pa.Table:
    return load_or_skip(online_retail_rows)


@pytest.fixture(scope="module")
def retail(load_or_skip) -> Dataset:
    return load_or_skip(load_online_retail)


def test_raw_rows_match_source(raw: pa.Table) -> None:
    assert raw.num_rows == 34_766
    assert raw.column_names == [*RAW_COLUMNS, "sheet"]
    sheets = raw.group_by("sheet").aggregate([([], "count_all")]).to_pylist()
    assert {r["sheet"]: r["count_all"] for r in sheets} == {
        "Year 2009-2010": 14_269,
        "Year 2010-2011": 20_497,
    }
    first = raw.slice(0, 1).to_pylist()[0]
    assert first["Invoice"] == "490397"
    assert first["StockCode"] == "21844"
    assert first["Customer ID"] == 12417
    assert first["InvoiceDate"] == datetime(2009, 12, 6, 10, 30, tzinfo=UTC)  # GMT = UTC


def test_cancellations_have_negative_quantities(raw: pa.Table) -> None:
    cancelled = pc.starts_with(raw["Invoice"], "C")
    assert pc.sum(cancelled).as_py() == 761
    assert pc.all(pc.less(raw["Quantity"].filter(cancelled), 0)).as_py()
    assert pc.all(pc.greater(raw["Quantity"].filter(pc.invert(cancelled)), 0)).as_py()


def test_summer_times_are_converted_from_bst(raw: pa.Table) -> None:
    # sheet "Year 2009-2010" row 479: invoice 514814 at 2010-07-06 12:15 London time (BST)
    row = raw.slice(477, 1).to_pylist()[0]
    assert (row["Invoice"], row["StockCode"]) == ("514814", "22353")
    assert row["Description"] == "LUNCH BOX WITH CUTLERY FAIRY CAKES"  # trailing space trimmed
    assert row["InvoiceDate"] == datetime(2010, 7, 6, 11, 15, tzinfo=UTC)


def test_events(retail: Dataset, check_events, check_entities) -> None:
    events = retail.events
    assert pc.unique(events["event_type"]).to_pylist() == ["purchase"]
    assert events["subject_id"].null_count == 0
    assert check_events(events) == len(pc.unique(events["event_id"]))
    check_entities(retail)
    negative = pc.less(events["quantity"], 0)
    assert negative.equals(pc.starts_with(events["event_id"], "C"))
    assert pc.unique(events["currency"]).to_pylist() == ["GBP"]
    assert events["order_id"].equals(events["event_id"])
    codes = set(pc.unique(events["country"]).to_pylist())
    assert codes == {"BE", "CA", "CH", "ES", "FR", "IT", "LB", "NL", "PT", None}


def test_rows_without_customer_and_overlap_are_dropped(raw: pa.Table, retail: Dataset) -> None:
    guests = raw["Customer ID"].null_count
    assert guests == 601
    assert any(f"dropped {guests} rows: no Customer ID" in n for n in retail.notes)
    assert any("dropped 0 rows: negative price" in n for n in retail.notes)
    # 23 invoices of 2010-12-01..09 are in both sheets, line for line
    assert any("dropped 441 rows: repeated in the second sheet" in n for n in retail.notes)
    assert retail.events.num_rows == raw.num_rows - guests - 441
    per_invoice = retail.events.group_by("event_id").aggregate([("line", "max")])
    assert per_invoice.num_rows == len(pc.unique(retail.events["event_id"]))
    assert pc.max(per_invoice["line_max"]).as_py() < 1000


def test_items_and_users(retail: Dataset) -> None:
    items = {r["item_id"]: r for r in retail.items.to_pylist()}
    assert set(pc.unique(retail.events["item_id"]).to_pylist()) <= set(items)
    assert items["POST"]["attributes"] == '{"service":true}'
    assert items["21844"]["title"] == "RED RETROSPOT MUG"  # its latest description
    assert all(i["currency"] == "GBP" and i["price"] >= 0 for i in items.values())
    users = {r["user_id"]: json.loads(r["attributes"]) for r in retail.users.to_pylist()}
    assert set(pc.unique(retail.events["subject_id"]).to_pylist()) == set(users)
    assert {u["country"] for u in users.values()} <= set(COUNTRY_CODES.values())


def test_ids_are_deterministic(retail: Dataset, load_or_skip) -> None:
    again = load_or_skip(load_online_retail)
    assert again.events.equals(retail.events)


def test_country_codes_are_iso_alpha2() -> None:
    for name, code in COUNTRY_CODES.items():
        assert code is None or (len(code) == 2 and code.isupper()), name
    assert COUNTRY_CODES["EIRE"] == "IE"
    assert COUNTRY_CODES["Channel Islands"] is None


def test_quarantine_rules_on_a_small_workbook(tmp_path: Path, check_events) -> None:
    """Raw Excel serials, a bad-debt line, a guest and a cancellation, without shared data."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Year 2010-2011"
    sheet.append(list(RAW_COLUMNS))
    july_noon = 40360.5  # 2010-07-01 12:00 Excel serial, BST
    sheet.append(["A1", 10, "MUG ", 2, july_noon, 1.5, 100.0, "EIRE"])
    sheet.append(["A1", "85123A", "HEART", 1, july_noon, 2.55, 100.0, "EIRE"])
    sheet.append(["C2", 10, "MUG", -1, july_noon + 1, 1.5, 100.0, "European Community"])
    sheet.append(["A3", "B", "Adjust bad debt", 1, july_noon + 2, -11062.06, None, "Narnia"])
    sheet.append(["A4", 10, "MUG", 5, july_noon + 3, 1.75, None, "France"])
    path = tmp_path / "mini.xlsx"
    workbook.save(path)

    data = load_online_retail(path)
    rows = data.events.to_pylist()
    assert [(r["event_id"], r["line"], r["item_id"]) for r in rows] == [
        ("A1", 0, "10"),
        ("A1", 1, "85123A"),
        ("C2", 0, "10"),
    ]
    assert rows[0]["occurred_at"] == datetime(2010, 7, 1, 11, 0, tzinfo=UTC)
    assert rows[0]["subject_id"] == "100"
    assert [r["country"] for r in rows] == ["IE", "IE", None]
    assert rows[2]["quantity"] == -1.0
    assert check_events(data.events) == 2
    assert any("dropped 1 rows: negative price" in n for n in data.notes)
    assert any("dropped 1 rows: no Customer ID" in n for n in data.notes)
    items = {r["item_id"]: r for r in data.items.to_pylist()}
    assert items["10"]["price"] == 1.75  # the latest sale, a guest's, still prices the item
    assert "B" not in items
