"""UCI Online Retail II: invoice lines of a UK online gift shop, Dec 2009 - Dec 2011.

The shared copy is a country-filtered subset (no UK rows) of the workbook: two sheets,
``Year 2009-2010`` and ``Year 2010-2011``, columns ``Invoice, StockCode, Description, Quantity,
InvoiceDate, Price, Customer ID, Country``. Invoices starting with ``C`` are cancellations
(negative quantities). The two sheets overlap on 2010-12-01..09: those invoices appear in both.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from tailor.datasets.base import Dataset, dataset_path

CITATION = (
    "Chen, D. (2019). Online Retail II [Dataset]. UCI Machine Learning Repository. "
    "https://doi.org/10.24432/C5CG6D (CC BY 4.0)"
)

SHOP_TIMEZONE = ZoneInfo("Europe/London")
"""The shop is in the UK: ``InvoiceDate`` is local (GMT/BST) wall-clock time."""

CURRENCY = "GBP"
RAW_COLUMNS: tuple[str, ...] = (
    "Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID",
    "Country",
)  # fmt: skip

COUNTRY_CODES: dict[str, str | None] = {
    "Australia": "AU",
    "Austria": "AT",
    "Bahrain": "BH",
    "Belgium": "BE",
    "Bermuda": "BM",
    "Brazil": "BR",
    "Canada": "CA",
    "Channel Islands": None,  # Jersey (JE) or Guernsey (GG): the data does not say which
    "Cyprus": "CY",
    "Czech Republic": "CZ",
    "Denmark": "DK",
    "EIRE": "IE",
    "European Community": None,
    "Finland": "FI",
    "France": "FR",
    "Germany": "DE",
    "Greece": "GR",
    "Hong Kong": "HK",
    "Iceland": "IS",
    "Israel": "IL",
    "Italy": "IT",
    "Japan": "JP",
    "Korea": "KR",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Malta": "MT",
    "Netherlands": "NL",
    "Nigeria": "NG",
    "Norway": "NO",
    "Poland": "PL",
    "Portugal": "PT",
    "RSA": "ZA",
    "Saudi Arabia": "SA",
    "Singapore": "SG",
    "Spain": "ES",
    "Sweden": "SE",
    "Switzerland": "CH",
    "Thailand": "TH",
    "USA": "US",
    "United Arab Emirates": "AE",
    "United Kingdom": "GB",
    "Unspecified": None,
    "West Indies": None,  # a region of many countries
}
"""Every country name of the full Online Retail II workbook → ISO 3166-1 alpha-2 (None where
the name is not one country)."""

SERVICE_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "D", "S", "B", "CRUK", "AMAZONFEE", "BANK CHARGES", "ADJUST",
     "ADJUST2", "PADS", "TEST001", "TEST002"}
)  # fmt: skip
"""Stock codes that are not products (postage, carriage, manual entries, discounts, fees)."""

_EXCEL_EPOCH = datetime(1899, 12, 30)
_NO_CUSTOMER = "no Customer ID (guest checkout, no subject)"
_NEGATIVE_PRICE = "negative price (bad-debt adjustment, not a sale)"


def workbook_path(path: str | Path | None = None) -> Path:
    """The workbook: ``path`` itself, ``path/online_retail_II.xlsx`` for a folder, or the
    shared ``online-retail-ii-subset/online_retail_II.xlsx``."""
    if path is None:
        return dataset_path("online-retail-ii-subset", "online_retail_II.xlsx")
    path = Path(path)
    return path / "online_retail_II.xlsx" if path.is_dir() else path


def _local_to_utc(value: datetime | float | int) -> datetime:
    if not isinstance(value, datetime):
        # a raw Excel serial number (days since 1899-12-30), rounded to the second
        value = _EXCEL_EPOCH + timedelta(seconds=round(float(value) * 86_400))
    return value.replace(tzinfo=SHOP_TIMEZONE).astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _customer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(float(value))


def online_retail_rows(path: str | Path | None = None) -> pa.Table:
    """The raw rows of both sheets, in sheet order, lightly typed.

    Parameters
    ----------
    path : the workbook or its folder; default the shared subset.

    Returns
    -------
    pa.Table
        Columns ``Invoice`` (string), ``StockCode`` (string), ``Description``, ``Quantity``
        (int64), ``InvoiceDate`` (UTC timestamp, converted from Europe/London local time),
        ``Price`` (float64), ``Customer ID`` (int64, null for guest checkouts), ``Country``
        and ``sheet`` (the sheet name). Nothing is dropped or deduplicated.
    """
    import openpyxl  # only this loader needs it; keep `import tailor.datasets...` light

    columns: dict[str, list[Any]] = {name: [] for name in (*RAW_COLUMNS, "sheet")}
    workbook = openpyxl.load_workbook(workbook_path(path), read_only=True, data_only=True)
    try:
        for sheet in workbook.worksheets:
            rows = sheet.iter_rows(values_only=True)
            header = next(rows, None)
            if header is None:
                continue
            header_names = [str(h).strip() if h is not None else "" for h in header]
            missing = [c for c in RAW_COLUMNS if c not in header_names]
            if missing:
                raise ValueError(f"sheet {sheet.title!r} lacks column(s) {', '.join(missing)}")
            at = [header_names.index(c) for c in RAW_COLUMNS]
            for row in rows:
                if all(v is None for v in row):
                    continue
                invoice, stock, description, quantity, date, price, customer, country = (
                    row[i] for i in at
                )
                columns["Invoice"].append(_text(invoice))
                columns["StockCode"].append(_text(stock))
                columns["Description"].append(_text(description))
                columns["Quantity"].append(None if quantity is None else int(quantity))
                columns["InvoiceDate"].append(None if date is None else _local_to_utc(date))
                columns["Price"].append(None if price is None else float(price))
                columns["Customer ID"].append(_customer(customer))
                columns["Country"].append(_text(country))
                columns["sheet"].append(sheet.title)
    finally:
        workbook.close()
    types = {
        "Quantity": pa.int64(),
        "InvoiceDate": pa.timestamp("us", tz="UTC"),
        "Price": pa.float64(),
        "Customer ID": pa.int64(),
    }
    return pa.table(
        {name: pa.array(values, types.get(name, pa.string())) for name, values in columns.items()}
    )


def load_online_retail(path: str | Path | None = None) -> Dataset:
    """Load Online Retail II as ``purchase`` events plus customers and the product catalog.

    Parameters
    ----------
    path : the workbook or its folder; default
        ``online-retail-ii-subset/online_retail_II.xlsx`` below
        :func:`~tailor.datasets.base.data_dir`.

    Returns
    -------
    Dataset
        ``events``: one ``purchase`` per invoice, one row per invoice line in sheet order
        (``line`` = 0..n-1): ``event_id`` = ``order_id`` = ``Invoice``, ``subject_id`` =
        ``Customer ID``, ``item_id`` = ``StockCode``, ``quantity`` = ``Quantity`` (negative on
        cancellations, invoices ``C...``), ``price`` = ``Price`` (unit price), ``currency``
        GBP, ``country`` = ISO code of ``Country`` (null when not one country),
        ``occurred_at`` = the invoice's first ``InvoiceDate``, Europe/London → UTC.
        Dropped (and counted in ``notes``): lines without a customer (guest checkouts have no
        subject), lines with a negative price (bad-debt adjustments, not sales), zero
        quantities, and the second copy of invoices present in both sheets.

        ``items``: one per ``StockCode``: ``title`` = the description and ``price`` = the unit
        price of its latest sale (non-cancelled, price > 0; else its latest line), GBP,
        ``available``/``active`` true; ``attributes`` ``{"service": true}`` for non-product
        codes (postage, discounts, manual entries; see :data:`SERVICE_CODES`).

        ``users``: one per customer: ``attributes = {"country": ISO code or null}`` from the
        customer's latest invoice.
    """
    raw = online_retail_rows(path).to_pydict()
    n_raw = len(raw["Invoice"])
    events: dict[str, list[Any]] = {
        k: []
        for k in (
            "event_id", "line", "occurred_at", "subject_id", "country", "item_id", "order_id",
            "quantity", "price",
        )
    }  # fmt: skip
    first_sheet: dict[str, str] = {}
    invoice_time: dict[str, datetime] = {}
    next_line: Counter[str] = Counter()
    # reported even when zero, so the notes always answer "were guests or bad debts dropped?"
    dropped = Counter[str]({_NO_CUSTOMER: 0, _NEGATIVE_PRICE: 0})
    split_times: set[str] = set()
    unknown_countries: Counter[str] = Counter()
    latest_item: dict[str, tuple[bool, datetime, str | None, float]] = {}
    customer_country: dict[int, tuple[datetime, str | None]] = {}

    for i in range(n_raw):
        invoice, stock, sheet = raw["Invoice"][i], raw["StockCode"][i], raw["sheet"][i]
        when, price, quantity = raw["InvoiceDate"][i], raw["Price"][i], raw["Quantity"][i]
        if invoice is None or stock is None or when is None or price is None:
            dropped["incomplete (no invoice, stock code, date or price)"] += 1
            continue
        if first_sheet.setdefault(invoice, sheet) != sheet:
            # the sheets overlap on 2010-12-01..09 and repeat those invoices line for line
            dropped["repeated in the second sheet (the sheets overlap)"] += 1
            continue
        if price < 0:
            dropped[_NEGATIVE_PRICE] += 1
            continue
        sale = not invoice.startswith("C") and price > 0
        candidate = (sale, when, raw["Description"][i], price)
        known = latest_item.get(stock)
        if known is None or candidate[:2] >= known[:2]:
            latest_item[stock] = candidate
        customer = raw["Customer ID"][i]
        if customer is None:
            dropped[_NO_CUSTOMER] += 1
            continue
        if not quantity:
            dropped["zero or missing quantity"] += 1
            continue
        name = raw["Country"][i]
        code = COUNTRY_CODES.get(name) if name else None
        if name and name not in COUNTRY_CODES:
            unknown_countries[name] += 1
        if invoice_time.setdefault(invoice, when) != when:
            split_times.add(invoice)
        if customer not in customer_country or when >= customer_country[customer][0]:
            customer_country[customer] = (when, code)
        events["event_id"].append(invoice)
        events["line"].append(next_line[invoice])
        next_line[invoice] += 1
        events["occurred_at"].append(invoice_time[invoice])
        events["subject_id"].append(str(customer))
        events["country"].append(code)
        events["item_id"].append(stock)
        events["order_id"].append(invoice)
        events["quantity"].append(float(quantity))
        events["price"].append(price)

    n = len(events["event_id"])
    event_table = pa.table(
        {
            **{k: v for k, v in events.items() if k != "occurred_at"},
            "occurred_at": pa.array(events["occurred_at"], pa.timestamp("us", tz="UTC")),
            "event_type": pa.repeat("purchase", n),
            "currency": pa.repeat(CURRENCY, n),
        }
    )
    stocks = sorted(latest_item)
    items = pa.table(
        {
            "item_id": stocks,
            "title": [latest_item[s][2] for s in stocks],
            "price": [latest_item[s][3] for s in stocks],
            "currency": [CURRENCY] * len(stocks),
            "available": [True] * len(stocks),
            "active": [True] * len(stocks),
            "attributes": ['{"service":true}' if s in SERVICE_CODES else None for s in stocks],
        }
    )
    customers = sorted(customer_country)
    users = pa.table(
        {
            "user_id": [str(c) for c in customers],
            "attributes": [
                json.dumps({"country": customer_country[c][1]}, separators=(",", ":"))
                for c in customers
            ],
        }
    )
    notes = [
        f"{n_raw:,} raw rows in both sheets → {n:,} purchase lines of {len(next_line):,} "
        f"invoices; occurred_at is Europe/London local time converted to UTC."
    ]
    notes += [f"dropped {count:,} rows: {why}" for why, count in sorted(dropped.items())]
    if split_times:
        notes.append(
            f"{len(split_times)} invoice(s) have lines stamped a minute apart "
            f"({', '.join(sorted(split_times)[:5])}); all lines take the first line's time."
        )
    if unknown_countries:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(unknown_countries.items()))
        notes.append(f"country names without a code, stored as null: {names}")
    return Dataset(
        name="online-retail-ii",
        events=event_table,
        users=users,
        items=items,
        citation=CITATION,
        notes=notes,
    )
