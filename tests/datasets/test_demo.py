from __future__ import annotations

import csv
import re
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from tailor.datasets.demo import build_demo
from tailor.datasets.online_retail import COUNTRY_CODES

DEMO = resources.files("tailor.datasets.demo")
HEADER = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
          "Customer ID", "Country"]  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with DEMO.joinpath("online_retail_demo.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == HEADER
        return list(reader)


def test_demo_csv_shape(rows: list[dict[str, str]]) -> None:
    assert 3_000 <= len(rows) <= 6_000
    size = len(DEMO.joinpath("online_retail_demo.csv").read_bytes())
    assert size < 600_000
    assert all(len(r) == len(HEADER) and None not in r for r in rows)


def test_demo_csv_values(rows: list[dict[str, str]]) -> None:
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    assert all(stamp.match(r["InvoiceDate"]) for r in rows)
    assert all(r["Customer ID"] == "" or r["Customer ID"].isdigit() for r in rows)
    assert all(float(r["Price"]) >= 0 for r in rows)
    guests = sum(1 for r in rows if not r["Customer ID"])
    cancelled = [r for r in rows if r["Invoice"].startswith("C")]
    assert guests > 0 and cancelled
    assert all(int(r["Quantity"]) < 0 for r in cancelled)
    assert all(int(r["Quantity"]) > 0 for r in rows if not r["Invoice"].startswith("C"))
    assert len(Counter(r["Country"] for r in rows)) in (3, 4, 5)


def test_demo_invoices_are_not_repeated(rows: list[dict[str, str]]) -> None:
    # each invoice's lines are contiguous: the sheets' overlap is written once
    order = [r["Invoice"] for r in rows]
    runs = [invoice for i, invoice in enumerate(order) if i == 0 or order[i - 1] != invoice]
    assert len(runs) == len(set(runs))


def test_events_map(rows: list[dict[str, str]]) -> None:
    mapping = tomllib.loads(DEMO.joinpath("online_retail_events.map.toml").read_text("utf-8"))
    assert mapping["columns"] == {
        "event_id": "Invoice",
        "subject_id": "Customer ID",
        "item_id": "StockCode",
        "quantity": "Quantity",
        "price": "Price",
        "occurred_at": "InvoiceDate",
        "order_id": "Invoice",
        "country": "Country",
    }
    assert set(mapping["columns"].values()) <= set(HEADER)
    assert mapping["constants"] == {"event_type": "purchase", "currency": "GBP"}
    countries = mapping["values"]["country"]
    assert set(countries) == {r["Country"] for r in rows}
    for name, code in countries.items():
        assert code == (COUNTRY_CODES[name] or "")
    assert mapping["options"] == {
        "timezone": "Europe/London",
        "timestamp_format": "%Y-%m-%d %H:%M:%S",
        "number_lines": True,
    }


def test_items_map() -> None:
    mapping = tomllib.loads(DEMO.joinpath("online_retail_items.map.toml").read_text("utf-8"))
    assert mapping["columns"] == {"item_id": "StockCode", "title": "Description", "price": "Price"}
    assert mapping["constants"] == {"currency": "GBP", "available": True, "active": True}


def test_credits_cite_the_source() -> None:
    credits = DEMO.joinpath("CREDITS.md").read_text("utf-8")
    assert "Chen, D. (2019)" in credits
    assert "https://doi.org/10.24432/C5CG6D" in credits
    assert "CC BY 4.0" in credits


def test_build_demo_reproduces_the_file(tmp_path: Path, load_or_skip) -> None:
    rows = load_or_skip(build_demo.demo_rows)
    out = tmp_path / "demo.csv"
    build_demo.write_demo(rows, out)
    assert out.read_bytes() == DEMO.joinpath("online_retail_demo.csv").read_bytes()
