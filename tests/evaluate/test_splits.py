"""Train/test splits: sizes, determinism, cut-offs, leave-last-out, bad inputs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.evaluate import leave_last_out, random_per_user, temporal, users_with_at_least


def stratified_reference(users: np.ndarray, ratio: float, seed: int, min_rating: int) -> np.ndarray:
    """Recommenders' ``_do_stratification`` (is_random=True) transcribed with plain loops."""
    counts: dict[object, int] = {}
    for user in users.tolist():
        counts[user] = counts.get(user, 0) + 1
    kept = [row for row, user in enumerate(users.tolist()) if counts[user] >= min_rating]
    np.random.seed(seed)  # what Recommenders does
    draws = np.random.rand(len(kept))
    by_user: dict[object, list[tuple[float, int]]] = {}
    for draw, row in zip(draws.tolist(), kept, strict=True):
        by_user.setdefault(users[row].item(), []).append((draw, row))
    train = np.zeros(len(users), dtype=bool)
    for rows in by_user.values():
        rows.sort()
        for rank, (_, row) in enumerate(rows, start=1):
            train[row] = rank / len(rows) <= ratio
    return train


# --- random_per_user ---------------------------------------------------------------


def test_random_per_user_sizes_follow_rank_over_count() -> None:
    # Users with 1, 2, 3, 4, 5 and 8 interactions. A row is train when
    # rank / n <= 0.75, so train sizes are floor(0.75 n):
    #   n=1: 1/1 > .75 -> 0      n=2: 1/2 <= .75 < 2/2 -> 1
    #   n=3: 2/3 <= .75 < 3/3 -> 2   n=4: 3/4 <= .75 -> 3
    #   n=5: 3/5 <= .75 < 4/5 -> 3   n=8: 6/8 <= .75 < 7/8 -> 6
    sizes = {10: 1, 20: 2, 30: 3, 40: 4, 50: 5, 80: 8}
    users = np.repeat(list(sizes), list(sizes.values()))
    users = np.random.default_rng(0).permutation(users)
    train = random_per_user(users)
    expected = {10: 0, 20: 1, 30: 2, 40: 3, 50: 3, 80: 6}
    for user, n_train in expected.items():
        assert train[users == user].sum() == n_train, user


def test_random_per_user_ratio_half() -> None:
    # ratio 0.5: n=1 -> 0, n=2 -> 1, n=3 -> 1 (1/3 <= .5 < 2/3), n=4 -> 2
    users = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    train = random_per_user(users, ratio=0.5)
    assert [int(train[users == u].sum()) for u in range(4)] == [0, 1, 1, 2]


def test_random_per_user_deterministic_for_seed_and_differs_between_seeds() -> None:
    users = np.repeat(np.arange(20), 10)
    first = random_per_user(users, seed=7)
    np.testing.assert_array_equal(first, random_per_user(users, seed=7))
    assert not np.array_equal(first, random_per_user(users, seed=8))
    # The per-user sizes do not depend on the seed.
    sizes = np.bincount(users[first], minlength=20)
    np.testing.assert_array_equal(sizes, np.full(20, 7))  # 7/10 <= .75 < 8/10


def test_random_per_user_min_interactions_drops_users_from_both_sides() -> None:
    users = np.array(["a", "b", "b", "c", "c", "c", "c"])
    train = random_per_user(users, min_interactions=3)
    kept = users_with_at_least(users, 3)
    np.testing.assert_array_equal(kept, users == "c")
    assert not train[~kept].any()  # dropped users are in neither train ...
    test = kept & ~train
    assert not test[~kept].any()  # ... nor test
    assert train.sum() == 3 and test.sum() == 1  # user c: 3/4 <= .75


def test_random_per_user_empty_and_all_dropped() -> None:
    assert random_per_user(np.array([], dtype=int)).shape == (0,)
    assert not random_per_user(np.array([1, 2]), min_interactions=2).any()


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.integers(0, 6), max_size=40),
    ratio=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    min_interactions=st.integers(1, 4),
)
def test_random_per_user_matches_recommenders_algorithm(
    users: list[int], ratio: float, seed: int, min_interactions: int
) -> None:
    arr = np.array(users, dtype=np.int64)
    got = random_per_user(arr, ratio=ratio, seed=seed, min_interactions=min_interactions)
    np.testing.assert_array_equal(got, stratified_reference(arr, ratio, seed, min_interactions))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.0}, "ratio must be"),
        ({"ratio": 1.0}, "ratio must be"),
        ({"ratio": "0.5"}, "ratio must be"),
        ({"seed": -1}, "seed must be"),
        ({"seed": 2**32}, "seed must be"),
        ({"seed": 1.5}, "seed must be"),
        ({"min_interactions": 0}, "min_interactions must be"),
        ({"min_interactions": 2.0}, "min_interactions must be"),
    ],
)
def test_random_per_user_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_per_user(np.array([1, 1, 2]), **kwargs)


def test_random_per_user_and_users_with_at_least_need_1d_users() -> None:
    with pytest.raises(ValueError, match="users must be a 1-D"):
        random_per_user(np.array([[1, 2]]))
    with pytest.raises(ValueError, match="users must be a 1-D"):
        users_with_at_least(np.array([[1, 2]]), 1)
    with pytest.raises(ValueError, match="n must be"):
        users_with_at_least(np.array([1, 2]), 0)


# --- temporal ------------------------------------------------------------------------


def test_temporal_cutoff_numeric() -> None:
    times = np.array([5, 1, 3, 2, 4, 6])
    np.testing.assert_array_equal(
        temporal(times, cutoff=4), [False, True, True, True, False, False]
    )
    np.testing.assert_array_equal(temporal(times, cutoff=3.5), times < 3.5)
    assert temporal(times.astype(float), cutoff=0).sum() == 0


def test_temporal_test_fraction() -> None:
    times = np.array([5, 1, 3, 2, 4, 6])
    # 6 rows, fraction 1/3 -> 2 test rows; cut-off = sorted[6 - 2] = 5 -> train times < 5
    np.testing.assert_array_equal(
        temporal(times, test_fraction=1 / 3), [False, True, True, True, True, False]
    )
    # tiny fraction still leaves one test row: round(0.01 * 6) = 0 -> 1
    assert (~temporal(times, test_fraction=0.01)).sum() == 1


def test_temporal_fraction_ties_go_to_test() -> None:
    # 5 rows, fraction 0.4 -> 2 test rows, cut-off sorted[3] = 2; the three rows at
    # time 2 tie with the cut-off, so 4 rows are test.
    times = np.array([1, 2, 2, 2, 3])
    np.testing.assert_array_equal(
        temporal(times, test_fraction=0.4), [True, False, False, False, False]
    )


def test_temporal_datetime64() -> None:
    times = np.array(
        ["2024-01-03T10:00", "2024-01-01T00:00", "2024-01-02T12:00", "2024-01-04T00:00"],
        dtype="datetime64[s]",
    )
    expected = [False, True, True, False]
    np.testing.assert_array_equal(temporal(times, cutoff=np.datetime64("2024-01-03")), expected)
    np.testing.assert_array_equal(temporal(times, cutoff="2024-01-03"), expected)
    np.testing.assert_array_equal(temporal(times, cutoff=dt.datetime(2024, 1, 3)), expected)
    # fraction 0.5 of 4 rows -> cut-off sorted[2] = 2024-01-03T10:00
    np.testing.assert_array_equal(temporal(times, test_fraction=0.5), expected)
    assert temporal(times[:0], test_fraction=0.5).shape == (0,)


@pytest.mark.parametrize(
    ("times", "kwargs", "match"),
    [
        (np.array([1, 2]), {}, "exactly one of cutoff and test_fraction"),
        (
            np.array([1, 2]),
            {"cutoff": 1, "test_fraction": 0.5},
            "exactly one of cutoff and test_fraction",
        ),
        (np.array([1, 2]), {"test_fraction": 0.0}, "test_fraction must be"),
        (np.array([1, 2]), {"test_fraction": 1.0}, "test_fraction must be"),
        (np.array([1, 2]), {"test_fraction": 1.5}, "test_fraction must be"),
        (np.array([1, 2]), {"cutoff": "2024-01-01"}, "cutoff must be a number"),
        (np.array([1, 2]), {"cutoff": float("nan")}, "cutoff is NaN"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), {"cutoff": 5}, "cutoff must be a date"),
        (
            np.array(["2024-01-01"], dtype="datetime64[D]"),
            {"cutoff": "soon"},
            "cutoff cannot be read",
        ),
        (
            np.array(["2024-01-01"], dtype="datetime64[D]"),
            {"cutoff": np.datetime64("NaT")},
            "cutoff is NaT",
        ),
        (np.array([[1, 2]]), {"cutoff": 1}, "times must be a 1-D"),
        (np.array(["a", "b"]), {"cutoff": 1}, "times must be datetime64 or numeric"),
        (np.array([1.0, np.nan]), {"cutoff": 1}, "times has NaN"),
        (
            np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"),
            {"cutoff": "2024-01-01"},
            "times has NaT",
        ),
    ],
)
def test_temporal_bad_inputs(times: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        temporal(times, **kwargs)


# --- leave_last_out ------------------------------------------------------------------


def test_leave_last_out_ties_broken_by_position_and_short_users_kept() -> None:
    # row:    0    1    2    3    4    5
    users = np.array(["a", "b", "a", "a", "b", "c"])
    times = np.array([10, 5, 20, 20, 1, 7])
    # a: rows 0 (10), 2 (20), 3 (20): rows 2 and 3 tie, row 3 is later -> test
    # b: rows 1 (5), 4 (1): row 1 is latest -> test
    # c: one interaction (<= n) -> train
    np.testing.assert_array_equal(
        leave_last_out(users, times), [True, False, True, False, True, True]
    )
    # n = 2: a loses rows 2 and 3; b has 2 <= n interactions -> all train
    np.testing.assert_array_equal(
        leave_last_out(users, times, n=2), [True, True, False, False, True, True]
    )


def test_leave_last_out_datetime64() -> None:
    users = np.array([1, 1, 2, 2])
    times = np.array(
        ["2024-02-01", "2024-01-01", "2024-01-01", "2024-01-01"], dtype="datetime64[D]"
    )
    # user 1: row 0 is later; user 2: tie, row 3 is later
    np.testing.assert_array_equal(leave_last_out(users, times), [False, True, True, False])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), max_size=30),
    n=st.integers(1, 3),
)
def test_leave_last_out_properties(rows: list[tuple[int, int]], n: int) -> None:
    users = np.array([u for u, _ in rows], dtype=np.int64)
    times = np.array([t for _, t in rows], dtype=np.int64)
    train = leave_last_out(users, times, n=n)
    for user in set(users.tolist()):
        idx = np.flatnonzero(users == user)
        test_idx = idx[~train[idx]]
        train_idx = idx[train[idx]]
        assert test_idx.size == (n if idx.size > n else 0)
        # every test row is later than every train row, by (time, position)
        if test_idx.size and train_idx.size:
            assert min((times[i], i) for i in test_idx) > max((times[i], i) for i in train_idx)


@pytest.mark.parametrize(
    ("users", "times", "n", "match"),
    [
        (np.array([1, 2]), np.array([1]), 1, "users and times must have the same length"),
        (np.array([[1, 2]]), np.array([1, 2]), 1, "users must be a 1-D"),
        (np.array([1, 2]), np.array([[1, 2]]), 1, "times must be a 1-D"),
        (np.array([1, 2]), np.array([1.0, np.nan]), 1, "times has NaN"),
        (np.array([1, 2]), np.array(["x", "y"]), 1, "times must be datetime64 or numeric"),
        (np.array([1, 2]), np.array([1, 2]), 0, "n must be"),
        (np.array([1, 2]), np.array([1, 2]), 1.0, "n must be"),
    ],
)
def test_leave_last_out_bad_inputs(
    users: np.ndarray, times: np.ndarray, n: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        leave_last_out(users, times, n=n)  # type: ignore[arg-type]
