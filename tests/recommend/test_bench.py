"""End to end: the recommendation benchmark on MovieLens 100K (skipped without the data)."""

from __future__ import annotations

import json

import pytest

from tailor.datasets.base import data_dir

pytestmark = pytest.mark.skipif(
    not (data_dir() / "movielens-100k" / "u.data").is_file(),
    reason=f"MovieLens 100K not found under {data_dir()} (set TAILOR_DATA)",
)


def test_msr_protocol_runs_and_tuned_ease_beats_popularity(capsys):
    from bench.recommend import main

    figures = main(["--budget", "2", "--models", "popularity,ease"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    ease, popularity = figures["models"]["ease"], figures["models"]["popularity"]
    # Published MSR table: SAR 0.3825, BPR 0.4420; a tuned EASE must land well above both.
    assert ease["ndcg"] > 0.45 and ease["ndcg"] > popularity["ndcg"] + 0.15
    assert figures["peer_als_tuned_ndcg"] > figures["peer_als_ndcg"] * 0.9
    assert set(figures["tuned"]) >= {"ease", "peer_als_tuned"}
