"""Lift tests: the CSV and its mistakes, the simulator's holdouts, and what they do to a fit
(the credit of channels the data alone cannot separate), saved, warm-started and from the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tailor.budget import service
from tailor.budget.data import MediaDataError, read_csv
from tailor.budget.evaluation import rolling_origin, select_config
from tailor.budget.lift import MAX_TESTS, LiftTests, read_lift_tests
from tailor.budget.model import MediaMixModel, MMMConfig
from tailor.datasets.simulate.ad_channels import simulate_channels
from tests._cli import tailor, workdir  # noqa: F401  (the fixture)
from tests.budget.test_service import CONFIG, simulated
from tests.test_cli_budget import csv_options, flat, write_csv

HEADER = "channel,x,delta_x,delta_y,sigma\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the CSV -----------------------------------------------------------------------------------


def test_read_a_csv_in_any_column_order_scaled_like_the_target(tmp_path: Path) -> None:
    path = write(
        tmp_path / "lift.csv",
        "note,sigma,delta_y,delta_x,x,channel\n"
        "geo holdout,2000,-96500,-12000,12000,search\n"
        ",1500,4100,1500,3000, social \n",
    )
    tests = read_lift_tests(path, target_scale=1000)
    assert tests.channel == ("search", "social") and len(tests) == 2
    np.testing.assert_allclose(tests.x, [12000, 3000])
    np.testing.assert_allclose(tests.delta_x, [-12000, 1500])
    np.testing.assert_allclose(tests.delta_y, [-96.5, 4.1])
    np.testing.assert_allclose(tests.sigma, [2.0, 1.5])
    np.testing.assert_array_equal(tests.codes(("social", "tv", "search")), [2, 0])
    again = LiftTests.from_json(json.loads(json.dumps(tests.to_json())))
    assert again.channel == tests.channel
    for name in ("x", "delta_x", "delta_y", "sigma"):
        np.testing.assert_array_equal(getattr(again, name), getattr(tests, name))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("channel,x,delta_x,delta_y\nsearch,1,1,1\n", "no column(s) 'sigma'"),
        ("channel,x,x,delta_x,delta_y,sigma\nsearch,1,2,1,1,1\n", "'x' appear more than once"),
        (HEADER, "no lift tests"),
        (HEADER + "search,100,-100,-5,1\n,100,50,2,1\n", "row 3, channel: empty"),
        (HEADER + "search,100,abc,-5,1\n", "row 2, delta_x: 'abc' is not a number"),
        (HEADER + "search,100,-100,-5,nan\n", "row 2, sigma"),
        (HEADER + "search,100,-100,-5,0\n", "row 2 (search): sigma"),
        (HEADER + "search,100,0,-5,1\n", "row 2 (search): delta_x is 0"),
        (HEADER + "search,100,-150,-5,1\n", "row 2 (search): x + delta_x is negative"),
        (HEADER + "search,-1,5,1,1\n", "row 2 (search): x (spend"),
    ],
)
def test_csv_mistakes_name_the_row_and_column(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(MediaDataError, match=r"lift\.csv") as error:
        read_lift_tests(write(tmp_path / "lift.csv", text))
    assert named in str(error.value)


def test_what_is_not_a_lift_test_file(tmp_path: Path) -> None:
    with pytest.raises(MediaDataError, match="no such file"):
        read_lift_tests(tmp_path / "missing.csv")
    binary = tmp_path / "lift.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(MediaDataError, match="not a UTF-8 text CSV"):
        read_lift_tests(binary)
    with pytest.raises(MediaDataError, match="target_scale"):
        read_lift_tests(write(tmp_path / "ok.csv", HEADER + "a,1,1,1,1\n"), target_scale=0)
    # a field past the csv module's limit: an error naming the row, for both CSV readers
    huge = write(
        tmp_path / "huge.csv", HEADER + "a,1,1,1,1\n" + '"' + "x" * 200_000 + '",1,1,1,1\n'
    )
    with pytest.raises(MediaDataError, match=r"huge\.csv row 3: not a readable CSV row"):
        read_lift_tests(huge)
    media = write(
        tmp_path / "media.csv", "week,y,a\n2024-01-01,1,1\n" + "2024-01-08,1," + "9" * 200_000
    )
    with pytest.raises(MediaDataError, match=r"media\.csv row 3: not a readable CSV row"):
        read_csv(media, date_col="week", target_col="y", spend_cols=["a"])
    too_many = write(tmp_path / "many.csv", HEADER + "a,1,1,1,1\n" * (MAX_TESTS + 1))
    with pytest.raises(MediaDataError, match=f"more than {MAX_TESTS} lift tests"):
        read_lift_tests(too_many)


def test_lift_tests_check_their_values_and_channels() -> None:
    with pytest.raises(MediaDataError, match="one entry per test"):
        LiftTests(channel=("a", "b"), x=[1.0], delta_x=[1.0], delta_y=[1.0], sigma=[1.0])
    with pytest.raises(MediaDataError, match=r"lift test 2 \(b\): sigma"):
        LiftTests(channel=("a", "b"), x=[1, 1], delta_x=[1, 1], delta_y=[1, 1], sigma=[1, -1])
    tests = LiftTests(channel=("a", "zz"), x=[1, 1], delta_x=[1, 1], delta_y=[1, 1], sigma=[1, 1])
    with pytest.raises(MediaDataError, match="'zz' are not in the data; its channels are a, b"):
        tests.codes(("a", "b"))


# --- the simulator's holdouts ------------------------------------------------------------------


def test_a_simulated_holdout_measures_the_settled_effect_of_the_typical_spend() -> None:
    sim = simulate_channels(channels=3, periods=52, seed=4)
    channel = sim.data.channels[1]
    tests = sim.lift_tests([channel], change=-1.0, noise=1e-9)
    spend = sim.data.spend[:, 1]
    assert tests.x[0] == pytest.approx(spend[spend > 0].mean())
    assert tests.delta_x[0] == pytest.approx(-tests.x[0])
    # the truth's effect of that spend kept up long enough for the carry-over to settle
    steady = np.zeros((40, 3))
    steady[:, 1] = tests.x[0]
    settled = sim.truth.contributions(steady)[-1, 1]
    assert tests.delta_y[0] == pytest.approx(-settled, rel=1e-6)
    exact = sim.lift_tests([channel], change=0.5, noise=1e-9)
    raised = sim.lift_tests([channel], change=0.5, noise=0.1, seed=1)
    assert exact.delta_y[0] > 0
    assert raised.sigma[0] == pytest.approx(0.1 * exact.delta_y[0], rel=1e-6)
    assert abs(raised.delta_y[0] - exact.delta_y[0]) < 5 * raised.sigma[0]
    for bad, named in (({"change": 0.0}, "change"), ({"change": -2.0}, "change"),
                       ({"noise": 0.0}, "noise")):  # fmt: skip
        with pytest.raises(ValueError, match=named):
            sim.lift_tests([channel], **bad)
    with pytest.raises(ValueError, match="channels"):
        sim.lift_tests(["nowhere"])


# --- what they do to a fit -----------------------------------------------------------------------


def misattributed(model: MediaMixModel, sim) -> float:
    estimate = model.contributions(sim.data)["mean"].sum(axis=0)
    truth = sim.true_contributions.sum(axis=0)
    return float(np.abs(estimate - truth).sum() / truth.sum())


def test_holdouts_give_channels_the_data_cannot_separate_their_credit() -> None:
    """Ten channels whose budgets move together: from the data alone (MAP) over a quarter of
    the media effect goes to the wrong channel; one holdout per channel fixes most of it."""
    sim = simulate_channels(channels=10, periods=156, seed=0)
    config = MMMConfig(l_max=4, laplace_draws=200)
    alone = MediaMixModel(config).fit(sim.data, method="map")
    tests = sim.lift_tests(sim.data.channels)
    calibrated = MediaMixModel(config).fit(sim.data, method="map", lift_tests=tests)
    assert misattributed(alone, sim) > 0.2
    assert misattributed(calibrated, sim) < 0.1
    assert calibrated.lift_tests_ is tests and alone.lift_tests_ is None
    # the fitted curves agree with the experiments they were given, within their errors
    checks = calibrated.lift_check()
    assert [c["channel"] for c in checks] == list(sim.data.channels)
    assert all(abs(c["z"]) < 3 for c in checks), checks
    assert all(c["model_lo"] <= c["model"] <= c["model_hi"] < 0 for c in checks)
    assert alone.lift_check() == []
    named = "are not in the data; its channels are search, social, display"
    with pytest.raises(MediaDataError, match=named):
        MediaMixModel(config).fit(
            simulate_channels(channels=3, periods=52, seed=0).data, method="map", lift_tests=tests
        )


def test_lift_tests_are_saved_and_kept_by_a_warm_refit(tmp_path: Path) -> None:
    sim = simulated()
    tests = sim.lift_tests(sim.data.channels[:2], change=-1.0)
    first = service.fit_model(sim.data, tmp_path / "m", config=CONFIG, lift_tests=tests)
    loaded = service.load_model(tmp_path / "m")
    assert loaded.lift_tests_ is not None and loaded.lift_tests_.channel == tests.channel
    np.testing.assert_array_equal(loaded.lift_tests_.delta_y, tests.delta_y)
    again = service.fit_model(sim.data, tmp_path / "m", warm_start=True)
    assert again.warm_started and again.model.lift_tests_.channel == tests.channel
    np.testing.assert_allclose(again.model.mode_["beta"], first.model.mode_["beta"], rtol=1e-3)
    # a model saved before lift tests existed loads without them
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    del header["lift_tests"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(header))
    assert service.load_model(tmp_path / "m").lift_tests_ is None
    # the report shows each test against the fitted curves
    page, twin = service.write_report(loaded, sim.data, tmp_path / "r.html", backtest_last=None)
    shown = json.loads(twin.read_text())["model"]["lift_tests"]
    assert [t["channel"] for t in shown] == list(tests.channel)
    assert {"measured", "sigma", "model", "model_lo", "model_hi", "z"} <= set(shown[0])
    assert "<h2>Lift tests</h2>" in page.read_text()
    plain = service.fit_model(sim.data, tmp_path / "p", config=CONFIG).model
    page, _ = service.write_report(plain, sim.data, tmp_path / "plain.html", backtest_last=None)
    assert "Lift tests" not in page.read_text()


def test_rolling_forecasts_and_the_structure_choice_fit_with_the_lift_tests() -> None:
    sim = simulated()
    tests = sim.lift_tests(sim.data.channels[:1])
    # an experiment that claims ten times the true effect, tightly measured, moves every fit
    loud = LiftTests(
        channel=tests.channel,
        x=tests.x,
        delta_x=tests.delta_x,
        delta_y=10 * tests.delta_y,
        sigma=tests.sigma / 10,
    )
    config = replace(CONFIG, l_max=4, trend_changepoints=0)
    plain = rolling_origin(config, sim.data, folds=2, horizon=6)
    calibrated = rolling_origin(config, sim.data, folds=2, horizon=6, lift_tests=loud)
    assert [r.mape for r in plain] != [r.mape for r in calibrated]
    _, scores = select_config(
        config, sim.data, l_max=(4,), changepoints=(0,), folds=2, horizon=6, lift_tests=loud
    )
    assert scores[0]["fold_mape"] == [r.mape for r in calibrated]


def test_cli_fits_with_lift_tests_and_refuses_bad_ones(workdir: Path) -> None:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    sim = simulated()
    tests = sim.lift_tests(sim.data.channels[:1])
    rows = "".join(
        f"{c},{x},{dx},{dy},{s}\n"
        for c, x, dx, dy, s in zip(
            tests.channel, tests.x, tests.delta_x, tests.delta_y, tests.sigma, strict=True
        )
    )
    write(workdir / "lift.csv", HEADER + rows)
    result = tailor("budget", "fit", *csv_options(source), "--model", "m", "--lift-tests",
                    "lift.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lift tests: measured change per period" in flat(result.output)
    saved = json.loads((workdir / "m" / "model.json").read_text())["lift_tests"]
    assert [t["channel"] for t in saved] == list(tests.channel)
    judged = tailor("budget", "evaluate", "--model", "m", *csv_options(source), "--holdout", "6",
                    "--folds", "2", "--json")  # fmt: skip
    assert judged.exit_code == 0, judged.output
    assert len(json.loads(judged.output)["folds"]) == 2
    write(workdir / "other.csv", HEADER + "billboards,100,-100,-5,1\n")
    unknown = tailor("budget", "fit", *csv_options(source), "--model", "n", "--lift-tests",
                     "other.csv")  # fmt: skip
    assert unknown.exit_code == 1 and "--lift-tests" in flat(unknown.output)
    assert "'billboards' are not in the data" in flat(unknown.output)
    write(workdir / "bad.csv", HEADER + f"{tests.channel[0]},100,0,-5,1\n")
    bad = tailor("budget", "fit", *csv_options(source), "--model", "n", "--lift-tests", "bad.csv")
    assert bad.exit_code == 1 and "bad.csv row 2" in flat(bad.output)
    assert not (workdir / "n").exists()
