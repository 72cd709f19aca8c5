"""Ranking metrics: hand-computed cases, a slow reference implementation, bad inputs."""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.evaluate import RankingMetrics, per_user_metrics, ranking_metrics

LOG2_3 = math.log2(3)


def relevant_matrix(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(sets), n_items))
    for user, items in enumerate(sets):
        dense[user, sorted(items)] = 1
    return sp.csr_matrix(dense)


# Three users, six items, k = 3.
#   user 0: relevant {1, 3, 4}, list [1, 2, 3] -> hits at ranks 1 and 3
#   user 1: relevant {},        list [0, 5, 1] -> skipped: nothing to find
#   user 2: relevant {0, 5},    list [2, 0, -1] (one pad) -> hit at rank 2
RECOMMENDED = np.array([[1, 2, 3], [0, 5, 1], [2, 0, -1]])
RELEVANT = relevant_matrix([{1, 3, 4}, set(), {0, 5}], 6)


def close(value: float, expected: F | float) -> bool:
    return value == pytest.approx(float(expected), abs=1e-12)


def test_hand_computed_means_skip_user_without_relevant_items() -> None:
    m = ranking_metrics(RECOMMENDED, RELEVANT)
    assert m.users == 2  # user 1 has no relevant item and is not counted
    # precision: user 0 2/3, user 2 1/3 (k = 3 even though the list has 2 items)
    assert close(m.precision, (F(2, 3) + F(1, 3)) / 2)  # = 1/2
    # recall: user 0 2/3, user 2 1/2
    assert close(m.recall, (F(2, 3) + F(1, 2)) / 2)  # = 7/12
    # AP sum: user 0 1/1 + 2/3 = 5/3, over 3 relevant = 5/9; user 2 1/2, over 2 = 1/4
    assert close(m.map, (F(5, 9) + F(1, 4)) / 2)  # = 29/72
    # min(n_relevant, k) equals n_relevant for both users, so map_at_k is the same
    assert close(m.map_at_k, F(29, 72))
    # nDCG user 0: DCG 1/log2(2) + 1/log2(4) = 3/2, ideal 1 + 1/log2(3) + 1/2
    # nDCG user 2: DCG 1/log2(3), ideal 1 + 1/log2(3)
    ndcg0 = 1.5 / (1.5 + 1 / LOG2_3)
    ndcg2 = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert close(m.ndcg, (ndcg0 + ndcg2) / 2)
    assert close(m.hit_rate, 1)  # both evaluated users have a hit
    assert close(m.mrr, (F(1, 1) + F(1, 2)) / 2)  # first hits at ranks 1 and 2 -> 3/4
    # coverage over the evaluated users' lists: {1, 2, 3} | {2, 0} = 4 of 6 items
    assert close(m.coverage, F(4, 6))
    assert m.diversity is None and m.novelty is None


def test_per_user_values_and_user_index() -> None:
    per_user = per_user_metrics(RECOMMENDED, RELEVANT)
    np.testing.assert_array_equal(per_user["user"], [0, 2])
    np.testing.assert_allclose(per_user["precision"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(per_user["recall"], [2 / 3, 1 / 2])
    np.testing.assert_allclose(per_user["ap"], [5 / 9, 1 / 4])
    np.testing.assert_allclose(per_user["ap_at_k"], [5 / 9, 1 / 4])
    np.testing.assert_allclose(per_user["hit"], [1, 1])
    np.testing.assert_allclose(per_user["rr"], [1, 1 / 2])
    assert set(per_user) == {"user", "precision", "recall", "ap", "ap_at_k", "ndcg", "hit", "rr"}


def test_novelty_with_zero_popularity_item() -> None:
    # Popularity [4, 2, 1, 1, 0, 0], total 8: shares 1/2, 1/4, 1/8, 1/8, and the
    # zero-count items get 1/8 (one interaction). -log2: 1, 2, 3, 3, 3, 3.
    # Evaluated entries: user 0 items 1, 2, 3 -> 2, 3, 3; user 2 items 2, 0 -> 3, 1.
    m = ranking_metrics(RECOMMENDED, RELEVANT, item_popularity=np.array([4, 2, 1, 1, 0, 0]))
    assert close(m.novelty, F(2 + 3 + 3 + 3 + 1, 5))  # = 12/5


def test_diversity_pairwise_cosine() -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 0], [-1, 0]])
    # user 0 [1, 2, 3]: cos(1,2) = 1/sqrt2, cos(1,3) = 0, cos(2,3) = 1/sqrt2
    #   mean similarity sqrt2/3 -> diversity 1 - sqrt2/3
    # user 2 [2, 0]: cos = 1/sqrt2 -> diversity 1 - 1/sqrt2
    m = ranking_metrics(RECOMMENDED, RELEVANT, item_vectors=vectors)
    expected = ((1 - math.sqrt(2) / 3) + (1 - 1 / math.sqrt(2))) / 2
    assert close(m.diversity, expected)


def test_diversity_ignores_short_lists_and_zero_vectors() -> None:
    vectors = np.array([[1, 0], [0, 1], [0, 0]])
    relevant = relevant_matrix([{0}, {1}], 3)
    # user 0 has one item: contributes nothing. user 1 [1, 2]: item 2 is a zero
    # vector, similarity 0 -> diversity 1.
    m = ranking_metrics(np.array([[0, -1], [1, 2]]), relevant, item_vectors=vectors)
    assert close(m.diversity, 1)
    # No list with two items: undefined.
    m = ranking_metrics(np.array([[0, -1], [1, -1]]), relevant, item_vectors=vectors)
    assert m.diversity is not None and math.isnan(m.diversity)


def test_padding_counts_against_precision_not_recall() -> None:
    # One relevant item {3}, list [3, -1, -1], k = 3: precision 1/3 (hits / k),
    # recall 1/1, the ideal DCG has one position so nDCG = 1, AP = 1.
    m = ranking_metrics(np.array([[3, -1, -1]]), relevant_matrix([{3}], 5))
    assert close(m.precision, F(1, 3))
    assert close(m.recall, 1)
    assert close(m.ndcg, 1)
    assert close(m.map, 1)
    assert close(m.coverage, F(1, 5))


def test_empty_list_for_user_with_relevant_items_scores_zero() -> None:
    # user 0: [0, 1] vs {0}: all metrics 1 (precision 1/2). user 1: only pads.
    m = ranking_metrics(np.array([[0, 1], [-1, -1]]), relevant_matrix([{0}, {2}], 3))
    assert m.users == 2
    assert close(m.precision, (F(1, 2) + 0) / 2)
    assert close(m.recall, F(1, 2))
    assert close(m.ndcg, F(1, 2))
    assert close(m.hit_rate, F(1, 2))
    assert close(m.mrr, F(1, 2))


def test_k_smaller_than_list() -> None:
    rec = np.array([[5, 0, 1, 2]])
    relevant = relevant_matrix([{0, 1}], 6)
    # k = 2: top-2 [5, 0], one hit at rank 2
    m = ranking_metrics(rec, relevant, k=2)
    assert close(m.precision, F(1, 2))
    assert close(m.recall, F(1, 2))
    assert close(m.map, F(1, 2) / 2)  # (1/2) / 2 relevant
    assert close(m.map_at_k, F(1, 2) / 2)  # (1/2) / min(2, 2)
    # DCG 1/log2(3), ideal over min(2, 2) positions: 1 + 1/log2(3)
    assert close(m.ndcg, (1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert close(m.mrr, F(1, 2))
    assert close(m.coverage, F(2, 6))  # items 5 and 0; 1 and 2 are beyond k
    # full list, k = 4: hits at ranks 2 and 3
    m = ranking_metrics(rec, relevant)
    assert close(m.precision, F(2, 4))
    assert close(m.recall, 1)
    assert close(m.map, (F(1, 2) + F(2, 3)) / 2)  # = 7/12
    assert close(m.coverage, F(4, 6))


def test_perfect_ranking_gives_ndcg_one() -> None:
    m = ranking_metrics(np.array([[2, 4, 0]]), relevant_matrix([{2, 4}], 5))
    assert close(m.ndcg, 1)
    assert close(m.map, 1)
    assert close(m.recall, 1)
    assert close(m.precision, F(2, 3))
    # More relevant items than k, all k positions hit: the ideal DCG is over k
    # positions, so nDCG is still 1 while recall is 2/4.
    m = ranking_metrics(np.array([[0, 1]]), relevant_matrix([{0, 1, 2, 3}], 5))
    assert close(m.ndcg, 1)
    assert close(m.recall, F(2, 4))


def test_map_and_map_at_k_differ_when_more_relevant_than_k() -> None:
    # relevant {0, 1, 2, 3}, list [0, 4, 1], k = 3: hits at ranks 1 and 3,
    # AP sum 1/1 + 2/3 = 5/3
    m = ranking_metrics(np.array([[0, 4, 1]]), relevant_matrix([{0, 1, 2, 3}], 5))
    assert close(m.map, F(5, 3) / 4)  # over 4 relevant = 5/12
    assert close(m.map_at_k, F(5, 3) / 3)  # over min(4, 3) = 5/9
    assert m.map < m.map_at_k


def test_no_hit_gives_zero_and_mrr_zero() -> None:
    m = ranking_metrics(np.array([[1, 2]]), relevant_matrix([{0}], 3))
    assert m.as_dict() == {
        "precision": 0.0,
        "recall": 0.0,
        "map": 0.0,
        "map_at_k": 0.0,
        "ndcg": 0.0,
        "hit_rate": 0.0,
        "mrr": 0.0,
        "coverage": pytest.approx(2 / 3),
        "users": 1,
        "diversity": None,
        "novelty": None,
    }


def test_relevance_is_binary_and_explicit_zeros_are_ignored() -> None:
    # Graded values count as plain hits; a stored 0 is not relevant.
    relevant = sp.csr_matrix(
        (np.array([5.0, 0.0, 2.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 4)
    )
    per_user = per_user_metrics(np.array([[1, 0, 2]]), relevant)
    np.testing.assert_allclose(per_user["recall"], [1.0])  # 2 hits of 2 relevant (0, 2)
    np.testing.assert_allclose(per_user["precision"], [2 / 3])


def test_accepts_dense_and_other_sparse_formats() -> None:
    dense = RELEVANT.toarray()
    expected = ranking_metrics(RECOMMENDED, RELEVANT)
    assert ranking_metrics(RECOMMENDED, dense) == expected
    assert ranking_metrics(RECOMMENDED, sp.coo_array(dense)) == expected


def test_result_is_frozen() -> None:
    m = ranking_metrics(RECOMMENDED, RELEVANT)
    assert isinstance(m, RankingMetrics)
    with pytest.raises(AttributeError):
        m.precision = 1.0  # type: ignore[misc]


# --- slow pure-Python reference ------------------------------------------------


def reference(
    recommended: list[list[int]],
    relevant: list[set[int]],
    n_items: int,
    k: int,
    popularity: list[float] | None = None,
    vectors: list[list[float]] | None = None,
) -> dict[str, float] | None:
    per_user: dict[str, list[float]] = {
        key: [] for key in ("precision", "recall", "ap", "ap_at_k", "ndcg", "hit", "rr")
    }
    seen: set[int] = set()
    entries: list[int] = []
    diversities: list[float] = []
    for row, rel in zip(recommended, relevant, strict=True):
        if not rel:
            continue
        top = [item for item in row[:k] if item >= 0]
        seen.update(top)
        entries.extend(top)
        hits = 0
        precision_sum = 0.0
        dcg = 0.0
        rr = 0.0
        for rank, item in enumerate(top, start=1):
            if item in rel:
                hits += 1
                precision_sum += hits / rank
                dcg += 1 / math.log2(rank + 1)
                if rr == 0.0:
                    rr = 1 / rank
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
        per_user["precision"].append(hits / k)
        per_user["recall"].append(hits / len(rel))
        per_user["ap"].append(precision_sum / len(rel))
        per_user["ap_at_k"].append(precision_sum / min(len(rel), k))
        per_user["ndcg"].append(dcg / ideal)
        per_user["hit"].append(1.0 if hits else 0.0)
        per_user["rr"].append(rr)
        if vectors is not None and len(top) >= 2:
            sims = []
            for a in range(len(top)):
                for b in range(a + 1, len(top)):
                    u, v = vectors[top[a]], vectors[top[b]]
                    nu = math.sqrt(sum(x * x for x in u))
                    nv = math.sqrt(sum(x * x for x in v))
                    dot = sum(x * y for x, y in zip(u, v, strict=True))
                    sims.append(dot / (nu * nv) if nu > 0 and nv > 0 else 0.0)
            diversities.append(1 - sum(sims) / len(sims))
    if not per_user["precision"]:
        return None
    out = {key: sum(values) / len(values) for key, values in per_user.items()}
    out["coverage"] = len(seen) / n_items
    if popularity is not None:
        total = sum(popularity)
        novelty = [-math.log2((popularity[i] if popularity[i] > 0 else 1) / total) for i in entries]
        out["novelty"] = sum(novelty) / len(novelty) if novelty else math.nan
    if vectors is not None:
        out["diversity"] = sum(diversities) / len(diversities) if diversities else math.nan
    return out


@st.composite
def ranking_problems(draw: st.DrawFn) -> dict:
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 8))
    width = draw(st.integers(1, 5))
    rows = []
    for _ in range(n_users):
        length = draw(st.integers(0, min(width, n_items)))
        items = draw(st.permutations(range(n_items)))[:length]
        rows.append(list(items) + [-1] * (width - length))
    relevant = [
        set(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))) for _ in range(n_users)
    ]
    k = draw(st.integers(1, width))
    popularity = draw(st.lists(st.integers(0, 20), min_size=n_items, max_size=n_items))
    if sum(popularity) == 0:
        popularity[0] = 1
    vectors = draw(
        st.lists(
            st.lists(st.integers(-3, 3), min_size=2, max_size=2),
            min_size=n_items,
            max_size=n_items,
        )
    )
    return {
        "rows": rows,
        "relevant": relevant,
        "n_items": n_items,
        "k": k,
        "popularity": popularity,
        "vectors": vectors,
    }


@settings(max_examples=150, deadline=None)
@given(ranking_problems())
def test_vectorized_agrees_with_reference(problem: dict) -> None:
    rec = np.array(problem["rows"], dtype=np.int64)
    relevant = relevant_matrix(problem["relevant"], problem["n_items"])
    expected = reference(
        problem["rows"],
        problem["relevant"],
        problem["n_items"],
        problem["k"],
        popularity=problem["popularity"],
        vectors=problem["vectors"],
    )
    per_user = per_user_metrics(rec, relevant, k=problem["k"])
    if expected is None:
        assert per_user["user"].size == 0
        with pytest.raises(ValueError, match="relevant"):
            ranking_metrics(rec, relevant, k=problem["k"])
        return
    got = ranking_metrics(
        rec,
        relevant,
        k=problem["k"],
        item_popularity=np.array(problem["popularity"]),
        item_vectors=np.array(problem["vectors"]),
    )
    names = {"map": "ap", "map_at_k": "ap_at_k", "hit_rate": "hit", "mrr": "rr"}
    for field in ("precision", "recall", "map", "map_at_k", "ndcg", "hit_rate", "mrr"):
        key = names.get(field, field)
        assert getattr(got, field) == pytest.approx(expected[key], abs=1e-9), field
        assert per_user[key].mean() == pytest.approx(expected[key], abs=1e-9), field
    assert got.coverage == pytest.approx(expected["coverage"], abs=1e-12)
    assert got.users == sum(1 for rel in problem["relevant"] if rel)
    for field in ("novelty", "diversity"):
        value = getattr(got, field)
        if math.isnan(expected[field]):
            assert math.isnan(value), field
        else:
            assert value == pytest.approx(expected[field], abs=1e-9), field


# --- bad inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recommended", "relevant", "kwargs", "match"),
    [
        (np.array([1, 2, 3]), RELEVANT, {}, "recommended must be a 2-D"),
        (np.zeros((3, 2, 1), dtype=int), RELEVANT, {}, "recommended must be a 2-D"),
        (RECOMMENDED.astype(float), RELEVANT, {}, "recommended must hold integer"),
        (np.zeros((3, 0), dtype=int), RELEVANT, {}, "recommended must have at least one"),
        (RECOMMENDED, np.zeros(6), {}, "relevant must be a 2-D"),
        (RECOMMENDED[:2], RELEVANT, {}, "recommended and relevant must have one row per user"),
        (RECOMMENDED, RELEVANT, {"k": 4}, "k must be between 1 and"),
        (RECOMMENDED, RELEVANT, {"k": 0}, "k must be between 1 and"),
        (RECOMMENDED, RELEVANT, {"k": 2.0}, "k must be an integer"),
        (RECOMMENDED, RELEVANT, {"k": True}, "k must be an integer"),
        (np.array([[1, 2, 6], [0, 1, 2], [0, 1, 2]]), RELEVANT, {}, "out of range"),
        (np.array([[1, 2, -2], [0, 1, 2], [0, 1, 2]]), RELEVANT, {}, "only negative value"),
        (np.array([[1, 2, 3], [0, 5, 0], [0, 1, 2]]), RELEVANT, {}, "row 1 lists the same"),
        (np.array([[1, -1, 3], [0, 1, 2], [0, 1, 2]]), RELEVANT, {}, "row 0 has an item after"),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.ones(5)},
            "item_popularity must have shape",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.ones((6, 1))},
            "item_popularity must have shape",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.array([1, 1, 1, 1, 1, -1])},
            "item_popularity must be finite and non-negative",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.array([1, 1, 1, 1, 1, np.nan])},
            "item_popularity must be finite and non-negative",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.zeros(6)},
            "item_popularity must have a positive total",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_popularity": np.array(list("abcdef"))},
            "item_popularity must be numeric",
        ),
        (RECOMMENDED, RELEVANT, {"item_vectors": np.ones(6)}, "item_vectors must have shape"),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_vectors": np.ones((5, 2))},
            "item_vectors must have shape",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_vectors": np.full((6, 2), np.inf)},
            "item_vectors must be finite",
        ),
        (
            RECOMMENDED,
            RELEVANT,
            {"item_vectors": np.full((6, 2), "x")},
            "item_vectors must be numeric",
        ),
        (RECOMMENDED, sp.csr_matrix((3, 6)), {}, "relevant has no user with a relevant item"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(
    recommended: np.ndarray, relevant: object, kwargs: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ranking_metrics(recommended, relevant, **kwargs)


def test_per_user_metrics_validates_too_and_allows_no_evaluated_user() -> None:
    with pytest.raises(ValueError, match="k must be between"):
        per_user_metrics(RECOMMENDED, RELEVANT, k=5)
    empty = per_user_metrics(RECOMMENDED, sp.csr_matrix((3, 6)))
    assert all(values.size == 0 for values in empty.values())
