"""Offline evaluation: every model and the hybrid get a report, and the test rows choose
nothing (tuning sees only the training rows)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend import evaluation
from tailor.recommend.catalog import Catalog
from tailor.recommend.evaluation import Splits, evaluate_recommenders, latest_times
from tailor.recommend.hybrid import Hybrid
from tailor.recommend.interactions import InteractionLog

MODELS = ("popularity", "ease", "itemknn")


def small_log(seed: int = 0) -> InteractionLog:
    """80 users × 40 items of two tastes, 10 distinct items each, at distinct times."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(80):
        base = 0 if user < 40 else 20
        users += [f"u{user:02d}"] * 10
        items += [f"i{base + n:02d}" for n in rng.choice(20, 10, replace=False)]
    times = 1_700_000_000_000 + rng.permutation(len(users)).astype(np.int64) * 3_600_000
    return InteractionLog.from_arrays(np.array(users), np.array(items), times=times)


def small_catalog(log: InteractionLog) -> Catalog:
    ids = log.item_ids
    table = pa.table(
        {
            "item_id": ids.astype(str),
            "category": [f"taste{int(i[1:]) // 20} > g{int(i[1:]) % 2}" for i in ids],
            "price": [1.0 + int(i[1:]) for i in ids],
        }
    )
    return Catalog.from_table(table, ids.astype(object))


def test_latest_times_keeps_the_latest_of_repeated_cells():
    log = InteractionLog.from_arrays(
        np.array(["a", "a", "b"]),
        np.array(["x", "x", "y"]),
        times=np.array([2, 5, 3]) * 86_400_000,
    )
    times = latest_times(log)
    assert times.shape == (2, 2) and times.nnz == 2
    assert times[0, 0] == 5.0 and times[1, 1] == 3.0
    assert latest_times(log, np.array([True, False, True]))[0, 0] == 2.0


def test_every_model_and_the_hybrid_are_reported_and_tuned_without_the_test_rows(monkeypatch):
    log = small_log()
    splits = Splits.make(log, "random", seed=42)
    training_rows = int(splits.train_rows.sum())
    test_cells = splits.test > 0
    tuned_on: list[tuple[int, int]] = []
    staged: list[tuple[sp.csr_matrix, ...]] = []
    real_tune, real_stages = evaluation.tune, Hybrid.fit_stages

    def spy_tune(build, top_k, grid, train, validation, **kwargs):
        tuned_on.append((train.nnz, validation.nnz))
        assert train.multiply(test_cells).nnz == 0 and validation.multiply(test_cells).nnz == 0
        return real_tune(build, top_k, grid, train, validation, **kwargs)

    def spy_stages(self, fit_part, held_back, full, **kwargs):
        staged.append((fit_part, held_back, full))
        return real_stages(self, fit_part, held_back, full, **kwargs)

    monkeypatch.setattr(evaluation, "tune", spy_tune)
    monkeypatch.setattr("tailor.recommend.tuning.tune", spy_tune)
    monkeypatch.setattr(Hybrid, "fit_stages", spy_stages)
    result = evaluate_recommenders(
        log, protocol="random", budget=1, models=MODELS, catalog=small_catalog(log)
    )
    assert set(result.reports) == {*MODELS, "hybrid", "blend"}
    for report in result.reports.values():
        assert 0.0 <= report.metrics["ndcg"] <= 1.0 and report.validation_ndcg is not None
    # Each model, the hybrid and the blend were tuned on fit part + validation: the training
    # rows (every cell is one interaction here), never the test.
    assert len(tuned_on) == len(MODELS) + 2
    assert all(fit + held == training_rows for fit, held in tuned_on)
    for fit_part, held_back, full in staged:
        for matrix in (fit_part, held_back, full):
            assert matrix.multiply(test_cells).nnz == 0
    # The final hybrid learns fit part → validation and serves from all training rows.
    assert staged[-1][2].nnz == training_rows
    assert "category_share" in result.fitted["hybrid"].feature_names_
    assert "days_since_category_last" in result.fitted["hybrid"].feature_names_
    # The blend's anchor is the generator that did best alone on validation.
    anchor = next(iter(result.reports["blend"].params["generators"]))
    alone = {n: result.reports[n].validation_ndcg for n in ("ease", "itemknn")}
    assert alone[anchor] == max(alone.values())


def test_a_catalog_of_other_items_is_refused():
    log = small_log()
    short = Catalog.from_table(pa.table({"item_id": ["a"]}), np.array(["a"], dtype=object))
    with pytest.raises(ValueError, match="catalog describes 1 items"):
        evaluate_recommenders(log, budget=1, models=MODELS, catalog=short)


def test_the_model_to_deploy_is_chosen_on_validation_not_on_test():
    def report(name, test_ndcg, validation_ndcg):
        return evaluation.ModelReport(name, {}, {"ndcg": test_ndcg}, 0.0, validation_ndcg)

    reports = {
        "ease": report("ease", 0.30, 0.21),
        "blend": report("blend", 0.35, 0.20),  # better on test, worse on validation
        "popularity": report("popularity", 0.10, None),
        "broken": report("broken", 0.05, float("nan")),
    }
    result = evaluation.Evaluation("random", 10, None, reports, {})  # type: ignore[arg-type]
    assert result.best == "blend"
    assert result.chosen == "ease"
    reports["blend"].validation_ndcg = 0.21  # a tie keeps the first
    assert result.chosen == "ease"
