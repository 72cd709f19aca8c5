"""Explanations: they name the history item that produced a recommendation (on planted
structure), use the caller's verbs and titles, delegate to a hybrid's best generator, and
fall back to "popular" where the model is not personal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.blend import Blend
from tailor.recommend.catalog import Catalog
from tailor.recommend.explain import KINDS, Explanation, explain
from tailor.recommend.hybrid import Hybrid
from tailor.recommend.interactions import InteractionLog
from tailor.recommend.models import ALS, BPR, EASE, MODELS, ItemKNN, Popularity

FAST = {
    "popularity": {},
    "itemknn": {"neighbors": 20, "shrink": 1.0},
    "ease": {"l2": 10.0},
    "als": {"factors": 8, "iterations": 10, "regularization": 0.1},
    "bpr": {"factors": 8, "iterations": 200, "learning_rate": 0.05},
}


def catalog_of(n: int, *, untitled: tuple[int, ...] = ()) -> Catalog:
    titles = ["" if j in untitled else f"Title {j}" for j in range(n)]
    return Catalog.from_table(
        pa.table({"item_id": [f"p{j:02d}" for j in range(n)], "title": titles})
    )


def pairs() -> sp.csr_matrix:
    """20 items in 10 pairs (2p, 2p+1); every user takes exactly one pair, pair p by 3 + p
    users, so items only ever co-occur with their twin and pair 9 is the most popular."""
    rows, cols, user = [], [], 0
    for p in range(10):
        for _ in range(3 + p):
            rows += [user, user]
            cols += [2 * p, 2 * p + 1]
            user += 1
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(user, 20))


def two_tastes(picks: int = 7, seed: int = 0) -> sp.csr_matrix:
    """60 users × 40 items: users 0-29 only touch items 0-19, users 30-59 only items 20-39;
    each user takes item 0 (or 20) and ``picks`` other items of their group."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(60):
        base = 0 if user < 30 else 20
        for item in [0, *rng.choice(np.arange(1, 20), size=picks, replace=False)]:
            rows.append(user)
            cols.append(base + item)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 40))


# --- item-based models -----------------------------------------------------------------------


def test_itemknn_names_the_twin_in_the_history_with_the_callers_verbs():
    model = ItemKNN(shrink=1.0).fit(pairs())
    catalog = catalog_of(20, untitled=(10,))
    found = explain(
        model, np.array([0, 10]), np.array([1, 11]), catalog, verbs=["bought", "added to cart"]
    )
    assert found == [
        Explanation("because_you", "Because you bought Title 0", "p00", "itemknn"),
        # Item 10 has no title: the id stands in.
        Explanation("because_you", "Because you added to cart p10", "p10", "itemknn"),
    ]


def test_the_default_verb_and_co_purchase_wording():
    model = ItemKNN(shrink=1.0).fit(pairs())
    catalog = catalog_of(20)
    (plain,) = explain(model, np.array([4, 0]), np.array([1]), catalog)
    assert plain.text == "Because you interacted with Title 0"
    (bought,) = explain(model, np.array([4, 0]), np.array([1]), catalog, bought_together=True)
    assert (bought.kind, bought.text, bought.evidence_item) == (
        "often_bought_with",
        "Often bought with Title 0",
        "p00",
    )


@pytest.mark.parametrize("name", ["itemknn", "ease", "als", "bpr"])
def test_the_evidence_comes_from_the_same_taste(name):
    model = MODELS[name](**FAST[name]).fit(two_tastes(picks=12))
    history = np.array([1, 2, 21, 22])
    targets = np.setdiff1d(np.arange(40), history)
    found = explain(model, history, targets, catalog_of(40))
    taste = {"p01": 0, "p02": 0, "p21": 1, "p22": 1}
    pairs_ = zip(targets, found, strict=True)
    named = [(int(t >= 20), taste[e.evidence_item]) for t, e in pairs_ if e.evidence_item]
    # Never an item of the other taste; a link that is not positive explains nothing, which
    # EASE's signed weights allow for a few items.
    assert all(e.kind in ("because_you", "popular") and e.source == name for e in found)
    assert all(target_taste == evidence_taste for target_taste, evidence_taste in named)
    assert len(named) >= 0.8 * len(targets)


def test_without_history_an_item_based_model_says_popular():
    model = ItemKNN(shrink=1.0).fit(pairs())
    found = explain(model, np.array([], dtype=np.int64), np.array([18, 19]), catalog_of(20))
    assert {(e.kind, e.text, e.evidence_item) for e in found} == {
        ("popular", "Popular right now", None)
    }


def test_an_item_unrelated_to_the_history_is_not_pinned_on_it():
    # Item 18 never co-occurs with item 0: a zero link explains nothing.
    model = ItemKNN(shrink=1.0).fit(pairs())
    (found,) = explain(model, np.array([0]), np.array([18]), catalog_of(20))
    assert found.kind == "popular" and found.evidence_item is None


def test_content_similarity_says_similar_to():
    from tailor.recommend.models.content import ContentSimilarity

    catalog = Catalog.from_table(
        pa.table(
            {
                "item_id": ["mug-red", "mug-blue", "hose", "rake"],
                "title": ["Red coffee mug", "Blue coffee mug", "Garden hose", "Garden rake"],
                "category": ["Kitchen > Mugs", "Kitchen > Mugs", "Garden", "Garden"],
            }
        )
    )
    x = sp.csr_matrix(np.eye(4, dtype=np.float32))
    model = ContentSimilarity().fit(x, catalog=catalog)
    history = catalog.codes(["hose", "mug-red"])  # the catalog orders items by id
    found = explain(
        model, history, catalog.codes(["mug-blue", "rake"]), catalog, verbs=["bought", "viewed"]
    )
    assert [(e.kind, e.text, e.evidence_item) for e in found] == [
        ("similar_content", "Similar to Red coffee mug you viewed", "mug-red"),
        ("similar_content", "Similar to Garden hose you bought", "hose"),
    ]


# --- popularity, trending and the hybrid -----------------------------------------------------


def test_popularity_says_popular():
    model = Popularity().fit(pairs())
    found = explain(model, np.array([0]), np.array([18, 1]), catalog_of(20))
    assert found == [Explanation("popular", "Popular right now", None, "popularity")] * 2


def test_trending_names_the_context_where_the_item_is_popular():
    from tailor.recommend.models.trending import Trending

    items = ["p00"] * 20 + ["p01"] * 5 + ["p03"] * 10 + ["p00"] * 2
    country = ["US"] * 25 + ["DE"] * 12
    log = InteractionLog.from_arrays(
        np.array([f"u{j}" for j in range(len(items))]),
        np.array(items),
        item_ids=np.array([f"p{j:02d}" for j in range(5)]),
        context={"country": np.array(country, dtype=object)},
    )
    model = Trending(shrinkage=1.0).fit(log.matrix(), log=log)
    catalog = catalog_of(5)
    found = explain(
        model, np.array([], dtype=np.int64), np.array([3, 0]), catalog, context={"country": "DE"}
    )
    assert [(e.kind, e.text) for e in found] == [
        ("popular_in", "Popular in DE this week"),
        ("popular", "Popular right now"),  # item 0 is less popular in DE than overall
    ]
    # Without a context there is nothing to be popular in.
    assert explain(model, np.array([], dtype=np.int64), np.array([3]), catalog)[0].kind == "popular"


def test_a_hybrid_explains_each_item_with_the_generator_that_ranked_it_best():
    x = pairs()
    hybrid = Hybrid(generators={"itemknn": {"shrink": 1.0}, "popularity": {}})
    # Only models_ matters to explanations; fitting the LightGBM ranker is not needed here.
    hybrid.models_ = {"itemknn": ItemKNN(shrink=1.0).fit(x), "popularity": Popularity().fit(x)}
    catalog = catalog_of(20)
    # For a user who took item 0, itemknn ranks item 1 first; popularity ranks pair 9 first.
    found = explain(hybrid, np.array([0]), np.array([1, 18]), catalog, verbs=["viewed"])
    assert found == [
        Explanation("because_you", "Because you viewed Title 0", "p00", "itemknn"),
        Explanation("popular", "Popular right now", None, "popularity"),
    ]
    # bought_together may name a generator of the hybrid.
    (first, _) = explain(
        hybrid, np.array([0]), np.array([1, 18]), catalog, bought_together={"itemknn"}
    )
    assert first.text == "Often bought with Title 0"


def test_a_blend_explains_every_item_by_its_anchors_links_as_one_model():
    x = pairs()
    # Popularity first would rank item 18 best; the blend still explains by the first
    # generator that relates items (itemknn), under its own name.
    blend = Blend(generators={"popularity": {}, "itemknn": {"shrink": 1.0}}).fit(x)
    catalog = catalog_of(20)
    found = explain(blend, np.array([0]), np.array([1, 18]), catalog, verbs=["viewed"])
    alone = explain(blend.models_["itemknn"], np.array([0]), np.array([1, 18]), catalog)
    assert [e.evidence_item for e in found] == [e.evidence_item for e in alone]
    assert found[0] == Explanation("because_you", "Because you viewed Title 0", "p00", "blend")
    assert {e.source for e in found} == {"blend"}


@pytest.mark.parametrize("name", list(FAST))
def test_every_recommended_item_gets_a_text(name):
    x = two_tastes()
    model = MODELS[name](**FAST[name]).fit(x)
    ids, _ = model.recommend(x[7], k=10, users=np.array([7]))
    found = explain(model, x[7].indices, ids[0], catalog_of(40))
    assert len(found) == 10
    assert all(e.text.strip() and e.kind in KINDS and e.source == name for e in found)


# --- item_similarity -------------------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))


def test_item_similarity_reads_each_models_own_weights():
    x = two_tastes()
    sources, targets = np.array([0, 3, 25]), np.array([1, 3, 30, 39])
    knn = ItemKNN(**FAST["itemknn"]).fit(x)
    np.testing.assert_allclose(
        knn.item_similarity(sources, targets), knn.similarity_.toarray()[np.ix_(sources, targets)]
    )
    ease = EASE(l2=10.0).fit(x)
    np.testing.assert_allclose(
        ease.item_similarity(sources, targets), ease.weights_[np.ix_(sources, targets)]
    )
    als = ALS(**FAST["als"]).fit(x)
    f = als.item_factors_
    np.testing.assert_allclose(
        als.item_similarity(sources, targets), cosine(f[sources], f[targets]), rtol=1e-4
    )
    assert Popularity().fit(x).item_similarity(sources, targets) is None


def test_bpr_similarity_leaves_out_the_bias_column():
    bpr = BPR(**FAST["bpr"]).fit(two_tastes())
    f = bpr.item_factors_
    assert f.shape[1] == FAST["bpr"]["factors"] + 1
    sources, targets = np.array([0, 5]), np.array([1, 20])
    np.testing.assert_allclose(
        bpr.item_similarity(sources, targets),
        cosine(f[sources, :-1], f[targets, :-1]),
        rtol=1e-4,
        atol=1e-6,
    )


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "recommended", "verbs", "message"),
    [
        ([0, 1], [2], ["viewed"], "verbs must give one verb per history item"),
        ([0], [2, -1], None, "drop the -1 padding first"),
        ([0], [2, 20], None, r"recommended must hold item codes in \[0, 20\)"),
        ([0.5], [2], None, "history_items must be a 1-D array of item codes"),
        ([[0]], [2], None, "history_items must be a 1-D array"),
    ],
)
def test_bad_input_is_refused(history, recommended, verbs, message):
    model = ItemKNN(shrink=1.0).fit(pairs())
    with pytest.raises(ValueError, match=message):
        explain(model, np.array(history), np.array(recommended), catalog_of(20), verbs=verbs)


@pytest.mark.parametrize("model", [ItemKNN(shrink=1.0), EASE(l2=10.0), ALS(factors=4)])
def test_item_similarity_refuses_codes_outside_the_catalog(model):
    model.fit(pairs())
    with pytest.raises(ValueError, match="drop the -1 padding first"):
        model.item_similarity(np.array([-1]), np.array([0]))
