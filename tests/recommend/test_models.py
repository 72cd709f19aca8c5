"""Candidate models: they find planted structure, respect exclusions, agree with plain
NumPy references, survive save/load, and refuse bad input with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tailor.recommend import MODELS, load_model
from tailor.recommend.base import top_k
from tailor.recommend.models import ALS, EASE, ItemKNN

# Models that learn from the matrix alone; content and trending (which also need the catalog
# or the log) have their own test files.
MATRIX_ONLY = [name for name, model in MODELS.items() if not model.needs]

FAST = {
    "popularity": {},
    "itemknn": {"neighbors": 20, "shrink": 1.0},
    "ease": {"l2": 10.0},
    "als": {"factors": 8, "iterations": 10, "regularization": 0.1},
    "bpr": {"factors": 8, "iterations": 200, "learning_rate": 0.05},
}


def two_tastes(seed: int = 0) -> sp.csr_matrix:
    """60 users × 40 items: users 0-29 only touch items 0-19, users 30-59 only items 20-39;
    each user touches 8 of their group's items. Items 0 and 20 are the most popular."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(60):
        base = 0 if user < 30 else 20
        picks = rng.choice(np.arange(1, 20), size=7, replace=False)
        for item in [0, *picks]:
            rows.append(user)
            cols.append(base + item)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 40))


def hold_back(full: sp.csr_matrix, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(fit part, held-back part): about a quarter of ``full``'s cells held back at random."""
    held = full.copy()
    held.data = (np.random.default_rng(seed).random(held.nnz) < 0.25).astype(np.float32)
    held.eliminate_zeros()
    fit_part = full - held
    fit_part.eliminate_zeros()
    return fit_part, held


@pytest.mark.parametrize("name", [n for n in MATRIX_ONLY if n != "popularity"])
def test_personal_models_recommend_within_the_users_taste(name):
    x = two_tastes()
    model = MODELS[name](**FAST[name]).fit(x)
    ids, _ = model.recommend(x, k=5, users=np.arange(60))
    group_a = ids[:30] < 20
    group_b = ids[30:] >= 20
    share = (group_a.sum() + group_b.sum()) / ids.size
    assert share > 0.9, f"{name}: only {share:.0%} of recommendations match the user's taste"


def test_popularity_ranks_by_distinct_users():
    x = two_tastes()
    ids, scores = MODELS["popularity"]().fit(x).recommend(sp.csr_matrix((1, 40)), k=2)
    assert set(ids[0]) == {0, 20}
    assert scores[0, 0] == 30


@pytest.mark.parametrize("name", MATRIX_ONLY)
def test_seen_and_excluded_items_never_appear(name):
    x = two_tastes()
    model = MODELS[name](**FAST[name]).fit(x)
    unavailable = np.zeros(40, bool)
    unavailable[[0, 20, 5]] = True
    ids, _ = model.recommend(x, k=10, users=np.arange(60), exclude_items=unavailable)
    assert not np.isin(ids, [0, 20, 5]).any()
    for user in range(60):
        assert not set(ids[user]) & set(x[user].indices)


def test_short_lists_are_padded():
    x = two_tastes()
    ids, scores = EASE(l2=10.0).fit(x).recommend(x[:1], k=40)
    eligible = 40 - x[0].nnz
    assert (ids[0, :eligible] >= 0).all() and (ids[0, eligible:] == -1).all()
    assert np.isneginf(scores[0, eligible:]).all()


@pytest.mark.parametrize("name", MATRIX_ONLY)
def test_save_and_load_give_the_same_scores(name, tmp_path):
    x = two_tastes()
    model = MODELS[name](**FAST[name]).fit(x)
    path = model.save(tmp_path / f"{name}.npz")
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users = np.arange(60)
    np.testing.assert_allclose(loaded.score(x, users), model.score(x, users), rtol=1e-6)


def test_ease_matches_the_closed_form_in_plain_numpy():
    x = two_tastes()
    dense = x.toarray().astype(np.float64)
    l2 = 7.0
    precision = np.linalg.inv(dense.T @ dense + l2 * np.eye(40))
    reference = np.eye(40) - precision / np.diag(precision)  # Steck 2019, eq. 8
    np.testing.assert_allclose(EASE(l2=l2).fit(x).weights_, reference, atol=1e-5)


def test_itemknn_matches_a_dense_shrunk_cosine():
    x = two_tastes()
    dense = x.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    reference = dense.T @ dense / (np.outer(norms, norms) + 3.0)
    np.fill_diagonal(reference, 0.0)
    model = ItemKNN(neighbors=39, shrink=3.0).fit(x)
    np.testing.assert_allclose(model.similarity_.toarray(), reference, atol=1e-5)
    kept = ItemKNN(neighbors=2, shrink=3.0).fit(x).similarity_
    assert (np.diff(kept.tocsc().indptr) <= 2).all()


def test_als_fold_in_of_a_training_user_matches_its_factors():
    x = two_tastes()
    model = ALS(factors=8, iterations=30, regularization=0.1).fit(x)
    learned = model.score(x[:5], np.arange(5))
    folded = model.score(x[:5])  # no user index: the user step is solved from the history
    for row in range(5):
        assert np.corrcoef(learned[row], folded[row])[0, 1] > 0.99


def test_a_new_user_is_scored_from_their_events_without_retraining():
    x = two_tastes()
    newcomer = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 0], [21, 22, 23])), shape=(1, 40))
    for name in ("itemknn", "ease", "als", "bpr"):
        ids, _ = MODELS[name](**FAST[name]).fit(x).recommend(newcomer, k=5)
        assert (ids[0] >= 20).mean() >= 0.8, name


def test_top_k_orders_and_pads():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, -np.inf, 1.0]], np.float32)
    ids, values = top_k(scores, 3)
    assert ids.tolist() == [[1, 3, 0], [3, -1, -1]]
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.1])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EASE(l2=0.0), "l2 must be > 0"),
        (lambda: ItemKNN(neighbors=0), "neighbors must be at least 1"),
        (lambda: ItemKNN(weighting="idf"), "weighting must be none, bm25 or tfidf"),
        (lambda: ALS(alpha=0.0), "alpha > 0"),
        (lambda: MODELS["popularity"](by="clicks"), "by must be 'users' or 'confidence'"),
    ],
)
def test_bad_hyperparameters_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build().fit(two_tastes())


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="negative confidence"):
        EASE().fit(sp.csr_matrix(np.array([[1.0, -1.0]], np.float32)))
    with pytest.raises(ValueError, match="empty"):
        EASE().fit(sp.csr_matrix((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"scipy\.sparse"):
        EASE().fit(np.ones((2, 2)))
    model = EASE(l2=10.0).fit(two_tastes())
    with pytest.raises(ValueError, match="41 item columns; the model knows 40"):
        model.score(sp.csr_matrix((1, 41), dtype=np.float32))
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.recommend(two_tastes()[:1], k=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        EASE().score(two_tastes())


def test_load_refuses_an_unknown_model(tmp_path):
    path = EASE(l2=10.0).fit(two_tastes()).save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["__header__"] = np.asarray(str(arrays["__header__"]).replace('"ease"', '"magic"'))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="unknown model 'magic'"):
        load_model(tmp_path / "bad.npz")


@pytest.mark.parametrize("name", MATRIX_ONLY)
def test_a_user_without_events_gets_the_most_popular_then_personal(name):
    x = two_tastes()
    model = MODELS[name](**FAST[name]).fit(x)
    nobody = sp.csr_matrix((1, 40), dtype=np.float32)
    ids, _ = model.recommend(nobody, k=2, users=np.array([-1]))
    assert set(ids[0]) == {0, 20}  # the two items every user of each taste took
    first = sp.csr_matrix((np.ones(1, np.float32), ([0], [25])), shape=(1, 40))
    if name != "popularity":
        ids, _ = model.recommend(first, k=5, users=np.array([-1]))
        assert (ids[0] >= 20).mean() >= 0.6, name


@pytest.mark.parametrize("n_items", [40, 2000])  # one sort, or partition then sort
def test_top_k_of_one_row_matches_a_full_sort(n_items):
    rng = np.random.default_rng(3)
    row = rng.integers(0, 5, n_items).astype(np.float32)  # many ties
    row[rng.choice(n_items, n_items // 4, replace=False)] = -np.inf
    ids, values = top_k(row[None, :], 25)
    order = np.argsort(-row, kind="stable")[:25]  # the reference: best first, ties by code
    assert values[0].tolist() == row[order].tolist()
    assert row[ids[0]].tolist() == values[0].tolist() and len(set(ids[0].tolist())) == 25
    if n_items <= 512:  # the one-sort path keeps ties in code order
        assert ids[0].tolist() == order.tolist()
