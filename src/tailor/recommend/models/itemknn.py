"""Item-based nearest neighbours: cosine similarity between items' user vectors.

Sarwar et al., "Item-based collaborative filtering recommendation algorithms", WWW 2001, with
the shrunk cosine of Koren (KDD 2008, eq. 2): s_ij = x_i·x_j / (‖x_i‖‖x_j‖ + shrink), so
that pairs seen together by few users count less. Optional BM25 or TF-IDF weighting of the
interactions (from ``implicit``) damps heavy users and very popular items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight, tfidf_weight

from tailor.recommend.base import Recommender, item_codes

_BLOCK = 1024


class ItemKNN(Recommender):
    """Parameters
    ----------
    neighbors : similar items kept per item (the rest of the similarity row is dropped).
    shrink : added to the cosine's denominator.
    weighting : "none", "bm25" or "tfidf" applied to the interaction matrix first.
    bm25_k1, bm25_b : BM25 saturation and length normalization.
    binary : use 0/1 interactions instead of the confidence weights.
    """

    name = "itemknn"

    def __init__(
        self,
        *,
        neighbors: int = 100,
        shrink: float = 10.0,
        weighting: str = "none",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        binary: bool = False,
    ) -> None:
        self.neighbors = neighbors
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.binary = binary

    def _fit(self, interactions: sp.csr_matrix) -> None:
        if self.neighbors < 1:
            raise ValueError(f"neighbors must be at least 1, got {self.neighbors}")
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if self.weighting not in ("none", "bm25", "tfidf"):
            raise ValueError(f"weighting must be none, bm25 or tfidf, got {self.weighting!r}")
        x = self._weighted(interactions)
        n_items = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xt = x.T.tocsr()
        keep = min(self.neighbors, n_items - 1) if n_items > 1 else 0
        rows, cols, vals = [], [], []
        # Column blocks keep memory at items × block instead of items × items.
        for start in range(0, n_items, _BLOCK):
            stop = min(start + _BLOCK, n_items)
            block = np.asarray((xt @ x[:, start:stop]).todense(), dtype=np.float32)
            block /= np.outer(norms, norms[start:stop]) + self.shrink + 1e-12
            block[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
            if keep == 0:
                continue
            top = np.argpartition(-block, keep - 1, axis=0)[:keep]
            values = np.take_along_axis(block, top, axis=0)
            positive = values > 0
            rows.append(top[positive])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[positive])
            vals.append(values[positive])
        self.similarity_ = sp.csr_matrix(
            (
                np.concatenate(vals) if vals else np.empty(0, np.float32),
                (
                    np.concatenate(rows) if rows else np.empty(0, np.int64),
                    np.concatenate(cols) if cols else np.empty(0, np.int64),
                ),
            ),
            shape=(n_items, n_items),
            dtype=np.float32,
        )

    def _weighted(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        x = matrix.copy()
        if self.binary:
            x.data[:] = 1.0
        if self.weighting == "bm25":
            x = bm25_weight(x.tocoo(), K1=self.bm25_k1, B=self.bm25_b).tocsr()
        elif self.weighting == "tfidf":
            x = tfidf_weight(x.tocoo()).tocsr()
        return sp.csr_matrix(x, dtype=np.float32)

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        x = history.copy()
        if self.binary:
            x.data[:] = 1.0
        return np.asarray((x @ self.similarity_).todense())

    def item_similarity(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The kept similarities s_ij (len(sources) × len(targets)): what history item i adds
        to item j's score per unit of confidence; 0 where j is not among i's neighbours."""
        self._check_fitted()
        sources, targets = (
            item_codes(sources, self.n_items_, "sources"),
            item_codes(targets, self.n_items_, "targets"),
        )
        return self.similarity_[sources][:, targets].toarray()
