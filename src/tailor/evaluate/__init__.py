"""Offline evaluation: top-K ranking metrics and train/test splits of interactions."""

from tailor.evaluate.metrics import RankingMetrics, per_user_metrics, ranking_metrics
from tailor.evaluate.splits import leave_last_out, random_per_user, temporal, users_with_at_least

__all__ = [
    "RankingMetrics",
    "leave_last_out",
    "per_user_metrics",
    "random_per_user",
    "ranking_metrics",
    "temporal",
    "users_with_at_least",
]
