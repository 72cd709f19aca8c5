"""RFM scores and named segments, and clusters chosen by silhouette."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from tailor.audience.segments import (
    SEGMENTS,
    cluster_customers,
    quintile_scores,
    rfm_segments,
    segment_names,
)


def test_quintiles_run_from_one_to_five_and_ties_score_alike():
    scores = quintile_scores(np.arange(10.0))
    assert scores.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert (
        quintile_scores(np.arange(10.0), higher_is_better=False).tolist() == scores[::-1].tolist()
    )
    tied = quintile_scores(np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5.0]))
    assert tied[:6].tolist() == [1] * 6 and tied[-1] == 5


def test_every_recency_frequency_pair_has_exactly_one_named_segment():
    import re

    for r, f in itertools.product(range(1, 6), repeat=2):
        matches = [name for pattern, name, _ in SEGMENTS if re.fullmatch(pattern, f"{r}{f}")]
        assert len(matches) == 1, (r, f, matches)
    assert segment_names([5, 1, 5], [5, 1, 1]) == ["champions", "hibernating", "new"]


def summary_of(days_since_last, occasions, total_value, tenure_days=400.0) -> pa.Table:
    n = len(occasions)
    T = np.full(n, tenure_days / 7)
    return pa.table(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency": T - np.asarray(days_since_last, float) / 7,
            "T": T,
            "occasions": np.asarray(occasions),
            "total_value": np.asarray(total_value, float),
        }
    )


def test_rfm_segments_name_the_recent_frequent_buyers_champions():
    rng = np.random.default_rng(1)
    days = np.concatenate([rng.uniform(1, 10, 50), rng.uniform(300, 390, 50)])
    occasions = np.concatenate([rng.integers(8, 20, 50), rng.integers(1, 2, 50)])
    segments = rfm_segments(summary_of(days, occasions, occasions * 20.0))
    names = segments["segment"].to_pylist()
    assert set(names[:50]) <= {"champions", "loyal", "potential loyalists", "need attention"}
    assert names[:50].count("champions") >= 10 and "champions" not in names[50:]
    assert set(names[50:]) <= {"hibernating", "about to sleep"}
    assert names[50:].count("hibernating") >= 30


def test_clusters_find_two_clear_groups_and_describe_them():
    rng = np.random.default_rng(2)
    days = np.concatenate([rng.uniform(1, 15, 200), rng.uniform(300, 390, 200)])
    occasions = np.concatenate([rng.integers(10, 30, 200), np.ones(200, int)])
    clusters = cluster_customers(summary_of(days, occasions, occasions * 25.0), max_k=5)
    assert clusters.k == 2
    assert len(set(clusters.labels[:200])) == 1 and len(set(clusters.labels[200:])) == 1
    frequent = clusters.descriptions[int(clusters.labels[0])]
    assert frequent["customers"] == 200
    assert any(text.startswith("high occasions") or text.startswith("low days since last")
               for text in frequent["distinguished_by"])  # fmt: skip


def test_clustering_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="max_k must be at least 2"):
        cluster_customers(summary_of([1, 2, 3], [1, 2, 3], [1, 2, 3]), max_k=1)
    with pytest.raises(ValueError, match="at least 3 customers"):
        cluster_customers(summary_of([1, 2], [1, 2], [1, 2]))
    with pytest.raises(ValueError, match="do not separate"):
        cluster_customers(summary_of([5] * 10, [2] * 10, [40] * 10))
