"""The most popular items: the baseline every model must beat, and the cold-start fallback."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tailor.recommend.base import Recommender, distinct_users


class Popularity(Recommender):
    """Items ranked by how many users interacted with them (or by summed confidence).

    Parameters
    ----------
    by : "users" counts distinct users per item; "confidence" sums the interaction weights
        (time-decayed when the weights are, which makes this "trending").
    """

    name = "popularity"

    def __init__(self, *, by: str = "users") -> None:
        self.by = by

    def _fit(self, interactions: sp.csr_matrix) -> None:
        if self.by not in ("users", "confidence"):
            raise ValueError(f"by must be 'users' or 'confidence', got {self.by!r}")
        if self.by == "users":
            counts = distinct_users(interactions)
        else:
            counts = np.asarray(interactions.sum(axis=0)).ravel()
        self.popularity_ = counts.astype(np.float32)

    def _score(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (history.shape[0], len(self.popularity_))).copy()
