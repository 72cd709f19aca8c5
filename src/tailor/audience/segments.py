"""Customer segments: named RFM segments a marketer reads at a glance, and data-driven
clusters, each described by what sets it apart.

RFM scores are quintiles (1 to 5) over the customer base: recency from the days since the last
purchase (recent is 5), frequency from the purchase occasions, monetary from the total value.
The named segments are the usual map of the recency and frequency scores (the one shared by
most RFM tools): champions bought recently and often, "can't lose them" bought often but long
ago, and so on (:data:`SEGMENTS`).

Clusters are k-means on standardized log features; ``k`` is the one of ``2..max_k`` with the
highest silhouette score (on at most ``silhouette_sample`` customers), a criterion that needs
no labels and penalizes both merged and split groups.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.stats import rankdata

SEGMENTS: tuple[tuple[str, str, str], ...] = (
    # (recency score + frequency score pattern, name, what it means)
    (r"[1-2][1-2]", "hibernating", "bought rarely, long ago"),
    (r"[1-2][3-4]", "at risk", "bought fairly often, but not for a long time"),
    (r"[1-2]5", "can't lose them", "among the most frequent buyers, but not for a long time"),
    (r"3[1-2]", "about to sleep", "bought rarely, a while ago"),
    (r"33", "need attention", "average recency and frequency"),
    (r"[3-4][4-5]", "loyal", "buy often, fairly recently"),
    (r"41", "promising", "bought once, recently"),
    (r"51", "new", "bought once, very recently"),
    (r"[4-5][2-3]", "potential loyalists", "recent buyers with a few purchases"),
    (r"5[4-5]", "champions", "bought very recently and most often"),
)

CLUSTER_FEATURES = ("days_since_last", "occasions", "total_value", "mean_value", "tenure_days")


def quintile_scores(values: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """1..5 by rank; tied values share their lowest rank, so equal values get equal scores
    and the many customers who bought once all score 1 on frequency."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return np.empty(0, np.int8)
    ranks = rankdata(values if higher_is_better else -values, method="min") / len(values)
    return np.clip(np.ceil(ranks * 5), 1, 5).astype(np.int8)


def segment_names(recency_score: np.ndarray, frequency_score: np.ndarray) -> list[str]:
    """The named segment of each (R, F) pair of scores."""
    compiled = [(re.compile(pattern), name) for pattern, name, _ in SEGMENTS]
    names = []
    for r, f in zip(recency_score, frequency_score, strict=True):
        key = f"{int(r)}{int(f)}"
        names.append(next(name for pattern, name in compiled if pattern.fullmatch(key)))
    return names


def rfm_segments(summary: pa.Table) -> pa.Table:
    """``customer_id``, ``r_score``, ``f_score``, ``m_score`` and ``segment`` for each row
    of a :func:`~tailor.audience.rfm.customer_summary`."""
    days_since_last = (summary["T"].to_numpy() - summary["recency"].to_numpy()) * 7.0
    r = quintile_scores(days_since_last, higher_is_better=False)
    f = quintile_scores(summary["occasions"].to_numpy())
    m = quintile_scores(summary["total_value"].to_numpy())
    return pa.table(
        {
            "customer_id": summary["customer_id"],
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "segment": segment_names(r, f),
        }
    )


def cluster_matrix(summary: pa.Table, period_days: float = 7.0) -> np.ndarray:
    """:data:`CLUSTER_FEATURES` per customer, log1p-transformed (values are skewed)."""
    occasions = summary["occasions"].to_numpy().astype(float)
    total = summary["total_value"].to_numpy()
    columns = {
        "days_since_last": (summary["T"].to_numpy() - summary["recency"].to_numpy()) * period_days,
        "occasions": occasions,
        "total_value": np.maximum(total, 0),
        "mean_value": np.maximum(total, 0) / np.maximum(occasions, 1),
        "tenure_days": summary["T"].to_numpy() * period_days,
    }
    return np.log1p(np.column_stack([columns[name] for name in CLUSTER_FEATURES]))


@dataclass
class Clusters:
    """k-means clusters of customers: ``labels`` per customer, ``k``, the silhouette of
    each ``k`` tried and, per cluster, its size and distinguishing features; ``centers`` in
    the space standardized by ``mean`` and ``scale``, to assign other customers later."""

    labels: np.ndarray
    k: int
    silhouettes: dict[int, float]
    descriptions: list[dict]
    centers: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def assign(self, summary: pa.Table) -> np.ndarray:
        """The nearest cluster of each customer of ``summary``."""
        scaled = (cluster_matrix(summary) - self.mean) / self.scale
        distances = ((scaled[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1)


def cluster_customers(
    summary: pa.Table,
    *,
    max_k: int = 8,
    silhouette_sample: int = 5000,
    random_state: int = 0,
) -> Clusters:
    """Cluster customers on :data:`CLUSTER_FEATURES`, ``k`` by the silhouette criterion."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    if max_k < 2:
        raise ValueError(f"max_k must be at least 2, got {max_k}")
    features = cluster_matrix(summary)
    n = len(features)
    if n < 3:
        raise ValueError(f"clustering needs at least 3 customers, got {n}")
    distinct = len(np.unique(features, axis=0))
    if distinct < 2:
        raise ValueError("the customers do not separate into clusters (all alike)")
    scaler = StandardScaler().fit(features)
    scaled = scaler.transform(features)
    rng = np.random.default_rng(random_state)
    sample = rng.choice(n, size=min(n, silhouette_sample), replace=False)
    silhouettes, fitted = {}, {}
    for k in range(2, min(max_k, n - 1, distinct) + 1):
        model = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit(scaled)
        if len(np.unique(model.labels_[sample])) < 2:
            continue
        silhouettes[k] = float(silhouette_score(scaled[sample], model.labels_[sample]))
        fitted[k] = model
    if not silhouettes:
        raise ValueError("the customers do not separate into clusters (all alike)")
    k = max(silhouettes, key=silhouettes.get)
    labels = fitted[k].labels_
    return Clusters(
        labels,
        k,
        silhouettes,
        _describe(scaled, features, labels),
        centers=fitted[k].cluster_centers_,
        mean=scaler.mean_,
        scale=scaler.scale_,
    )


def _describe(scaled: np.ndarray, features: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Each cluster's size, typical (median) values and the two features whose cluster mean
    lies furthest from the overall mean, in standard deviations."""
    out = []
    for cluster in np.unique(labels):
        members = labels == cluster
        shift = scaled[members].mean(axis=0)
        order = np.argsort(-np.abs(shift))[:2]
        typical = np.expm1(np.median(features[members], axis=0))
        out.append(
            {
                "cluster": int(cluster),
                "customers": int(members.sum()),
                "distinguished_by": [
                    f"{'high' if shift[j] > 0 else 'low'} {CLUSTER_FEATURES[j].replace('_', ' ')}"
                    f" ({shift[j]:+.1f} sd)"
                    for j in order
                ],
                "median": {
                    name: round(float(v), 2)
                    for name, v in zip(CLUSTER_FEATURES, typical, strict=True)
                },
            }
        )
    return out


def segment_summary(scores: pa.Table) -> list[dict]:
    """Per named segment of scored customers (``segment``, ``churn_risk``, ``clv``), largest
    first: customers, mean churn risk, mean and total lifetime value, share of all value."""
    segment = np.asarray(scores["segment"].to_pylist(), dtype=object)
    risk = scores["churn_risk"].to_numpy()
    clv = scores["clv"].to_numpy()
    everything = max(float(clv.sum()), 1e-12)
    rows = []
    for name, count in Counter(segment.tolist()).most_common():
        members = segment == name
        rows.append(
            {
                "segment": name,
                "customers": count,
                "mean_churn_risk": round(float(risk[members].mean()), 4),
                "mean_clv": round(float(clv[members].mean()), 2),
                "total_clv": round(float(clv[members].sum()), 2),
                "share_of_value": round(float(clv[members].sum()) / everything, 4),
            }
        )
    return rows
