"""Regenerate ``online_retail_demo.csv`` from the Online Retail II workbook.

Run ``python -m tailor.datasets.demo.build_demo [--source XLSX] [--out CSV]``. The output is
byte-for-byte the same on every run: the rows of the selected countries in sheet order, with
the sheets' overlap (2010-12-01..09, repeated in both sheets) taken once.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailor.datasets.online_retail import SHOP_TIMEZONE, online_retail_rows

COUNTRIES: tuple[str, ...] = ("Portugal", "Italy", "Canada", "Unspecified")
"""Chosen for size (about 5,000 rows) and because together they hold guest checkouts (no
Customer ID: Portugal, Unspecified), cancellations and a country name with no ISO code
(Unspecified). No customer of these countries buys under another country name."""

HEADER: tuple[str, ...] = (
    "Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID",
    "Country",
)  # fmt: skip
DEFAULT_OUT = Path(__file__).with_name("online_retail_demo.csv")


def _local(value: datetime) -> str:
    return value.astimezone(UTC).astimezone(SHOP_TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")


def demo_rows(source: str | Path | None = None) -> list[list[str]]:
    """The demo CSV's data rows (strings, in :data:`HEADER` order), from the workbook."""
    first_sheet: dict[str, str] = {}
    rows: list[list[str]] = []
    for raw in online_retail_rows(source).to_pylist():
        if first_sheet.setdefault(raw["Invoice"], raw["sheet"]) != raw["sheet"]:
            continue
        if raw["Country"] not in COUNTRIES:
            continue
        customer: Any = raw["Customer ID"]
        rows.append(
            [
                raw["Invoice"],
                raw["StockCode"],
                raw["Description"] or "",
                str(raw["Quantity"]),
                _local(raw["InvoiceDate"]),
                repr(float(raw["Price"])),
                "" if customer is None else str(int(customer)),
                raw["Country"],
            ]
        )
    return rows


def write_demo(rows: list[list[str]], out: Path) -> None:
    """Write ``rows`` under :data:`HEADER` as UTF-8 CSV with ``\\n`` line ends."""
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="online_retail_II.xlsx (default: shared)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write")
    args = parser.parse_args(argv)
    rows = demo_rows(args.source)
    write_demo(rows, args.out)
    countries = Counter(r[7] for r in rows)
    guests = sum(1 for r in rows if not r[6])
    cancelled = sum(1 for r in rows if r[0].startswith("C"))
    print(
        f"wrote {args.out}: {len(rows):,} rows ({args.out.stat().st_size:,} bytes), "
        f"{guests} without Customer ID, {cancelled} cancellation lines; "
        + ", ".join(f"{k} {v}" for k, v in countries.most_common())
    )


if __name__ == "__main__":
    main()
