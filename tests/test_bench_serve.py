"""End to end: the serving benchmark in its quick form (a real ``tailor serve`` under wrk)."""

from __future__ import annotations

import json
import shutil

import pytest

KEYS = {
    "bench",
    "rec_rps",
    "rec_p50_ms",
    "rec_p99_ms",
    "rec_errors",
    "ingest_events_per_s",
    "ingest_errors",
    "freshness_ms",
    "quick",
    "store",
    "workers",
    "users",
    "items",
    "events",
    "connections",
    "duration_s",
    "targets_met",
}


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)"
)
def test_quick_serve_bench_answers_every_request(capsys):
    from bench.serve import main

    figures = main(["--quick", "--duration", "2", "--connections", "4", "--rate", "200"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    assert set(figures) >= KEYS
    assert figures["bench"] == "serve" and figures["quick"] is True
    assert set(figures["targets_met"]) == {"rec", "rec_at_rate", "ingest", "freshness"}
    # 200/s is far below the server's pace: the schedule is kept, and it is not the target's.
    assert figures["rec_paced_rate"] == 200 and figures["rec_paced_errors"] == 0
    assert 0.9 * 200 <= figures["rec_paced_rps"] <= 1.1 * 200
    assert figures["targets_met"]["rec_at_rate"] is False
    assert figures["rec_errors"] == 0 and figures["rec_rps"] > 0
    assert figures["ingest_errors"] == 0 and figures["ingest_durable"]
    assert figures["freshness_ms"] < 5000


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "-1"],
        ["--rate", "nan"],
        ["--rate", "inf"],
        ["--paced-connections", "0"],
        ["--connections", "0"],
        ["--duration", "0"],
        ["--users", "0"],
        ["--ingest-connections", "0"],
        ["--ingest-processes", "-1"],
    ],
)
def test_bad_options_are_refused_before_any_work(argv, capsys):
    from bench.serve import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert argv[0].removeprefix("--") in capsys.readouterr().err
