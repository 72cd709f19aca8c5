"""Trending: popularity with exponential time decay, overall, by category and by context.

An event of age a days (before the reference time: the newest event, or ``now_ms``) counts
2^(-a / half_life_days) of its confidence, so last week's burst outranks last year's hit.
Trend vectors are shares: p_j = Σ decayed mass on j / Σ decayed mass, overall and for each
value of each context field the log carries (country, device_type, channel).

A context value v seen in n_v decayed events (its support) is shrunk toward the overall
vector, empirical-Bayes style (the additive smoothing of Koren, KDD 2008, eq. 2, applied to
shares):

    p̃_v = n_v / (n_v + m) · p_v + m / (n_v + m) · p,   m = ``shrinkage``

so a country seen in three events barely moves the ranking while one seen in thousands
decides it. A request with several context fields averages the shrunk vectors of the values
seen in training; values never seen (and empty ones) leave the overall vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import scipy.sparse as sp

from tailor.events.columns import ITEM_CATEGORY_SEPARATOR
from tailor.recommend.base import Recommender, item_codes, top_k

if TYPE_CHECKING:
    from tailor.recommend.catalog import Catalog
    from tailor.recommend.interactions import InteractionLog

_MS_PER_DAY = 86_400_000


class Trending(Recommender):
    """Parameters
    ----------
    half_life_days : an event loses half its weight every so many days (> 0).
    now_ms : reference time (epoch ms) the age of events is measured from; None: the newest
        event of the log. Events after ``now_ms`` are left out (they had not happened yet).
    shrinkage : m, the support (decayed events) at which a context value's own vector and
        the overall vector weigh the same (>= 0; 0 trusts any context fully).
    use_weights : sum the log's confidence weights (a purchase counts more than a view);
        False counts events. Note a log built with ``EventWeights(half_life_days=...)`` is
        decayed already, and would be decayed twice.
    max_context_values : per context field, only the values with the most support get their
        own vector (the rest fall back to overall), which bounds the model's size.

    The log given to :meth:`fit` must be the training part only (``log.subset(mask)``), with
    the same item codes as the interaction matrix. A catalog is optional and enables
    :meth:`top_in_category` and :meth:`rank_in_category`.
    """

    name = "trending"
    needs = ("log",)

    def __init__(
        self,
        *,
        half_life_days: float = 7.0,
        now_ms: int | None = None,
        shrinkage: float = 20.0,
        use_weights: bool = True,
        max_context_values: int = 200,
    ) -> None:
        self.half_life_days = half_life_days
        self.now_ms = now_ms
        self.shrinkage = shrinkage
        self.use_weights = use_weights
        self.max_context_values = max_context_values

    # --- training -------------------------------------------------------------------------

    def fit(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None = None,
        catalog: Catalog | None = None,
    ) -> Self:
        """Learn the trend vectors from ``log`` (see :class:`Recommender.fit`).

        A user with no history gets the trending items, not the all-time popular ones that
        other models fall back on.
        """
        super().fit(interactions, log=log, catalog=catalog)
        self.item_popularity_ = self.trend_.copy()
        return self

    def _check_params(self) -> None:
        if not np.isfinite(self.half_life_days) or self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be a number > 0, got {self.half_life_days}")
        if not np.isfinite(self.shrinkage) or self.shrinkage < 0:
            raise ValueError(f"shrinkage must be a number >= 0, got {self.shrinkage}")
        if int(self.max_context_values) != self.max_context_values or self.max_context_values < 0:
            raise ValueError(
                f"max_context_values must be an integer >= 0, got {self.max_context_values}"
            )
        if self.now_ms is not None and int(self.now_ms) != self.now_ms:
            raise ValueError(f"now_ms must be an integer (epoch ms) or None, got {self.now_ms}")

    def _fit_with(
        self,
        interactions: sp.csr_matrix,
        *,
        log: InteractionLog | None,
        catalog: Catalog | None,
    ) -> None:
        self._check_params()
        self.__dict__.pop("_row_of", None)  # a refit invalidates the lookup cache
        if log is None:  # fit() checks needs; this keeps direct callers honest
            raise ValueError("Trending needs log= to fit")
        n_items = interactions.shape[1]
        if log.n_items != n_items:
            raise ValueError(
                f"log has {log.n_items} item codes; the interactions have {n_items} item columns"
                " (build both from the same log)"
            )
        keep = log.weight > 0
        if self.now_ms is not None:
            keep &= log.time <= self.now_ms
        if not keep.any():
            raise ValueError(
                "the log has no event with a positive weight"
                + ("" if self.now_ms is None else f" at or before now_ms={self.now_ms}")
            )
        item, time = log.item[keep], log.time[keep]
        newest = int(time.max())
        now = newest if self.now_ms is None else int(self.now_ms)
        half_life_ms = float(self.half_life_days) * _MS_PER_DAY
        # Decay relative to the newest event, then scale the support by how stale the newest
        # is: shares are unchanged by the common factor, and nothing underflows when now_ms
        # lies far beyond the data.
        decay = np.exp2(-(newest - time) / half_life_ms)
        staleness = float(np.exp2(-(now - newest) / half_life_ms))
        mass = decay * log.weight[keep] if self.use_weights else decay
        overall = np.bincount(item, weights=mass, minlength=n_items)
        self.trend_ = (overall / overall.sum()).astype(np.float32)
        self.support_ = float(decay.sum() * staleness)

        rows, supports, keys = [], [], []
        for field, values in sorted((log.context or {}).items()):
            values = np.asarray(values, dtype=object)[keep]
            known = values != ""
            if not known.any() or self.max_context_values == 0:
                continue
            names, code = np.unique(values[known].astype(str), return_inverse=True)
            support = np.bincount(code, weights=decay[known], minlength=len(names)) * staleness
            kept = np.argsort(-support, kind="stable")[: int(self.max_context_values)]
            kept.sort()
            row_of = np.full(len(names), -1)
            row_of[kept] = np.arange(len(kept))
            use = row_of[code] >= 0
            matrix = sp.csr_matrix(
                (mass[known][use], (row_of[code][use], item[known][use])),
                shape=(len(kept), n_items),
                dtype=np.float64,
            )
            matrix.sum_duplicates()
            totals = np.asarray(matrix.sum(axis=1)).ravel()
            rows.append(sp.diags(1.0 / np.maximum(totals, 1e-300)) @ matrix)
            supports.append(support[kept])
            keys.extend([field, str(name)] for name in names[kept])
        self.context_trend_ = sp.csr_matrix(
            sp.vstack(rows) if rows else sp.csr_matrix((0, n_items)), dtype=np.float32
        )
        self.context_support_ = (
            np.concatenate(supports) if supports else np.empty(0, np.float64)
        ).astype(np.float64)
        self.context_keys_ = keys  # [[field, value], ...], one per row of context_trend_

        self.category_names_: list[str] = []
        self.item_category_ = np.full(n_items, -1, np.int32)
        if catalog is not None:
            names, code = np.unique(catalog.category.astype(str), return_inverse=True)
            known = names[code] != ""
            self.category_names_ = [str(n) for n in names]
            self.item_category_[known] = code[known]

    # --- scoring --------------------------------------------------------------------------

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(self.trend_, (history.shape[0], len(self.trend_))).copy()

    def score_context(self, context: Mapping[str, Any], n_rows: int = 1) -> np.ndarray:
        """Trending shares (n_rows × n_items, each row summing to 1) for a request context.

        Each field of ``context`` whose value was seen in training contributes its vector
        shrunk toward the overall one (see the module docstring); the contributions are
        averaged. Fields the log did not carry, values never seen and empty values are
        ignored; with none left this is the overall vector.
        """
        self._check_fitted()
        if not isinstance(context, Mapping):
            raise ValueError(f"context must be a mapping of field to value, got {context!r}")
        if n_rows < 1:
            raise ValueError(f"n_rows must be at least 1, got {n_rows}")
        seen = self._seen_rows(context)
        vector = (
            np.mean([self._shrunk(row) for row in seen], axis=0) if seen else self.trend_
        ).astype(np.float32)
        return np.broadcast_to(vector, (n_rows, len(vector))).copy()

    def best_context(
        self,
        item_codes: int | np.ndarray,
        context: Mapping[str, Any],
        *,
        min_lift: float = 1.25,
    ) -> tuple[str, str] | list[tuple[str, str] | None] | None:
        """Which context value lifts each item most: ``(field, value)``, or None.

        The lift of an item in a context value is its shrunk share there over its overall
        share; the value with the largest lift is returned when the lift is at least
        ``min_lift`` (the item is notably more popular there: "popular in DE this week"),
        else None. An int gives one answer, an array a list of them.
        """
        self._check_fitted()
        if not isinstance(context, Mapping):
            raise ValueError(f"context must be a mapping of field to value, got {context!r}")
        if not np.isfinite(min_lift) or min_lift <= 0:
            raise ValueError(f"min_lift must be a number > 0, got {min_lift}")
        single = np.ndim(item_codes) == 0
        codes = self._codes(np.atleast_1d(item_codes), "item_codes")
        answers: list[tuple[str, str] | None] = [None] * len(codes)
        seen = self._seen_rows(context)
        if seen:
            overall = self.trend_[codes].astype(np.float64)
            lifts = np.stack([self._shrunk(row)[codes] for row in seen])
            lifts = np.divide(lifts, overall, out=np.zeros_like(lifts), where=overall > 0)
            best = lifts.argmax(axis=0)
            for i, (choice, lift) in enumerate(zip(best, lifts.max(axis=0), strict=True)):
                if lift >= min_lift:
                    field, value = self.context_keys_[seen[choice]]
                    answers[i] = (field, value)
        return answers[0] if single else answers

    def top_in_category(self, category: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most trending items of ``category`` and its subcategories, best first.

        ``category`` is a path or a prefix of one ("Home" holds "Home > Kitchen"). Only items
        with some trend count; the arrays are padded with -1 and -inf to length ``k`` (all
        padding for a category the catalog does not have).
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not self.category_names_:
            raise ValueError("top_in_category needs the model fitted with catalog=")
        prefix = category + ITEM_CATEGORY_SEPARATOR
        inside = np.array(
            [name == category or name.startswith(prefix) for name in self.category_names_]
            + [False]  # the -1 code: no category
        )
        scores = np.where(
            inside[self.item_category_] & (self.trend_ > 0), self.trend_, -np.inf
        ).astype(np.float32)
        k_eff = min(k, len(scores))
        ids, values = top_k(scores[None, :], k_eff)
        pad = k - k_eff
        return (
            np.concatenate([ids[0], np.full(pad, -1, np.int64)]),
            np.concatenate([values[0], np.full(pad, -np.inf, np.float32)]),
        )

    def rank_in_category(self, item_codes: np.ndarray, depth: int = 1) -> np.ndarray:
        """1-based trending rank of each item within its category cut to ``depth`` levels
        (``rank_in_category(codes, 1) <= 3``: "popular in Home this week"); 0 for an item
        without a category or without any trend."""
        self._check_fitted()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if not self.category_names_:
            raise ValueError("rank_in_category needs the model fitted with catalog=")
        codes = self._codes(item_codes, "item_codes")
        prefixes = [
            ITEM_CATEGORY_SEPARATOR.join(name.split(ITEM_CATEGORY_SEPARATOR)[:depth])
            for name in self.category_names_
        ]
        _, group_of_name = np.unique(prefixes, return_inverse=True)
        group = np.append(group_of_name, -1)[self.item_category_]  # -1: no category
        ranks = np.zeros(len(codes), np.int64)
        for g in np.unique(group[codes]):
            if g < 0:
                continue
            members = self.trend_[group == g]
            mine = group[codes] == g
            trend = self.trend_[codes[mine]]
            ranks[mine] = np.where(trend > 0, 1 + (members[None, :] > trend[:, None]).sum(1), 0)
        return ranks

    # --- helpers --------------------------------------------------------------------------

    def _seen_rows(self, context: Mapping[str, Any]) -> list[int]:
        """Rows of context_trend_ for the context's (field, value) pairs seen in training."""
        if not hasattr(self, "_row_of"):
            # Not saved (no trailing underscore): rebuilt from context_keys_ after a load.
            self._row_of = {(f, v): i for i, (f, v) in enumerate(self.context_keys_)}
        rows = []
        for field, value in context.items():
            if value is None or value == "":
                continue
            row = self._row_of.get((str(field), str(value)))
            if row is not None:
                rows.append(row)
        return rows

    def _shrunk(self, row: int) -> np.ndarray:
        support = float(self.context_support_[row])
        total = support + float(self.shrinkage)
        own = support / total if total > 0 else 0.0
        vector = self.context_trend_[row].toarray().ravel().astype(np.float64)
        return own * vector + (1.0 - own) * self.trend_

    def _codes(self, codes: np.ndarray, what: str) -> np.ndarray:
        return item_codes(codes, int(self.n_items_), what)
