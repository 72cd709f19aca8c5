"""``tailor devices fit | schedule | insights | export`` on simulated homes imported into a
store; every mistake is one error line and exit status 1, and nothing is half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tailor.config import get_settings
from tests._cli import _ENVIRONMENT, tailor, workdir  # noqa: F401  (the fixture)
from tests.devices.test_service import consent, events, simulated

THERMOSTAT = simulated().truth["home-000"].thermostat_id


def flat(output: str) -> str:
    return " ".join(output.split())


def one_error(result, said: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert said in flat(result.output) and "Traceback" not in result.output


def import_homes(limit_homes: int | None = None, extra: list[dict] | None = None) -> None:
    """The simulated homes into the store of the current folder (``tailor init`` first)."""
    from tailor.events.importer import import_table
    from tailor.workspace import open_workspace

    get_settings.cache_clear()
    ws = open_workspace(get_settings())
    try:
        table = simulated().to_events(limit_homes)
        import_table(ws.store, table, pseudonymizer=ws.pseudonymizer, label="homes")
        if extra:
            import_table(ws.store, events(extra), pseudonymizer=ws.pseudonymizer)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> Iterator[Path]:
    """A folder with a store of two homes, fitted once into ``m`` by the CLI."""
    folder = tmp_path_factory.mktemp("cli-devices")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in _ENVIRONMENT:
            patch.delenv(name, raising=False)
        assert tailor("init").exit_code == 0
        import_homes(limit_homes=2)
        fitted = tailor("devices", "fit", "--model", "m", "--no-progress")
        assert fitted.exit_code == 0, fitted.output
        yield folder
    get_settings.cache_clear()


@pytest.fixture
def inside(homes: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(homes)
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    yield homes
    get_settings.cache_clear()


def test_fit_writes_a_model_per_home(inside: Path) -> None:
    index = json.loads((inside / "m" / "index.json").read_text())
    assert len(index["homes"]) == 2 and len(index["devices"]) == 4
    assert len(list((inside / "m" / "homes").iterdir())) == 2
    again = tailor("devices", "fit", "--model", "m2", "--timezone", "Europe/Berlin",
                   "--slot-minutes", "30", "--no-progress")  # fmt: skip
    assert again.exit_code == 0, again.output
    said = flat(again.output)
    assert "fitted 2 home(s) with 4 device(s) into m2" in said and "data quality:" in said
    assert "duplicates" in said
    assert json.loads((inside / "m2" / "index.json").read_text())["slot_minutes"] == 30


def test_schedule_shows_the_changes_with_why(inside: Path) -> None:
    result = tailor("devices", "schedule", "--model", "m", "--device", THERMOSTAT,
                    "--hours", "24")  # fmt: skip
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert f"device {THERMOSTAT}: mode auto" in said
    assert "eco" in said and "°C because you" in said


def test_insights_in_words_and_json(inside: Path) -> None:
    words = tailor("devices", "insights", "--model", "m", "--home", "home-000")
    assert words.exit_code == 0, words.output
    said = flat(words.output)
    assert "home home-000:" in said and "habit(s) learned" in said and "you raised it" in said
    shown = tailor("devices", "insights", "--model", "m", "--home", "home-000", "--json")
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)
    assert found["home_id"] == "home-000" and found["habits"] and len(found["devices"]) == 2


def test_export_writes_an_onnx_that_edge_inspect_reads(inside: Path) -> None:
    exported = tailor("devices", "export", "--model", "m", "--home", "home-001",
                      "--out", "edge/home.onnx")  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert (inside / "edge" / "home.onnx").is_file()
    assert "tailor edge run" in flat(exported.output)
    inspected = tailor("edge", "inspect", "edge/home.onnx", "--json")
    assert inspected.exit_code == 0, inspected.output
    described = json.loads(inspected.output)
    assert {t["name"] for t in described["inputs"]} == {"features", "slot"}
    assert "setpoint" in {t["name"] for t in described["outputs"]}
    meta = described["metadata"]
    assert meta["timezone"] == "UTC" and meta["mode"] == "auto" and meta["slot_minutes"] == "15"


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["schedule", "--model", "m", "--device", "nope"], "device 'nope' is not in m"),
        (["insights", "--model", "m", "--home", "nope"], "home 'nope'"),
        (["export", "--model", "m", "--home", "nope", "--out", "x.onnx"], "home 'nope'"),
        (["schedule", "--model", "missing", "--device", THERMOSTAT], "tailor devices fit"),
        (["insights", "--model", "missing", "--home", "home-000"], "not a devices model"),
        (["export", "--model", "missing", "--home", "home-000", "--out", "x.onnx"],
         "tailor devices fit --model DIR"),
        (["fit", "--model", "m3", "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["fit", "--model", "m3", "--max-gap", "soon"], "max_gap"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(inside: Path, arguments: list[str], said: str) -> None:
    one_error(tailor("devices", *arguments), said)
    assert not (inside / "x.onnx").exists() and not (inside / "m3").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["schedule", "--model", "m", "--device", THERMOSTAT, "--hours", "0"],
        ["schedule", "--model", "m", "--device", THERMOSTAT, "--hours", "169"],
        ["fit", "--model", "m3", "--slot-minutes", "2"],
        ["schedule", "--model", "m"],
    ],
)
def test_bad_options_exit_non_zero_without_a_traceback(inside: Path, arguments) -> None:
    result = tailor("devices", *arguments)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_fit_with_no_data_or_no_home_to_fit(workdir: Path) -> None:  # noqa: F811
    assert tailor("init").exit_code == 0
    one_error(tailor("devices", "fit", "--model", "m"), "send them")
    assert not (workdir / "m").exists()
    tiny = [
        consent("tiny", simulated().start.to_pydatetime()),
        {"event_id": "t1", "event_type": "telemetry", "subject_id": "tiny",
         "occurred_at": "2026-01-06T00:00:00+00:00", "device_id": "tiny-th",
         "metric": "indoor_temp", "value": 20.0, "unit": "C"},
    ]  # fmt: skip
    import_homes(limit_homes=1, extra=tiny)
    (workdir / "notes").mkdir()
    (workdir / "notes" / "todo.txt").write_text("keep")
    one_error(tailor("devices", "fit", "--model", "notes"), "not a devices model folder")
    assert (workdir / "notes" / "todo.txt").read_text() == "keep"
    fitted = tailor("devices", "fit", "--model", "m", "--no-progress")
    assert fitted.exit_code == 0, fitted.output
    assert "fitted 1 home(s)" in flat(fitted.output) and "at least a day" in flat(fitted.output)


def test_a_home_without_consent_is_not_shown(workdir: Path) -> None:  # noqa: F811
    assert tailor("init").exit_code == 0
    import_homes(limit_homes=1)
    assert tailor("devices", "fit", "--model", "m", "--no-progress").exit_code == 0
    withdrawn = consent("home-000", datetime(2026, 2, 1, tzinfo=UTC), granted=False)
    import_homes(limit_homes=1, extra=[withdrawn])
    one_error(tailor("devices", "insights", "--model", "m", "--home", "home-000"), "consent")
    one_error(
        tailor("devices", "export", "--model", "m", "--home", "home-000", "--out", "h.onnx"),
        "consent",
    )
    assert not (workdir / "h.onnx").exists()
    plan = tailor("devices", "schedule", "--model", "m", "--device", THERMOSTAT)
    assert plan.exit_code == 0 and "mode off" in flat(plan.output)
    assert "personalization is off" in flat(plan.output)
    # Refitting leaves it out, so there is no home left to fit: the old models stay.
    one_error(tailor("devices", "fit", "--model", "m"), "send them")
    assert (workdir / "m" / "index.json").is_file()
