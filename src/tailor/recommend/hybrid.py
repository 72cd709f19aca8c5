"""The hybrid: candidates from several models, reranked by LightGBM LambdaMART.

Stage one asks each candidate model for its best ``candidates`` items per user (the union is
the candidate set). Stage two scores every candidate with a LambdaMART ranker (Burges,
"From RankNet to LambdaRank to LambdaMART", MSR-TR-2010-82; LightGBM's ``lambdarank``
objective) on features a person can read: each model's score (as a share of that user's
best), its rank (log scale) and the item's popularity percentile. The features are chosen to
mean the same when the models are refitted on more data for serving: raw scores, raw counts
and the user's history length all grow with the data, and a ranker trained on them misjudges
the refitted models (``python -m bench.recommend`` on MovieLens 100K: nDCG@10 0.443 with
them, 0.477 without).

Optional context features follow the same rule. With a :class:`~tailor.recommend.catalog.Catalog`
the ranker also reads the item's log price and its log ratio to the user's median history
price, and the user's share of history in the candidate's top-level category and full category
path; with times matrices (latest interaction per user × item cell, see
:func:`tailor.recommend.evaluation.latest_times`) it reads how many days before the user's
latest interaction the item was last interacted with, and with both, the item's age and the
days since the user's latest interaction in the candidate's category. Every one of them is a
share, a ratio or a gap in days, never a count that grows with the data.

The ranker learns on data it was not fitted on: the candidate models are fitted on one part of
the training interactions and the ranker learns which of their candidates appear in the
held-back part. For serving, the candidate models are then refitted on everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import (
    Recommender,
    check_generators,
    distinct_users,
    fit_models,
    pack_models,
    unpack_models,
)
from tailor.recommend.catalog import UNKNOWN_TIME, Catalog
from tailor.recommend.interactions import InteractionLog

MS_PER_DAY = 86_400_000.0
CATALOG_FEATURES = (
    "item_log_price",
    "price_vs_user_median",
    "category_share",
    "category_path_share",
)
TIME_FEATURES = ("days_since_item_last_seen",)
CATALOG_TIME_FEATURES = ("item_age_days", "days_since_category_last")

HYBRID_GRID: dict[str, list[Any]] = {
    "candidates": [50, 100],
    "trees": [50, 100, 200, 400],
    "leaves": [7, 15, 31],
    "learning_rate": [0.05],
}
"""The hybrid's own search space, tuned on validation with a nested split (see
:func:`tailor.recommend.evaluation.tune_hybrid`)."""


class Hybrid(Recommender):
    """Parameters
    ----------
    generators : {model name: hyperparameters} of the candidate models.
    candidates : items each model proposes per user.
    trees, learning_rate, leaves : LightGBM LambdaMART settings.
    seed : LightGBM's seed (training is deterministic for a seed).
    """

    name = "hybrid"
    needs = ("log",)
    explained_by_generators = True

    def __init__(
        self,
        *,
        generators: dict[str, dict[str, Any]] | None = None,
        candidates: int = 50,
        trees: int = 100,
        learning_rate: float = 0.05,
        leaves: int = 7,
        seed: int = 42,
    ) -> None:
        self.generators = generators
        self.candidates = candidates
        self.trees = trees
        self.learning_rate = learning_rate
        self.leaves = leaves
        self.seed = seed

    # --- training -------------------------------------------------------------------------

    def fit_stages(
        self,
        fit_part: sp.csr_matrix,
        held_back: sp.csr_matrix,
        full: sp.csr_matrix,
        *,
        fit_part_models: dict[str, Recommender] | None = None,
        full_models: dict[str, Recommender] | None = None,
        catalog: Catalog | None = None,
        fit_part_times: sp.csr_matrix | None = None,
        full_times: sp.csr_matrix | None = None,
    ) -> Hybrid:
        """Fit the ranker on ``fit_part`` → ``held_back`` candidates, then refit the
        candidate models on ``full`` (all training interactions) for serving.

        Parameters
        ----------
        fit_part, held_back, full : users × items matrices of the same shape.
        fit_part_models, full_models : the candidate models already fitted on ``fit_part`` /
            ``full`` (tuning tries many rankers over the same candidates).
        catalog : item attributes aligned with the matrix columns; adds the catalog features.
        fit_part_times, full_times : the latest interaction time (epoch days) of each cell of
            ``fit_part`` / ``full`` (:func:`tailor.recommend.evaluation.latest_times`); both or
            neither. They add the time features; ``full_times`` is kept for serving users
            whose times :meth:`score` is not given.

        Returns
        -------
        Hybrid
            self, fitted.
        """
        from lightgbm import LGBMRanker

        check_generators(self.generators)
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")
        if not fit_part.shape == held_back.shape == full.shape:
            raise ValueError(
                "fit_part, held_back and full must share their users × items shape, got "
                f"{fit_part.shape}, {held_back.shape} and {full.shape}"
            )
        if (fit_part_times is None) != (full_times is None):
            raise ValueError("fit_part_times and full_times go together: give both or neither")
        if fit_part_times is not None and not fit_part_times.shape == full_times.shape == (
            full.shape
        ):
            raise ValueError(
                f"fit_part_times and full_times must have the matrices' shape {full.shape}, "
                f"got {fit_part_times.shape} and {full_times.shape}"
            )
        if catalog is not None and len(catalog) != full.shape[1]:
            raise ValueError(
                f"catalog describes {len(catalog)} items but the matrices have {full.shape[1]} "
                "item columns: build it with the interaction log's item_ids"
            )
        self.uses_catalog_ = catalog is not None
        self.uses_times_ = full_times is not None
        if catalog is not None:
            self._learn_catalog(catalog)
        models = fit_part_models or self._fit_generators(fit_part)
        # The popularity and item-recency features of training rows must come from the same
        # data as the generators that produced them; serving then reads the refitted ones.
        self.item_popularity_ = distinct_users(fit_part)
        fit_times = None
        if fit_part_times is not None:
            fit_times = _as_times(fit_part_times)
            self.item_last_days_ = _column_max(fit_times)
        users = np.flatnonzero(np.diff(held_back.indptr))
        features, rows, items = self._features(
            models, fit_part[users], users, None if fit_times is None else fit_times[users]
        )
        labels = np.asarray(held_back[users[rows], items]).ravel() > 0
        # One query per user; users whose candidates hold no held-back item teach nothing.
        useful = np.zeros(len(users), bool)
        np.logical_or.at(useful, rows, labels)
        if not useful.any():
            raise ValueError(
                "no held-back interaction is among the candidates, so the ranker has nothing "
                "to learn from: raise candidates or hold back more interactions"
            )
        keep = useful[rows]
        features, rows, labels = features[keep], rows[keep], labels[keep]
        groups = np.bincount(rows, minlength=len(users))
        groups = groups[groups > 0]
        ranker = LGBMRanker(
            objective="lambdarank",
            n_estimators=self.trees,
            learning_rate=self.learning_rate,
            num_leaves=self.leaves,
            min_child_samples=20,
            random_state=self.seed,
            deterministic=True,
            force_row_wise=True,
            n_jobs=2,
            verbose=-1,
        )
        ranker.fit(features, labels.astype(np.int32), group=groups)
        self.ranker_ = ranker.booster_
        self.feature_names_ = self._feature_names()
        self.models_ = full_models or self._fit_generators(full)
        self.n_items_ = full.shape[1]
        self.item_popularity_ = distinct_users(full)
        if full_times is not None:
            self.times_ = _as_times(full_times)
            self.item_last_days_ = _column_max(self.times_)
        return self

    def fit_split(
        self,
        log: InteractionLog,
        train_rows: np.ndarray,
        *,
        full: sp.csr_matrix | None = None,
        catalog: Catalog | None = None,
        times: bool = False,
    ) -> Hybrid:
        """Fit on one log: the ranker learns which candidates of the ``train_rows`` come
        true in the other rows; then the candidate models are refitted on every row
        (``full``: the log's matrix, when already at hand).

        ``catalog`` (aligned with ``log.item_ids``) adds the catalog features, ``times``
        the time features read from the log (where it has any).
        """
        from tailor.recommend.evaluation import hybrid_context, latest_times

        train_rows = np.asarray(train_rows, bool)
        if train_rows.shape != (len(log),):
            raise ValueError(f"train_rows must mark each of the log's {len(log)} rows")
        fit_part, held_back = log.matrix(train_rows), log.matrix(~train_rows, binary=True)
        if fit_part.nnz == 0 or held_back.nnz == 0:
            raise ValueError(
                f"too few interactions for the hybrid ({train_rows.sum()} to fit its candidate "
                f"models on, {(~train_rows).sum()} held back): its ranker learns which "
                "candidates come true in the held-back part, and needs both"
            )
        context = hybrid_context(
            catalog, latest_times(log, train_rows), latest_times(log), times=times
        )
        return self.fit_stages(
            fit_part, held_back, log.matrix() if full is None else full, **context
        )

    def _fit_with(
        self, interactions: sp.csr_matrix, *, log: InteractionLog | None, catalog: Catalog | None
    ) -> None:
        # Serving's fit (RecommendationService.build): the ranker learns how the latest
        # fifth of the interactions followed from the rest, as the next ones will follow
        # from all of them.
        from tailor.recommend.evaluation import train_mask

        assert log is not None  # Recommender.fit checks the needs
        self.fit_split(
            log, train_mask(log, "temporal"), full=interactions, catalog=catalog, times=True
        )

    def _learn_catalog(self, catalog: Catalog) -> None:
        """Item arrays the catalog features read (stored with the model, so serving needs
        no catalog)."""
        price = np.asarray(catalog.price, np.float64)
        # A negative price is a data error, not a cheap item: treat it as unknown.
        self.item_log_price_ = np.log1p(np.where(price >= 0, price, np.nan))
        created = np.asarray(catalog.created_at, np.int64)
        self.item_created_days_ = np.where(created == UNKNOWN_TIME, np.nan, created / MS_PER_DAY)
        self.item_top_category_ = _category_codes(catalog.category_level(1))
        self.item_category_path_ = _category_codes(catalog.category)

    def _fit(self, interactions: sp.csr_matrix) -> None:
        raise TypeError("Hybrid learns from two parts of the data: call fit_stages()")

    def _fit_generators(self, interactions: sp.csr_matrix) -> dict[str, Recommender]:
        return fit_models(self.generators, interactions)

    def _feature_names(self) -> list[str]:
        names = []
        for name in self.generators or {}:
            names += [f"{name}_score", f"{name}_rank"]
        names.append("item_popularity_percentile")
        if getattr(self, "uses_catalog_", False):
            names += CATALOG_FEATURES
        if getattr(self, "uses_times_", False):
            names += TIME_FEATURES
            if getattr(self, "uses_catalog_", False):
                names += CATALOG_TIME_FEATURES
        return names

    # --- features -------------------------------------------------------------------------

    def _features(
        self,
        models: dict[str, Recommender],
        history: sp.csr_matrix,
        users: np.ndarray | None,
        history_times: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, row of each candidate in ``history``, item of each candidate).

        Context features are NaN (LightGBM's missing value) where their input is unknown: a
        price or release date the catalog lacks, an item without a category, a user with no
        known time."""
        n_rows = history.shape[0]
        seen_rows = np.repeat(np.arange(n_rows), np.diff(history.indptr))
        scores, ranks, pools = {}, {}, []
        for name, model in models.items():
            block = model.score(history, users)
            block[seen_rows, history.indices] = -np.inf
            order = np.argsort(-block, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(block.shape[1])[None, :], axis=1)
            scores[name], ranks[name] = block, rank
            pools.append(order[:, : self.candidates])
        pool = np.concatenate(pools, axis=1)
        pool.sort(axis=1)
        fresh = np.ones_like(pool, dtype=bool)
        fresh[:, 1:] = pool[:, 1:] != pool[:, :-1]
        rows = np.broadcast_to(np.arange(n_rows)[:, None], pool.shape)[fresh]
        items = pool[fresh]
        columns = []
        for name in models:
            value = scores[name][rows, items]
            best = np.max(np.where(np.isfinite(scores[name]), scores[name], -np.inf), axis=1)
            scale = np.where(np.abs(best) > 0, np.abs(best), 1.0)[rows]
            columns.append(np.where(np.isfinite(value), value / scale, 0.0))
            columns.append(np.log1p(ranks[name][rows, items].astype(np.float64)))
        popularity = self.item_popularity_
        percentile = np.argsort(np.argsort(popularity, kind="stable"), kind="stable")
        columns.append((percentile / max(len(popularity) - 1, 1))[items])
        uses_times = getattr(self, "uses_times_", False)
        if uses_times and history_times is None:
            history_times = self._stored_times(users, n_rows)
        if getattr(self, "uses_catalog_", False):
            columns += self._catalog_columns(history, rows, items)
        if uses_times:
            columns += self._time_columns(history_times, rows, items)
        return np.column_stack(columns).astype(np.float32), rows, items

    def _catalog_columns(
        self, history: sp.csr_matrix, rows: np.ndarray, items: np.ndarray
    ) -> list[np.ndarray]:
        """Log price, log price over the user's median, and category shares."""
        n_rows = history.shape[0]
        seen_rows = np.repeat(np.arange(n_rows), np.diff(history.indptr))
        seen_items = history.indices
        log_price = self.item_log_price_[items]
        median = _row_median(seen_rows, self.item_log_price_[seen_items], n_rows)
        columns = [log_price, log_price - median[rows]]
        length = np.diff(history.indptr).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A share, not a count: it means the same for a short and a long history.
            for codes in (self.item_top_category_, self.item_category_path_):
                count = _keyed(seen_rows, codes[seen_items], rows, codes[items], "count")
                share = count / length[rows]
                columns.append(np.where((codes[items] >= 0) & (length[rows] > 0), share, np.nan))
        return columns

    def _time_columns(
        self, times: sp.csr_matrix, rows: np.ndarray, items: np.ndarray
    ) -> list[np.ndarray]:
        """Gaps in days measured from the user's latest interaction."""
        times = _as_times(times)
        n_rows = times.shape[0]
        time_rows = np.repeat(np.arange(n_rows), np.diff(times.indptr))
        latest = np.full(n_rows, -np.inf)
        np.maximum.at(latest, time_rows, times.data)
        latest[~np.isfinite(latest)] = np.nan
        user_latest = latest[rows]
        # Positive: the item went quiet before the user was last active.
        columns = [user_latest - self.item_last_days_[items]]
        if getattr(self, "uses_catalog_", False):
            columns.append(user_latest - self.item_created_days_[items])
            codes = self.item_top_category_
            in_category = _keyed(
                time_rows, codes[times.indices], rows, codes[items], "max", times.data
            )
            columns.append(user_latest - in_category)
        return columns

    def _stored_times(self, users: np.ndarray | None, n_rows: int) -> sp.csr_matrix:
        """The training times of ``users``' rows; empty rows for unseen users (-1) or no
        ``users``, whose time features are then NaN."""
        if users is None:
            return sp.csr_matrix((n_rows, self.times_.shape[1]))
        known = (users >= 0) & (users < self.times_.shape[0])
        picked = self.times_[np.where(known, users, 0)]
        return sp.csr_matrix(sp.diags(known.astype(np.float64)) @ picked)

    # --- serving --------------------------------------------------------------------------

    def score(
        self,
        history: sp.csr_matrix,
        users: np.ndarray | None = None,
        *,
        history_times: sp.csr_matrix | None = None,
    ) -> np.ndarray:
        """Scores (n_rows × n_items) of the history rows, as :meth:`Recommender.score`.

        ``history_times`` optionally gives the latest interaction time (epoch days) of each
        history cell, for a model fitted with times; without it the times stored at training
        are read for ``users`` (NaN time features for unseen users)."""
        if history_times is None:
            return super().score(history, users)
        self._check_fitted()
        history = sp.csr_matrix(history, dtype=np.float32)
        if history_times.shape != history.shape:
            raise ValueError(
                f"history_times must have the history's shape {history.shape}, "
                f"got {history_times.shape}"
            )
        # The checks of Recommender.score, then the times go straight to the ranker (no
        # state on self, so concurrent requests cannot see each other's times).
        users = None if users is None else np.asarray(users, dtype=np.int64)
        if history.shape[1] != self.n_items_:
            raise ValueError(
                f"history has {history.shape[1]} item columns; the model knows {self.n_items_}"
            )
        if users is not None and len(users) != history.shape[0]:
            raise ValueError("users must give one training-row index per history row")
        return self._rank(history, users, history_times)

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return self._rank(history, users, None)

    def _rank(
        self, history: sp.csr_matrix, users: np.ndarray | None, times: sp.csr_matrix | None
    ) -> np.ndarray:
        features, rows, items = self._features(self.models_, history, users, times)
        out = np.full((history.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        if len(rows):
            # Positive, with 0 as the floor: a new item's content score (new_item_scores) is
            # then a share of the user's best, and a weak match lands near the bottom rather
            # than above every item the ranker scored below zero. exp keeps the ranker's
            # order and, unlike the logistic, its digits: in float32 the logistic ties top
            # items that differ by less than 1e-3 at a score of 10. Its loss reads score
            # differences as log-odds, so a ratio of these is an odds ratio; the cap stays
            # far inside float32.
            out[rows, items] = np.exp(np.minimum(self.ranker_.predict(features), 80.0))
        return out

    # --- persistence: the generators and the LightGBM model ride inside the one file ------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            "item_popularity_": self.item_popularity_,
            "ranker_": np.frombuffer(self.ranker_.model_to_string().encode(), np.uint8),
        }
        arrays |= pack_models(self.models_)
        for key in _CONTEXT_ARRAYS:
            if hasattr(self, key):
                arrays[key] = getattr(self, key)
        if hasattr(self, "times_"):
            for part in ("data", "indices", "indptr"):
                arrays[f"times_{part}"] = getattr(self.times_, part)
        scalars = {
            "feature_names_": self.feature_names_,
            "n_items_": self.n_items_,
            "uses_catalog_": bool(getattr(self, "uses_catalog_", False)),
            "uses_times_": bool(getattr(self, "uses_times_", False)),
        }
        if hasattr(self, "tuning_"):
            scalars["tuning_"] = self.tuning_
        return arrays, scalars

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from lightgbm import Booster

        self.feature_names_ = list(scalars["feature_names_"])
        self.n_items_ = int(scalars["n_items_"])
        if "tuning_" in scalars:
            self.tuning_ = scalars["tuning_"]
        self.uses_catalog_ = bool(scalars.get("uses_catalog_", False))
        self.uses_times_ = bool(scalars.get("uses_times_", False))
        for key in _CONTEXT_ARRAYS:
            if key in arrays:
                setattr(self, key, arrays[key])
        if "times_data" in arrays:
            self.times_ = sp.csr_matrix(
                (arrays["times_data"], arrays["times_indices"], arrays["times_indptr"]),
                shape=(len(arrays["times_indptr"]) - 1, self.n_items_),
            )
        self.item_popularity_ = arrays["item_popularity_"]
        self.ranker_ = Booster(model_str=arrays["ranker_"].tobytes().decode())
        self.models_ = unpack_models(arrays, self.generators or {})


_CONTEXT_ARRAYS = (
    "item_log_price_",
    "item_created_days_",
    "item_top_category_",
    "item_category_path_",
    "item_last_days_",
)


def _as_times(times: sp.spmatrix) -> sp.csr_matrix:
    """Canonical float64 CSR with only finite stored times (anything else is unknown)."""
    times = sp.csr_matrix(times, dtype=np.float64)
    times.sum_duplicates()
    if not np.isfinite(times.data).all():
        times = times.copy()
        times.data[~np.isfinite(times.data)] = 0.0
        times.eliminate_zeros()
    return times


def _column_max(times: sp.csr_matrix) -> np.ndarray:
    """Each item's latest time (NaN for an item nobody interacted with)."""
    latest = np.full(times.shape[1], -np.inf)
    np.maximum.at(latest, times.indices, times.data)
    latest[~np.isfinite(latest)] = np.nan
    return latest


def _category_codes(paths: np.ndarray) -> np.ndarray:
    """An integer per distinct category path; -1 for an item without one."""
    names, codes = np.unique(np.asarray(paths, dtype=str), return_inverse=True)
    codes = codes.astype(np.int64)
    empty = np.flatnonzero(names == "")
    if empty.size:
        codes[codes == empty[0]] = -1
    return codes


def _keyed(
    rows: np.ndarray,
    codes: np.ndarray,
    query_rows: np.ndarray,
    query_codes: np.ndarray,
    how: str,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Per (row, code) pair: how many entries (``how="count"``, 0 when none) or the largest
    of ``values`` (``"max"``, NaN when none), looked up at the query pairs. Sorting keys keeps
    it vectorised and its memory proportional to the entries, whatever the category count."""
    width = int(max(codes.max(initial=-1), query_codes.max(initial=-1))) + 1
    keep = codes >= 0
    keys = rows[keep].astype(np.int64) * width + codes[keep]
    if how == "count":
        unique, result = np.unique(keys, return_counts=True)
        result = result.astype(np.float64)
        missing = 0.0
    else:
        assert values is not None
        order = np.lexsort((values[keep], keys))
        keys, ordered = keys[order], values[keep][order]
        last = np.ones(len(keys), bool)
        last[:-1] = keys[1:] != keys[:-1]
        unique, result = keys[last], ordered[last]
        missing = np.nan
    query = query_rows.astype(np.int64) * width + query_codes
    out = np.full(len(query), missing)
    if len(unique):
        position = np.minimum(np.searchsorted(unique, query), len(unique) - 1)
        hit = (unique[position] == query) & (query_codes >= 0)
        out[hit] = result[position[hit]]
    return out


def _row_median(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Median of each row's non-NaN ``values`` (NaN for a row with none), without a loop."""
    known = ~np.isnan(values)
    rows, values = rows[known], values[known]
    order = np.lexsort((values, rows))
    rows, values = rows[order], values[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(n_rows, np.nan)
    has = counts > 0
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    out[has] = (values[low] + values[high]) / 2
    return out
