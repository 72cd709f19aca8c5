"""The item catalog as the recommendation engine sees it: attributes aligned with item codes.

Rows come from the store's ``items`` table (``store.read_entities("items")``), a dataset's item
table or a CSV/Parquet file with the same columns. Every array is indexed by item code, the
same code :class:`~tailor.recommend.interactions.InteractionLog` gives the item, so models,
rules and explanations look attributes up with numpy indexing, never by id.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailor.events.columns import ITEM_CATEGORY_SEPARATOR
from tailor.recommend.interactions import epoch_ms

UNKNOWN_TIME = np.iinfo(np.int64).min
_TEXT_COLUMNS = ("title", "description", "category", "brand")


@dataclass
class Catalog:
    """Item attributes by item code. Text is ``""`` when unknown, price NaN, time
    :data:`UNKNOWN_TIME` (epoch ms otherwise); an item the rows do not describe is available
    and active (it was interacted with, so it exists) with nothing else known."""

    item_ids: np.ndarray
    title: np.ndarray
    description: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    available: np.ndarray
    active: np.ndarray
    created_at: np.ndarray
    described: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def eligible(self) -> np.ndarray:
        """Items that may be recommended at all: listed (active) and orderable (available)."""
        # Kept for the arrays it was computed from: every request reads it, and a catalog
        # change builds a new Catalog (or assigns new arrays) rather than editing in place.
        available, active = self.available, self.active
        cached = self.__dict__.get("_eligible")
        if cached is None or cached[0] is not available or cached[1] is not active:
            cached = (available, active, available & active)
            self.__dict__["_eligible"] = cached
        return cached[2]

    def category_level(self, depth: int = 1) -> np.ndarray:
        """The category path cut to its first ``depth`` levels ("Home > Kitchen" at 2)."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        return np.array(
            [
                ITEM_CATEGORY_SEPARATOR.join(path.split(ITEM_CATEGORY_SEPARATOR)[:depth])
                for path in self.category
            ],
            dtype=object,
        )

    def take(self, codes: np.ndarray) -> CatalogSubset:
        """The items ``codes``, in that order, for the rules over a few candidates."""
        return CatalogSubset(self, codes)

    def codes(self, item_ids: np.ndarray | list) -> np.ndarray:
        """Item codes of ids; -1 for an id the catalog does not hold."""
        return lookup(self.item_ids, np.asarray(item_ids, dtype=object))

    @classmethod
    def from_table(
        cls,
        rows: pa.Table,
        item_ids: np.ndarray | None = None,
        *,
        category_separator: str | None = None,
    ) -> Catalog:
        """Attributes from item rows, in the order of ``item_ids`` (the interaction codes;
        items missing from ``rows`` get defaults). Without ``item_ids`` the catalog holds the
        rows' items, sorted by id, which is the code order :class:`InteractionLog` gives when
        it is built with these ids.

        ``category_separator`` rewrites another level separator (MovieLens genres use ``|``)
        into tailor's ``" > "``.
        """
        if "item_id" not in rows.column_names:
            raise ValueError("item rows need an item_id column")
        ids = rows["item_id"].to_numpy(zero_copy_only=False).astype(object)
        missing = np.flatnonzero(ids == None)  # noqa: E711 - elementwise
        if missing.size:
            raise ValueError(f"item rows: row {missing[0]} has no item_id")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"item rows: item_id {unique[counts > 1][0]!r} appears twice")
        if item_ids is None:
            item_ids = unique
        item_ids = np.asarray(item_ids, dtype=object)
        n = len(item_ids)
        source = lookup(ids, item_ids)
        described = source >= 0
        source = np.maximum(source, 0)

        def column(name: str) -> pa.ChunkedArray | None:
            return rows[name] if name in rows.column_names else None

        def text(name: str) -> np.ndarray:
            out = np.full(n, "", dtype=object)
            values = column(name)
            if values is not None:
                raw = pc.fill_null(pc.cast(values, pa.string()), "").to_numpy(zero_copy_only=False)
                out[described] = raw[source[described]]
            return out

        def flag(name: str) -> np.ndarray:
            out = np.ones(n, dtype=bool)
            values = column(name)
            if values is not None:
                raw = pc.fill_null(pc.cast(values, pa.bool_()), True).to_numpy(zero_copy_only=False)
                out[described] = raw[source[described]]
            return out

        texts = {name: text(name) for name in _TEXT_COLUMNS}
        if category_separator is not None:
            texts["category"] = np.array(
                [c.replace(category_separator, ITEM_CATEGORY_SEPARATOR) for c in texts["category"]],
                dtype=object,
            )
        price = np.full(n, np.nan)
        if column("price") is not None:
            raw = pc.cast(column("price"), pa.float64()).to_numpy(zero_copy_only=False)
            price[described] = raw[source[described]]
        created = np.full(n, UNKNOWN_TIME, dtype=np.int64)
        if column("created_at") is not None:
            ms = epoch_ms(column("created_at"))
            raw = pc.fill_null(ms, UNKNOWN_TIME).to_numpy(zero_copy_only=False)
            created[described] = raw[source[described]]
        return cls(
            item_ids=item_ids,
            **texts,
            price=price,
            available=flag("available"),
            active=flag("active"),
            created_at=created,
            described=described,
        )

    @classmethod
    def from_file(cls, path: str | Path, item_ids: np.ndarray | None = None) -> Catalog:
        """Attributes from a CSV or Parquet file with the store's item columns."""
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such item file")
        try:
            if path.suffix.lower() == ".parquet":
                rows = pq.read_table(path)
            else:
                rows = pcsv.read_csv(
                    path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
                )
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path}: cannot read it as CSV or Parquet ({exc})") from exc
        return cls.from_table(rows, item_ids)


def lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each ``wanted`` value in ``keys`` (unsorted, unique); -1 where absent."""
    out = np.full(len(wanted), -1, np.int64)
    if not len(keys) or not len(wanted):
        return out
    order = np.argsort(keys, kind="stable")
    position = np.minimum(np.searchsorted(keys, wanted, sorter=order), len(keys) - 1)
    candidate = order[position]
    hit = keys[candidate] == wanted
    out[hit] = candidate[hit]
    return out


_ATTRIBUTES = frozenset(f.name for f in fields(Catalog))


class CatalogSubset:
    """Some items' attributes, each indexed out of the catalog the first time it is read.

    What :meth:`Catalog.take` gives the business rules over a user's candidates: the rules
    read eligibility and the category, and indexing all ten arrays (five of them of Python
    strings, whose reference counts each touch scattered memory) cost a recommendation
    request about 90 µs, more than the rules themselves.
    """

    def __init__(self, catalog: Catalog, codes: np.ndarray) -> None:
        self._catalog = catalog
        self._codes = codes

    def __len__(self) -> int:
        return len(self._codes)

    def __getattr__(self, name: str) -> np.ndarray:
        if name not in _ATTRIBUTES:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        values = getattr(self._catalog, name)[self._codes]
        setattr(self, name, values)  # read once: later reads find the attribute itself
        return values

    @property
    def eligible(self) -> np.ndarray:
        return self._catalog.eligible[self._codes]
