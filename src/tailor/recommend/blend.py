"""The blend: several tuned models, their scores scaled per user and added with weights.

Each model's scores for a user are put on one scale (over their standard deviation across
the catalog), so a weight means the same whatever the model's units: EASE's
regression scores, ALS's dot products and item-kNN's summed similarities differ by orders of
magnitude. The first model is the anchor (weight 1); the others' weights are tuned on the
validation split (:func:`tailor.recommend.evaluation.tune_blend`), each model keeping the
configuration it was tuned to alone. On MovieLens 100K the blend of EASE, item-kNN and ALS
is tailor's best model (``python -m bench.recommend``; figures in the README).

Unlike the hybrid, the blend needs no held-back part to learn on: the weights are its only
parameters, so it refits on everything like any single model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import (
    Recommender,
    check_generators,
    fit_models,
    pack_models,
    unpack_models,
)

MAX_WEIGHT = 1000.0
"""Beyond it one model drowns the others (and the sums could leave float32's range)."""
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
"""The weights tried for each model after the anchor (the anchor's is 1)."""


class Blend(Recommender):
    """Parameters
    ----------
    generators : {model name: hyperparameters}; the first is the anchor.
    weights : {model name: weight >= 0} for the generators; 1 for any not named.
    """

    name = "blend"

    def __init__(
        self,
        *,
        generators: dict[str, dict[str, Any]] | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.generators = generators
        self.weights = weights

    def _fit(self, interactions: sp.csr_matrix) -> None:
        self.models_ = self._fitted_generators(interactions)

    def _fitted_generators(self, interactions: sp.csr_matrix) -> dict[str, Recommender]:
        self._check_settings()
        return fit_models(self.generators, interactions)

    def with_models(self, models: dict[str, Recommender]) -> Blend:
        """This blend over models already fitted on the same matrix (tuning tries many
        weights over the same models)."""
        self._check_settings()
        if list(models) != list(self.generators or {}):
            raise ValueError(
                f"models must be the generators {list(self.generators or {})}, got {list(models)}"
            )
        first = next(iter(models.values()))
        self.models_ = dict(models)
        self.n_items_ = first.n_items_
        self.item_popularity_ = first.item_popularity_
        return self

    def _check_settings(self) -> None:
        check_generators(self.generators)
        generators = self.generators
        if not isinstance(self.weights or {}, dict):
            raise ValueError("weights must be an object: {generator name: weight}")
        for name, weight in (self.weights or {}).items():
            if name not in generators:
                raise ValueError(f"weights: {name!r} is not one of the generators")
            number = isinstance(weight, int | float) and not isinstance(weight, bool)
            if not number or not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
                raise ValueError(
                    f"weights: {name!r} must be a number from 0 to {MAX_WEIGHT:g}, got {weight!r}"
                )

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        weights = self.weights or {}
        total = np.zeros((history.shape[0], self.n_items_), dtype=np.float64)
        for name, model in self.models_.items():
            weight = float(weights.get(name, 1.0))
            if weight:
                total += weight * _unit_spread(model.score(history, users))
        return total

    def item_similarity(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
        """The anchor's item links (the first generator that relates items): what explains
        a blended item and what MMR diversifies by."""
        for model in self.models_.values():
            links = model.item_similarity(sources, targets)
            if links is not None:
                return links
        return None

    # --- persistence: each generator rides inside the one file, as in the hybrid ----------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"item_popularity_": self.item_popularity_, **pack_models(self.models_)}
        scalars: dict[str, Any] = {"n_items_": self.n_items_}
        if hasattr(self, "tuning_"):
            scalars["tuning_"] = self.tuning_
        return arrays, scalars

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_items_ = int(scalars["n_items_"])
        if "tuning_" in scalars:
            self.tuning_ = scalars["tuning_"]
        self.item_popularity_ = arrays["item_popularity_"]
        self.models_ = unpack_models(arrays, self.generators or {})


def _unit_spread(scores: np.ndarray) -> np.ndarray:
    """Each row over the standard deviation of its finite scores (a row whose finite scores
    are all equal is left as it is); excluded items (-inf, NaN) become -inf. Not centred:
    a row's mean shifts every item alike, so it cannot change a blend's order, and keeping the
    model's own zero keeps "no evidence" at 0 for what reads the scores after (new items are
    scored relative to a user's best)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    values = np.where(finite, scores, 0.0)
    mean = values.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(finite, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    return np.where(finite, values / np.where(spread > 0, spread, 1.0), -np.inf)
