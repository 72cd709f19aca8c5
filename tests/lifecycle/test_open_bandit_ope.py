"""The benchmark's off-policy evaluation on the real Open Bandit sample (skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

from tailor.datasets.base import DataNotFoundError


def test_the_random_logs_estimate_the_thompson_policy_within_their_intervals():
    from bench.lifecycle import ope_figures

    try:
        figures = ope_figures(None, "all", None)
    except DataNotFoundError as exc:
        pytest.skip(f"the Open Bandit sample is not here: {exc}")
    truth = figures["truth"]
    assert figures["rounds"] == 10_000 and 0 < truth < 0.01
    for name, estimate in figures["estimates"].items():
        assert estimate.covers(truth), name
        # Uniform logging at 1/80 per position: the IPW weights are 80 * pi, averaging 1.
        assert 0 < estimate.value < 0.02


def test_the_policy_table_is_a_distribution_per_position():
    from bench.lifecycle import policy_table

    logs = {"item": np.array([0, 1, 1, 2]), "position": np.array([0, 0, 1, 1])}
    table = policy_table(logs, items=3, positions=2)
    np.testing.assert_allclose(table.sum(axis=0), 1)
    assert table[1, 0] == 0.5 and table[2, 1] == 0.5
