"""Train/test splits over interaction arrays.

Interactions come as parallel 1-D numpy arrays, one entry per interaction (``users``,
``times``, ...). Every split returns a boolean ``train`` mask over those rows: True
means train, False means test, except where a function says that some rows belong to
neither side.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["leave_last_out", "random_per_user", "temporal", "users_with_at_least"]


def users_with_at_least(users: np.ndarray, n: int) -> np.ndarray:
    """Mark the rows of users with at least ``n`` interactions.

    Parameters
    ----------
    users : numpy.ndarray
        1-D user identifiers, one per interaction (any dtype ``numpy.unique`` sorts).
    n : int
        Minimum number of interactions, at least 1.

    Returns
    -------
    numpy.ndarray
        Boolean mask over the rows, True where the row's user has ``>= n`` rows.

    Raises
    ------
    ValueError
        If ``users`` is not 1-D or ``n`` is not an integer >= 1.
    """
    users = _as_1d(users, "users")
    n = _positive_int(n, "n")
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)] >= n


def random_per_user(
    users: np.ndarray,
    *,
    ratio: float = 0.75,
    seed: int = 42,
    min_interactions: int = 1,
) -> np.ndarray:
    """Split each user's interactions at random, keeping about ``ratio`` in train.

    Matches Recommenders' ``python_stratified_split(filter_by="user", ratio=ratio,
    min_rating=min_interactions, seed=seed)`` (``_do_stratification`` in
    ``recommenders/datasets/python_splitters.py``): every kept row draws a uniform
    number from ``numpy.random.RandomState(seed).rand``, in row order; within a user
    the rows are ranked by that number and a row goes to train when
    ``rank / n_user <= ratio`` (rank 1-based). So a user gets ``floor(ratio * n_user)``
    train rows, not a rounded number: with ``ratio=0.75`` a user with 1 interaction
    has 0 train rows, 2 -> 1, 3 -> 2, 4 -> 3, 5 -> 3. Given the same rows in the same
    order, the same rows should go to train as in Recommenders.

    Parameters
    ----------
    users : numpy.ndarray
        1-D user identifiers, one per interaction.
    ratio : float
        Share of each user's interactions that goes to train, strictly between 0 and 1.
    seed : int
        Seed for ``numpy.random.RandomState``; the split is deterministic for a seed.
    min_interactions : int
        Users with fewer interactions are dropped from both sides.

    Returns
    -------
    numpy.ndarray
        Boolean ``train`` mask. Rows of dropped users are False here although they
        are not test rows either: take the test set as
        ``users_with_at_least(users, min_interactions) & ~train``.

    Raises
    ------
    ValueError
        If ``users`` is not 1-D, ``ratio`` is not in (0, 1), ``seed`` is not an
        integer in [0, 2**32) or ``min_interactions`` is not an integer >= 1.
    """
    users = _as_1d(users, "users")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"ratio must be a number strictly between 0 and 1; got {ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    min_interactions = _positive_int(min_interactions, "min_interactions")

    train = np.zeros(users.shape[0], dtype=bool)
    kept_rows = np.flatnonzero(users_with_at_least(users, min_interactions))
    if kept_rows.size == 0:
        return train
    # Draw after filtering, one number per kept row in row order, as Recommenders does,
    # so that the same seed picks the same rows.
    draws = np.random.RandomState(int(seed)).rand(kept_rows.size)
    _, group, counts = np.unique(users[kept_rows], return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.lexsort((draws, group))
    rank = _rank_in_group(group[order], counts)
    train[kept_rows[order]] = rank / counts[group[order]] <= float(ratio)
    return train


def temporal(
    times: np.ndarray,
    *,
    cutoff: Any = None,
    test_fraction: float | None = None,
) -> np.ndarray:
    """Split all interactions at one point in time.

    Parameters
    ----------
    times : numpy.ndarray
        1-D interaction times: ``datetime64`` or integer/float numbers, no NaT/NaN.
    cutoff : optional
        Rows with ``time < cutoff`` are train, the rest test. For ``datetime64``
        times anything ``numpy.datetime64`` accepts (a ``datetime64``, an ISO string,
        a ``datetime.datetime``); for numeric times a real number.
    test_fraction : float, optional
        Instead of ``cutoff``: the cut-off becomes the time of the row at sorted
        position ``n - round(test_fraction * n)`` (at least one test row), so that
        about that fraction of the rows is test. Rows tied with the cut-off time go
        to test too, so the test share can be larger than asked.

    Returns
    -------
    numpy.ndarray
        Boolean ``train`` mask.

    Raises
    ------
    ValueError
        If not exactly one of ``cutoff`` and ``test_fraction`` is given, if
        ``test_fraction`` is not in (0, 1), if ``cutoff`` does not fit the type of
        ``times``, or if ``times`` is not 1-D, not a time type, or has NaT/NaN.
    """
    times = _as_times(times, "times")
    if (cutoff is None) == (test_fraction is None):
        raise ValueError("give exactly one of cutoff and test_fraction")
    if test_fraction is not None:
        if (
            isinstance(test_fraction, bool)
            or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1
        ):
            raise ValueError(
                f"test_fraction must be a number strictly between 0 and 1; got {test_fraction!r}"
            )
        n = times.shape[0]
        if n == 0:
            return np.zeros(0, dtype=bool)
        n_test = max(1, round(float(test_fraction) * n))
        threshold = np.sort(times)[n - n_test]
    else:
        threshold = _as_cutoff(cutoff, times)
    return times < threshold


def leave_last_out(users: np.ndarray, times: np.ndarray, *, n: int = 1) -> np.ndarray:
    """Put the last ``n`` interactions of each user in test.

    Parameters
    ----------
    users : numpy.ndarray
        1-D user identifiers, one per interaction.
    times : numpy.ndarray
        1-D interaction times (``datetime64`` or numbers, no NaT/NaN), parallel to
        ``users``. Equal times are ordered by row position: a later row is later.
    n : int
        How many interactions per user go to test, at least 1. Users with ``n`` or
        fewer interactions keep all of them in train.

    Returns
    -------
    numpy.ndarray
        Boolean ``train`` mask.

    Raises
    ------
    ValueError
        If the arrays are not 1-D or differ in length, ``times`` is not a time type
        or has NaT/NaN, or ``n`` is not an integer >= 1.
    """
    users = _as_1d(users, "users")
    times = _as_times(times, "times")
    if users.shape[0] != times.shape[0]:
        raise ValueError(
            f"users and times must have the same length; got {users.shape[0]} and {times.shape[0]}"
        )
    n = _positive_int(n, "n")
    _, group, counts = np.unique(users, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    # Stable sorts: by time, then by user, so ties keep row order (later row = later).
    by_time = np.argsort(times, kind="stable")
    order = by_time[np.argsort(group[by_time], kind="stable")]
    sorted_group = group[order]
    from_end = counts[sorted_group] - _rank_in_group(sorted_group, counts) + 1
    train = np.ones(users.shape[0], dtype=bool)
    train[order] = ~((from_end <= n) & (counts[sorted_group] > n))
    return train


def _rank_in_group(sorted_group: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """1-based position of each row within its group, for rows sorted by group."""
    starts = np.cumsum(counts) - counts
    return np.arange(1, sorted_group.shape[0] + 1) - starts[sorted_group]


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got {arr.ndim}-D, shape {arr.shape}")
    return arr


def _as_times(values: Any, name: str) -> np.ndarray:
    arr = _as_1d(values, name)
    if arr.dtype.kind not in "iufM":
        raise ValueError(f"{name} must be datetime64 or numeric; got dtype {arr.dtype}")
    if arr.dtype.kind == "M" and np.isnat(arr).any():
        raise ValueError(f"{name} has NaT values")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} has NaN values")
    return arr


def _as_cutoff(cutoff: Any, times: np.ndarray) -> Any:
    if times.dtype.kind == "M":
        if isinstance(cutoff, numbers.Number) or (
            isinstance(cutoff, np.ndarray) and cutoff.dtype.kind != "M"
        ):
            raise ValueError(f"cutoff must be a date or time for datetime64 times; got {cutoff!r}")
        try:
            value = np.datetime64(cutoff)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cutoff cannot be read as a datetime64: {cutoff!r}") from exc
        if np.isnat(value):
            raise ValueError("cutoff is NaT")
        return value
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real):
        raise ValueError(f"cutoff must be a number for numeric times; got {cutoff!r}")
    if np.isnan(cutoff):
        raise ValueError("cutoff is NaN")
    return cutoff


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)
