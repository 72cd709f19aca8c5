"""``tailor budget fit | plan | backtest`` on a CSV of a simulated media mix; every mistake is
one error line and exit status 1, with nothing half-written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests._cli import tailor, workdir  # noqa: F401  (the fixture)
from tests.budget.test_service import fitted_folder, simulated


def write_csv(path: Path) -> Path:
    data = simulated().data
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["week", "conversions", *data.channels, *data.control_names])
        for t in range(data.periods):
            out.writerow([str(data.dates[t]), data.target[t], *data.spend[t], *data.controls[t]])
    return path


def csv_options(path: Path) -> list[str]:
    data = simulated().data
    return [
        "--csv", str(path), "--date-col", "week", "--target-col", "conversions",
        "--spend-cols", ",".join(data.channels), "--control-cols", ",".join(data.control_names),
    ]  # fmt: skip


def flat(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def fitted(workdir: Path) -> Path:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    result = tailor("budget", "fit", *csv_options(source), "--model", "m", "--report", "r.html")
    assert result.exit_code == 0, result.output
    return workdir


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A model fitted once for the tests that only plan with it."""
    return fitted_folder(tmp_path_factory.mktemp("cli-budget") / "model")


def test_fit_plan_and_backtest_from_a_csv(fitted: Path) -> None:
    assert (fitted / "m" / "model.json").is_file()
    assert (fitted / "r.html").is_file() and (fitted / "r.json").is_file()
    plan = tailor(
        "budget", "plan", "--model", "m", "--budget", "20000", "--horizon", "4",
        "--bound", "search=100:", "--relative-bounds", "0:3", "--json",
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    answer = json.loads(plan.output)
    assert sum(answer["totals"]) == pytest.approx(20_000, rel=1e-6)
    assert answer["per_period"][answer["channels"].index("search")] >= 100 - 1e-6
    shown = tailor("budget", "plan", "--model", "m", "--budget", "20000", "--fixed", "social=0")
    assert shown.exit_code == 0, shown.output
    assert "plan for 4 weeks from" in flat(shown.output)
    test = tailor("budget", "backtest", "--model", "m", *csv_options(fitted / "media.csv"),
                  "--last", "5", "--json")  # fmt: skip
    assert test.exit_code == 0, test.output
    assert json.loads(test.output)["blocks"] == 5


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--budget", "0"], "budget"),
        (["--budget", "1000", "--horizon", "400"], "horizon"),
        (["--budget", "1000", "--bound", "search"], "CHANNEL=VALUE"),
        (["--budget", "1000", "--bound", "search=a:b"], "not a number"),
        (["--budget", "1000", "--bound", "nowhere=1:2"], "unknown channel 'nowhere'"),
        (["--budget", "1000", "--target-cpa", "5", "--target-roas", "2"], "target_cpa and"),
        (["--budget", "1000", "--quantile", "2"], "quantile"),
        ([], "--budget"),
    ],
)
def test_plan_mistakes_are_one_line(
    saved: Path,
    workdir: Path,  # noqa: F811
    arguments: list[str],
    message: str,
) -> None:
    result = tailor("budget", "plan", "--model", str(saved), *arguments)
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and message in flat(result.output)
    assert "Traceback" not in result.output


def test_data_mistakes_write_nothing(workdir: Path) -> None:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    missing = tailor("budget", "fit", "--csv", str(source), "--model", "m")
    assert missing.exit_code == 1 and "--date-col" in flat(missing.output)
    wrong = tailor("budget", "fit", *csv_options(source)[:-4], "--spend-cols", "nope",
                   "--model", "m")  # fmt: skip
    assert wrong.exit_code == 1 and "'nope'" in flat(wrong.output)
    assert not (workdir / "m").exists()
    assert tailor("init").exit_code == 0
    empty = tailor("budget", "fit", "--model", "m")
    assert empty.exit_code == 1 and "0 ad_spend" in flat(empty.output)
    nothing = tailor("budget", "plan", "--model", "m", "--budget", "10")
    assert nothing.exit_code == 1 and "tailor budget fit" in flat(nothing.output)
    assert not (workdir / "m").exists()
    both = tailor("budget", "backtest", "--model", "m")
    assert both.exit_code == 1


def test_evaluate_forecasts_out_of_sample_against_ridge(saved: Path, workdir: Path) -> None:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    result = tailor(
        "budget", "evaluate", "--model", str(saved), *csv_options(source),
        "--holdout", "6", "--folds", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folds = json.loads(result.output)["folds"]
    assert [f["fold"] for f in folds] == [1, 2]
    for fold in folds:
        assert 0 <= fold["mape"] < 0.5 and 0 <= fold["ridge_mape"] < 0.5
        assert 0 <= fold["coverage94"] <= 1
    too_many = tailor("budget", "evaluate", "--model", str(saved), *csv_options(source),
                      "--holdout", "30", "--folds", "5")  # fmt: skip
    assert too_many.exit_code == 1 and "fewer folds" in flat(too_many.output)


@pytest.mark.slow  # six structures x three MAP fits: half a minute
def test_select_chooses_the_structure_by_rolling_forecasts(workdir: Path) -> None:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    both = tailor("budget", "fit", *csv_options(source), "--model", "m", "--select",
                  "--warm-start")  # fmt: skip
    assert both.exit_code == 1 and "--select and --warm-start" in flat(both.output)
    result = tailor("budget", "fit", *csv_options(source), "--model", "m", "--select")
    assert result.exit_code == 0, result.output
    assert "chosen" in result.output
    saved = json.loads((workdir / "m" / "model.json").read_text())["config"]
    assert saved["l_max"] in (4, 8, 12) and saved["trend_changepoints"] in (0, 5)


def test_an_unknown_beta_prior_is_one_line(workdir: Path) -> None:  # noqa: F811
    source = write_csv(workdir / "media.csv")
    result = tailor("budget", "fit", *csv_options(source), "--model", "m", "--beta-prior", "x")
    assert result.exit_code == 1 and "--beta-prior" in flat(result.output)
    assert not (workdir / "m").exists()
