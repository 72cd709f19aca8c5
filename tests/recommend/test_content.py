"""Content similarity: new items reach the users whose history looks like them, blocks weigh
as documented, the fast path matches the NumPy definition, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.base import load_model
from tailor.recommend.catalog import Catalog
from tailor.recommend.models import EASE
from tailor.recommend.models.content import ContentSimilarity, reference_scores

# title, description, category, brand, price
ITEMS = [
    ("Chef knife", "sharp steel kitchen knife for chopping", "Home > Kitchen > Knives", "Acme", 30),
    ("Paring knife", "small sharp kitchen knife", "Home > Kitchen > Knives", "Acme", 15),
    ("Santoku knife", "japanese steel kitchen knife", "Home > Kitchen > Knives", "Acme", 45),
    ("Frying pan", "nonstick pan for cooking eggs", "Home > Kitchen > Cookware", "Panco", 40),
    ("Saucepan", "steel pan for sauces and cooking", "Home > Kitchen > Cookware", "Panco", 35),
    ("Running shoes", "light trainers for road running", "Sports > Running > Shoes", "Swift", 90),
    ("Trail shoes", "grippy trainers for trail running", "Sports > Running > Shoes", "Swift", 110),
    ("Running shorts", "breathable shorts for running", "Sports > Running > Apparel", "Swift", 25),
    ("Yoga mat", "thick mat for yoga", "Sports > Yoga", "Zen", 20),
    ("Bread knife", "serrated kitchen knife for bread", "Home > Kitchen > Knives", "Acme", 25),
    (None, None, None, None, None),  # nothing known at all
    ("Racing shoes", "lightweight road running trainers", "Sports > Running > Shoes", "Swift", 120),
]
NEW_KNIFE, BLANK, NEW_SHOES = 9, 10, 11
IDS = np.array([f"i{n:02d}" for n in range(len(ITEMS))], dtype=object)


def catalog() -> Catalog:
    columns = list(zip(*ITEMS, strict=True))
    rows = pa.table(
        {
            "item_id": pa.array(IDS.tolist()),
            "title": pa.array(columns[0], pa.string()),
            "description": pa.array(columns[1], pa.string()),
            "category": pa.array(columns[2], pa.string()),
            "brand": pa.array(columns[3], pa.string()),
            "price": pa.array(columns[4], pa.float64()),
        }
    )
    return Catalog.from_table(rows, IDS)


def interactions(seed: int = 0) -> sp.csr_matrix:
    """20 users: 0-9 cook (items 0-4), 10-19 run (items 5-8); items 9-11 have no events."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(20):
        pool = np.arange(0, 5) if user < 10 else np.arange(5, 9)
        for item in rng.choice(pool, size=2, replace=False):
            rows.append(user)
            cols.append(item)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(20, len(ITEMS)))


def fitted(**params) -> ContentSimilarity:
    return ContentSimilarity(**params).fit(interactions(), catalog=catalog())


def test_a_new_item_reaches_users_with_similar_taste_where_ease_cannot():
    x = interactions()
    assert x[:, [NEW_KNIFE, NEW_SHOES]].nnz == 0
    content = fitted()
    ease = EASE(l2=1.0).fit(x)
    knife_fan = sp.csr_matrix(np.eye(len(ITEMS), dtype=np.float32)[[0, 1]].sum(0, keepdims=True))
    runner = sp.csr_matrix(np.eye(len(ITEMS), dtype=np.float32)[[5, 7]].sum(0, keepdims=True))

    ids, _ = content.recommend(sp.vstack([knife_fan, runner]), k=2)
    assert NEW_KNIFE in ids[0] and NEW_SHOES in ids[1]
    assert NEW_SHOES not in ids[0] and NEW_KNIFE not in ids[1]

    # EASE learns from co-occurrence only: a column nobody touched scores 0 for everyone.
    ease_scores = ease.score(x)
    assert np.all(ease_scores[:, [NEW_KNIFE, NEW_SHOES]] == 0)
    ease_ids, _ = ease.recommend(sp.vstack([knife_fan, runner]), k=2)
    assert not np.isin(ease_ids, [NEW_KNIFE, NEW_SHOES]).any()


def test_scores_match_the_numpy_definition():
    model = fitted()
    x = interactions()
    x[0, 3] = 5.0  # confidence weights the history
    expected = reference_scores(x.toarray(), model.item_features_.toarray())
    np.testing.assert_allclose(model.score(x), expected, rtol=1e-5, atol=1e-6)


def test_category_tokens_share_each_prefix_level():
    model = fitted(text_weight=0, brand_weight=0, price_weight=0)
    sim = model.item_similarity(np.array([0]), np.array([1, 3, 5]))
    # Knives vs knives: all three levels; knives vs cookware: Home, Home > Kitchen of three.
    np.testing.assert_allclose(sim, [[1.0, 2 / 3, 0.0]], atol=1e-6)


def test_labels_mode_treats_levels_as_a_set():
    rows = pa.table(
        {"item_id": ["a", "b"], "category": ["Action > Comedy", "Comedy"]},
    )
    cat = Catalog.from_table(rows)
    x = sp.csr_matrix(np.ones((1, 2), np.float32))
    only_category = {"text_weight": 0, "brand_weight": 0, "price_weight": 0}
    path = ContentSimilarity(**only_category).fit(x, catalog=cat)
    labels = ContentSimilarity(**only_category, category_as="labels").fit(x, catalog=cat)
    assert path.item_similarity(np.array([0]), np.array([1]))[0, 0] == 0
    np.testing.assert_allclose(
        labels.item_similarity(np.array([0]), np.array([1])), [[1 / np.sqrt(2)]], atol=1e-6
    )


def test_price_bands_are_quantiles_of_known_prices():
    model = fitted(text_weight=0, category_weight=0, brand_weight=0, price_bands=2)
    # Known prices 15..120, median 35: items at 30 and 15 share the lower band, 90 the upper.
    np.testing.assert_allclose(model.price_edges_, [35.0])
    sim = model.item_similarity(np.array([0]), np.array([1, 5, BLANK]))
    np.testing.assert_allclose(sim, [[1.0, 0.0, 0.0]], atol=1e-6)


def test_block_weights_mix_as_documented():
    brand_only = fitted(text_weight=0, category_weight=0, price_weight=0)
    cat_only = fitted(text_weight=0, brand_weight=0, price_weight=0)
    mixed = fitted(text_weight=0, price_weight=0, category_weight=1.0, brand_weight=2.0)
    pairs = (np.array([0, 0, 3]), np.array([3, 5, 4]))
    for source, target in zip(*pairs, strict=True):
        s, t = np.array([source]), np.array([target])
        expected = (
            1.0 * cat_only.item_similarity(s, t) + 4.0 * brand_only.item_similarity(s, t)
        ) / 5.0
        np.testing.assert_allclose(mixed.item_similarity(s, t), expected, atol=1e-6)


def test_an_item_without_any_attribute_scores_zero():
    model = fitted()
    assert model.item_features_[BLANK].nnz == 0
    scores = model.score(interactions())
    assert np.all(scores[:, BLANK] == 0) and np.isfinite(scores).all()
    assert np.all(model.item_similarity(np.array([BLANK]), np.arange(len(ITEMS))) == 0)
    ids, values = model.similar_items(np.array([BLANK]), k=3)
    assert (ids == -1).all() and np.isneginf(values).all()


def test_no_text_at_all_still_fits_on_the_other_blocks():
    rows = pa.table({"item_id": ["a", "b", "c"], "brand": ["X", "X", "Y"], "title": ["", "", ""]})
    model = ContentSimilarity().fit(
        sp.csr_matrix(np.ones((1, 3), np.float32)), catalog=Catalog.from_table(rows)
    )
    np.testing.assert_allclose(
        model.item_similarity(np.array([0]), np.array([1, 2])), [[1.0, 0.0]], atol=1e-6
    )


def test_similar_items_exclude_the_item_itself_and_exclusions():
    model = fitted()
    ids, scores = model.similar_items(np.array([0, 5]), k=3)
    assert 0 not in ids[0] and 5 not in ids[1]
    assert set(ids[0]) <= {1, 2, NEW_KNIFE} and set(ids[1]) <= {6, 7, NEW_SHOES}
    assert (np.diff(scores, axis=1) <= 0).all()
    expected = model.item_similarity(np.array([0]), ids[0])[0]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)

    ids, _ = model.similar_items(np.array([0]), k=3, exclude_items=np.array([NEW_KNIFE]))
    assert NEW_KNIFE not in ids[0]
    mask = np.zeros(len(ITEMS), bool)
    mask[[1, 2]] = True
    ids, _ = model.similar_items(np.array([0]), k=2, exclude_items=mask)
    assert not np.isin(ids, [1, 2]).any()


def test_save_and_load_give_the_same_results(tmp_path):
    model = fitted()
    loaded = load_model(model.to_bytes())
    assert isinstance(loaded, ContentSimilarity) and loaded.get_params() == model.get_params()
    x = interactions()
    np.testing.assert_array_equal(loaded.score(x), model.score(x))
    for a, b in zip(
        loaded.similar_items(np.arange(5), k=4), model.similar_items(np.arange(5), k=4), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        load_model(model.save(tmp_path / "c.npz")).score(x), model.score(x)
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"category_as": "labels", "stop_words": False}, {"text_weight": 0}, {"price_weight": 0}],
)
def test_encode_gives_the_fitted_rows_back(params):
    model = fitted(**params)
    rows = model.encode(catalog(), np.arange(len(ITEMS)))
    assert rows.shape == model.item_features_.shape
    np.testing.assert_allclose(rows.toarray(), model.item_features_.toarray(), atol=1e-6)


def test_with_items_encodes_only_the_items_touched():
    model = fitted()
    # The shop adds a knife and changes the running shorts' price; nothing else moves.
    rows = pa.table(
        {
            "item_id": [*IDS.tolist(), "i12"],
            "title": [*(t for t, *_ in ITEMS), "Utility knife with zircon blade"],
            "description": [*(d for _, d, *_ in ITEMS), "sharp kitchen knife"],
            "category": [*(c for _, _, c, *_ in ITEMS), "Home > Kitchen > Knives"],
            "brand": [*(b for *_, b, _ in ITEMS), "Acme"],
            "price": [*(p for *_, p in ITEMS), 20.0],
        }
    )
    ids = np.array([*IDS.tolist(), "i12"], dtype=object)
    grown = Catalog.from_table(rows, ids)
    grown.price[7] = 95.0
    changed = np.array([7, 12])
    updated = model.with_items(grown, changed)
    assert updated.n_items_ == 13 and updated.item_features_.shape[0] == 13
    assert model.n_items_ == 12 and model.item_features_.shape[0] == 12  # a copy
    np.testing.assert_allclose(
        updated.item_features_[changed].toarray(), model.encode(grown, changed).toarray()
    )
    untouched = np.setdiff1d(np.arange(12), changed)
    assert (updated.item_features_[untouched] != model.item_features_[untouched]).nnz == 0
    # The new knife is like the knives at once ("zircon" and "utility", unseen words, wait
    # for the next fit); the shorts now sit in the shoes' price band.
    similarity = updated.item_similarity(np.array([12]), np.array([0, 5]))[0]
    assert similarity[0] > 0.5 > similarity[1]
    assert (
        updated.item_similarity(np.array([7]), np.array([5]))[0, 0]
        > model.item_similarity(np.array([7]), np.array([5]))[0, 0]
    )
    vocabulary = set(updated.text_vocabulary_.tolist())
    assert "knife" in vocabulary and "zircon" not in vocabulary


def test_a_model_saved_without_its_vocabulary_is_refitted_not_encoded():
    model = fitted()
    loaded = load_model(model.to_bytes())
    assert loaded.keeps_vocabulary  # the encoders are saved with the model
    np.testing.assert_allclose(
        loaded.encode(catalog(), np.arange(3)).toarray(),
        model.item_features_[:3].toarray(),
        atol=1e-6,
    )
    for name in ("text_vocabulary_", "text_idf_"):
        delattr(loaded, name)
    assert not loaded.keeps_vocabulary
    with pytest.raises(ValueError, match="refit it"):
        loaded.encode(catalog(), np.arange(3))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"text_weight": -1.0}, "text_weight must be a finite number >= 0"),
        ({"price_weight": float("nan")}, "price_weight must be a finite number >= 0"),
        (
            {"text_weight": 0, "category_weight": 0, "brand_weight": 0, "price_weight": 0},
            "at least one of text_weight",
        ),
        ({"price_bands": 0}, "price_bands must be an integer >= 1"),
        ({"price_bands": 2.5}, "price_bands must be an integer >= 1"),
        ({"min_df": 0}, "min_df must be an integer >= 1"),
        ({"max_features": 0}, "max_features must be >= 1"),
        ({"category_as": "tree"}, "category_as must be 'path' or 'labels'"),
    ],
)
def test_bad_hyperparameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        fitted(**params)


def test_fit_needs_a_matching_catalog():
    with pytest.raises(ValueError, match="needs catalog="):
        ContentSimilarity().fit(interactions())
    with pytest.raises(ValueError, match="catalog has 12 items"):
        ContentSimilarity().fit(interactions()[:, :5], catalog=catalog())


def test_bad_item_codes_and_k_are_refused():
    model = fitted()
    with pytest.raises(ValueError, match=r"item code 12 is outside 0\.\.11"):
        model.similar_items(np.array([12]), k=2)
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.similar_items(np.array([0]), k=0)
    with pytest.raises(ValueError, match="targets must be a 1-D array of item codes"):
        model.item_similarity(np.array([0]), np.array([0.5]))
    with pytest.raises(ValueError, match=r"sources must hold item codes .*item code -1"):
        model.item_similarity(np.array([-1]), np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        ContentSimilarity().item_similarity(np.array([0]), np.array([0]))
