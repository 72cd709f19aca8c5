"""Media-mix benchmark (issue 8): parameter recovery, contribution recovery, back-test uplift,
fit and optimizer times, and PyMC-Marketing side by side.

1. **mmm_example.csv** (``mmm-pymc-marketing`` below ``../shared/data`` or ``$TAILOR_DATA``):
   ``y`` is divided by 1000 (the CSV holds about 1000 times the documented formula), channels
   x1, x2, controls event_1, event_2, our own trend and order-2 yearly seasonality;
   geometric adstock and logistic saturation, the forms the data was generated with. NUTS,
   2 chains x 1,000 draws after 1,000 warm-up, in this process with compilation included
   (``fit_s``). The posterior means are compared with alpha1 = 0.4, alpha2 = 0.2,
   lam1 = 4, lam2 = 3, beta1 = 3, beta2 = 2: relative error, and whether each lies in its
   94% HDI; then seeds 1-3 again, for the Monte Carlo spread of each mean, and one fit of
   2 x 10,000 draws, whose means carry about a quarter of that Monte Carlo error (16 times
   the effective draws). ``map_fit_s`` is the MAP re-fit as the scheduled re-plan runs it:
   warm-started from the MAP fit of all weeks but the last, on all weeks; the first MAP fit,
   which compiles, is reported too.
2. **mmm_roas_data.csv**: ``y`` is 100 x (trend + seasonality + z + x1_effect + x2_effect +
   noise) (checked exactly by least squares on the file's own columns), so each channel's
   true total contribution is 100 x the sum of its ``x*_effect``; ``z`` (a confounder
   correlated with x1) is a control. NUTS as above; ``contribution_rel_err`` is the larger
   of the two channels' |estimated - true| / true total contribution.
3. **Simulator** (:func:`tailor.datasets.simulate.ad_channels.simulate_channels`, 10
   channels, 156 weeks, seed 0, known truth): NUTS fit; ``sim_contribution_rel_err`` is
   sum over channels |estimated - true total contribution| / sum of the true totals (the
   share of media effect attributed to the wrong channel), the largest per-channel error is
   reported apart. The same fit is repeated with lift tests (:mod:`tailor.budget.lift`):
   simulated geo holdouts, each channel switched off at its typical spend and measured with
   a 10% standard error, first of the five channels with the most spend, then of all ten
   (``sim_calibrated_contribution_rel_err``). The back-test replays the last 26 weeks,
   allocating each week's actual total with the fitted model (posterior mean), each channel
   within 0.5x-1.5x of its recent share; ``backtest_uplift_true`` is the gain in true media
   effect of that replay over what was actually spent, under the simulator's true response.
   ``optimize_10ch_s``: a 4-week plan of 10 channels from the fitted model, the first call in
   the process (JAX compilation included); the median of 5 later calls is reported apart.
4. **PyMC-Marketing** on mmm_example, same sampler budget, in a side environment
   (``--pymc-python PATH`` or ``$TAILOR_PYMC_PYTHON``; made with ``python3 -m venv /tmp/pmm &&
   /tmp/pmm/bin/pip install pymc-marketing==0.19.2``) through ``bench/_pymc_marketing.py``;
   null figures without it.

``--csv PATH --date-col D --target-col Y --spend-cols a,b,c [--control-cols u,v]
--holdout-weeks N``: out-of-sample MAPE of the last N periods, ours (NUTS) against ridge
regression on the same transforms, and as last line ``{"bench": "budget", "mode": "csv",
"holdout_mape": .., "ridge_holdout_mape": ..}``.

Every data set's structure (carry-over length l_max in 4, 8, 12; 0 or 5 trend changepoints)
is chosen first by :func:`tailor.budget.evaluation.select_config` from 3 rolling-origin MAP
fits forecasting 8 weeks each: the simplest structure whose mean MAPE is within one standard
error of the lowest, never by comparing with the truth.

Usage: ``python -m bench.budget [--pymc-python PATH] [--quick]`` (``--quick``: 500 draws and
warm-up, skips PyMC-Marketing). Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tailor.budget.backtest import backtest
from tailor.budget.data import MediaData, read_csv
from tailor.budget.evaluation import holdout, select_config
from tailor.budget.model import MediaMixModel, MMMConfig
from tailor.budget.optimize import plan_budget
from tailor.budget.posterior import COMPILED
from tailor.datasets.base import dataset_path
from tailor.datasets.simulate.ad_channels import simulate_channels

TRUTH = {"alpha1": 0.4, "alpha2": 0.2, "lam1": 4.0, "lam2": 3.0, "beta1": 3.0, "beta2": 2.0}
TOLERANCE = {"alpha": 0.10, "lam": 0.15, "beta": 0.15}
SEEDS = 4
"""NUTS fits of mmm_example with seeds 0..3: beta2's posterior has a long right tail (low lam2,
high beta2), so its mean moves by several percent between seeds at 2 x 1,000 draws."""
LONG_DRAWS = 10_000
"""Draws per chain of one more NUTS fit of mmm_example, which pins the posterior means down."""
LIFT_NOISE = 0.1
"""Standard error of the simulated lift tests, as a share of the true change."""
BACKTEST_WEEKS = 26
PLAN_WEEKS = 4
TARGETS = {"fit_s": 20.0, "map_fit_s": 2.0, "optimize_10ch_s": 1.0, "contribution_rel_err": 0.05}

console = Console(stderr=True)


def _config(quick: bool) -> MMMConfig:
    draws = 500 if quick else 1000
    return MMMConfig(chains=2, draws=draws, warmup=draws)


def _select(config: MMMConfig, data: MediaData) -> tuple[MMMConfig, dict[str, Any]]:
    started = time.perf_counter()
    chosen, scores = select_config(config, data)
    return chosen, {"candidates": scores, "seconds": time.perf_counter() - started}


def _structure(config: MMMConfig, scores: dict[str, Any]) -> dict[str, Any]:
    return {"l_max": config.l_max, "trend_changepoints": config.trend_changepoints, **scores}


def example(config: MMMConfig) -> dict[str, Any]:
    path = dataset_path("mmm-pymc-marketing", "mmm_example.csv")
    data = read_csv(
        path, date_col="date_week", target_col="y", spend_cols=["x1", "x2"],
        control_cols=["event_1", "event_2"], target_scale=1000,
    )  # fmt: skip
    config, scores = _select(config, data)
    model = MediaMixModel(config).fit(data, method="nuts")
    summary = model.summary()
    params, hdi, inside, errors = {}, {}, {}, {}
    for name, true in TRUTH.items():
        kind, channel = name[:-1], int(name[-1]) - 1
        mean = summary[kind]["mean"][channel]
        lo, hi = summary[kind]["hdi"][0][channel], summary[kind]["hdi"][1][channel]
        params[name], hdi[name] = mean, [lo, hi]
        inside[name] = lo <= true <= hi
        errors[name] = abs(mean - true) / true
    spread = {name: [] for name in TRUTH}
    for seed in range(1, SEEDS):  # the posterior means' Monte Carlo spread across seeds
        again = MediaMixModel(replace(config, seed=seed)).fit(data, method="nuts").summary()
        for name in TRUTH:
            spread[name].append(again[name[:-1]]["mean"][int(name[-1]) - 1])
    # the posterior means themselves, with about a quarter of the Monte Carlo error
    long_run = MediaMixModel(replace(config, draws=LONG_DRAWS, seed=SEEDS)).fit(data).summary()
    long_means = {n: long_run[n[:-1]]["mean"][int(n[-1]) - 1] for n in TRUTH}
    COMPILED.clear()  # the cold MAP fit compiles, as in a fresh worker process
    map_cold = MediaMixModel(config).fit(data.head(data.periods - 1), method="map")
    refit = MediaMixModel(config).fit(data, method="map", warm_start=map_cold)
    return {
        "params": params,
        "hdi94": hdi,
        "in_hdi": inside,
        "rel_err": errors,
        "long_run_means": long_means,
        "long_run_rel_err": {k: abs(v - TRUTH[k]) / TRUTH[k] for k, v in long_means.items()},
        "seed_range": {k: [min([params[k], *v]), max([params[k], *v])] for k, v in spread.items()},
        "within_tolerance": {k: errors[k] <= TOLERANCE[k[:-1]] for k in errors},
        "fit_s": model.fit_seconds_,
        "problems": model.problems(),
        "divergences": model.diagnostics_["divergences"],
        "max_r_hat": max(max(v) for v in model.diagnostics_["r_hat"].values()),
        "min_ess": min(min(v) for v in model.diagnostics_["ess"].values()),
        "map_cold_s": map_cold.fit_seconds_,
        "map_fit_s": refit.fit_seconds_,
        "config": _structure(config, scores),
        "map_params": {
            name: refit.summary()[name[:-1]]["mean"][int(name[-1]) - 1] for name in TRUTH
        },
    }


def roas(config: MMMConfig) -> dict[str, Any]:
    import pyarrow.csv as pacsv

    path = dataset_path("mmm-pymc-marketing", "mmm_roas_data.csv")
    data = read_csv(
        path, date_col="date", target_col="y", spend_cols=["x1", "x2"], control_cols=["z"]
    )
    table = pacsv.read_csv(path)
    truth = np.array([100 * np.sum(table[f"{c}_effect"].to_numpy()) for c in ("x1", "x2")])
    config, scores = _select(config, data)
    model = MediaMixModel(config).fit(data, method="nuts")
    estimate = model.contributions(data)["mean"].sum(axis=0)
    errors = np.abs(estimate - truth) / truth
    return {
        "true": truth.tolist(),
        "estimated": estimate.tolist(),
        "rel_err": errors.tolist(),
        "contribution_rel_err": float(errors.max()),
        "fit_s": model.fit_seconds_,
        "config": _structure(config, scores),
        "problems": model.problems(),
    }


def simulated(config: MMMConfig) -> dict[str, Any]:
    sim = simulate_channels(channels=10, periods=156, seed=0)
    data: MediaData = sim.data
    config, scores = _select(config, data)
    model = MediaMixModel(config).fit(data, method="nuts")
    estimate = model.contributions(data)["mean"].sum(axis=0)
    truth = sim.true_contributions.sum(axis=0)
    per_channel = np.abs(estimate - truth) / truth
    response = model.response("mean")
    result = backtest(response, data.spend, start=data.periods - BACKTEST_WEEKS, truth=sim.truth)
    budget = float(data.spend[-PLAN_WEEKS:].sum())
    started = time.perf_counter()
    plan = plan_budget(response, budget=budget, horizon=PLAN_WEEKS, history=model.history_)
    first = time.perf_counter() - started
    later = []
    for _ in range(5):
        started = time.perf_counter()
        plan_budget(response, budget=budget, horizon=PLAN_WEEKS, history=model.history_)
        later.append(time.perf_counter() - started)
    # Calibrated by lift tests, as a shop that ran experiments would fit it: geo holdouts
    # (each channel switched off at its typical spend, 10% standard error) of the five
    # channels with the most spend, then of all ten.
    by_spend = [data.channels[c] for c in np.argsort(-data.spend.sum(axis=0), kind="stable")]
    calibrated = {}
    for label, channels in (("largest_5", by_spend[:5]), ("all", by_spend)):
        tests = sim.lift_tests(channels, change=-1.0, noise=LIFT_NOISE)
        fitted = MediaMixModel(config).fit(data, method="nuts", lift_tests=tests)
        calibrated_estimate = fitted.contributions(data)["mean"].sum(axis=0)
        calibrated[label] = {
            "channels": channels,
            "sim_contribution_rel_err": float(
                np.abs(calibrated_estimate - truth).sum() / truth.sum()
            ),
            "per_channel_rel_err": (np.abs(calibrated_estimate - truth) / truth).tolist(),
            "fit_s": fitted.fit_seconds_,
        }
    return {
        "calibrated": calibrated,
        "channels": list(data.channels),
        "true_contribution": truth.tolist(),
        "estimated_contribution": estimate.tolist(),
        "per_channel_rel_err": per_channel.tolist(),
        "sim_contribution_rel_err": float(np.abs(estimate - truth).sum() / truth.sum()),
        "fit_s": model.fit_seconds_,
        "config": _structure(config, scores),
        "problems": model.problems(),
        "backtest": {
            k: result.to_json()[k]
            for k in ("predicted_uplift", "true_uplift", "true_actual", "true_optimized", "blocks")
        },
        "plan_status": plan.status,
        "optimize_10ch_s": first,
        "optimize_10ch_warm_s": statistics.median(later),
    }


def pymc_marketing(python: str | None, quick: bool) -> dict[str, Any] | None:
    if not python or quick:
        return None
    runner = Path(__file__).with_name("_pymc_marketing.py")
    path = dataset_path("mmm-pymc-marketing", "mmm_example.csv")
    console.print(f"PyMC-Marketing with {python} (takes a minute or two)")
    done = subprocess.run(
        [python, str(runner), "--csv", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        console.print(f"[yellow]PyMC-Marketing failed[/yellow]: {done.stderr[-2000:]}")
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rel_err"] = {k: abs(v - TRUTH[k]) / TRUTH[k] for k, v in result["params"].items()}
    return result


def csv_mode(args: argparse.Namespace, config: MMMConfig) -> dict[str, Any]:
    data = read_csv(
        args.csv, date_col=args.date_col, target_col=args.target_col,
        spend_cols=_names(args.spend_cols), control_cols=_names(args.control_cols),
    )  # fmt: skip
    result = holdout(config, data, args.holdout_weeks, method="nuts")
    table = Table(title=f"{Path(args.csv).name}: last {args.holdout_weeks} periods held out")
    for column in ("model", "holdout MAPE"):
        table.add_column(column)
    table.add_row("tailor MMM (NUTS)", f"{result.mape:.4f}")
    table.add_row("ridge, same transforms", f"{result.ridge_mape:.4f}")
    Console().print(table)
    return {
        "bench": "budget",
        "mode": "csv",
        "holdout_mape": result.mape,
        "ridge_holdout_mape": result.ridge_mape,
        "holdout_coverage94": result.coverage,
    }


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _print(ex: dict, ro: dict, sim: dict, pm: dict | None) -> None:
    out = Console(width=max(Console().width, 120))
    table = Table(title="mmm_example: posterior means (NUTS 2 x draws) against the truth")
    for column in (
        "param", "true", "tailor", "94% HDI", "in HDI", "rel err", f"seeds 0-{SEEDS - 1}",
        "2 x 10,000", "PyMC-Marketing",
    ):  # fmt: skip
        table.add_column(column)
    for name, true in TRUTH.items():
        lo, hi = ex["hdi94"][name]
        theirs = f"{pm['params'][name]:.3f}" if pm else "-"
        table.add_row(
            name, f"{true:g}", f"{ex['params'][name]:.3f}", f"[{lo:.3f}, {hi:.3f}]",
            "yes" if ex["in_hdi"][name] else "NO", f"{ex['rel_err'][name]:.1%}",
            "{:.3f}-{:.3f}".format(*ex["seed_range"][name]),
            f"{ex['long_run_means'][name]:.3f}", theirs,
        )  # fmt: skip
    out.print(table)
    times = Table(title="times (seconds, this machine)")
    for column in ("what", "tailor", "target", "PyMC-Marketing"):
        times.add_column(column)
    times.add_row(
        "NUTS fit, mmm_example", f"{ex['fit_s']:.1f}", "< 20",
        f"{pm['fit_s']:.1f}" if pm else "-",
    )  # fmt: skip
    times.add_row("MAP fit, compilation included", f"{ex['map_cold_s']:.2f}", "", "")
    times.add_row("MAP re-fit, warm", f"{ex['map_fit_s']:.2f}", "< 2", "")
    times.add_row("optimize 10 channels, first call", f"{sim['optimize_10ch_s']:.2f}", "< 1", "")
    times.add_row("optimize 10 channels, later", f"{sim['optimize_10ch_warm_s']:.3f}", "", "")
    out.print(times)
    contrib = Table(title="total contribution per channel: estimated against true")
    for column in ("data", "channel", "true", "estimated", "rel err"):
        contrib.add_column(column)
    for i, channel in enumerate(("x1", "x2")):
        contrib.add_row(
            "mmm_roas_data", channel, f"{ro['true'][i]:,.0f}", f"{ro['estimated'][i]:,.0f}",
            f"{ro['rel_err'][i]:.1%}",
        )  # fmt: skip
    for i, channel in enumerate(sim["channels"]):
        contrib.add_row(
            "simulator", channel, f"{sim['true_contribution'][i]:,.0f}",
            f"{sim['estimated_contribution'][i]:,.0f}", f"{sim['per_channel_rel_err'][i]:.1%}",
        )  # fmt: skip
    out.print(contrib)
    for run in sim["calibrated"].values():
        out.print(
            f"simulator with lift tests ({len(run['channels'])} holdouts, {LIFT_NOISE:.0%} "
            f"standard error: {', '.join(run['channels'])}): "
            f"{run['sim_contribution_rel_err']:.1%} of the media effect misattributed, worst "
            f"channel {max(run['per_channel_rel_err']):.1%} (NUTS {run['fit_s']:.1f} s)"
        )
    bt = sim["backtest"]
    out.print(
        f"back-test, last {BACKTEST_WEEKS} simulated weeks: predicted uplift "
        f"{bt['predicted_uplift']:.2%}, true uplift {bt['true_uplift']:.2%} "
        f"(true media effect {bt['true_actual']:,.0f} -> {bt['true_optimized']:,.0f})"
    )
    for where, run in (("mmm_example", ex), ("mmm_roas_data", ro), ("simulator", sim)):
        chosen = run["config"]
        out.print(
            f"{where}: l_max {chosen['l_max']}, {chosen['trend_changepoints']} trend changepoints "
            f"(chosen by 3-fold rolling-origin MAPE in {chosen['seconds']:.0f} s)"
        )
    for where, problems in (("mmm_example", ex["problems"]), ("roas", ro["problems"])):
        if problems:
            out.print(f"[yellow]{where} convergence warnings:[/yellow] {'; '.join(problems)}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 draws; no PyMC-Marketing")
    parser.add_argument("--pymc-python", default=os.environ.get("TAILOR_PYMC_PYTHON"))
    parser.add_argument("--csv", help="any weekly or daily CSV: holdout MAPE mode")
    parser.add_argument("--date-col")
    parser.add_argument("--target-col")
    parser.add_argument("--spend-cols")
    parser.add_argument("--control-cols")
    parser.add_argument("--holdout-weeks", type=int, default=8)
    args = parser.parse_args(argv)
    config = _config(args.quick)
    if args.csv:
        missing = [o for o in ("date_col", "target_col", "spend_cols") if not getattr(args, o)]
        if missing:
            parser.error("--csv needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
        result = csv_mode(args, config)
        print(json.dumps(result))
        return result
    with console.status("mmm_example: NUTS and MAP"):
        ex = example(config)
    with console.status("mmm_roas_data: NUTS"):
        ro = roas(config)
    with console.status("simulator, 10 channels: NUTS, back-test, optimizer"):
        sim = simulated(config)
    pm = pymc_marketing(args.pymc_python, args.quick)
    _print(ex, ro, sim, pm)
    pm_err = max(pm["rel_err"].values()) if pm else None
    result = {
        "bench": "budget",
        "params": ex["params"],
        "max_param_rel_err": max(ex["rel_err"].values()),
        "param_seed_range": ex["seed_range"],
        "long_run_params": ex["long_run_means"],
        "long_run_max_param_rel_err": max(ex["long_run_rel_err"].values()),
        "all_true_in_hdi94": all(ex["in_hdi"].values()),
        "params_within_tolerance": all(ex["within_tolerance"].values()),
        "contribution_rel_err": ro["contribution_rel_err"],
        "sim_contribution_rel_err": sim["sim_contribution_rel_err"],
        "sim_max_channel_rel_err": max(sim["per_channel_rel_err"]),
        "sim_calibrated_contribution_rel_err": {
            label: run["sim_contribution_rel_err"] for label, run in sim["calibrated"].items()
        },
        "backtest_uplift_true": sim["backtest"]["true_uplift"],
        "backtest_uplift_predicted": sim["backtest"]["predicted_uplift"],
        "fit_s": ex["fit_s"],
        "map_fit_s": ex["map_fit_s"],
        "map_cold_fit_s": ex["map_cold_s"],
        "optimize_10ch_s": sim["optimize_10ch_s"],
        "divergences": ex["divergences"],
        "max_r_hat": ex["max_r_hat"],
        "min_ess": ex["min_ess"],
        "pymc_marketing_fit_s": pm["fit_s"] if pm else None,
        "pymc_marketing_max_param_rel_err": pm_err,
        "speedup_vs_pymc_marketing": pm["fit_s"] / ex["fit_s"] if pm else None,
        "draws": config.draws,
    }
    result["targets_met"] = {
        "recovery": result["all_true_in_hdi94"] and result["params_within_tolerance"],
        "contribution": result["contribution_rel_err"] <= TARGETS["contribution_rel_err"],
        "backtest_uplift": (result["backtest_uplift_true"] or 0) > 0,
        "fit_s": result["fit_s"] < TARGETS["fit_s"],
        "map_fit_s": result["map_fit_s"] < TARGETS["map_fit_s"],
        "optimize_10ch_s": result["optimize_10ch_s"] < TARGETS["optimize_10ch_s"],
        "vs_pymc_marketing": None
        if pm is None
        else result["speedup_vs_pymc_marketing"] >= 5 and result["max_param_rel_err"] <= pm_err,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
