"""CDNOW: every purchase of the customers who first bought at CDNOW in Q1 1997, to June 1998.

The classic lifetime-value data (Fader, Hardie and Lee 2005) as shipped by the ``lifetimes``
package: ``CDNOW_master.txt`` (23,570 customers) and ``CDNOW_sample.txt`` (a 1/10 sample of
2,357 of them, with the same purchases). A row is one purchase occasion: a date, a number of
CDs and the amount paid; there are no item ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from tailor.datasets.base import Dataset, dataset_path

CITATION = (
    "Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005). 'Counting Your Customers' the Easy "
    "Way: An Alternative to the Pareto/NBD Model. Marketing Science 24(2), 275-284. "
    "Data: CDNOW (brucehardie.com), as shipped by the lifetimes package (MIT)."
)

ITEM_ID = "cdnow-cd"
"""The logs say how many CDs, never which: every line is this one generic item."""

CURRENCY = "USD"
MASTER = "CDNOW_master.txt"
SAMPLE = "CDNOW_sample.txt"


def _file(path: str | Path | None, sample: bool) -> Path:
    name = SAMPLE if sample else MASTER
    if path is None:
        return dataset_path("cdnow", name)
    path = Path(path)
    return path / name if path.is_dir() else path


def load_cdnow(path: str | Path | None = None, *, sample: bool = False) -> Dataset:
    """Load the CDNOW purchase log as one-line ``purchase`` events.

    Parameters
    ----------
    path : the ``cdnow`` folder or the file itself; default ``cdnow/`` below
        :func:`~tailor.datasets.base.data_dir`.
    sample : read ``CDNOW_sample.txt`` (no header: ``customer_id customer_index date
        number_of_cds dollar_value``) instead of ``CDNOW_master.txt`` (a header line, then
        ``customer_id date number_of_cds dollar_value``).

    Returns
    -------
    Dataset
        ``events``: one ``purchase`` per row: ``subject_id = "cdnow-{customer_id}"`` (the
        zero-padded id as written), ``event_id = "cdnow-{customer_id}-{k}"`` with ``k`` the
        row's rank among that customer's rows (0-based, file order; the sample's rows are the
        master's, so both files give a purchase the same id), ``occurred_at`` = the date at
        00:00 UTC, ``item_id = "cdnow-cd"``, ``quantity`` = number of CDs, ``price`` =
        dollar value / number of CDs (the average unit price), ``currency`` USD. Rows with
        zero CDs cannot carry a unit price and are dropped (counted in ``notes``).

        ``users``: the customer ids, without attributes. ``items``: the one generic CD.
    """
    file = _file(path, sample)
    fields_expected = 5 if sample else 4
    columns: dict[str, list] = {
        k: [] for k in ("event_id", "subject_id", "occurred_at", "quantity", "price")
    }
    seen: dict[str, int] = {}
    dates: dict[str, datetime] = {}
    zero_cds = zero_dollars = 0
    with file.open(encoding="ascii") as handle:
        for number, text in enumerate(handle, 1):
            fields = text.split()
            if not fields or (not sample and number == 1 and fields[0] == "customer_id"):
                continue
            if len(fields) != fields_expected:
                raise ValueError(
                    f"{file}:{number}: expected {fields_expected} fields, got {len(fields)}"
                )
            customer, date, cds, dollars = (fields[0], *fields[-3:])
            k = seen.get(customer, 0)
            seen[customer] = k + 1
            count = int(cds)
            if count == 0:
                zero_cds += 1
                continue
            price = float(dollars) / count
            zero_dollars += price == 0
            when = dates.get(date)
            if when is None:
                when = dates[date] = datetime(
                    int(date[:4]), int(date[4:6]), int(date[6:]), tzinfo=UTC
                )
            columns["event_id"].append(f"cdnow-{customer}-{k}")
            columns["subject_id"].append(f"cdnow-{customer}")
            columns["occurred_at"].append(when)
            columns["quantity"].append(float(count))
            columns["price"].append(price)
    n = len(columns["event_id"])
    events = pa.table(
        {
            **columns,
            "occurred_at": pa.array(columns["occurred_at"], pa.timestamp("us", tz="UTC")),
            "line": pa.repeat(0, n).cast(pa.int64()),
            "event_type": pa.repeat("purchase", n),
            "item_id": pa.repeat(ITEM_ID, n),
            "currency": pa.repeat(CURRENCY, n),
        }
    )
    users = pa.table({"user_id": [f"cdnow-{c}" for c in seen]})
    items = pa.table(
        {
            "item_id": [ITEM_ID],
            "title": ["CD (the log does not say which)"],
            "available": [True],
            "active": [True],
        }
    )
    return Dataset(
        name="cdnow-sample" if sample else "cdnow",
        events=events,
        users=users,
        items=items,
        citation=CITATION,
        notes=[
            f"{file.name}: {n:,} purchases of {len(seen):,} customers; {zero_cds} rows with "
            f"zero CDs dropped (no unit price); {zero_dollars} purchases of $0.00 kept.",
            "price is the average unit price (dollar value / number of CDs); quantity * price "
            "gives back the amount paid. Purchases have no item: item_id is 'cdnow-cd'.",
            "Dates carry no time of day: occurred_at is 00:00 UTC of the purchase date.",
        ],
    )
