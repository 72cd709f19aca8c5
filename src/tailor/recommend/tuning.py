"""Hyperparameter search on a validation split: never on the test data.

A documented grid per model, searched exhaustively up to a budget (beyond it, a seeded random
sample of the grid), scored by nDCG@k on the validation rows. The same budget applies to any
peer tuned beside ours, so comparisons are fair.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.evaluate import ranking_metrics
from tailor.recommend.base import Recommender

GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "popularity": {"by": ["users"]},
    "itemknn": {
        "neighbors": [20, 50, 100, 200, 400],
        "shrink": [0.0, 10.0, 50.0],
        "weighting": ["none", "bm25"],
    },
    "ease": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0]},
    "als": {
        "factors": [32, 64, 128],
        "regularization": [0.01, 0.1, 1.0, 10.0],
        "alpha": [1.0, 5.0, 20.0],
    },
    "bpr": {
        "factors": [32, 64, 128],
        "learning_rate": [0.01, 0.05],
        "regularization": [0.001, 0.01],
        "iterations": [100, 300],
    },
}
"""The search space of each model; also what the README documents."""


@dataclass
class Trial:
    params: dict[str, Any]
    ndcg: float
    fit_s: float


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_ndcg: float
    trials: list[Trial] = field(default_factory=list)


def grid_points(
    grid: Mapping[str, Sequence[Any]], *, budget: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Every combination of ``grid``, or a seeded sample of ``budget`` of them."""
    names = list(grid)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    if len(points) <= budget:
        return points
    chosen = np.random.default_rng(seed).choice(len(points), size=budget, replace=False)
    return [points[i] for i in sorted(chosen)]


def tune(
    build: Callable[..., Any],
    score_top_k: Callable[[Any, sp.csr_matrix, int], np.ndarray],
    grid: Mapping[str, Sequence[Any]],
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    *,
    k: int = 10,
    budget: int = 24,
    seed: int = 0,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Fit ``build(**params)`` on ``train`` for each grid point and keep the best validation
    nDCG@k. ``score_top_k(fitted, train, k)`` returns the (users × k) top items with the
    training items excluded; it lets peers outside :class:`Recommender` be tuned alike."""
    trials = []
    for params in grid_points(grid, budget=budget, seed=seed):
        started = time.perf_counter()
        fitted = build(**params)
        fit_s = time.perf_counter() - started
        top = score_top_k(fitted, train, k)
        ndcg = ranking_metrics(top, validation, k=k).ndcg
        trial = Trial(params, ndcg, fit_s)
        trials.append(trial)
        if on_trial:
            on_trial(trial)
    best = max(trials, key=lambda t: t.ndcg)
    return TuningResult(best.params, best.ndcg, trials)


def recommended(model: Recommender, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """The top ``k`` items of a fitted model for each row of ``seen`` (row i is training
    user i): the ``score_top_k`` :func:`tune` takes for any of tailor's models."""
    return model.recommend(seen, k=k, users=np.arange(seen.shape[0]))[0]


def tune_model(
    name: str,
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    *,
    k: int = 10,
    budget: int = 24,
    seed: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """:func:`tune` for one of tailor's models by name."""
    model_cls = Recommender._registry[name]

    def build(**params: Any) -> Recommender:
        return model_cls(**params).fit(train)

    return tune(
        build,
        recommended,
        grid or GRIDS[name],
        train,
        validation,
        k=k,
        budget=budget,
        seed=seed,
        on_trial=on_trial,
    )
