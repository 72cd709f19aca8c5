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

The ranker learns on data it was not fitted on: the candidate models are fitted on one part of
the training interactions and the ranker learns which of their candidates appear in the
held-back part. For serving, the candidate models are then refitted on everything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import Recommender, distinct_users

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
    ) -> Hybrid:
        """Fit the ranker on ``fit_part`` → ``held_back`` candidates, then refit the
        candidate models on ``full`` (all training interactions) for serving.

        ``fit_part_models`` / ``full_models``: the candidate models already fitted on
        ``fit_part`` / ``full`` (tuning tries many rankers over the same candidates)."""
        from lightgbm import LGBMRanker

        if not self.generators:
            raise ValueError("generators must name at least one candidate model")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")
        if not fit_part.shape == held_back.shape == full.shape:
            raise ValueError(
                "fit_part, held_back and full must share their users × items shape, got "
                f"{fit_part.shape}, {held_back.shape} and {full.shape}"
            )
        models = fit_part_models or self._fit_generators(fit_part)
        # The popularity feature of training rows must come from the same data as the
        # generators that produced them; serving then reads the refitted one.
        self.item_popularity_ = distinct_users(fit_part)
        users = np.flatnonzero(np.diff(held_back.indptr))
        features, rows, items = self._features(models, fit_part[users], users)
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
        return self

    def _fit(self, interactions: sp.csr_matrix) -> None:
        raise TypeError("Hybrid learns from two parts of the data: call fit_stages()")

    def _fit_generators(self, interactions: sp.csr_matrix) -> dict[str, Recommender]:
        models = {}
        for name, params in (self.generators or {}).items():
            models[name] = Recommender._registry[name](**params).fit(interactions)
        return models

    def _feature_names(self) -> list[str]:
        names = []
        for name in self.generators or {}:
            names += [f"{name}_score", f"{name}_rank"]
        return [*names, "item_popularity_percentile"]

    # --- features -------------------------------------------------------------------------

    def _features(
        self,
        models: dict[str, Recommender],
        history: sp.csr_matrix,
        users: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, row of each candidate in ``history``, item of each candidate)."""
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
        return np.column_stack(columns).astype(np.float32), rows, items

    # --- serving --------------------------------------------------------------------------

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        features, rows, items = self._features(self.models_, history, users)
        out = np.full((history.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        if len(rows):
            out[rows, items] = self.ranker_.predict(features)
        return out

    # --- persistence: the generators and the LightGBM model ride inside the one file ------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            "item_popularity_": self.item_popularity_,
            "ranker_": np.frombuffer(self.ranker_.model_to_string().encode(), np.uint8),
        }
        for name, model in self.models_.items():
            arrays[f"generator_{name}"] = np.frombuffer(model.to_bytes(), np.uint8)
        scalars = {"feature_names_": self.feature_names_, "n_items_": self.n_items_}
        if hasattr(self, "tuning_"):
            scalars["tuning_"] = self.tuning_
        return arrays, scalars

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from lightgbm import Booster

        from tailor.recommend.base import load_model

        self.feature_names_ = list(scalars["feature_names_"])
        self.n_items_ = int(scalars["n_items_"])
        if "tuning_" in scalars:
            self.tuning_ = scalars["tuning_"]
        self.item_popularity_ = arrays["item_popularity_"]
        self.ranker_ = Booster(model_str=arrays["ranker_"].tobytes().decode())
        self.models_ = {
            key.removeprefix("generator_"): load_model(value.tobytes())
            for key, value in arrays.items()
            if key.startswith("generator_")
        }
