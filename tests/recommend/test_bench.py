"""End to end: the recommendation benchmark on MovieLens 100K (skipped without the data), and
the clear errors its options give for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tailor.datasets.base import data_dir

needs_movielens = pytest.mark.skipif(
    not (data_dir() / "movielens-100k" / "u.data").is_file(),
    reason=f"MovieLens 100K not found under {data_dir()} (set TAILOR_DATA)",
)


@needs_movielens
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
    validation = figures["validation_ndcg"]
    assert figures["chosen"] == max(validation, key=validation.get) == "ease"


def interactions(tmp_path: Path, text: str) -> str:
    path = tmp_path / "i.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (None, [], "no such file"),
        ("user_id,item_id,timestamp\n", [], "holds no interactions"),
        ("user_id,item_id,timestamp\nu1,i1,1\n", ["--time-col", "ts"], "'ts' is not a column"),
        ("user_id,item_id,timestamp\nu1,i1,yesterday\n", [], "not times"),
        ("user_id,item_id,timestamp\nu1,i1,1\nu2,i2,\n", [], "1 empty rows"),
        ("user_id,item_id,timestamp\n,i1,1\n", [], "users has no id at row 0"),
        ("user_id,item_id,timestamp,w\nu1,i1,1,-2\n", ["--weight-col", "w"], "finite numbers"),
        ("user_id,item_id,timestamp\nu1,i1,1\nu2,i2,2\n", [], "leaves no"),
    ],
)
def test_bad_interaction_files_get_a_clear_error(tmp_path, text, extra, message):
    from bench.recommend import main

    path = str(tmp_path / "missing.csv") if text is None else interactions(tmp_path, text)
    argv = ["--protocol", "leave-last-out", "--interactions", path, *extra]
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_bad_options_are_refused(capsys):
    from bench.recommend import main

    for argv in (["--k", "0"], ["--models", "magic"], ["--interactions", "x.csv"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "unknown model(s) magic" in capsys.readouterr().err


def test_lightfm_peer_is_optional_and_a_broken_side_environment_is_reported(capsys):
    from types import SimpleNamespace

    import numpy as np
    import scipy.sparse as sp
    from bench.recommend import lightfm_peer

    splits = SimpleNamespace(fit_part=sp.csr_matrix(np.eye(3)), train=sp.csr_matrix(np.eye(3)))
    options = {"k": 2, "budget": 2, "seed": 0, "popularity": np.ones(3)}
    assert lightfm_peer(None, splits, **options) is None
    assert lightfm_peer("/bin/false", splits, **options) is None
    assert lightfm_peer("/nonexistent/python", splits, **options) is None
    assert capsys.readouterr().err.count("LightFM failed") == 2


@needs_movielens
@pytest.mark.skipif(
    not os.environ.get("TAILOR_LIGHTFM_PYTHON"),
    reason="no LightFM side environment (set TAILOR_LIGHTFM_PYTHON, see the README)",
)
def test_lightfm_peer_is_tuned_on_validation_and_scored_on_test():
    from bench.recommend import lightfm_peer

    from tailor.datasets.movielens import load_movielens_100k
    from tailor.recommend import InteractionLog
    from tailor.recommend.base import distinct_users
    from tailor.recommend.evaluation import Splits

    log = InteractionLog.from_events(load_movielens_100k(None).events)
    splits = Splits.make(log, "random", 42)
    peer = lightfm_peer(
        os.environ["TAILOR_LIGHTFM_PYTHON"], splits, k=10, budget=2, seed=42,
        popularity=distinct_users(splits.train).astype(float),
    )  # fmt: skip
    assert peer is not None and peer["params"]["loss"] == "warp"
    assert 0.3 < peer["metrics"]["ndcg"] < 0.6 and 0.1 < peer["validation_ndcg"] < 0.4
