"""EASE: an item-item model with a closed-form solution (Steck, WWW 2019).

"Embarrassingly Shallow Autoencoders for Sparse Data", H. Steck, 2019: the item-item weight
matrix B minimizes ||X - XB||² + λ||B||² subject to diag(B) = 0, solved in closed form
(eq. 8): P = (XᵀX + λI)⁻¹, B = I - P · diag(1 / diag(P)), that is B_ij = -P_ij / P_jj.
It needs the inverse of an items × items matrix, so it suits catalogs up to tens of
thousands of items.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from tailor.recommend.base import Recommender, item_codes

MAX_ITEMS = 40_000


class EASE(Recommender):
    """Parameters
    ----------
    l2 : λ, the L2 penalty on B (Steck's ML-20M optimum is 500; tune it: it grows with the
        data's density).
    binary : fit on 0/1 interactions instead of the confidence weights.
    """

    name = "ease"

    def __init__(self, *, l2: float = 500.0, binary: bool = True) -> None:
        self.l2 = l2
        self.binary = binary

    def _fit(self, interactions: sp.csr_matrix) -> None:
        if self.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}")
        n_items = interactions.shape[1]
        if n_items > MAX_ITEMS:
            raise ValueError(
                f"EASE inverts an items × items matrix; {n_items:,} items is more than "
                f"{MAX_ITEMS:,}. Use itemknn or als for a catalog this large."
            )
        x = _prepared(interactions, self.binary)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n_items)] += self.l2
        # The Gram matrix plus λI is symmetric positive definite: Cholesky is the stable,
        # fast way to invert it.
        precision = scipy.linalg.cho_solve(
            scipy.linalg.cho_factor(gram, lower=True, check_finite=False), np.eye(n_items)
        )
        weights = -precision / np.diag(precision)
        weights[np.diag_indices(n_items)] = 0.0
        if not np.isfinite(weights).all():
            raise FloatingPointError("EASE produced non-finite weights; increase l2")
        self.weights_ = weights.astype(np.float32)

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.asarray(_prepared(history, self.binary) @ self.weights_)

    def item_similarity(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The learned weights B_ij (len(sources) × len(targets)): what history item i adds to
        item j's score. They can be negative (i speaks against j) and are not symmetric."""
        self._check_fitted()
        sources, targets = (
            item_codes(sources, self.n_items_, "sources"),
            item_codes(targets, self.n_items_, "targets"),
        )
        return self.weights_[np.ix_(sources, targets)]


def _prepared(matrix: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    if not binary:
        return matrix
    ones = matrix.copy()
    ones.data[:] = 1.0
    return ones
