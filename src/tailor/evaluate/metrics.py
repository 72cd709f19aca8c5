"""Top-K ranking metrics, vectorized over users.

The accuracy metrics follow Microsoft Recommenders
(``recommenders/evaluation/python_evaluation.py`` in recommenders-team/recommenders)
so that our benchmark numbers can be compared with the ones in their README:

- only users with at least one relevant (held-out) item are evaluated, and every
  mean is taken over them;
- relevance is binary;
- ``precision`` divides the hits by ``k`` even when a list is shorter than ``k``
  (``precision_at_k``);
- ``recall`` divides the hits by the number of relevant items (``recall_at_k``);
- ``ndcg`` uses binary gains, DCG = sum of 1 / log(1 + rank) over the hits and an
  ideal DCG over min(n_relevant, k) positions (``ndcg_at_k``; they use the natural
  log by default, we use log2: the ratio does not depend on the base);
- ``map`` sums precision@rank over the hits and divides by the number of relevant
  items (``map``, the metric their README reports as "MAP"), ``map_at_k`` divides
  the same sum by min(n_relevant, k) (``map_at_k``, Spark's MAP@k).

``hit_rate`` and ``mrr`` are not in that file; ``coverage``, ``novelty`` and
``diversity`` are close to its ``catalog_coverage``, ``novelty`` and ``diversity``,
with the differences noted in :func:`ranking_metrics`.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["RankingMetrics", "per_user_metrics", "ranking_metrics"]


@dataclass(frozen=True)
class RankingMetrics:
    """Means of the top-K metrics over the evaluated users.

    Attributes
    ----------
    precision, recall, map, map_at_k, ndcg, hit_rate, mrr : float
        Means over the evaluated users (those with at least one relevant item).
    coverage : float
        Distinct items recommended to the evaluated users, over the number of items.
    users : int
        How many users were evaluated.
    diversity, novelty : float or None
        None unless ``item_vectors`` / ``item_popularity`` were given.
    """

    precision: float
    recall: float
    map: float
    map_at_k: float
    ndcg: float
    hit_rate: float
    mrr: float
    coverage: float
    users: int
    diversity: float | None = None
    novelty: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        """Return the metrics as a plain ``dict`` (field name to value)."""
        return asdict(self)


def ranking_metrics(
    recommended: np.ndarray,
    relevant: sp.csr_matrix,
    *,
    k: int | None = None,
    item_popularity: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
) -> RankingMetrics:
    """Compute the top-K ranking metrics, averaged over the evaluated users.

    Parameters
    ----------
    recommended : numpy.ndarray
        ``(n_users, width)`` integer item indices in rank order. ``-1`` pads a list
        shorter than ``width``; padding must come after the real items.
    relevant : scipy.sparse.csr_matrix
        ``(n_users, n_items)``; a nonzero entry marks a relevant (held-out) item.
        Any scipy sparse matrix or array, or a dense 2-D array, is accepted.
    k : int, optional
        Cut-off; defaults to ``width`` and must not exceed it.
    item_popularity : numpy.ndarray, optional
        ``(n_items,)`` training interaction counts. When given, ``novelty`` is the
        mean over all recommended (user, item) entries of ``-log2(share)`` with
        ``share = item_popularity / item_popularity.sum()``, as in Recommenders'
        ``novelty`` / ``historical_item_novelty``. An item with zero popularity gets
        the share of a single interaction, ``1 / total``, so that it counts as the
        most novel item rather than infinitely novel (Recommenders drops such items
        from the sum but keeps them in the count, i.e. gives them novelty 0).
    item_vectors : numpy.ndarray, optional
        ``(n_items, d)`` item embeddings or features. When given, ``diversity`` is
        the mean over users of the mean over item pairs in the list of
        ``1 - cosine similarity``, as Recommenders' ``diversity`` with
        ``item_sim_measure="item_feature_vector"``. Lists with fewer than two items
        contribute nothing; if no list has two items the result is NaN. A zero
        vector has similarity 0 with every item (Recommenders would divide by zero).

    Returns
    -------
    RankingMetrics
        Means over the users that have at least one relevant item. ``coverage``,
        ``novelty`` and ``diversity`` also only look at those users' top-``k``
        lists, so that every number describes the same population (Recommenders
        computes them over every user in its recommendation table). ``coverage``
        divides by ``n_items`` (Recommenders' ``catalog_coverage`` divides by the
        number of distinct items in the training data).

    Raises
    ------
    ValueError
        If an argument has the wrong shape, dtype or values (the message names it),
        or if no user has a relevant item.

    Notes
    -----
    A user with relevant items but an all ``-1`` list is evaluated and scores 0.
    Recommenders' ``ndcg_at_k`` does the same for users missing from its
    prediction table, while its ``precision_at_k``, ``recall_at_k`` and ``map``
    leave them out; with one list per test user, as in their benchmark, the
    definitions agree.
    """
    rec, rel, k = _validate(recommended, relevant, k)
    n_items = rel.shape[1]
    popularity = _validate_popularity(item_popularity, n_items)
    vectors = _validate_vectors(item_vectors, n_items)

    per_user, evaluated = _per_user(rec, rel, k)
    if not evaluated.any():
        raise ValueError("relevant has no user with a relevant item; nothing to evaluate")

    top = rec[evaluated]
    present = top >= 0
    items = top[present]
    coverage = np.unique(items).size / n_items

    novelty = None
    if popularity is not None:
        novelty = _novelty(items, popularity)
    diversity = None
    if vectors is not None:
        diversity = _diversity(top, present, vectors)

    return RankingMetrics(
        precision=float(per_user["precision"].mean()),
        recall=float(per_user["recall"].mean()),
        map=float(per_user["ap"].mean()),
        map_at_k=float(per_user["ap_at_k"].mean()),
        ndcg=float(per_user["ndcg"].mean()),
        hit_rate=float(per_user["hit"].mean()),
        mrr=float(per_user["rr"].mean()),
        coverage=float(coverage),
        users=int(evaluated.sum()),
        diversity=diversity,
        novelty=novelty,
    )


def per_user_metrics(
    recommended: np.ndarray,
    relevant: sp.csr_matrix,
    *,
    k: int | None = None,
) -> dict[str, np.ndarray]:
    """Compute the top-K metrics for each evaluated user, e.g. for paired tests.

    Parameters
    ----------
    recommended, relevant, k
        As in :func:`ranking_metrics`.

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per evaluated user (a user with at least one relevant item), in
        row order: ``user`` (the row index in ``recommended``), ``precision``,
        ``recall``, ``ap`` (average precision normalised by the number of relevant
        items, averaged into ``map``), ``ap_at_k`` (normalised by
        min(n_relevant, k)), ``ndcg``, ``hit`` (1.0 or 0.0) and ``rr`` (reciprocal
        rank of the first hit, 0.0 without a hit). The arrays are empty when no
        user has a relevant item.

    Raises
    ------
    ValueError
        If an argument has the wrong shape, dtype or values (the message names it).
    """
    rec, rel, k = _validate(recommended, relevant, k)
    per_user, evaluated = _per_user(rec, rel, k)
    return {"user": np.flatnonzero(evaluated), **per_user}


def _per_user(
    rec: np.ndarray, rel: sp.csr_matrix, k: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Metrics for the users with a relevant item, and the mask selecting them."""
    n_relevant_all = np.diff(rel.indptr)
    evaluated = n_relevant_all > 0
    hits = _hits(rec, rel)[evaluated]
    n_relevant = n_relevant_all[evaluated].astype(np.float64)

    ranks = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    n_hits = hits.sum(axis=1)
    # Precision at each hit is (hits so far) / rank; AP sums it over the hits.
    precision_sum = (hits * (np.cumsum(hits, axis=1) / ranks)).sum(axis=1)
    ideal_positions = np.minimum(n_relevant, k).astype(np.int64)
    ideal_dcg = np.cumsum(discounts)[ideal_positions - 1]
    has_hit = n_hits > 0
    first_rank = np.argmax(hits, axis=1) + 1.0

    per_user = {
        "precision": n_hits / k,
        "recall": n_hits / n_relevant,
        "ap": precision_sum / n_relevant,
        "ap_at_k": precision_sum / ideal_positions,
        "ndcg": (hits @ discounts) / ideal_dcg,
        "hit": has_hit.astype(np.float64),
        "rr": np.where(has_hit, 1.0 / first_rank, 0.0),
    }
    return per_user, evaluated


def _hits(rec: np.ndarray, rel: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n_users, k)``: is the item at each position relevant to its user."""
    n_users, n_items = rel.shape
    # Flattened (user, item) keys of the relevant entries come out sorted, because
    # the CSR rows are in order and their indices are sorted: one binary search
    # per recommended entry replaces a per-user set lookup.
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    present = rec >= 0
    if keys.size == 0:
        return np.zeros(rec.shape, dtype=bool)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + rec
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return present & (keys[pos] == query)


def _novelty(items: np.ndarray, popularity: np.ndarray) -> float:
    if items.size == 0:
        return float("nan")
    total = popularity.sum()
    share = np.where(popularity > 0, popularity, 1.0) / total
    return float(-np.log2(share[items]).mean())


def _diversity(top: np.ndarray, present: np.ndarray, vectors: np.ndarray) -> float:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    safe = np.where(present, top, 0)
    # Sum of pairwise cosines over i < j is (|sum v|^2 - sum |v|^2) / 2 for unit
    # vectors, which needs O(k * d) per user instead of a k x k similarity matrix.
    total = np.zeros((top.shape[0], unit.shape[1]))
    self_similarity = np.zeros(top.shape[0])
    for j in range(top.shape[1]):
        v = unit[safe[:, j]] * present[:, j, None]
        total += v
        self_similarity += np.einsum("ij,ij->i", v, v)
    pair_sum = (np.einsum("ij,ij->i", total, total) - self_similarity) / 2.0
    m = present.sum(axis=1)
    scored = m >= 2
    if not scored.any():
        return float("nan")
    n_pairs = m[scored] * (m[scored] - 1) / 2.0
    return float(np.mean(1.0 - pair_sum[scored] / n_pairs))


def _validate(recommended: Any, relevant: Any, k: Any) -> tuple[np.ndarray, sp.csr_matrix, int]:
    """Check the shared arguments; return the top-``k`` columns, a 0/1 CSR matrix and k."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(
            f"recommended must be a 2-D array (n_users, k); got {rec.ndim}-D, shape {rec.shape}"
        )
    if rec.dtype.kind not in "iu":
        raise ValueError(f"recommended must hold integer item indices; got dtype {rec.dtype}")
    if rec.shape[1] == 0:
        raise ValueError("recommended must have at least one column")
    rec = rec.astype(np.int64, copy=False)

    if sp.issparse(relevant):
        if relevant.ndim != 2:
            raise ValueError(f"relevant must be 2-D (n_users, n_items); got {relevant.ndim}-D")
        rel = sp.csr_matrix(relevant, copy=True)
    else:
        dense = np.asarray(relevant)
        if dense.ndim != 2:
            raise ValueError(
                f"relevant must be a 2-D (n_users, n_items) matrix; got {dense.ndim}-D, "
                f"shape {dense.shape}"
            )
        rel = sp.csr_matrix(dense)
    if rel.shape[0] != rec.shape[0]:
        raise ValueError(
            f"recommended and relevant must have one row per user: recommended has "
            f"{rec.shape[0]} rows, relevant has {rel.shape[0]}"
        )
    # Explicit zeros are not relevant, and summed duplicates must count once.
    rel.sum_duplicates()
    rel.eliminate_zeros()
    rel.sort_indices()
    rel.data = np.ones_like(rel.data, dtype=np.float64)
    n_items = rel.shape[1]

    width = rec.shape[1]
    if k is None:
        k = width
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer; got {k!r}")
    k = int(k)
    if not 1 <= k <= width:
        raise ValueError(f"k must be between 1 and recommended.shape[1] = {width}; got {k}")

    if rec.size:
        low, high = int(rec.min()), int(rec.max())
        if low < -1:
            raise ValueError(
                f"recommended has item index {low}; the only negative value allowed is -1 (padding)"
            )
        if high >= n_items:
            raise ValueError(
                f"recommended has item index {high}, out of range for relevant with {n_items} items"
            )
    pad = rec < 0
    if (pad[:, :-1] & ~pad[:, 1:]).any():
        row = int(np.flatnonzero((pad[:, :-1] & ~pad[:, 1:]).any(axis=1))[0])
        raise ValueError(
            f"recommended row {row} has an item after a -1; -1 may only pad the end of a list"
        )
    ordered = np.sort(rec, axis=1)
    duplicate = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if duplicate.any():
        row = int(np.flatnonzero(duplicate.any(axis=1))[0])
        raise ValueError(f"recommended row {row} lists the same item more than once")
    return rec[:, :k], rel, k


def _validate_popularity(item_popularity: Any, n_items: int) -> np.ndarray | None:
    if item_popularity is None:
        return None
    pop = np.asarray(item_popularity)
    if pop.ndim != 1 or pop.shape[0] != n_items:
        raise ValueError(
            f"item_popularity must have shape ({n_items},), one count per item; got {pop.shape}"
        )
    if pop.dtype.kind not in "iuf":
        raise ValueError(f"item_popularity must be numeric; got dtype {pop.dtype}")
    pop = pop.astype(np.float64)
    if not np.isfinite(pop).all() or (pop < 0).any():
        raise ValueError("item_popularity must be finite and non-negative")
    if pop.sum() <= 0:
        raise ValueError("item_popularity must have a positive total")
    return pop


def _validate_vectors(item_vectors: Any, n_items: int) -> np.ndarray | None:
    if item_vectors is None:
        return None
    vec = np.asarray(item_vectors)
    if vec.ndim != 2 or vec.shape[0] != n_items or vec.shape[1] == 0:
        raise ValueError(
            f"item_vectors must have shape ({n_items}, d) with d >= 1; got {vec.shape}"
        )
    if vec.dtype.kind not in "iuf":
        raise ValueError(f"item_vectors must be numeric; got dtype {vec.dtype}")
    vec = vec.astype(np.float64)
    if not np.isfinite(vec).all():
        raise ValueError("item_vectors must be finite")
    return vec
