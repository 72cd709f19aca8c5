"""The decision model in ONNX, the offline runner, and ``tailor edge``."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from typer.testing import CliRunner

from tailor.cli_edge import edge_app
from tailor.devices.edge import (
    EdgeRunner,
    describe,
    export_onnx,
    max_abs_difference,
)
from tailor.devices.features import slot_of_week
from tailor.devices.policy import DecisionParams, decide, occupancy_features
from tests.devices.test_policy import make_params

cli = CliRunner()


@pytest.fixture(scope="module")
def params() -> DecisionParams:
    return make_params(np.random.default_rng(11), version="home-7@3")


@pytest.fixture(scope="module")
def model(params: DecisionParams, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(params, tmp_path_factory.mktemp("edge") / "home.onnx")


def motion_readings(seed: int, start: str, hours: int) -> list[dict[str, Any]]:
    """Irregular motion readings with silent stretches, and temperature readings between."""
    rng = np.random.default_rng(seed)
    begin = pd.Timestamp(start, tz="UTC")
    readings: list[dict[str, Any]] = []
    minute = 0.0
    while minute < hours * 60:
        minute += float(rng.exponential(9.0))
        if 600 <= minute <= 690:  # the sensor is silent here: unknown slots
            continue
        ts = begin + pd.Timedelta(minutes=minute)
        if rng.random() < 0.3:
            readings.append({"ts": ts.isoformat(), "metric": "indoor_temp", "value": 20.5})
        else:
            value = float(rng.random() < 0.35 + 0.3 * np.sin(minute / 200))
            readings.append({"ts": ts.isoformat(), "metric": "motion", "value": value})
    return readings


def server_decisions(params: DecisionParams, readings: list[dict[str, Any]]) -> pd.DataFrame:
    """What the server decides for the same history: readings on the grid, batch features."""
    frame = pd.DataFrame(readings)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["slot_start"] = frame["ts"].dt.floor(f"{params.slot_minutes}min")
    index = pd.date_range(
        frame["slot_start"].min(),
        frame["slot_start"].max(),
        freq=f"{params.slot_minutes}min",
    )
    seen = frame[frame["metric"] == "motion"].groupby("slot_start")["value"].max()
    motion = (seen > 0).astype(float).reindex(index)
    features = occupancy_features(
        motion, timezone=params.timezone, slot_minutes=params.slot_minutes
    )
    slot = slot_of_week(index, params.slot_minutes, params.timezone)
    decision = decide(params, features, slot)
    return pd.DataFrame(
        {
            "setpoint": decision.setpoint,
            "occupied": decision.occupied,
            "p": decision.occupied_probability,
            "slot": slot,
        },
        index=index,
    )


# --- export ----------------------------------------------------------------------------------


def test_export_passes_the_checker_and_carries_its_metadata(model: Path) -> None:
    loaded = onnx.load(model)
    onnx.checker.check_model(loaded, full_check=True)
    assert [o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")] == [17]
    meta = {p.key: p.value for p in loaded.metadata_props}
    assert meta["tailor.version"] == "home-7@3"
    assert meta["tailor.timezone"] == "Europe/Berlin"
    assert meta["tailor.slot_minutes"] == "15"
    assert len(json.loads(meta["tailor.feature_names"])) == 14
    described = describe(model)
    assert [i["name"] for i in described["inputs"]] == ["features", "slot"]
    assert described["inputs"][0]["type"] == "tensor(float)"
    assert described["inputs"][1]["type"] == "tensor(int64)"
    assert {"setpoint", "occupied_probability"} <= {o["name"] for o in described["outputs"]}


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_onnx_decisions_equal_the_server_on_every_slot(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    params = make_params(rng, mode=mode)
    path = export_onnx(params, tmp_path / "home.onnx")
    slot = np.concatenate([np.arange(672), rng.integers(0, 672, 5000)])
    features = rng.normal(scale=1.5, size=(slot.size, 14))
    features[:, 9:] = rng.random((slot.size, 5))  # the motion features live in [0, 1]
    assert max_abs_difference(params, path, features, slot) <= 1e-4
    outputs = EdgeRunner(path).infer(features, slot)
    server = decide(params, features.astype(np.float32).astype(float), slot)
    np.testing.assert_array_equal(outputs["occupied"], server.occupied)
    np.testing.assert_array_equal(outputs["preheating"], server.preheating)
    assert 0.1 < server.occupied.mean() < 0.9 and server.preheating.any()
    if mode == "off":
        assert np.isnan(outputs["setpoint"]).all()
    else:
        assert outputs["setpoint"].min() >= params.lower_c
        assert outputs["setpoint"].max() <= params.upper_c


def test_max_abs_difference_sees_a_model_that_differs(params: DecisionParams, model: Path) -> None:
    other = make_params(np.random.default_rng(11), comfort=np.full(672, 20.0), version="x")
    rng = np.random.default_rng(13)
    slot = np.arange(672)
    features = rng.normal(size=(672, 14))
    assert max_abs_difference(params, model, features, slot) <= 1e-4
    assert max_abs_difference(other, model, features, slot) > 0.5


# --- the runner --------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("no_network")
def test_runner_decides_offline_like_the_server(params: DecisionParams, model: Path) -> None:
    # Three days over the spring clock change in Berlin (2024-03-31).
    readings = motion_readings(14, "2024-03-30 05:03", hours=72)
    with pytest.raises(OSError, match="network disabled"):
        socket.socket()
    runner = EdgeRunner(model)
    decisions = list(runner.run(readings))
    server = server_decisions(params, readings)
    assert [d.ts for d in decisions] == list(server.index)  # one per slot, none skipped
    assert [d.slot for d in decisions] == server["slot"].tolist()
    setpoints = np.array([d.setpoint for d in decisions])
    assert np.abs(setpoints - server["setpoint"].to_numpy()).max() <= 1e-4
    assert [d.occupied for d in decisions] == server["occupied"].tolist()
    probabilities = np.array([d.occupied_probability for d in decisions])
    assert np.abs(probabilities - server["p"].to_numpy()).max() <= 1e-4
    assert 0 < server["occupied"].mean() < 1
    assert {d.version for d in decisions} == {"home-7@3"}


def test_runner_emits_a_decision_when_a_slot_opens(model: Path) -> None:
    runner = EdgeRunner(model)
    first = runner.step({"ts": "2024-01-01T08:01:00Z", "metric": "motion", "value": 1})
    assert [d.ts for d in first] == [pd.Timestamp("2024-01-01 08:00", tz="UTC")]
    assert runner.step({"ts": "2024-01-01T08:10:00Z", "metric": "motion", "value": 0}) == []
    # 08:46 opens 08:15, 08:30 and 08:45; 08:15's decision has seen the motion at 08:01.
    later = runner.step({"ts": "2024-01-01T08:46:00+00:00", "metric": "co2", "value": 600})
    assert [d.ts.strftime("%H:%M") for d in later] == ["08:15", "08:30", "08:45"]
    expected = runner.decide("2024-01-01T08:15:00Z", np.array([1.0]))
    assert later[0] == expected
    assert later[2] == runner.decide("2024-01-01T08:45:00Z", np.array([1.0, np.nan, np.nan]))
    assert later[0].to_dict()["ts"] == "2024-01-01T08:15:00+00:00"


def test_a_late_reading_still_counts_for_later_slots(model: Path) -> None:
    runner = EdgeRunner(model)
    runner.step({"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": 0})
    runner.step({"ts": "2024-01-01T08:20:00Z", "metric": "motion", "value": 0})
    assert runner.step({"ts": "2024-01-01T08:05:00Z", "metric": "motion", "value": 1}) == []
    (decision,) = runner.step({"ts": "2024-01-01T08:31:00Z", "metric": "motion", "value": 0})
    assert decision == runner.decide("2024-01-01T08:30:00Z", np.array([1.0, 0.0]))


def test_a_long_jump_starts_afresh(model: Path) -> None:
    runner = EdgeRunner(model, max_gap_slots=8)
    runner.step({"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": 1})
    jumped = runner.step({"ts": "2024-01-03T08:00:00Z", "metric": "motion", "value": 1})
    assert [d.ts for d in jumped] == [pd.Timestamp("2024-01-03 08:00", tz="UTC")]
    assert jumped[0] == runner.decide("2024-01-03T08:00:00Z", np.array([]))


@pytest.mark.parametrize(
    ("reading", "message"),
    [
        ({"metric": "motion", "value": 1}, "'ts' is missing"),
        ({"ts": "yesterday-ish", "metric": "motion", "value": 1}, "not a time"),
        ({"ts": "2024-01-01T08:00:00Z", "value": 1}, "'metric' is missing"),
        ({"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": "yes"}, "not a number"),
        ({"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": 3}, None),
    ],
)
def test_bad_readings_are_refused(model: Path, reading: dict[str, Any], message: str) -> None:
    runner = EdgeRunner(model)
    if message is None:  # a value above 1 is motion seen, not an error
        assert len(runner.step(reading)) == 1
        return
    with pytest.raises(ValueError, match=message):
        runner.step(reading)


def test_missing_damaged_and_foreign_models_are_refused(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such model file"):
        EdgeRunner(tmp_path / "absent.onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(model.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        EdgeRunner(damaged)
    identity = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "other",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
    )
    identity.ir_version = 8
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(identity.SerializeToString())
    with pytest.raises(ValueError, match="not a tailor decision model"):
        EdgeRunner(foreign)


# --- tailor edge ---------------------------------------------------------------------------


def write_jsonl(path: Path, readings: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in readings), encoding="utf-8")
    return path


def test_cli_run_prints_one_decision_per_slot(
    params: DecisionParams, model: Path, tmp_path: Path
) -> None:
    readings = motion_readings(15, "2024-02-05 06:00", hours=6)
    source = write_jsonl(tmp_path / "readings.jsonl", readings)
    result = cli.invoke(edge_app, ["run", str(model), "--readings", str(source)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    server = server_decisions(params, readings)
    assert [pd.Timestamp(d["ts"]) for d in lines] == list(server.index)
    assert np.abs(np.array([d["setpoint"] for d in lines]) - server["setpoint"]).max() <= 1e-4
    assert set(lines[0]) >= {"ts", "slot", "setpoint", "occupied_probability", "occupied"}

    piped = cli.invoke(edge_app, ["run", str(model), "--readings", "-"], input=source.read_text())
    assert piped.exit_code == 0 and piped.stdout == result.stdout

    out = tmp_path / "out" / "decisions.jsonl"
    written = cli.invoke(
        edge_app, ["run", str(model), "--readings", str(source), "--out", str(out)]
    )
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_text() == result.stdout


def test_cli_run_in_mode_off_prints_no_setpoints(tmp_path: Path) -> None:
    path = export_onnx(make_params(mode="off"), tmp_path / "off.onnx")
    source = write_jsonl(
        tmp_path / "r.jsonl",
        [{"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": 1}],
    )
    result = cli.invoke(edge_app, ["run", str(path), "--readings", str(source)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["setpoint"] is None


def test_cli_inspect(model: Path) -> None:
    result = cli.invoke(edge_app, ["inspect", str(model), "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["metadata"]["version"] == "home-7@3"
    assert described["inputs"][0]["shape"] == ["N", 14]
    table = cli.invoke(edge_app, ["inspect", str(model)])
    assert table.exit_code == 0
    for word in ("features", "occupied_probability", "Europe/Berlin", "home-7@3"):
        assert word in table.stdout


def test_cli_errors_are_one_line_and_exit_1(model: Path, tmp_path: Path) -> None:
    good = {"ts": "2024-01-01T08:00:00Z", "metric": "motion", "value": 1}
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(good) + "\n\n{not json\n", encoding="utf-8")
    bad_reading = write_jsonl(tmp_path / "bad_reading.jsonl", [good, {"metric": "motion"}])
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x00garbage")
    cases = [
        (["run", str(model), "--readings", str(bad_json)], "line 3: not JSON"),
        (["run", str(model), "--readings", str(bad_reading)], "line 2: reading: 'ts'"),
        (["run", str(model), "--readings", str(tmp_path / "none.jsonl")], "--readings"),
        (["run", str(tmp_path / "none.onnx"), "--readings", str(bad_json)], "no such model"),
        (["run", str(damaged), "--readings", str(bad_json)], "not a readable ONNX model"),
        (["inspect", str(damaged)], "not a readable ONNX model"),
    ]
    for args, message in cases:
        result = cli.invoke(edge_app, args)
        assert result.exit_code == 1, (args, result.output)
        # One message (rich may wrap it to the terminal's width), no traceback.
        flat = " ".join(result.stderr.split())
        assert flat.startswith("error:") and message in flat, result.stderr
        assert flat.count("error:") == 1, result.stderr
        assert "Traceback" not in result.output
