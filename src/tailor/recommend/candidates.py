"""Each known user's best items, computed once per model: the serving fast path.

Scoring one user against 100,000 items, masking what they saw and selecting the best costs
milliseconds; a shop's site asks thousands of times a second. So, as Gorse does, the best
``depth`` items of every user the model knows are computed when the model is saved
(``tailor serve --save-model``), with everything that comes before the business rules: the
personal model's scores, content scores for items nobody has interacted with, the user's
seen items removed. A request then runs the rules (availability, filters, diversity) and
the explanations over those candidates only.

The candidates answer a request only where that gives the very answer a full pass would:

- for a user the model knows, without events since it was built (a view in this session
  folds into a new user vector: that request takes the full pass);
- when the rules have no boosts (a boost can lift an item from below the candidates);
- when the rules leave at least the items the selection needs among the candidates, or the
  candidates hold every item the user could get (fewer than ``depth`` finite scores).
  Otherwise the full pass answers.

Items added to the catalog after the candidates were computed are scored by content at
request time and merged in, on the scale of the user's best personal score (:attr:`best`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from tailor.recommend.base import top_k

DEFAULT_DEPTH = 100
"""Candidates kept per user: 10 times a typical page, 2 times MMR's pool for k = 10."""
EVIDENCE_DEPTH = 20
"""Candidates whose explaining history item is kept (a page after the rules nearly always
comes from these; a request looks up the others)."""


@dataclass(frozen=True)
class TopCandidates:
    """Per history row of the service: the best item codes (``items``, best first, -1 past
    the last finite score) and their pre-rule scores; ``best``: the user's best personal
    score (what content scores of new items are scaled by); ``n_items``: the catalog's size
    when they were computed; ``evidence``: for the first :data:`EVIDENCE_DEPTH` candidates,
    the history item that explains each (-1: none), so a request words its reasons without
    a similarity computation; ``evidence_verbs``: aligned with ``evidence``, the strongest
    thing the user did with that item, as the service codes it (1: a view), so a request
    need not look that up either (None: look it up)."""

    items: np.ndarray
    scores: np.ndarray
    best: np.ndarray
    n_items: int
    evidence: np.ndarray | None = None
    evidence_verbs: np.ndarray | None = None

    @property
    def depth(self) -> int:
        return int(self.items.shape[1])

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The row's candidate codes and scores, best first (empty when it has none)."""
        codes = self.items[row]
        n = int(np.count_nonzero(codes >= 0))
        return codes[:n].astype(np.int64), self.scores[row, :n]

    def forget(self, row: int) -> None:
        """Erase a user's row (in place: every service sharing these arrays must forget)."""
        if not self.items.flags.writeable:
            raise ValueError("the candidate arrays are read-only")
        self.items[row] = -1
        self.scores[row] = -np.inf
        self.best[row] = 0.0
        if self.evidence is not None:
            self.evidence[row] = -1
        if self.evidence_verbs is not None:
            self.evidence_verbs[row] = 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "top_items": self.items,
            "top_scores": self.scores,
            "top_best": self.best,
            "top_n_items": np.asarray(self.n_items),
        }
        if self.evidence is not None:
            arrays["top_evidence"] = self.evidence
        if self.evidence_verbs is not None:
            arrays["top_evidence_verbs"] = self.evidence_verbs
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TopCandidates | None:
        if "top_items" not in arrays:
            return None
        items, scores, best = arrays["top_items"], arrays["top_scores"], arrays["top_best"]
        evidence = arrays.get("top_evidence")
        # Models saved before the verbs were kept have none: requests look them up.
        verbs = arrays.get("top_evidence_verbs")
        if (
            items.ndim != 2
            or items.shape != scores.shape
            or len(best) != len(items)
            or (evidence is not None and len(evidence) != len(items))
            or (verbs is not None and (evidence is None or verbs.shape != evidence.shape))
        ):
            raise ValueError("the candidate arrays have inconsistent shapes")
        # np.load hands out fresh, writable arrays: no copy (they are large at scale).
        return cls(items, scores, best, int(arrays["top_n_items"]), evidence, verbs)


def compute_top_candidates(
    pre_rule_scores: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    n_rows: int,
    n_items: int,
    *,
    depth: int = DEFAULT_DEPTH,
    block: int = 512,
    progress: Callable[[int], None] | None = None,
    evidence_of: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> TopCandidates:
    """The best ``depth`` items of each of ``n_rows`` rows, in blocks of ``block`` rows.

    ``pre_rule_scores(rows)`` gives those rows' scores over the catalog (-inf: never) and
    their best personal scores, exactly as a request computes them before the rules.
    ``progress(n)`` is called with the rows done after each block. ``evidence_of(row,
    codes)``: the history item explaining each candidate of a row (kept as ``evidence``).
    """
    if depth < 1 or block < 1:
        raise ValueError(f"depth and block must be >= 1, got {depth} and {block}")
    depth = min(depth, n_items)
    items = np.full((n_rows, depth), -1, np.int32)
    scores = np.full((n_rows, depth), -np.inf, np.float32)
    best = np.zeros(n_rows, np.float32)
    explained = min(depth, EVIDENCE_DEPTH)
    evidence = None if evidence_of is None else np.full((n_rows, explained), -1, np.int32)

    def one_block(start: int) -> int:
        rows = np.arange(start, min(start + block, n_rows))
        block_scores, block_best = pre_rule_scores(rows)
        ids, values = block_top_k(block_scores, depth)
        items[rows], scores[rows], best[rows] = ids, values, block_best
        if evidence is not None:
            for row, codes in zip(rows, ids[:, :explained], strict=True):
                found = codes[codes >= 0]
                evidence[row, : len(found)] = evidence_of(int(row), found)
        return len(rows)

    # numpy and BLAS release the GIL: blocks on every core, each with a one-thread BLAS (BLAS
    # threads of their own would fight the blocks for the cores).
    workers = max(1, min(os.cpu_count() or 1, 4))
    with threadpool_limits(1), ThreadPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(one_block, range(0, n_rows, block)):
            if progress is not None:
                progress(done)
    return TopCandidates(items, scores, best, n_items, evidence)


def block_top_k(scores: np.ndarray, k: int, *, stride: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~tailor.recommend.base.top_k` for wide rows (a block of users × 100,000
    items), about four times faster: a threshold from every ``stride``-th column that
    about ``2k`` scores of a row pass, then a sort of only those. A row where fewer than
    ``k`` pass (or that holds -inf near its top) takes the exact partition instead.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if n_items < 20 * k * stride // 10 or n_rows == 0:
        return top_k(scores, k)
    sample = scores[:, ::stride]
    keep = min(sample.shape[1], -(-2 * k // stride))
    threshold = np.partition(sample, sample.shape[1] - keep, axis=1)[:, sample.shape[1] - keep]
    passing = scores >= threshold[:, None]
    counts = passing.sum(axis=1)
    fast = (counts >= k) & np.isfinite(threshold)
    ids = np.full((n_rows, k), -1, np.int64)
    values = np.full((n_rows, k), -np.inf, scores.dtype)
    rows, cols = np.nonzero(passing & fast[:, None])
    found = scores[rows, cols]
    order = np.lexsort((-found, rows))
    rows, cols, found = rows[order], cols[order], found[order]
    starts = np.concatenate([[0], np.cumsum(counts[fast])[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, counts[fast])
    top = rank < k
    ids[rows[top], rank[top]] = cols[top]
    values[rows[top], rank[top]] = found[top]
    slow = np.flatnonzero(~fast)
    if len(slow):
        ids[slow], values[slow] = top_k(scores[slow], k)
    ids[~np.isfinite(values)] = -1
    return ids, values
