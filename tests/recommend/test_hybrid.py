"""The LambdaMART hybrid learns from held-back interactions and serves its candidates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.catalog import Catalog
from tailor.recommend.hybrid import Hybrid

from .test_models import hold_back, two_tastes

GENERATORS = {"ease": {"l2": 10.0}, "itemknn": {"neighbors": 20, "shrink": 1.0}}


def test_hybrid_learns_and_recommends_within_the_users_taste():
    full = two_tastes(seed=1)
    fit_part, held = hold_back(full)
    model = Hybrid(generators=GENERATORS, candidates=10, trees=20).fit_stages(fit_part, held, full)
    assert model.feature_names_[:2] == ["ease_score", "ease_rank"]
    ids, scores = model.recommend(full, k=5, users=np.arange(60))
    assert ((ids[:30] < 20).mean() + (ids[30:] >= 20).mean()) / 2 > 0.9
    assert np.isfinite(scores).all()
    for user in range(60):
        assert not set(ids[user]) & set(full[user].indices)


def test_hybrid_needs_generators_and_two_parts():
    x = two_tastes()
    with pytest.raises(ValueError, match="generators must name"):
        Hybrid().fit_stages(x, x, x)
    with pytest.raises(ValueError, match="needs log= to fit"):
        Hybrid(generators=GENERATORS).fit(x)
    with pytest.raises(ValueError, match="generators: unknown model"):
        Hybrid(generators={"blend": {}}).fit_stages(x, x, x)
    with pytest.raises(ValueError, match="share their users × items shape"):
        Hybrid(generators=GENERATORS).fit_stages(x, x[:10], x)
    # A user of the first taste holds back an item of the other: never among 2 candidates.
    nothing = sp.csr_matrix((np.ones(1, np.float32), ([0], [39])), shape=x.shape)
    with pytest.raises(ValueError, match="nothing to learn from"):
        Hybrid(generators=GENERATORS, candidates=2).fit_stages(x, nothing, x)


def test_hybrid_saves_its_generators_and_ranker_in_one_file(tmp_path):
    from tailor.recommend import load_model

    full = two_tastes(seed=2)
    held = full.copy()
    held.data = (np.arange(held.nnz) % 4 == 0).astype(np.float32)
    held.eliminate_zeros()
    fit_part = full - held
    fit_part.eliminate_zeros()
    model = Hybrid(generators=GENERATORS, candidates=10, trees=10).fit_stages(fit_part, held, full)
    loaded = load_model(model.save(tmp_path / "hybrid.npz"))
    assert isinstance(loaded, Hybrid) and set(loaded.models_) == set(GENERATORS)
    users = np.arange(60)
    np.testing.assert_allclose(loaded.score(full, users), model.score(full, users), rtol=1e-5)


# --- context features: catalog and times ----------------------------------------------------


def planted_categories(seed: int = 0) -> tuple[sp.csr_matrix, Catalog, sp.csr_matrix]:
    """200 users × 300 items in 10 categories of 30. Each user has a favourite category and
    picks 8 of its items plus 4 items anywhere: too sparse for co-occurrence to pin the
    category down, while the share of history in the candidate's category does.

    Returns the interactions, the catalog and the latest-time matrix (epoch days)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, size = 200, 300, 30
    rows, cols = [], []
    for user in range(n_users):
        favourite = user % 10
        mine = rng.choice(size, 8, replace=False) + favourite * size
        anywhere = rng.choice(n_items, 4, replace=False)
        picks = np.unique(np.concatenate([mine, anywhere]))
        rows += [user] * len(picks)
        cols += list(picks)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    ids = np.array([f"i{n:03d}" for n in range(n_items)], dtype=object)
    category = [f"c{n // size} > s{n % 3}" for n in range(n_items)]
    price = [np.nan if n % 7 == 0 else 1.0 + n for n in range(n_items)]
    created = [None if n % 5 == 0 else 1_600_000_000_000 + n * 86_400_000 for n in range(n_items)]
    table = pa.table(
        {
            "item_id": ids,
            "category": category,
            "price": price,
            "created_at": pa.array(created, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    times = x.astype(np.float64)
    times.data = 19_000.0 + rng.random(times.nnz) * 100
    return x, Catalog.from_table(table, ids), times


def split_cells(x: sp.csr_matrix, share: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(kept, held): ``share`` of the cells of ``x`` held back at random."""
    rng = np.random.default_rng(seed)
    held = x.copy()
    held.data = (rng.random(held.nnz) < share).astype(held.dtype)
    held.eliminate_zeros()
    kept = x - held
    kept.eliminate_zeros()
    return sp.csr_matrix(kept), sp.csr_matrix(held)


def test_category_affinity_lifts_the_hybrid_where_it_decides():
    from tailor.evaluate import ranking_metrics

    x, catalog, _ = planted_categories()
    train, test = split_cells(x, 0.25, seed=1)
    fit_part, held = split_cells(train, 0.25, seed=2)
    params = dict(generators=GENERATORS, candidates=50, trees=100, leaves=7)
    users = np.arange(x.shape[0])
    ndcg = {}
    for label, context in (("plain", {}), ("catalog", {"catalog": catalog})):
        model = Hybrid(**params).fit_stages(fit_part, held, train, **context)
        top = model.recommend(train, k=10, users=users)[0]
        ndcg[label] = ranking_metrics(top, test, k=10).ndcg
    assert ndcg["catalog"] > ndcg["plain"] + 0.02, ndcg


def fitted_with_context(seed: int = 0) -> tuple[Hybrid, sp.csr_matrix, sp.csr_matrix]:
    x, catalog, times = planted_categories(seed)
    fit_part, held = split_cells(x, 0.25, seed=3)
    fit_times = times.multiply(fit_part > 0).tocsr()
    model = Hybrid(generators=GENERATORS, candidates=20, trees=10).fit_stages(
        fit_part, held, x, catalog=catalog, fit_part_times=fit_times, full_times=times
    )
    return model, x, times


def test_context_features_are_named_finite_or_nan_as_documented():
    model, x, times = fitted_with_context()
    names = model.feature_names_
    assert names[-7:] == [
        "item_log_price",
        "price_vs_user_median",
        "category_share",
        "category_path_share",
        "days_since_item_last_seen",
        "item_age_days",
        "days_since_category_last",
    ]
    users = np.arange(x.shape[0])
    features, rows, items = model._features(model.models_, x, users, times)
    assert features.shape == (len(rows), len(names))
    column = {name: features[:, n] for n, name in enumerate(names)}
    # Unknown price (every 7th item) and release date (every 5th) are missing, not zero.
    np.testing.assert_array_equal(np.isnan(column["item_log_price"]), items % 7 == 0)
    np.testing.assert_array_equal(np.isnan(column["item_age_days"]), items % 5 == 0)
    share = column["category_share"]
    assert np.isfinite(share).all() and ((share >= 0) & (share <= 1)).all()
    assert (column["category_path_share"] <= share + 1e-6).all()
    # Every user has times, so a category gap is NaN exactly when the user never touched it.
    gap = column["days_since_category_last"]
    np.testing.assert_array_equal(np.isnan(gap), share == 0)
    assert (gap[~np.isnan(gap)] >= 0).all()
    # An unseen user (-1) without times: every time feature is missing; the rest is known.
    unseen, _, _ = model._features(model.models_, x[:3], np.full(3, -1))
    for name in ("days_since_item_last_seen", "item_age_days", "days_since_category_last"):
        assert np.isnan(unseen[:, names.index(name)]).all()
    assert np.isfinite(unseen[:, names.index("category_share")]).all()
    # Stored times stand in for the user's own: the same scores without history_times.
    np.testing.assert_allclose(
        model.score(x[:5], users[:5]), model.score(x[:5], users[:5], history_times=times[:5])
    )


def test_context_arguments_are_checked():
    x, catalog, times = planted_categories()
    fit_part, held = split_cells(x, 0.25, seed=3)
    short = Catalog.from_table(pa.table({"item_id": ["a"]}), np.array(["a"], dtype=object))
    with pytest.raises(ValueError, match="catalog describes 1 items"):
        Hybrid(generators=GENERATORS).fit_stages(fit_part, held, x, catalog=short)
    with pytest.raises(ValueError, match="give both or neither"):
        Hybrid(generators=GENERATORS).fit_stages(fit_part, held, x, full_times=times)
    model = Hybrid(generators=GENERATORS, candidates=20, trees=5).fit_stages(
        fit_part, held, x, catalog=catalog
    )
    with pytest.raises(ValueError, match="history_times must have"):
        model.score(x[:2], history_times=times)


def test_context_features_survive_save_and_load(tmp_path):
    from tailor.recommend import load_model

    model, x, times = fitted_with_context(seed=4)
    loaded = load_model(model.save(tmp_path / "hybrid.npz"))
    assert loaded.feature_names_ == model.feature_names_
    users = np.concatenate([np.arange(40), [-1, -1]])
    history = x[np.maximum(users, 0)]
    np.testing.assert_allclose(loaded.score(history, users), model.score(history, users))
    np.testing.assert_allclose(
        loaded.score(history, users, history_times=times[np.maximum(users, 0)]),
        model.score(history, users, history_times=times[np.maximum(users, 0)]),
    )


# --- serving ---------------------------------------------------------------------------------


def test_a_served_hybrid_learns_from_the_latest_interactions_explains_and_forgets(tmp_path):
    from tailor.recommend.service import RecommendationService

    from .test_service import shop

    events, items = shop()
    params = {"generators": GENERATORS, "candidates": 10, "trees": 20}
    service = RecommendationService.build(events, items, model="hybrid", params=params)
    hybrid = service.model
    # The ranker learned how the latest fifth followed from the rest, with the catalog's and
    # the log's context, and the generators were then refitted on every interaction.
    assert isinstance(hybrid, Hybrid) and hybrid.uses_catalog_ and hybrid.uses_times_
    assert hybrid.models_["ease"].n_items_ == len(service.catalog)
    answer = service.recommend("t3", k=4)
    assert len(answer) == 4 and all(line.item_id.startswith("tea-") for line in answer)
    # Its scores are positive, so a new item's content score lands among them, not on top.
    assert all(line.score > 0 for line in answer)
    assert [line.item_id for line in answer][-1] == "tea-new"
    personal = [line for line in answer if line.kind == "because_you"]
    assert personal and {line.source for line in personal} <= set(GENERATORS)
    kept = service.with_candidates()
    assert [line.item_id for line in kept.recommend("t3", k=4)] == [a.item_id for a in answer]
    loaded = RecommendationService.load(kept.save(tmp_path / "hybrid-service"))
    assert [line.item_id for line in loaded.recommend("t3", k=4)] == [a.item_id for a in answer]
    forgotten = service.without_user("t3")
    assert forgotten.user_row("t3") == -1
    assert all(line.kind != "because_you" for line in forgotten.recommend("t3", k=5))


def test_a_hybrid_refuses_to_serve_from_too_few_interactions():
    from tailor.recommend.interactions import InteractionLog
    from tailor.recommend.service import RecommendationService

    from .test_service import shop

    events, items = shop()
    first = events.slice(0, 1)  # one interaction: nothing left to hold back
    with pytest.raises(
        ValueError, match=r"too few interactions for the hybrid \(0 to fit .*, 1 held back\)"
    ):
        RecommendationService.build(first, items, model="hybrid", params={"generators": GENERATORS})
    log = InteractionLog.from_events(events)
    with pytest.raises(ValueError, match="train_rows must mark each"):
        Hybrid(generators=GENERATORS).fit_split(log, np.ones(3, bool))
