"""tailor worker and tailor experiments, as a user runs them."""

from __future__ import annotations

import json

from tailor.config import get_settings
from tailor.events.importer import import_table
from tailor.lifecycle import registry
from tailor.workspace import open_workspace
from tests._cli import tailor, workdir  # noqa: F401  (the fixture)
from tests.api._serving import raw_events, shop_events, shop_items

CONFIG = """
[privacy.consent_default]
personalization = "opt-out"
analytics = "opt-out"

[lifecycle]
holdout = "3d"
model_dir = "models"
"""


def _said(result) -> str:
    """The output on one line (rich wraps long lines at the terminal's width)."""
    return " ".join(result.output.split())


def _shop(folder) -> None:
    (folder / "tailor.toml").write_text(CONFIG)
    get_settings.cache_clear()
    with open_workspace(get_settings(), create=True) as ws:
        import_table(ws.store, shop_items(), pseudonymizer=ws.pseudonymizer, entity="items")
        import_table(ws.store, raw_events(shop_events()), pseudonymizer=ws.pseudonymizer)


def test_worker_retrains_and_experiments_run_from_the_command_line(workdir):  # noqa: F811
    _shop(workdir)
    first = tailor("worker", "--once", "--job", "retrain-recommend")
    assert first.exit_code == 0, first.output
    assert "promoted to production" in _said(first)
    assert "no job is due" in _said(tailor("worker", "--once", "--job", "retrain-recommend"))
    assert tailor("worker", "--once", "--force", "--job", "retrain-recommend").exit_code == 0
    jobs = json.loads(tailor("experiments", "jobs", "--json").output)
    assert [(j["name"], j["runs"], j["last_status"]) for j in jobs] == [
        ("retrain-recommend", 2, "ok")
    ]

    with open_workspace(get_settings()) as ws:
        versions = [v.version for v in registry.versions(ws.store, "recommend")]
    assert len(versions) == 2
    spec = workdir / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "knn-again",
                "arms": [
                    {"name": "control", "version": versions[0]},
                    {"name": "new", "version": versions[1]},
                ],
            }
        )
    )
    started = tailor("experiments", "start", str(spec))
    assert started.exit_code == 0 and "started ab knn-again" in _said(started), started.output
    (listed,) = json.loads(tailor("experiments", "list", "--json").output)
    assert listed["status"] == "running" and listed["salt"] == "knn-again"
    result = json.loads(tailor("experiments", "results", "knn-again", "--json").output)
    assert result["verdict"] == "collecting" and result["users"] == {"control": 0, "new": 0}
    assert tailor("experiments", "stop", "knn-again", "--reason", "enough").exit_code == 0
    (listed,) = json.loads(tailor("experiments", "list", "--json").output)
    assert listed["status"] == "stopped" and listed["history"][-1]["reason"] == "enough"

    ran = tailor("worker", "--once", "--job", "kpis", "--job", "experiments")
    assert ran.exit_code == 0 and "no running experiment" in _said(ran), ran.output


def test_bad_input_is_named(workdir):  # noqa: F811
    _shop(workdir)
    unknown = tailor("worker", "--once", "--job", "retrain-devices")
    assert unknown.exit_code == 1 and "unknown job retrain-devices" in _said(unknown)
    spec = workdir / "bad.json"
    spec.write_text(
        json.dumps({"name": "x", "arms": [{"name": "a", "version": "v"}], "kind": "coin-flip"})
    )
    bad = tailor("experiments", "start", str(spec))
    assert bad.exit_code == 1 and "kind" in _said(bad) and "arms" in _said(bad)
    spec.write_text("{not json")
    assert tailor("experiments", "start", str(spec)).exit_code == 1
    missing = tailor("experiments", "results", "nope")
    assert missing.exit_code == 1 and "no experiment 'nope'" in _said(missing)
    assert tailor("experiments", "stop", "nope").exit_code == 1


def test_a_huge_name_is_refused_without_echoing_it_and_settings_show_in_errors(workdir):  # noqa: F811
    _shop(workdir)
    huge = tailor("experiments", "results", "x" * 5000)
    assert huge.exit_code == 1 and "at most 32 characters" in _said(huge)
    assert len(huge.output) < 400
    unknown = tailor("worker", "--once", "--job", "nope")
    assert "[lifecycle] retrain_every" in _said(unknown)  # not eaten as rich markup
