"""The ``tailor`` command line, end to end on a DuckDB store in a temporary folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests._cli import tailor

HEADER = ["event_id", "event_type", "subject_id", "occurred_at", "item_id"]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def views(n: int, subject: str = "alice") -> list[list[str]]:
    return [
        [f"e{i}", "view", subject, f"2024-05-0{1 + i % 9}T10:00:00Z", f"i{i}"] for i in range(n)
    ]


@pytest.mark.parametrize(
    "command",
    [[], ["import"], ["import", "events"], ["simulate", "shop"], ["erase"], ["purge"], ["demo"]],
)
def test_every_command_explains_itself(command: list[str]) -> None:
    result = tailor(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_commands_need_a_store_first(workdir: Path) -> None:
    result = tailor("status")
    assert result.exit_code == 1
    assert "tailor init" in result.output


def test_import_status_erase_and_reimport(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    assert (workdir / ".tailor" / "secret.key").is_file()
    events = write_csv(workdir / "events.csv", views(5))
    result = tailor("import", "events", str(events), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "5 written" in result.output

    again = tailor("import", "events", str(events), "--no-progress")
    assert "0 written" in again.output and "5 already stored" in again.output

    status = tailor("status")
    assert status.exit_code == 0 and "view" in status.output
    assert "alice" not in status.output

    erased = tailor("erase", "alice")
    assert erased.exit_code == 0, erased.output
    assert "erased: 5 event rows" in erased.output

    # A re-import of the old file cannot bring the erased subject back.
    back = tailor("import", "events", str(events), "--no-progress")
    assert "0 written" in back.output and "5 of erased subjects skipped" in back.output


def test_bad_file_is_rejected_whole_or_quarantined(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    rows = [*views(3), ["e9", "vue", "alice", "2024-05-01T10:00:00Z", "i9"]]
    events = write_csv(workdir / "bad.csv", rows)
    result = tailor("import", "events", str(events), "--no-progress")
    assert result.exit_code == 1
    assert "line 5" in result.output and "unknown event_type 'vue'" in result.output
    assert "nothing was imported" in result.output
    assert "view" not in tailor("status").output

    quarantine = workdir / "rejected.csv"
    result = tailor(
        "import", "events", str(events), "--quarantine", str(quarantine), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "3 written" in result.output and "1 rejected" in result.output
    with quarantine.open(encoding="utf-8") as handle:
        rejected = list(csv.DictReader(handle))
    assert [(r["tailor_line"], r["event_id"]) for r in rejected] == [("5", "e9")]


def test_missing_file_and_bad_options_are_clear_errors(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    missing = tailor("import", "events", "nowhere.csv", "--no-progress")
    assert missing.exit_code == 1 and "no such file" in missing.output
    purge = tailor("purge", "--older-than", "soon")
    assert purge.exit_code == 1 and "soon" in purge.output


def test_a_lost_key_is_an_error_not_a_new_key(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    events = write_csv(workdir / "events.csv", views(2))
    assert tailor("import", "events", str(events), "--no-progress").exit_code == 0
    (workdir / ".tailor" / "secret.key").unlink()
    result = tailor("status")
    assert result.exit_code == 1
    assert not (workdir / ".tailor" / "secret.key").exists()


def test_purge_keeps_recent_events(workdir: Path) -> None:
    assert tailor("init").exit_code == 0
    old = [["old", "view", "alice", "2001-01-01T00:00:00Z", "i1"]]
    events = write_csv(workdir / "events.csv", old + views(2))
    assert tailor("import", "events", str(events), "--no-progress").exit_code == 0
    result = tailor("purge", "--older-than", "3650d")
    assert result.exit_code == 0 and "purged 1 event rows" in result.output


def test_demo_smoke_runs_the_main_job(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_DEMO_SMOKE", "1")
    result = tailor("demo", "--out", str(workdir / "demo"))
    assert result.exit_code == 0, result.output
    assert "what the store holds" in result.output
    assert "purchase" in result.output and "view" in result.output
    # It ends by serving the shop: every printed example was called over HTTP and answered.
    assert "smoke run: all 14 endpoints answered as expected" in result.output
    assert "BAD" not in result.output
    assert result.output.count("curl -s") == 14
    assert "POST /v1/budget/plan" in result.output
    # The connected homes: fitted, one home's habits shown, its ONNX model served to devices.
    assert "fitted 5 homes" in result.output and "learned" in result.output
    assert "ok  200 GET /v1/devices/home-000-thermostat/schedule" in result.output
    assert "ok  200 GET /v1/homes/home-000/insights" in result.output
    assert (workdir / "demo" / "home-000.onnx").stat().st_size > 0
    assert (workdir / "demo" / "homes" / "index.json").is_file()
    # The customer models: the CRM export and the report with its back-test.
    with (workdir / "demo" / "audience-scores.csv").open(newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) > 100 and {"segment", "churn_risk", "clv"} <= set(scores[0])
    report = json.loads((workdir / "demo" / "audience-report.json").read_text())
    assert report["backtest"] is not None and report["customers"] == len(scores)
    # The budget: the simulated ad channels' report, its back-test scored against the truth.
    budget = json.loads((workdir / "demo" / "budget-report.json").read_text())
    assert budget["plan"]["status"] == "optimal" and budget["backtest"]["true_uplift"] is not None
    (holdout,) = budget["model"]["lift_tests"]  # the demo's geo holdout, against the curve
    assert holdout["delta_x"] == -holdout["x"] and abs(holdout["z"]) < 3
    assert "lift tests: measured change per period" in " ".join(result.output.split())
    assert (workdir / "demo" / "budget" / "model.json").is_file()
    # Idempotent: a second run stores nothing new.
    again = tailor("demo", "--out", str(workdir / "demo"))
    assert again.exit_code == 0, again.output
    assert "0 written" in again.output


def test_demo_device_examples_need_both_ids() -> None:
    from tailor.demo_serve import demo_examples

    paths = [e.path for e in demo_examples("u1", "i1", "GB", device_id="t-1", home_id="h-1")]
    assert "/v1/devices/t-1/schedule?hours=24" in paths and "/v1/homes/h-1/insights" in paths
    for partial in ({"device_id": "t-1"}, {"home_id": "h-1"}, {}):
        paths = [e.path for e in demo_examples("u1", "i1", "GB", **partial)]
        assert not any("/devices/" in p or "/homes/" in p for p in paths)


@pytest.mark.parametrize(
    ("answer", "key", "holds"),
    [
        ({"changes": [{"setpoint_c": 20.0}]}, "changes", True),
        ({"changes": []}, "changes", False),  # a schedule with no changes is not the promise
        ({"habits": [], "devices": ["t-1"]}, "habits", False),
        ({"devices": ["t-1"]}, "habits", False),  # the key itself must be there
        ({"per_period": 0.0}, "per_period", True),  # only a list must be non-empty
        ([{"changes": [1]}], "changes", False),  # not an object
        (None, "changes", False),
    ],
)
def test_smoke_expectations(answer: object, key: str, holds: bool) -> None:
    from tailor.demo_serve import _holds

    assert _holds(answer, key) is holds


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TAILOR_API__OPENTELEMETRY", "maybe", "api.opentelemetry"),
        ("TAILOR_API__MAX_K", "abc", "api.max_k"),
        ("TAILOR_API__MAX_K", "0", "api.max_k"),
    ],
)
def test_an_invalid_setting_is_named_without_a_traceback(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys, variable, value, named
) -> None:
    from tailor.cli import main

    monkeypatch.setenv(variable, value)
    monkeypatch.setattr("sys.argv", ["tailor", "keys", "list"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    said = capsys.readouterr().err
    assert named in said and variable in said and repr(value) in said
    assert "Traceback" not in said
