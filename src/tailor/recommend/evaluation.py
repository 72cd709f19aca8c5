"""Offline evaluation of the recommendation engine: split, tune on validation, test once.

One function serves the benchmark (``python -m bench.recommend``) and the command line
(``tailor evaluate recommend``): :func:`evaluate_recommenders` splits the log by a protocol,
carves a validation split out of the training rows by the same protocol, tunes every model on
it (:mod:`tailor.recommend.tuning`), refits the tuned configuration on all training rows and
scores the test rows once. The test rows never choose anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from tailor.evaluate import leave_last_out, random_per_user, ranking_metrics, temporal
from tailor.recommend.base import Recommender, distinct_users
from tailor.recommend.blend import BLEND_WEIGHTS, Blend
from tailor.recommend.catalog import Catalog
from tailor.recommend.hybrid import HYBRID_GRID, MS_PER_DAY, Hybrid
from tailor.recommend.interactions import InteractionLog
from tailor.recommend.tuning import GRIDS, Trial, TuningResult, recommended, tune, tune_model

PROTOCOLS = ("random", "temporal", "leave-last-out")
"""``random``: 75% of each user's interactions at random train (the Microsoft Recommenders
split); ``temporal``: the last 20% of interactions in time are the test; ``leave-last-out``:
each user's latest interaction is the test."""

DEFAULT_MODELS = ("popularity", "itemknn", "ease", "als", "bpr")
HYBRID_GENERATORS = ("ease", "itemknn", "als")
CURVE_K = 20
"""Metrics are also reported at every cut-off 1..CURVE_K for the report's curves."""


def train_mask(log: InteractionLog, protocol: str, seed: int = 42) -> np.ndarray:
    """The rows of ``log`` that ``protocol`` puts in training."""
    if protocol == "random":
        return random_per_user(log.user, ratio=0.75, seed=seed)
    if protocol == "temporal":
        return temporal(log.time, test_fraction=0.2)
    if protocol == "leave-last-out":
        return leave_last_out(log.user, log.time)
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def latest_times(log: InteractionLog, mask: np.ndarray | None = None) -> sp.csr_matrix:
    """Users × items: the latest time (epoch days, float64) of the rows of ``mask``.

    Parameters
    ----------
    log : the interactions.
    mask : boolean per row of ``log``; all rows when None.

    Returns
    -------
    scipy.sparse.csr_matrix
        The shape of ``log.matrix()``; a cell nobody interacted with is not stored. Days, not
        ms, so the hybrid's gaps read in days; a log without times (all 0) yields an empty
        matrix, i.e. unknown times.
    """
    user, item, when = log.user, log.item, log.time
    if mask is not None:
        user, item, when = user[mask], item[mask], when[mask]
    # Sorted by cell then time, the last row of each cell is its latest.
    order = np.lexsort((when, item, user))
    user, item, when = user[order], item[order], when[order]
    last = np.ones(len(user), bool)
    last[:-1] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
    times = sp.csr_matrix(
        (when[last] / MS_PER_DAY, (user[last], item[last])),
        shape=(log.n_users, log.n_items),
        dtype=np.float64,
    )
    times.eliminate_zeros()
    return times


@dataclass
class Splits:
    """Training and test matrices, and inside training a fit part and a validation part."""

    log: InteractionLog
    train_rows: np.ndarray
    train: sp.csr_matrix
    test: sp.csr_matrix
    fit_part: sp.csr_matrix
    validation: sp.csr_matrix
    inner: InteractionLog
    inner_rows: np.ndarray

    @classmethod
    def make(cls, log: InteractionLog, protocol: str, seed: int = 42) -> Splits:
        train_rows = train_mask(log, protocol, seed)
        inner = log.subset(train_rows)
        # Validation comes out of the training rows only, by the same protocol.
        inner_rows = train_mask(inner, protocol, seed + 1)
        splits = cls(
            log=log,
            train_rows=train_rows,
            train=log.matrix(train_rows),
            test=log.matrix(~train_rows, binary=True),
            fit_part=inner.matrix(inner_rows),
            validation=inner.matrix(~inner_rows, binary=True),
            inner=inner,
            inner_rows=inner_rows,
        )
        for part, matrix in (
            ("test", splits.test),
            ("validation", splits.validation),
            ("training", splits.fit_part),
        ):
            if matrix.nnz == 0:
                raise ValueError(
                    f"the {protocol} split leaves no {part} interactions: the data needs more "
                    "interactions per user (or a longer time span)"
                )
        return splits

    def summary(self) -> dict[str, int]:
        return {
            "users": self.log.n_users,
            "items": self.log.n_items,
            "interactions": len(self.log),
            "train": int(self.train.nnz),
            "test": int(self.test.nnz),
            "validation": int(self.validation.nnz),
        }


@dataclass
class ModelReport:
    """One model's tuned configuration and its test figures."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_s: float
    validation_ndcg: float | None
    trials: list[Trial] = field(default_factory=list)
    curve: dict[str, list[float]] = field(default_factory=dict)
    per_user_ndcg: np.ndarray | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.metrics | {"fit_s": round(self.fit_s, 3)}


@dataclass
class Evaluation:
    protocol: str
    k: int
    splits: Splits
    reports: dict[str, ModelReport]
    fitted: dict[str, Recommender]

    @property
    def best(self) -> str:
        """The model with the best test nDCG: the comparison's headline, never a choice."""
        return max(self.reports, key=lambda name: self.reports[name].metrics["ndcg"])

    @property
    def chosen(self) -> str:
        """The model with the best validation nDCG (the first of equals): the one to deploy.
        Choosing by test figures would let the test rows pick the model and overstate it."""
        return max(self.reports, key=lambda name: _or_lowest(self.reports[name].validation_ndcg))

    def figures(self) -> dict[str, Any]:
        """The JSON-able summary (what the benchmark prints and the report's JSON twin holds)."""
        return {
            "protocol": self.protocol,
            "k": self.k,
            "data": self.splits.summary(),
            "models": {name: report.as_dict() for name, report in self.reports.items()},
            "best": self.best,
            "chosen": self.chosen,
            "tuned": {name: report.params for name, report in self.reports.items()},
            "validation_ndcg": {
                name: None if r.validation_ndcg is None else round(r.validation_ndcg, 4)
                for name, r in self.reports.items()
            },
        }


def _or_lowest(value: float | None) -> float:
    return float("-inf") if value is None or np.isnan(value) else value


def test_metrics(
    top: np.ndarray, test: sp.csr_matrix, k: int, popularity: np.ndarray
) -> dict[str, float]:
    """The figures every model is compared on, rounded to 4 digits."""
    metrics = ranking_metrics(top[:, :k], test, k=k, item_popularity=popularity)
    return {
        name: round(float(getattr(metrics, name)), 4)
        for name in ("ndcg", "map", "precision", "recall", "hit_rate", "mrr", "coverage", "novelty")
    }


def curve(top: np.ndarray, test: sp.csr_matrix, up_to: int = CURVE_K) -> dict[str, list[float]]:
    """nDCG, precision and recall at every cut-off 1..``up_to``."""
    points: dict[str, list[float]] = {"k": [], "ndcg": [], "precision": [], "recall": []}
    for cut in range(1, min(up_to, top.shape[1]) + 1):
        metrics = ranking_metrics(top[:, :cut], test, k=cut)
        points["k"].append(cut)
        for name in ("ndcg", "precision", "recall"):
            points[name].append(round(float(getattr(metrics, name)), 4))
    return points


def tune_hybrid(
    generators: dict[str, dict[str, Any]],
    inner: InteractionLog,
    inner_rows: np.ndarray,
    protocol: str,
    *,
    k: int = 10,
    budget: int = 24,
    seed: int = 42,
    grid: dict[str, Sequence[Any]] | None = None,
    catalog: Catalog | None = None,
    times: bool = True,
) -> TuningResult:
    """Tune the hybrid's own settings without touching the test rows.

    ``inner`` holds the training rows, split by ``inner_rows`` into a fit part and the
    validation part every model is tuned on. The hybrid needs one more level: its ranker
    learns on a further split of the fit part (by the same protocol), and each setting is
    scored on the validation part, exactly as a single model's would be. ``catalog`` (aligned
    with the item codes) turns on the catalog features; ``times`` the time features, read
    from the rows' own times level by level.
    """
    fit_log = inner.subset(inner_rows)
    nested_rows = train_mask(fit_log, protocol, seed + 2)
    nested_fit, nested_held = fit_log.matrix(nested_rows), fit_log.matrix(~nested_rows)
    fit_part = inner.matrix(inner_rows)
    validation = inner.matrix(~inner_rows, binary=True)
    nested_times, fit_part_times = latest_times(fit_log, nested_rows), latest_times(fit_log)
    if nested_held.nnz == 0 or nested_fit.nnz == 0:
        raise ValueError(
            "too few interactions to tune the hybrid: its ranker needs a held-back part"
        )
    # The candidate models are the same for every setting: fit them once per level.
    on_nested = Hybrid(generators=generators)._fit_generators(nested_fit)
    on_fit_part = Hybrid(generators=generators)._fit_generators(fit_part)

    def build(**params: Any) -> Hybrid:
        return Hybrid(generators=generators, **params).fit_stages(
            nested_fit,
            nested_held,
            fit_part,
            fit_part_models=on_nested,
            full_models=on_fit_part,
            **hybrid_context(catalog, nested_times, fit_part_times, times=times),
        )

    result = tune(build, recommended, grid or HYBRID_GRID, fit_part, validation, k=k, budget=budget)
    result.best_params = {"generators": generators, **result.best_params}
    return result


def tune_blend(
    generators: dict[str, dict[str, Any]],
    fit_part: sp.csr_matrix,
    validation: sp.csr_matrix,
    *,
    k: int = 10,
    budget: int = 24,
) -> TuningResult:
    """Tune the blend's weights on the validation split, each generator fitted once on the
    fit part with its own tuned settings; the first generator is the anchor (weight 1)."""
    models = Blend(generators=generators)._fitted_generators(fit_part)
    grid = {name: list(BLEND_WEIGHTS) for name in list(generators)[1:]}

    def build(**weights: float) -> Blend:
        return Blend(generators=generators, weights=weights).with_models(models)

    result = tune(build, recommended, grid, fit_part, validation, k=k, budget=budget)
    result.best_params = {"generators": generators, "weights": result.best_params}
    return result


def hybrid_context(
    catalog: Catalog | None,
    fit_part_times: sp.csr_matrix,
    full_times: sp.csr_matrix,
    *,
    times: bool = True,
) -> dict[str, Any]:
    """The hybrid's context arguments; times only where the log has any (a log without
    times would feed the ranker columns of NaN)."""
    context: dict[str, Any] = {"catalog": catalog}
    if times and full_times.nnz:
        context |= {"fit_part_times": fit_part_times, "full_times": full_times}
    return context


def evaluate_recommenders(
    log: InteractionLog,
    *,
    protocol: str = "random",
    k: int = 10,
    budget: int = 24,
    models: Sequence[str] = DEFAULT_MODELS,
    hybrid: bool = True,
    blend: bool = True,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
    catalog: Catalog | None = None,
    hybrid_times: bool = True,
) -> Evaluation:
    """Tune each of ``models`` on validation, refit on training, score the test once.

    With ``hybrid`` and at least two of :data:`HYBRID_GENERATORS` among ``models``, the hybrid
    reranker over their tuned configurations is tuned (:func:`tune_hybrid`) and scored too;
    ``catalog`` (aligned with ``log.item_ids``) gives its ranker the catalog features and
    ``hybrid_times`` the time features (from the log's times). With ``blend`` and the same
    two or more generators, their blend (:mod:`tailor.recommend.blend`) is tuned and scored.
    """
    if k < 1 or budget < 1:
        raise ValueError("k and budget must be at least 1")
    unknown = [name for name in models if name not in GRIDS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(GRIDS)}")
    if catalog is not None and len(catalog) != log.n_items:
        raise ValueError(
            f"catalog describes {len(catalog)} items but the log has {log.n_items}: build it "
            "with the log's item_ids"
        )
    say = progress or (lambda message: None)
    splits = Splits.make(log, protocol, seed)
    popularity = distinct_users(splits.train).astype(np.float64)
    depth = max(k, CURVE_K)
    users = np.arange(splits.train.shape[0])
    reports: dict[str, ModelReport] = {}
    fitted: dict[str, Recommender] = {}

    def score(name: str, model: Recommender, params: dict, fit_s: float, tuning) -> None:
        top = model.recommend(splits.train, k=depth, users=users)[0]
        from tailor.evaluate import per_user_metrics

        reports[name] = ModelReport(
            name=name,
            params=params,
            metrics=test_metrics(top, splits.test, k, popularity),
            fit_s=fit_s,
            validation_ndcg=tuning.best_ndcg,
            trials=tuning.trials,
            curve=curve(top, splits.test),
            per_user_ndcg=per_user_metrics(top[:, :k], splits.test, k=k)["ndcg"],
        )
        fitted[name] = model

    for name in models:
        say(f"tuning {name} on validation ({budget} grid points at most)")
        tuning = tune_model(name, splits.fit_part, splits.validation, k=k, budget=budget)
        started = time.perf_counter()
        model = Recommender._registry[name](**tuning.best_params).fit(splits.train)
        score(name, model, tuning.best_params, time.perf_counter() - started, tuning)

    generators = {n: reports[n].params for n in HYBRID_GENERATORS if n in reports}
    if hybrid and len(generators) >= 2:
        say(f"tuning the hybrid over {', '.join(generators)} on validation")
        tuning = tune_hybrid(
            generators,
            splits.inner,
            splits.inner_rows,
            protocol,
            k=k,
            budget=budget,
            seed=seed,
            catalog=catalog,
            times=hybrid_times,
        )
        started = time.perf_counter()
        model = Hybrid(**tuning.best_params)
        # The same two levels one step up: the ranker learns fit part → validation and the
        # generators are refitted on all training rows; the test rows are only scored.
        model.fit_stages(
            splits.fit_part,
            splits.validation,
            splits.train,
            **hybrid_context(
                catalog,
                latest_times(splits.inner, splits.inner_rows),
                latest_times(splits.log, splits.train_rows),
                times=hybrid_times,
            ),
        )
        score("hybrid", model, tuning.best_params, time.perf_counter() - started, tuning)
    if blend and len(generators) >= 2:
        # The anchor is the generator that did best alone on validation.
        order = sorted(generators, key=lambda n: -(reports[n].validation_ndcg or 0.0))
        say(f"tuning the blend of {', '.join(order)} on validation")
        tuning = tune_blend(
            {n: generators[n] for n in order},
            splits.fit_part,
            splits.validation,
            k=k,
            budget=budget,
        )
        started = time.perf_counter()
        model = Blend(**tuning.best_params).fit(splits.train)
        score("blend", model, tuning.best_params, time.perf_counter() - started, tuning)
    return Evaluation(protocol, k, splits, reports, fitted)
