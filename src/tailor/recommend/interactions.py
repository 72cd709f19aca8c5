"""From events to the users × items confidence matrix every model trains on.

Views, clicks, carts, purchases and ratings become implicit confidence with configurable
weights (Hu, Koren and Volinsky 2008 call it confidence), optionally decayed with the age of the
event so that last month's taste counts more than last year's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

_MS_PER_DAY = 86_400_000


def epoch_ms(times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps as int64 epoch milliseconds; finer precision is truncated, not refused
    (the store keeps microseconds, the models need no more than milliseconds)."""
    return pc.cast(pc.cast(times, pa.timestamp("ms", tz="UTC"), safe=False), pa.int64())


CONTEXT_FIELDS = ("country", "device_type", "channel")
"""Event context kept per interaction row (what trending by context needs)."""


@dataclass(frozen=True, kw_only=True)
class EventWeights:
    """Confidence each event type adds to a (user, item) pair.

    ``rating_as_value``: a rating adds its value (a 5 counts more than a 1) instead of
    ``rating``. ``half_life_days``: an event loses half its weight every so many days before
    the newest event of the log (None: no decay).
    """

    view: float = 1.0
    click: float = 2.0
    add_to_cart: float = 4.0
    purchase: float = 8.0
    rating: float = 1.0
    rating_as_value: bool = False
    half_life_days: float | None = None

    def of(self, event_type: str) -> float:
        return float(getattr(self, event_type, 0.0))

    def __post_init__(self) -> None:
        for name in ("view", "click", "add_to_cart", "purchase", "rating"):
            if getattr(self, name) < 0:
                raise ValueError(f"EventWeights.{name} must be >= 0, got {getattr(self, name)}")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError("EventWeights.half_life_days must be > 0 (or None for no decay)")


INTERACTION_TYPES = ("view", "click", "add_to_cart", "purchase", "rating")


@dataclass
class InteractionLog:
    """One row per interaction: user and item codes, confidence and time (epoch ms).

    ``user_ids[code]`` and ``item_ids[code]`` give back the ids. Splits work on these rows
    (a boolean mask per row); :meth:`matrix` sums the rows of a mask into the matrix a model
    fits, with the same codes on both sides of a split.

    ``context`` optionally maps fields of :data:`CONTEXT_FIELDS` to one value per row (object
    arrays of str, ``""`` where the event did not say); None when the events carried none.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    time: np.ndarray
    context: dict[str, np.ndarray] | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray | pa.Array,
        items: np.ndarray | pa.Array,
        *,
        times: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        context: dict[str, np.ndarray] | None = None,
    ) -> InteractionLog:
        """Encode raw ids. ``item_ids`` fixes the item codes (a catalog, including items
        nobody interacted with yet); an interaction with an item outside it is an error.
        ``context`` gives per-row values of :data:`CONTEXT_FIELDS` (None and NaN become ``""``).
        """
        users = np.asarray(users)
        items = np.asarray(items)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError("users and items must be 1-D arrays of the same length")
        for name, ids in (("users", users), ("items", items)):
            missing = np.flatnonzero(ids == None)  # noqa: E711 - elementwise, not identity
            if missing.size:
                raise ValueError(f"{name} has no id at row {missing[0]} ({missing.size} rows)")
        if times is not None and len(times) != len(users):
            raise ValueError("times must have one entry per interaction")
        if weights is not None and len(weights) != len(users):
            raise ValueError("weights must have one entry per interaction")
        if context is not None:
            context = _context_arrays(context, len(users))
        user_ids, user = encode_ids(users)
        if item_ids is None:
            item_ids, item = encode_ids(items)
        else:
            item_ids = np.asarray(item_ids)
            order = np.argsort(item_ids, kind="stable")
            position = np.searchsorted(item_ids, items, sorter=order)
            position = np.minimum(position, len(item_ids) - 1)
            item = order[position]
            unknown = item_ids[item] != items
            if unknown.any():
                raise ValueError(f"item {str(items[unknown][0])!r} is not in item_ids")
        n = len(users)
        return cls(
            user_ids=user_ids,
            item_ids=item_ids,
            user=user.astype(np.int32),
            item=item.astype(np.int32),
            weight=np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32),
            time=np.zeros(n, np.int64) if times is None else np.asarray(times, np.int64),
            context=context,
        )

    @classmethod
    def from_events(
        cls,
        events: pa.Table,
        weights: EventWeights | None = None,
        *,
        item_ids: np.ndarray | None = None,
    ) -> InteractionLog:
        """Interactions from event rows (``subject_id``, ``item_id``, ``event_type``,
        ``occurred_at``, and ``value`` for ratings, ``quantity`` for purchases).
        ``item_ids`` fixes the item codes, as in :meth:`from_arrays` (a catalog).

        Rows without a subject or item, and event types that are not interactions, are left
        out; a purchase line counts its weight once however many units it has (a bulk buy is
        not a stronger preference), and a return (negative quantity) counts nothing.
        """
        weights = weights or EventWeights()
        keep = pc.and_(
            pc.and_(pc.is_valid(events["subject_id"]), pc.is_valid(events["item_id"])),
            pc.is_in(events["event_type"], pa.array(INTERACTION_TYPES)),
        )
        if "quantity" in events.column_names:
            returned = pc.and_kleene(
                pc.equal(events["event_type"], "purchase"), pc.less(events["quantity"], 0)
            )
            keep = pc.and_(keep, pc.invert(pc.fill_null(returned, False)))
        rows = events.filter(keep)
        kinds = rows["event_type"].to_numpy(zero_copy_only=False)
        weight = np.zeros(rows.num_rows, np.float32)
        for kind in INTERACTION_TYPES:
            weight[kinds == kind] = weights.of(kind)
        if weights.rating_as_value and "value" in rows.column_names:
            ratings = kinds == "rating"
            values = rows["value"].to_numpy(zero_copy_only=False).astype(np.float32)
            weight[ratings] = np.nan_to_num(values[ratings], nan=0.0)
        times = epoch_ms(rows["occurred_at"])
        context = {
            name: pc.fill_null(pc.cast(rows[name], pa.string()), "").to_numpy(zero_copy_only=False)
            for name in CONTEXT_FIELDS
            if name in rows.column_names
        }
        log = cls.from_arrays(
            rows["subject_id"].to_numpy(zero_copy_only=False),
            rows["item_id"].to_numpy(zero_copy_only=False),
            times=times.to_numpy(zero_copy_only=False),
            weights=weight,
            context=context or None,
            item_ids=item_ids,
        )
        if weights.half_life_days is not None and len(log):
            age_days = (log.time.max() - log.time) / _MS_PER_DAY
            log.weight *= np.exp2(-age_days / weights.half_life_days).astype(np.float32)
        return log.subset(log.weight > 0)

    def subset(self, mask: np.ndarray) -> InteractionLog:
        """The rows of ``mask``, keeping every code (so matrices of subsets line up)."""
        return InteractionLog(
            self.user_ids,
            self.item_ids,
            self.user[mask],
            self.item[mask],
            self.weight[mask],
            self.time[mask],
            None if self.context is None else {k: v[mask] for k, v in self.context.items()},
        )

    def matrix(self, mask: np.ndarray | None = None, *, binary: bool = False) -> sp.csr_matrix:
        """Users × items, summing the confidence of repeated interactions."""
        user, item, weight = self.user, self.item, self.weight
        if mask is not None:
            user, item, weight = user[mask], item[mask], weight[mask]
        matrix = sp.csr_matrix(
            (weight.astype(np.float32), (user, item)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        if binary:
            matrix.data[:] = 1.0
        return matrix


def encode_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, by hashing in Arrow where it can.

    Sorting millions of Python strings is what made ``np.unique`` slow (8 s for 3 M ids);
    Arrow hashes the ids and sorts only the distinct ones. UTF-8 byte order is code point
    order, so the result is the same as NumPy's.
    """
    try:
        encoded = pc.dictionary_encode(pa.array(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return np.unique(values, return_inverse=True)
    distinct = encoded.dictionary
    order = pc.array_sort_indices(distinct).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    ids = distinct.to_numpy(zero_copy_only=False)[order]
    if ids.dtype != values.dtype and values.dtype.kind in "OU":
        ids = ids.astype(values.dtype)
    return ids, rank[encoded.indices.to_numpy()]


def _context_arrays(context: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Context columns as object arrays of str, checked against :data:`CONTEXT_FIELDS`."""
    out = {}
    for name, values in context.items():
        if name not in CONTEXT_FIELDS:
            raise ValueError(f"context field {name!r} is not one of {', '.join(CONTEXT_FIELDS)}")
        values = np.asarray(values, dtype=object)
        if values.shape != (n,):
            raise ValueError(f"context {name!r} must have one value per interaction")
        try:
            # from_pandas: NaN is missing too; missing context becomes "" so every value is a
            # str (np.unique can sort them).
            arrow = pc.cast(pa.array(values, from_pandas=True), pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"context {name!r} must hold strings: {error}") from error
        out[name] = pc.fill_null(arrow, "").to_numpy(zero_copy_only=False).astype(object)
    return out
