"""Business rules applied after scoring: eligibility, filters, boosts and diversity.

A model's scores say what a user is likely to want; the shop decides what it may be shown.
:func:`apply_rules` turns a score matrix (rows × catalog items) into the final ``k`` items per
row in this order:

1. **Eligibility**, always: an unavailable or inactive item (:attr:`Catalog.eligible`) is
   never returned, whatever its score or boost.
2. **Purchases**: items a user bought are dropped (``exclude_purchased``) unless their category
   path lies under one of ``repurchasable_categories`` (consumables).
3. **Impressions**: an item shown ``impression_cap`` times to a user without a click is dropped.
4. **Category filters**: ``include_categories`` (empty: everything) and ``exclude_categories``;
   a request may override either.
5. **Boosts**: multiplicative on a positive, scale-free version of the score (see
   :class:`Boost`).
6. **Selection** of ``k``: plain top-k, a per-category cap, or Maximal Marginal Relevance.

Category rules match a *path prefix by whole levels*: "Home" matches "Home" and
"Home > Kitchen" but not "Homeware"; matching is case-sensitive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from tailor.events.columns import ITEM_CATEGORY_SEPARATOR
from tailor.recommend.base import top_k

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog

DIVERSITY = ("none", "mmr", "category_cap")
MMR_POOL = 5
"""MMR and the category cap choose among the ``MMR_POOL × k`` best-scored items first."""

ItemSimilarity = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]
_FLOOR = 1e-3
_STRING = np.dtypes.StringDType()


@dataclass(frozen=True)
class Boost:
    """Multiply the score of matching items by ``factor`` (> 1 promotes, < 1 demotes).

    An item matches when it meets *every* condition given: its category path lies under
    ``category``, its brand equals ``brand`` and its id is one of ``item_ids``. At least one
    condition is required.

    Scores from different models have different scales and signs, so the factor does not act
    on the raw score: each row's scores over the items still allowed are first mapped to
    ``[0.001, 1]`` (min–max; the worst item keeps a little score so it can still be boosted),
    then multiplied by the factors of every boost the item matches (boosts compound). A
    factor of 2 thus lets an item overtake any item whose normalized score is less than twice
    its own, whatever model produced the scores.
    """

    factor: float
    category: str | None = None
    brand: str | None = None
    item_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int | float):
            raise ValueError(f"factor must be a number, got {self.factor!r}")
        if not (np.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f"factor must be a positive finite number, got {self.factor}")
        for name in ("category", "brand"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        object.__setattr__(self, "item_ids", _strings(self.item_ids, "item_ids"))
        if self.category is None and self.brand is None and not self.item_ids:
            raise ValueError("a boost needs a category, a brand or item_ids to match")

    def matches(self, catalog: Catalog) -> np.ndarray:
        """Boolean mask over the catalog of the items this boost applies to."""
        mask = np.ones(len(catalog), dtype=bool)
        if self.category is not None:
            mask &= _under(catalog.category, (self.category,))
        if self.brand is not None:
            mask &= catalog.brand == self.brand
        if self.item_ids:
            listed = np.zeros(len(catalog), dtype=bool)
            codes = catalog.codes(list(self.item_ids))
            listed[codes[codes >= 0]] = True
            mask &= listed
        return mask


@dataclass(frozen=True)
class BusinessRules:
    """What the shop allows after scoring; see the module docstring for the order.

    Parameters
    ----------
    exclude_purchased : drop items the user bought.
    repurchasable_categories : category path prefixes whose items may be recommended again
        after a purchase (consumables).
    include_categories : recommend only items under these prefixes (empty: all).
    exclude_categories : never recommend items under these prefixes.
    boosts : score multipliers, see :class:`Boost`.
    diversity : "none" (plain top-k), "mmr" (Maximal Marginal Relevance, tuned by
        ``mmr_lambda``) or "category_cap" (at most ``max_per_category`` items per category).
    mmr_lambda : MMR's λ, the weight of relevance against redundancy (1: plain order).
    max_per_category : the cap for "category_cap".
    category_depth : the category level the cap and the category-based MMR similarity group
        by (1: "Home", 2: "Home > Kitchen").
    impression_cap : drop an item shown this many times to the user without a click.
    """

    exclude_purchased: bool = True
    repurchasable_categories: tuple[str, ...] = ()
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    boosts: tuple[Boost, ...] = ()
    diversity: Literal["none", "mmr", "category_cap"] = "none"
    mmr_lambda: float = 0.7
    max_per_category: int | None = None
    category_depth: int = 1
    impression_cap: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.exclude_purchased, bool):
            raise ValueError(
                f"exclude_purchased must be true or false, got {self.exclude_purchased!r}"
            )
        for name in ("repurchasable_categories", "include_categories", "exclude_categories"):
            object.__setattr__(self, name, _strings(getattr(self, name), name))
        boosts = self.boosts
        if isinstance(boosts, Boost | dict) or not isinstance(boosts, Sequence):
            raise ValueError(f"boosts must be a list of boosts, got {boosts!r}")
        checked = []
        for index, boost in enumerate(boosts):
            try:
                checked.append(boost if isinstance(boost, Boost) else _boost(boost))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"boosts[{index}]: {exc}") from None
        object.__setattr__(self, "boosts", tuple(checked))
        if self.diversity not in DIVERSITY:
            raise ValueError(f"diversity must be one of {DIVERSITY}, got {self.diversity!r}")
        if isinstance(self.mmr_lambda, bool) or not isinstance(self.mmr_lambda, int | float):
            raise ValueError(f"mmr_lambda must be a number in [0, 1], got {self.mmr_lambda!r}")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda must lie in [0, 1], got {self.mmr_lambda}")
        _count(self.max_per_category, "max_per_category", optional=True)
        _count(self.category_depth, "category_depth", optional=False)
        _count(self.impression_cap, "impression_cap", optional=True)
        if self.diversity == "category_cap" and self.max_per_category is None:
            raise ValueError("max_per_category must be set when diversity is 'category_cap'")
        if self.diversity != "category_cap" and self.max_per_category is not None:
            raise ValueError(
                f"max_per_category is set but diversity is {self.diversity!r}; "
                "set diversity='category_cap' or drop max_per_category"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "boosts":
                value = [
                    {
                        "factor": b.factor,
                        "category": b.category,
                        "brand": b.brand,
                        "item_ids": list(b.item_ids),
                    }
                    for b in value
                ]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BusinessRules:
        """Rules from :meth:`to_dict`'s form (missing keys take their defaults)."""
        if not isinstance(data, dict):
            raise ValueError(f"business rules must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown business rule field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def removes_only_unavailable_and_bought(
    rules: BusinessRules,
    include_categories: Sequence[str] | None = None,
    exclude_categories: Sequence[str] | None = None,
) -> bool:
    """Whether :func:`apply_rules`, with ``rules`` and a request's category filters, only
    takes out unavailable or delisted items and (per ``exclude_purchased``) bought ones,
    leaving the rest in score order: no boosts, no diversity, no category filters, no
    category in which a purchase may come back. A row already sorted best first is then
    answered by its first allowed items (the serving path over precomputed candidates).
    Settings that only tune what is off here (``mmr_lambda``, ``category_depth``) do not
    matter, nor does ``impression_cap``: it needs impression counts, which the caller
    passes or not."""
    return (
        rules.diversity == "none"
        and not rules.boosts
        and include_categories is None
        and exclude_categories is None
        and not rules.include_categories
        and not rules.exclude_categories
        and not (rules.exclude_purchased and rules.repurchasable_categories)
    )


def apply_rules(
    scores: np.ndarray,
    *,
    catalog: Catalog,
    rules: BusinessRules | None = None,
    k: int = 10,
    purchased: sp.spmatrix | None = None,
    unclicked_impressions: sp.spmatrix | None = None,
    item_similarity: ItemSimilarity | None = None,
    include_categories: Sequence[str] | None = None,
    exclude_categories: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items per row that the rules allow, best first.

    Parameters
    ----------
    scores : rows × catalog items, larger is better; NaN and -inf mean "never".
    catalog : the item attributes, aligned with the score columns.
    rules : the shop's rules (defaults: :class:`BusinessRules`).
    k : items per row.
    purchased : rows × items (sparse or an array), > 0 where the row's user bought the item.
    unclicked_impressions : rows × items, how often the item was shown to the user since
        their last click on it (counts); read when ``rules.impression_cap`` is set.
    item_similarity : ``f(sources, targets) -> len(sources) × len(targets)`` similarities in
        [0, 1] for MMR (a model's ``item_similarity``). When None, or when it returns None,
        MMR calls two items similar when they share the category at ``category_depth``.
    include_categories, exclude_categories : this request's filters, replacing the rules'.

    Returns
    -------
    ids : rows × k item codes, -1 where fewer items are allowed.
    scores : rows × k, the scores the order was chosen by (boosted, when boosts apply), -inf
        where ``ids`` is -1.
    """
    rules = BusinessRules() if rules is None else rules
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (rows × items), got shape {scores.shape}")
    n_rows, n_items = scores.shape
    if n_items != len(catalog):
        raise ValueError(
            f"scores have {n_items} item columns; the catalog has {len(catalog)} items "
            "(build both from the same item ids)"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if (scores == np.inf).any():  # (np.isposinf's wrapper costs more than the test)
        raise ValueError("scores hold +inf; use finite scores (-inf or NaN mark excluded items)")
    s = scores.astype(np.float64)
    s[np.isnan(s)] = -np.inf

    allowed = catalog.eligible.astype(bool)
    include = rules.include_categories
    include = (
        include
        if include_categories is None
        else _strings(include_categories, "include_categories")
    )
    exclude = rules.exclude_categories
    exclude = (
        exclude
        if exclude_categories is None
        else _strings(exclude_categories, "exclude_categories")
    )
    if include:
        allowed &= _under(catalog.category, include)
    if exclude:
        allowed &= ~_under(catalog.category, exclude)
    s[:, ~allowed] = -np.inf

    if rules.exclude_purchased and purchased is not None:
        rows, cols = _entries(purchased, (n_rows, n_items), "purchased", lambda v: v > 0)
        if rules.repurchasable_categories and len(cols):
            again = _under(catalog.category[cols], rules.repurchasable_categories)
            rows, cols = rows[~again], cols[~again]
        s[rows, cols] = -np.inf
    if rules.impression_cap is not None and unclicked_impressions is not None:
        cap = rules.impression_cap
        rows, cols = _entries(
            unclicked_impressions, (n_rows, n_items), "unclicked_impressions", lambda v: v >= cap
        )
        s[rows, cols] = -np.inf

    if rules.boosts:
        factor = np.ones(n_items)
        for boost in rules.boosts:
            factor[boost.matches(catalog)] *= boost.factor
        s = _normalized(s, floor=_FLOOR) * factor

    if rules.diversity == "mmr":
        ids, values = _mmr(s, k, rules, catalog, item_similarity)
    elif rules.diversity == "category_cap":
        ids, values = _category_cap(s, k, rules, catalog)
    else:
        ids, values = top_k(s, min(k, n_items))
    ids, values = _padded(ids, values, k)
    return ids, values.astype(np.float32)


# --- selection -------------------------------------------------------------------------------


def _mmr(
    s: np.ndarray,
    k: int,
    rules: BusinessRules,
    catalog: Catalog,
    item_similarity: ItemSimilarity | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy Maximal Marginal Relevance (Carbonell and Goldstein, SIGIR 1998, eq. 1).

    Each slot takes argmax_i λ·rel(i) − (1 − λ)·max_{j ∈ S} sim(i, j) over the pool of the
    ``MMR_POOL·k`` best items not yet chosen, S being the items chosen so far (redundancy 0
    before the first). rel is the score min–max scaled to [0, 1] over the row's pool so that
    λ weighs it against a similarity on the same scale.
    """
    n_rows = s.shape[0]
    cand, values = top_k(s, min(MMR_POOL * k, s.shape[1]))
    valid = cand >= 0
    relevance = _normalized(np.where(valid, values, -np.inf), floor=0.0)
    sim = _pool_similarity(cand, valid, catalog, rules.category_depth, item_similarity)
    lam = rules.mmr_lambda
    rows = np.arange(n_rows)
    redundancy = np.zeros(cand.shape)
    open_ = valid.copy()
    picks = np.full((n_rows, min(k, cand.shape[1])), -1, dtype=np.int64)
    for slot in range(picks.shape[1]):
        objective = np.where(open_, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        best = np.argmax(objective, axis=1)
        ok = open_[rows, best]
        picks[ok, slot] = best[ok]
        open_[rows[ok], best[ok]] = False
        redundancy[ok] = np.maximum(redundancy[ok], sim[rows[ok], best[ok]])
    chosen = picks >= 0
    safe = np.maximum(picks, 0)
    ids = np.where(chosen, np.take_along_axis(cand, safe, axis=1), -1)
    out = np.where(chosen, np.take_along_axis(values, safe, axis=1), -np.inf)
    return ids, out


def _pool_similarity(
    cand: np.ndarray,
    valid: np.ndarray,
    catalog: Catalog,
    depth: int,
    item_similarity: ItemSimilarity | None,
) -> np.ndarray:
    """rows × pool × pool similarities between each row's candidates (0 for padding)."""
    n_rows, pool = cand.shape
    sim = np.zeros((n_rows, pool, pool))
    if item_similarity is not None:
        # One call per request row: the callable takes one list of sources and targets.
        for row in range(n_rows):
            items = cand[row, valid[row]]
            block = item_similarity(items, items)
            if block is None:
                break
            block = np.asarray(block, dtype=np.float64)
            if block.shape != (len(items), len(items)):
                raise ValueError(
                    f"item_similarity returned shape {block.shape} for {len(items)} items; "
                    "expected len(sources) × len(targets)"
                )
            n = len(items)
            sim[row, :n, :n] = block
        else:
            return sim
    codes = _level_codes(catalog.category[np.maximum(cand, 0)], depth)
    same = (codes[:, :, None] == codes[:, None, :]) & (codes[:, :, None] >= 0)
    same &= valid[:, :, None] & valid[:, None, :]
    return same.astype(np.float64)


def _category_cap(
    s: np.ndarray, k: int, rules: BusinessRules, catalog: Catalog
) -> tuple[np.ndarray, np.ndarray]:
    """The best items in order, skipping an item whose category already has
    ``max_per_category`` items; items without a category are not capped."""
    n_rows, n_items = s.shape
    cap = int(rules.max_per_category or 0)  # BusinessRules requires it for "category_cap"
    allowed_per_row = np.isfinite(s).sum(axis=1)
    pool = min(n_items, MMR_POOL * k)
    while True:
        cand, values = top_k(s, pool)
        valid = cand >= 0
        codes = _level_codes(catalog.category[np.maximum(cand, 0)], rules.category_depth)
        # Position of each candidate among the earlier candidates of its row and category:
        # a stable sort by (row, category) keeps the score order inside each group.
        n_codes = int(codes.max()) + 2
        key = (np.arange(n_rows)[:, None] * n_codes + codes + 1).ravel()
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(key)]))
        seen = np.empty(len(key), dtype=np.int64)
        seen[order] = np.arange(len(key)) - group_start
        keep = valid & ((codes < 0) | (seen.reshape(cand.shape) < cap))
        enough = (keep.sum(axis=1) >= k) | (allowed_per_row <= pool)
        if enough.all() or pool >= n_items:
            break
        # A tight cap can use up the pool: widen it for the rows that ran short.
        pool = min(n_items, pool * 4)
    slot = np.cumsum(keep, axis=1) - 1
    take = keep & (slot < k)
    width = min(k, pool)
    ids = np.full((n_rows, width), -1, dtype=np.int64)
    out = np.full((n_rows, width), -np.inf)
    row_of = np.broadcast_to(np.arange(n_rows)[:, None], cand.shape)
    ids[row_of[take], slot[take]] = cand[take]
    out[row_of[take], slot[take]] = values[take]
    return ids, out


# --- helpers ---------------------------------------------------------------------------------


def _normalized(s: np.ndarray, *, floor: float) -> np.ndarray:
    """Each row's finite scores min–max mapped to [floor, 1]; -inf stays -inf; a row whose
    finite scores are all equal maps them to 1."""
    finite = np.isfinite(s)
    low = np.where(finite, s, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, s, -np.inf).max(axis=1, keepdims=True)
    spread = high - low
    with np.errstate(invalid="ignore"):
        scaled = np.where(spread > 0, (s - low) / np.where(spread > 0, spread, 1.0), 1.0)
    return np.where(finite, floor + (1.0 - floor) * scaled, -np.inf)


def _padded(ids: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.where(ids >= 0, values, -np.inf)
    missing = k - ids.shape[1]
    if missing <= 0:
        return ids, values
    n_rows = ids.shape[0]
    return (
        np.hstack([ids, np.full((n_rows, missing), -1, dtype=np.int64)]),
        np.hstack([values, np.full((n_rows, missing), -np.inf)]),
    )


def _entries(
    matrix: sp.spmatrix,
    shape: tuple[int, int],
    name: str,
    keep: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the stored entries of ``matrix`` (sparse, or a dense array of
    the scores' shape) whose value passes ``keep``."""
    if not (sp.issparse(matrix) or isinstance(matrix, np.ndarray)):
        raise ValueError(f"{name} must be a scipy.sparse matrix or an array (rows × items)")
    if matrix.shape != shape:
        raise ValueError(f"{name} has shape {matrix.shape}; the scores have {shape}")
    if isinstance(matrix, np.ndarray):
        rows, cols = np.nonzero(keep(matrix))
        return rows.astype(np.int64), cols.astype(np.int64)
    coo = sp.coo_matrix(matrix)
    hit = keep(coo.data)
    return coo.row[hit].astype(np.int64), coo.col[hit].astype(np.int64)


def _under(categories: np.ndarray, prefixes: Sequence[str]) -> np.ndarray:
    """Which category paths lie under any of ``prefixes`` (whole levels only)."""
    paths = np.asarray(categories, dtype=object).astype(_STRING)
    mask = np.zeros(len(paths), dtype=bool)
    for prefix in prefixes:
        mask |= (paths == prefix) | np.strings.startswith(paths, prefix + ITEM_CATEGORY_SEPARATOR)
    return mask


def _level_codes(categories: np.ndarray, depth: int) -> np.ndarray:
    """Integer codes of the category paths cut to ``depth`` levels, -1 where unknown ("")."""
    paths = np.asarray(categories, dtype=object).astype(_STRING)
    shape = paths.shape
    paths = paths.ravel()
    cut = np.strings.str_len(paths)
    start = np.zeros(len(paths), dtype=np.int64)
    found = np.ones(len(paths), dtype=bool)
    # The depth-th separator ends the prefix; paths with fewer levels are kept whole.
    for _ in range(depth):
        position = np.strings.find(paths, ITEM_CATEGORY_SEPARATOR, start)
        found &= position >= 0
        start = np.where(found, position + len(ITEM_CATEGORY_SEPARATOR), start)
    cut = np.where(found, start - len(ITEM_CATEGORY_SEPARATOR), cut)
    levels = np.strings.slice(paths, 0, cut)
    unique, codes = np.unique(levels, return_inverse=True)
    codes = codes.astype(np.int64)
    if len(unique) and unique[0] == "":
        codes -= 1  # "" sorts first: it becomes -1 and the others start at 0
    return codes.reshape(shape)


def _strings(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a list of strings, got {values!r}")
    out = tuple(values)
    for value in out:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must hold non-empty strings, got {value!r}")
    return out


def _count(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}"
        )


def _boost(data: Any) -> Boost:
    if not isinstance(data, dict):
        raise ValueError(f"a boost must be a mapping, got {data!r}")
    unknown = sorted(set(data) - {f.name for f in fields(Boost)})
    if unknown:
        raise ValueError(f"unknown boost field(s) {unknown}")
    if "factor" not in data:
        raise ValueError("factor is required")
    return Boost(**data)
