"""An A/B test from exposure to verdict, through the served API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tailor.lifecycle import attribution, rollouts
from tailor.lifecycle.rollouts import Arm, Experiment
from tests.api._serving import auth
from tests.lifecycle._traffic import close_shop, open_shop, start_ab, visit


@pytest.fixture
def shop(tmp_path):
    shop = open_shop(tmp_path)
    yield shop
    close_shop(shop)


def test_ab_test_from_exposure_to_verdict(shop):
    start_ab(shop)
    assert shop.serving.follow_experiments()
    rates = {"control": 0.10, "treatment": 0.35}
    answers = visit(shop, range(600), lambda arm: rates[arm], purchase_rate=0.5)

    by_subject = {}
    for answer in answers:
        assert answer["experiment"] == "ranker-test"
        expected = shop.control if answer["arm"] == "control" else shop.treatment
        assert answer["model_version"] == expected  # the arm's model answered
        by_subject[answer["subject"]] = answer["arm"]
    again = visit(shop, range(50), lambda arm: 0.0, seed=1)  # the same users come back
    assert all(by_subject[a["subject"]] == a["arm"] for a in again)  # sticky

    result = attribution.analyze(shop.store, rollouts.get(shop.store, "ranker-test"))
    assert sum(result.users.values()) == 600
    assert min(result.users.values()) > 230  # a 50/50 split, give or take
    assert not result.srm_alarm and result.srm_p_value > 0.001
    assert result.verdict == "treatment wins on ctr"
    ctr = next(m for m in result.comparisons if m.metric == "ctr")
    assert ctr.significant and ctr.comparison.low > 0
    assert ctr.comparison.control == pytest.approx(result.means["control"]["ctr"])
    clicks = next(m for m in result.comparisons if m.metric == "click")
    assert clicks.probability_to_beat > 0.99 and clicks.expected_loss < 0.01
    assert result.means["treatment"]["revenue"] > result.means["control"]["revenue"] > 0
    assert result.guardrails_hold
    assert result.to_dict()["verdict"] == "treatment wins on ctr"


def test_a_skewed_split_raises_the_sample_ratio_alarm(shop):
    start_ab(shop)
    shop.serving.follow_experiments()
    answers = visit(shop, range(600), lambda arm: 0.2)
    # Lose most of the treatment's impressions, as a broken client-side logger would.
    treatment_ids = [a["recommendation_id"] for a in answers if a["arm"] == "treatment"][:200]
    shop.store._run(
        "DELETE FROM events WHERE recommendation_id IN (" + ",".join("?" * 200) + ")",
        treatment_ids,
    )
    result = attribution.analyze(shop.store, rollouts.get(shop.store, "ranker-test"))
    assert result.srm_alarm and result.srm_p_value < 0.001
    assert result.verdict == "invalid: sample ratio mismatch"
    assert not result.guardrails_hold


def test_too_few_users_is_collecting_with_a_warning(shop):
    start_ab(shop)
    shop.serving.follow_experiments()
    visit(shop, range(40), lambda arm: 0.5)
    result = attribution.analyze(shop.store, rollouts.get(shop.store, "ranker-test"))
    assert result.verdict == "collecting"
    assert any("fewer than the minimum 100" in w for w in result.warnings)


def test_stopped_experiment_stops_routing(shop):
    start_ab(shop)
    shop.serving.follow_experiments()
    rollouts.stop(shop.store, "ranker-test", reason="done")
    assert shop.serving.follow_experiments()
    answers = visit(shop, range(20), lambda arm: 0.0)
    assert {a["arm"] for a in answers} == {None}
    assert {a["model_version"] for a in answers} == {shop.control}


def test_bad_experiments_are_refused_with_the_field_named(shop):
    with pytest.raises(ValueError, match="no version 'nope'"):
        rollouts.start(
            shop.store,
            Experiment(
                name="x", arms=[Arm(name="a", version=shop.control), Arm(name="b", version="nope")]
            ),
        )
    with pytest.raises(ValueError, match=r"arms: .*at least 2"):
        rollouts.parse({"name": "x", "arms": [{"name": "a", "version": shop.control}]})
    with pytest.raises(ValueError, match="arm names must differ"):
        rollouts.parse({"name": "x", "arms": [{"name": "a", "version": "v"}] * 2})
    with pytest.raises(ValueError, match="canary has two arms"):
        rollouts.parse(
            {
                "name": "x",
                "kind": "canary",
                "arms": [{"name": f"a{i}", "version": "v"} for i in range(3)],
            }
        )
    with pytest.raises(ValueError, match=r"successes\.0: Input should be greater than or equal"):
        rollouts.parse(
            {
                "name": "x",
                "kind": "bandit",
                "successes": [-1, 2],
                "failures": [0, 0],
                "arms": [{"name": "a", "version": "v"}, {"name": "b", "version": "w"}],
            }
        )
    with pytest.raises(ValueError, match="name: String should match"):
        rollouts.parse(
            {
                "name": "Bad Name!",
                "arms": [{"name": "a", "version": "v"}, {"name": "b", "version": "w"}],
            }
        )
    start_ab(shop)
    with pytest.raises(ValueError, match="exists already"):
        start_ab(shop)
    with pytest.raises(ValueError, match="already routes recommend traffic"):
        rollouts.start(
            shop.store,
            Experiment(
                name="second",
                arms=[Arm(name="a", version=shop.control), Arm(name="b", version=shop.treatment)],
            ),
        )


def test_kpis_per_version_reach_the_journal_prometheus_and_alerts(shop, tmp_path):
    from tailor.config import AlertSettings, LifecycleSettings
    from tailor.lifecycle import journal
    from tailor.lifecycle.worker import Worker

    start_ab(shop)
    shop.serving.follow_experiments()
    rates = {"control": 0.1, "treatment": 0.6}
    answers = visit(shop, range(300), rates.get, purchase_rate=1.0)
    alerts = AlertSettings(min_ctr=0.05, min_impressions=50)
    settings = LifecycleSettings(model_dir=tmp_path / "models", alerts=alerts)
    worker = Worker(shop.served.tenants["default"].workspace, settings, only=["kpis"])
    assert worker.run_due()[0].status == "ok"

    (snapshot,) = journal.read(shop.store, "kpi")
    rows = {row["model_version"]: row for row in snapshot["versions"]}
    assert set(rows) == {shop.control, shop.treatment}
    for version, arm in ((shop.control, "control"), (shop.treatment, "treatment")):
        mine = [a for a in answers if a["arm"] == arm]
        row = rows[version]
        assert row["served"] == len(mine)
        assert row["impressions"] == sum(len(a["items"]) for a in mine)
        assert row["ctr"] == row["clicks"] / row["impressions"]
        assert row["revenue"] == 9.0 * row["purchases"]
    assert rows[shop.treatment]["ctr"] > rows[shop.control]["ctr"]
    # The control's CTR per shown item (about 0.1 / 3) is under the 5% threshold: alerted.
    (alert,) = journal.read(shop.store, "alert")
    assert shop.control in alert["message"] and "ctr" in alert["message"]

    shop.serving.refresh_kpis()
    text = shop.client.get("/metrics").text
    ctr = rows[shop.treatment]["ctr"]
    assert (
        f'tailor_kpi{{engine="recommend",kpi="ctr",tenant="default",version="{shop.treatment}"}} '
        f"{ctr}" in text
    )
    treated = sum(a["arm"] == "treatment" for a in answers)
    assert (
        f'tailor_recommendation_answers_total{{arm="treatment",tenant="default",'
        f'version="{shop.treatment}"}} {float(treated)}' in text
    )


def test_an_erased_user_leaves_no_served_answer_behind(shop):
    start_ab(shop)
    shop.serving.follow_experiments()
    visit(shop, range(5), lambda arm: 0.0)
    tenant = shop.served.tenants["default"]
    gone = tenant.pseudonym("v3")
    assert gone in shop.store.read_served()["subject_id"].to_pylist()
    assert shop.client.get("/v1/users/v3/recommendations", headers=_admin(shop)).status_code == 200
    assert shop.client.delete("/v1/users/v3", headers=_admin(shop)).status_code == 200
    shop.serving.flush_served()  # the answer queued before the erasure is not written either
    assert gone not in shop.store.read_served()["subject_id"].to_pylist()
    assert len(set(shop.store.read_served()["subject_id"].to_pylist())) == 4


def test_a_failing_store_keeps_the_served_answers_for_the_next_flush(shop, monkeypatch):
    visit(shop, range(3), lambda arm: 0.0)
    before = shop.store.read_served().num_rows
    shop.client.get("/v1/users/late/recommendations", headers=_admin(shop))

    def refuse(rows):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(shop.store, "record_served", refuse)
        with pytest.raises(OSError):
            shop.serving.flush_served()
    assert shop.serving.flush_served() == 1
    assert shop.store.read_served().num_rows == before + 1


def _admin(shop) -> dict[str, str]:
    return auth(shop.served.tokens["admin"])


NOW = datetime.now(UTC)


def test_a_damaged_stored_experiment_stops_the_routing_not_the_server(shop):
    start_ab(shop)
    assert shop.serving.follow_experiments()
    shop.store.put_experiment("ranker-test", '{"name": "ranker-test", "arms": 3}', NOW)
    assert shop.serving.follow_experiments()  # routing stops; answers go on
    assert "cannot read the experiments" in shop.serving.last_error
    answers = visit(shop, range(5), lambda arm: 0.0)
    assert {a["arm"] for a in answers} == {None}


def test_routing_follows_a_change_of_the_served_model(shop):
    start_ab(shop)
    shop.serving.follow_experiments()
    assert set(shop.serving.variants) == {shop.treatment}
    # The treatment's model becomes the served one (as a promotion followed by alias would).
    shop.serving.reload(shop.served.model_path.parent / "other")
    assert shop.serving.loaded.version == shop.treatment
    assert shop.serving.follow_experiments()
    assert set(shop.serving.variants) == {shop.control}
    answers = visit(shop, range(60), lambda arm: 0.0, prefix="p")
    assert {a["arm"] for a in answers} == {"control", "treatment"}  # nobody falls out
    for answer in answers:
        assert answer["model_version"] == (
            shop.control if answer["arm"] == "control" else shop.treatment
        )
