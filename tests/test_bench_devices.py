"""bench.devices: the any-CSV occupancy mode end to end, and the whole benchmark in small."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench import devices as bench


def _office_csv(path: Path, days: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-02-02", periods=days * 24 * 12, freq="5min")
    occupied = ((index.hour >= 9) & (index.hour < 17) & (index.day_of_week < 5)).astype(int)
    occupied &= rng.random(len(index)) > 0.05
    frame = pd.DataFrame(
        {
            "Date": index.strftime("%m/%d/%Y"),
            "Time": index.strftime("%H:%M:%S"),
            "Light": 10 + 400 * occupied + rng.normal(0, 20, len(index)),
            "CO2": 420 + 250 * occupied + rng.normal(0, 30, len(index)),
            "Present": occupied,
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_occupancy_csv_mode_prints_both_f1_last(tmp_path: Path, capsys) -> None:
    path = _office_csv(tmp_path / "office.csv")
    result = bench.main(
        ["--occupancy-csv", str(path), "--time-cols", "Date,Time", "--label-col", "Present"]
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert last["bench"] == "devices" and last["mode"] == "occupancy-csv"
    assert last["f1"] > 0.9 and 0 <= last["baseline_f1"] <= 1
    assert last["learn_rows"] > last["test_rows"] > 0


def test_occupancy_csv_mode_names_a_missing_label(tmp_path: Path) -> None:
    path = _office_csv(tmp_path / "office.csv", days=2)
    with pytest.raises(ValueError, match="Nope"):
        bench.main(
            ["--occupancy-csv", str(path), "--time-cols", "Date,Time", "--label-col", "Nope"]
        )


@pytest.mark.slow
def test_the_whole_benchmark_in_small(capsys) -> None:
    result = bench.main(["--homes", "4", "--onnx-homes", "2", "--mqtt-messages", "50"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert last["onnx_max_abs_diff"] <= 1e-4
    assert 0 < last["setpoint_mae_c"] < 2
