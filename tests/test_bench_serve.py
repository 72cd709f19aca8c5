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

    figures = main(["--quick", "--duration", "2", "--connections", "4"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    assert set(figures) >= KEYS
    assert figures["bench"] == "serve" and figures["quick"] is True
    assert set(figures["targets_met"]) == {"rec", "ingest", "freshness"}
    assert figures["rec_errors"] == 0 and figures["rec_rps"] > 0
    assert figures["ingest_errors"] == 0 and figures["ingest_durable"]
    assert figures["freshness_ms"] < 5000
