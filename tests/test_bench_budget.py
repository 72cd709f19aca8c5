"""The budget benchmark's any-CSV mode, end to end on a simulated media mix: it prints the
table and, last, one JSON line with both models' holdout errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from bench import budget as bench

from tailor.datasets.simulate.ad_channels import simulate_channels


def test_csv_mode_prints_both_holdout_errors_last(tmp_path: Path, capsys) -> None:
    data = simulate_channels(channels=2, periods=80, seed=3).data
    path = tmp_path / "media.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["week", "sales", *data.channels, *data.control_names])
        for t in range(data.periods):
            out.writerow([str(data.dates[t]), data.target[t], *data.spend[t], *data.controls[t]])
    result = bench.main(
        [
            "--quick", "--csv", str(path), "--date-col", "week", "--target-col", "sales",
            "--spend-cols", ",".join(data.channels),
            "--control-cols", ",".join(data.control_names), "--holdout-weeks", "6",
        ]
    )  # fmt: skip
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert last["bench"] == "budget" and last["mode"] == "csv"
    assert 0 < last["holdout_mape"] < 0.5 and 0 < last["ridge_holdout_mape"] < 0.5
    assert 0 <= last["holdout_coverage94"] <= 1


def test_csv_mode_names_the_missing_options(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--csv", str(tmp_path / "x.csv"), "--date-col", "d"])
