"""Business rules: ineligible items never show, purchases and impressions are respected,
filters match whole category levels, boosts and diversity change the order as documented,
and bad configurations are refused with the field named."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from tailor.recommend.catalog import Catalog
from tailor.recommend.models import Popularity
from tailor.recommend.rules import (
    Boost,
    BusinessRules,
    apply_rules,
    removes_only_unavailable_and_bought,
)

CATEGORIES = [
    "Home > Kitchen",  # 0
    "Home > Kitchen",  # 1
    "Home > Bath",  # 2
    "Toys",  # 3
    "Toys > Puzzles",  # 4
    "Grocery > Coffee",  # 5
    "Homeware",  # 6
    "",  # 7: no category
]
BRANDS = ["A", "A", "B", "B", "C", "C", "A", ""]


def make_catalog(available: list[bool] | None = None, active: list[bool] | None = None) -> Catalog:
    n = len(CATEGORIES)
    return Catalog.from_table(
        pa.table(
            {
                "item_id": [f"i{j}" for j in range(n)],
                "title": [f"Item {j}" for j in range(n)],
                "category": CATEGORIES,
                "brand": BRANDS,
                "available": available or [True] * n,
                "active": active or [True] * n,
            }
        )
    )


def descending(n_rows: int = 1) -> np.ndarray:
    """Scores 8, 7, …, 1: item 0 best, plain order is 0, 1, 2, …"""
    return np.tile(np.arange(8, 0, -1, dtype=np.float32), (n_rows, 1))


def ranked(scores: np.ndarray, **kwargs) -> list[int]:
    ids, _ = apply_rules(scores, catalog=kwargs.pop("catalog", make_catalog()), **kwargs)
    return [int(i) for i in ids[0] if i >= 0]


# --- eligibility -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        BusinessRules(),
        BusinessRules(boosts=(Boost(1000.0, item_ids=("i0", "i1")),)),
        BusinessRules(diversity="mmr", mmr_lambda=0.2),
        BusinessRules(diversity="category_cap", max_per_category=1),
    ],
    ids=["plain", "boosted", "mmr", "category_cap"],
)
def test_unavailable_and_inactive_items_never_appear(rules):
    catalog = make_catalog(available=[False] + [True] * 7, active=[True, False] + [True] * 6)
    # The two best-scored items are the ineligible ones, and k asks for the whole catalog.
    ids, scores = apply_rules(descending(2), catalog=catalog, rules=rules, k=8)
    assert not np.isin(ids, [0, 1]).any()
    assert (ids >= 0).sum(axis=1).max() <= 6
    assert np.isneginf(scores[ids < 0]).all()


def test_nan_scores_are_never_returned():
    scores = descending()
    scores[0, 0] = np.nan
    assert 0 not in ranked(scores, k=8)


# --- purchases and impressions ---------------------------------------------------------------


def test_purchased_items_are_excluded_unless_repurchasable():
    purchased = sp.csr_matrix(([1.0, 2.0], ([0, 0], [0, 5])), shape=(1, 8))
    plain = ranked(descending(), purchased=purchased, k=8)
    assert 0 not in plain and 5 not in plain
    consumables = BusinessRules(repurchasable_categories=("Grocery",))
    again = ranked(descending(), purchased=purchased, rules=consumables, k=8)
    assert 5 in again and 0 not in again
    anything = ranked(
        descending(), purchased=purchased, rules=BusinessRules(exclude_purchased=False), k=8
    )
    assert {0, 5} <= set(anything)
    # A dense mask (what a request over its few candidates passes) means the same.
    mask = purchased.toarray() > 0
    assert ranked(descending(), purchased=mask, k=8) == plain
    assert ranked(descending(), purchased=mask, rules=consumables, k=8) == again


def test_purchases_apply_to_their_own_row_only():
    purchased = sp.csr_matrix(([1.0], ([1], [0])), shape=(2, 8))
    ids, _ = apply_rules(descending(2), catalog=make_catalog(), purchased=purchased, k=1)
    assert ids[:, 0].tolist() == [0, 1]


def test_impression_cap_hides_items_shown_too_often_without_a_click():
    shown = sp.csr_matrix(([3.0, 2.0], ([0, 0], [0, 1])), shape=(1, 8))
    capped = ranked(
        descending(), unclicked_impressions=shown, rules=BusinessRules(impression_cap=3), k=3
    )
    assert capped == [1, 2, 3]
    uncapped = ranked(descending(), unclicked_impressions=shown, k=3)
    assert uncapped == [0, 1, 2]


# --- filters ---------------------------------------------------------------------------------


def test_include_categories_match_whole_levels():
    home = ranked(descending(), rules=BusinessRules(include_categories=("Home",)), k=8)
    assert home == [0, 1, 2]  # not "Homeware"


def test_exclude_categories_drop_the_subtree():
    rules = BusinessRules(exclude_categories=("Home > Kitchen", "Toys"))
    assert ranked(descending(), rules=rules, k=8) == [2, 5, 6, 7]


def test_request_filters_replace_the_configured_ones():
    rules = BusinessRules(include_categories=("Home",), exclude_categories=("Toys > Puzzles",))
    assert ranked(descending(), rules=rules, include_categories=["Toys"], k=8) == [3]
    everything = ranked(
        descending(), rules=rules, include_categories=[], exclude_categories=[], k=8
    )
    assert everything == list(range(8))


# --- boosts ----------------------------------------------------------------------------------


def test_a_boost_multiplies_the_normalized_score():
    # Scores 8..1 normalize to u = 0.001 + 0.999 (s - 1) / 7. Item 3 (s = 5, u ≈ 0.572)
    # doubled reaches ≈ 1.143 and overtakes item 0 (u = 1); at 1.4 (≈ 0.801) it passes
    # item 2 (u ≈ 0.715) but not item 1 (u ≈ 0.857).
    double = BusinessRules(boosts=(Boost(2.0, item_ids=("i3",)),))
    assert ranked(descending(), rules=double, k=4) == [3, 0, 1, 2]
    more = BusinessRules(boosts=(Boost(1.4, item_ids=("i3",)),))
    assert ranked(descending(), rules=more, k=4) == [0, 1, 3, 2]


def test_boosts_ignore_the_scale_and_offset_of_the_scores():
    rules = BusinessRules(boosts=(Boost(1.4, brand="B"),))
    plain = ranked(descending(), rules=rules, k=8)
    shifted = ranked(descending() * 1000.0 - 5000.0, rules=rules, k=8)
    assert plain == shifted
    assert plain.index(2) < plain.index(1)  # brand B's item 2 passes item 1


def test_a_factor_below_one_demotes_and_boosts_compound():
    # Home items 0-2 (u 1, 0.857, 0.715) fall to 0.3, 0.257, 0.214: below item 4 (0.429),
    # item 0 just above item 5 (0.286). "Homeware" (6) is not under "Home".
    demote = BusinessRules(boosts=(Boost(0.3, category="Home"),))
    assert ranked(descending(), rules=demote, k=8) == [3, 4, 0, 5, 1, 2, 6, 7]
    # Both boosts match item 3 and compound to 1.69: u ≈ 0.967, below item 0 (u = 1); item 2
    # gets one (≈ 0.929) and passes item 1 (≈ 0.857).
    both = BusinessRules(boosts=(Boost(1.3, brand="B", category="Toys"), Boost(1.3, brand="B")))
    assert ranked(descending(), rules=both, k=4) == [0, 3, 2, 1]


def test_a_boost_needs_every_condition_to_match():
    # Brand A in Home: items 0 and 1 match; item 6 is brand A but in "Homeware".
    rules = BusinessRules(boosts=(Boost(0.01, brand="A", category="Home"),))
    order = ranked(descending(), rules=rules, k=8)
    assert order[-3:] == [0, 1, 7]  # item 7 was last already (u = 0.001)


# --- diversity -------------------------------------------------------------------------------


def test_category_cap_limits_items_per_category():
    rules = BusinessRules(diversity="category_cap", max_per_category=1)
    order = ranked(descending(), rules=rules, k=8)
    # Level 1: Home (0), Toys (3), Grocery (5), Homeware (6), and the uncategorized item 7.
    assert order == [0, 3, 5, 6, 7]
    deeper = BusinessRules(diversity="category_cap", max_per_category=1, category_depth=2)
    assert ranked(descending(), rules=deeper, k=8) == [0, 2, 3, 4, 5, 6, 7]


def test_category_cap_looks_past_a_pool_filled_by_one_category():
    n = 60
    catalog = Catalog.from_table(
        pa.table({"item_id": [f"x{j:02d}" for j in range(n)], "category": ["A"] * (n - 1) + ["B"]})
    )
    scores = np.arange(n, 0, -1, dtype=np.float32)[None, :]  # the one "B" item is last
    rules = BusinessRules(diversity="category_cap", max_per_category=1)
    assert ranked(scores, catalog=catalog, rules=rules, k=2) == [0, n - 1]


def similarity_of(matrix: np.ndarray):
    def item_similarity(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return matrix[np.ix_(sources, targets)]

    return item_similarity


def test_mmr_prefers_a_different_item_over_a_near_duplicate():
    sim = np.eye(8)
    sim[0, 1] = sim[1, 0] = 0.99  # items 0 and 1 are near duplicates
    scores = np.array([[1.0, 0.95, 0.8, 0, 0, 0, 0, 0]])
    diverse = BusinessRules(diversity="mmr", mmr_lambda=0.3)
    assert ranked(scores, rules=diverse, item_similarity=similarity_of(sim), k=3)[:2] == [0, 2]
    plain = BusinessRules(diversity="mmr", mmr_lambda=1.0)
    assert ranked(scores, rules=plain, item_similarity=similarity_of(sim), k=3) == [0, 1, 2]


def test_mmr_falls_back_to_category_similarity():
    # Items 0 and 1 share "Home > Kitchen"; item 2 is "Home > Bath"; item 3 is "Toys".
    scores = np.array([[1.0, 0.95, 0.8, 0.3, 0.2, 0.1, 0.05, 0.0]])
    rules = BusinessRules(diversity="mmr", mmr_lambda=0.3, category_depth=2)
    assert ranked(scores, rules=rules, k=2) == [0, 2]
    # A model that is not item-based answers None: the category fallback applies too.
    model = Popularity().fit(sp.csr_matrix(np.ones((2, 8), np.float32)))
    assert ranked(scores, rules=rules, item_similarity=model.item_similarity, k=2) == [0, 2]
    # At depth 1 items 0-2 are all "Home": after item 0 the best non-Home item wins.
    shallow = BusinessRules(diversity="mmr", mmr_lambda=0.3)
    assert ranked(scores, rules=shallow, k=2) == [0, 3]


def test_mmr_returns_the_relevance_scores_of_the_chosen_items():
    scores = np.array([[1.0, 0.95, 0.8, 0, 0, 0, 0, 0]], dtype=np.float32)
    rules = BusinessRules(diversity="mmr", mmr_lambda=0.3, category_depth=2)
    ids, values = apply_rules(scores, catalog=make_catalog(), rules=rules, k=2)
    np.testing.assert_allclose(values[0], scores[0, ids[0]])


# --- padding and shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("diversity", ["none", "mmr", "category_cap"])
def test_short_lists_are_padded(diversity):
    rules = BusinessRules(
        include_categories=("Toys",),
        diversity=diversity,
        max_per_category=5 if diversity == "category_cap" else None,
    )
    ids, scores = apply_rules(descending(), catalog=make_catalog(), rules=rules, k=5)
    assert ids.shape == scores.shape == (1, 5)
    assert ids[0].tolist() == [3, 4, -1, -1, -1]
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()


def test_k_larger_than_the_catalog_pads_to_k():
    ids, _ = apply_rules(descending(), catalog=make_catalog(), k=12)
    assert ids.shape == (1, 12) and (ids[0, 8:] == -1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": np.ones(8)}, "scores must be 2-D"),
        ({"scores": np.ones((1, 7))}, "7 item columns; the catalog has 8"),
        ({"k": 0}, "k must be a positive integer"),
        ({"purchased": sp.csr_matrix((2, 8))}, "purchased has shape"),
        ({"purchased": [[0] * 8]}, "purchased must be a scipy.sparse matrix or an array"),
        ({"purchased": np.zeros((2, 8))}, "purchased has shape"),
        ({"include_categories": "Home"}, "include_categories must be a list"),
        ({"scores": np.full((1, 8), np.inf)}, r"\+inf"),
    ],
)
def test_bad_calls_are_refused(kwargs, message):
    scores = kwargs.pop("scores", descending())
    with pytest.raises(ValueError, match=message):
        apply_rules(scores, catalog=make_catalog(), **kwargs)


def test_a_similarity_of_the_wrong_shape_is_refused():
    rules = BusinessRules(diversity="mmr")
    with pytest.raises(ValueError, match="item_similarity returned shape"):
        apply_rules(
            descending(),
            catalog=make_catalog(),
            rules=rules,
            item_similarity=lambda s, t: np.ones((1, 1)),
        )


# --- configuration ---------------------------------------------------------------------------


def test_rules_round_trip_through_json():
    rules = BusinessRules(
        repurchasable_categories=("Grocery",),
        include_categories=("Home", "Toys"),
        boosts=(Boost(1.5, brand="B"), Boost(0.5, category="Toys", item_ids=("i3",))),
        diversity="category_cap",
        max_per_category=2,
        category_depth=2,
        impression_cap=3,
    )
    again = BusinessRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    assert again == rules
    assert again.boosts[1].item_ids == ("i3",)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"diversity": "random"}, "diversity must be one of"),
        ({"mmr_lambda": 1.5}, "mmr_lambda must lie in"),
        ({"mmr_lambda": "high"}, "mmr_lambda must be a number"),
        ({"diversity": "category_cap"}, "max_per_category must be set"),
        ({"max_per_category": 2}, "max_per_category is set but diversity is 'none'"),
        ({"diversity": "category_cap", "max_per_category": 0}, "max_per_category must be a"),
        ({"category_depth": 0}, "category_depth must be a positive integer"),
        ({"impression_cap": True}, "impression_cap must be a positive integer"),
        ({"exclude_purchased": "yes"}, "exclude_purchased must be true or false"),
        ({"include_categories": "Home"}, "include_categories must be a list"),
        ({"exclude_categories": ["Toys", ""]}, "exclude_categories must hold non-empty"),
        ({"repurchasable_categories": [1]}, "repurchasable_categories must hold"),
        ({"boosts": [{"factor": -1, "brand": "A"}]}, r"boosts\[0\]: factor must be a positive"),
        ({"boosts": [{"factor": 2}]}, r"boosts\[0\]: a boost needs a category"),
        ({"boosts": [{"brand": "A"}]}, r"boosts\[0\]: factor is required"),
        ({"boosts": [{"factor": 2, "colour": "red"}]}, r"boosts\[0\]: unknown boost field"),
        ({"boosts": [{"factor": 2, "item_ids": "i1"}]}, r"boosts\[0\]: item_ids must be a list"),
        ({"boosts": {"factor": 2}}, "boosts must be a list"),
        ({"max_items": 3}, r"unknown business rule field\(s\) \['max_items'\]"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(config, message):
    with pytest.raises(ValueError, match=message):
        BusinessRules.from_dict(config)


def test_which_rules_only_remove_unavailable_and_bought_items():
    """Every rule field is classified: a new field fails here until the serving shortcut's
    predicate (and this list) says whether it reorders or removes more."""
    reordering_or_filtering = {
        "repurchasable_categories": {"repurchasable_categories": ("Drinks",)},
        "include_categories": {"include_categories": ("Drinks",)},
        "exclude_categories": {"exclude_categories": ("Drinks",)},
        "boosts": {"boosts": (Boost(factor=2.0, category="Drinks"),)},
        "diversity": {"diversity": "mmr"},
        "max_per_category": {"diversity": "category_cap", "max_per_category": 2},
    }
    irrelevant = {
        "exclude_purchased": {"exclude_purchased": False},
        "mmr_lambda": {"mmr_lambda": 0.5},
        "category_depth": {"category_depth": 2},
        "impression_cap": {"impression_cap": 3},
    }
    fields = {f.name for f in dataclasses.fields(BusinessRules)}
    assert fields == set(reordering_or_filtering) | set(irrelevant)
    assert removes_only_unavailable_and_bought(BusinessRules())
    for name, settings in irrelevant.items():
        assert removes_only_unavailable_and_bought(BusinessRules(**settings)), name
    for name, settings in reordering_or_filtering.items():
        assert not removes_only_unavailable_and_bought(BusinessRules(**settings)), name
    assert not removes_only_unavailable_and_bought(BusinessRules(), include_categories=["Tea"])
    assert not removes_only_unavailable_and_bought(BusinessRules(), exclude_categories=[])
    # Without purchase exclusion, repurchasable categories change nothing.
    assert removes_only_unavailable_and_bought(
        BusinessRules(exclude_purchased=False, repurchasable_categories=("Drinks",))
    )
