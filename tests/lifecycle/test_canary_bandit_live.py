"""A canary that ramps up and one that rolls itself back, and a bandit that learns, each
through the served API and the worker's experiments job."""

from __future__ import annotations

import pytest

from tailor.config import LifecycleSettings
from tailor.lifecycle import journal, registry, rollouts
from tailor.lifecycle.rollouts import Arm, Experiment
from tailor.lifecycle.worker import Worker
from tests.lifecycle._traffic import close_shop, open_shop, visit


@pytest.fixture
def shop(tmp_path):
    shop = open_shop(tmp_path)
    yield shop
    close_shop(shop)


def _worker(shop, tmp_path) -> Worker:
    settings = LifecycleSettings(model_dir=tmp_path / "models")
    return Worker(shop.served.tenants["default"].workspace, settings, only=["experiments"])


def _canary(shop, **extra) -> Experiment:
    return rollouts.start(
        shop.store,
        Experiment(
            name="new-ranker",
            kind="canary",
            arms=[
                Arm(name="stable", version=shop.control),
                Arm(name="canary", version=shop.treatment),
            ],
            **{"steps": [10, 50, 100], "min_users": 30, **extra},
        ),
    )


def _share(answers, arm="canary") -> float:
    return sum(a["arm"] == arm for a in answers) / len(answers)


def test_a_healthy_canary_ramps_up_to_production(shop, tmp_path):
    worker = _worker(shop, tmp_path)
    _canary(shop)
    shop.serving.follow_experiments()
    same_rate = {"stable": 0.2, "canary": 0.2}
    answers = visit(shop, range(500), same_rate.get, prefix="a")
    assert 0.05 < _share(answers) < 0.16  # 10%
    canary_users = {a["subject"] for a in answers if a["arm"] == "canary"}

    (run,) = worker.run_due(force=True)
    assert "10% → 50%" in run.message, run.message
    shop.serving.follow_experiments()
    again = visit(shop, range(500), same_rate.get, prefix="a", seed=1)
    assert 0.42 < _share(again) < 0.58  # 50%
    # Sticky as the share grows: who had the canary keeps it.
    assert all(a["arm"] == "canary" for a in again if a["subject"] in canary_users)

    # The step before 100% held: the canary is promoted, and the rollout is complete.
    final = worker.run_due(force=True)[0]
    assert "completed" in final.message, final.message
    assert registry.resolve(shop.store, "recommend", "production").version == shop.treatment
    moved = registry.history(shop.store, "recommend", "production")[-1]
    assert moved.moved_by == "canary" and "up to 50%" in moved.reason
    assert rollouts.get(shop.store, "new-ranker").status == "completed"
    steps = [h["what"] for h in rollouts.get(shop.store, "new-ranker").history]
    assert steps == ["started", "step", "completed"]
    assert shop.serving.follow_experiments()  # no experiment routes the traffic any more
    assert {a["arm"] for a in visit(shop, range(10), lambda arm: 0.0, prefix="z")} == {None}


def test_a_canary_that_hurts_ctr_is_rolled_back(shop, tmp_path):
    worker = _worker(shop, tmp_path)
    _canary(shop, steps=[25, 50, 100])
    shop.serving.follow_experiments()
    rates = {"stable": 0.4, "canary": 0.05}  # the new model's answers are rarely clicked
    answers = visit(shop, range(600), rates.get)
    assert 0.18 < _share(answers) < 0.32

    (run,) = worker.run_due(force=True)
    assert "rolled back at 25%" in run.message, run.message
    experiment = rollouts.get(shop.store, "new-ranker")
    assert experiment.status == "rolled_back" and experiment.weights() == [100.0, 0.0]
    assert registry.resolve(shop.store, "recommend", "production").version == shop.control
    (alert,) = journal.read(shop.store, "alert")
    assert "rolled back" in alert["message"] and "ctr" in alert["message"]

    # Every user is served the stable version again.
    assert shop.serving.follow_experiments()
    after = visit(shop, range(100), lambda arm: 0.0, prefix="late")
    assert {a["arm"] for a in after} == {None}
    assert {a["model_version"] for a in after} == {shop.control}


def test_a_bandit_learns_to_play_the_better_arm(shop, tmp_path):
    worker = _worker(shop, tmp_path)
    rollouts.start(
        shop.store,
        Experiment(
            name="home-slot",
            kind="bandit",
            arms=[
                Arm(name="knn", version=shop.control),
                Arm(name="popular", version=shop.treatment),
            ],
        ),
    )
    shop.serving.follow_experiments()
    rates = {"knn": 0.05, "popular": 0.5}
    early = visit(shop, range(200), rates.get)
    assert 0.3 < _share(early, "popular") < 0.7  # no data yet: both arms played alike
    for round_ in range(3):
        worker.run_due(force=True)
        shop.serving.follow_experiments()
        visit(shop, range(200), rates.get, prefix=f"r{round_}", seed=round_ + 1)
    late = visit(shop, range(300), rates.get, prefix="late", seed=9)
    assert _share(late, "popular") > 0.9  # exploits the better arm
    experiment = rollouts.get(shop.store, "home-slot")
    knn, popular = (
        s / (s + f) for s, f in zip(experiment.successes, experiment.failures, strict=True)
    )
    assert popular > 0.35 > 0.15 > knn
    # Propensities are logged with each answer, for off-policy evaluation.
    served = shop.store.read_served(experiment="home-slot")
    propensity = served["propensity"].to_numpy()
    assert served.num_rows >= 1100 and (propensity > 0).all() and (propensity <= 1).all()
    assert propensity.min() < 0.5 < propensity.max()
