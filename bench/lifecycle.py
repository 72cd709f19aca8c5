"""Lifecycle benchmark (issue 5): off-policy evaluation, the sample-ratio alarm and drift checks.

1. **Off-policy evaluation** on the Open Bandit sample (``open-bandit-sample`` below
   ``../shared/data`` or ``$TAILOR_DATA``; campaign ``--campaign``, default ``all``): the
   Bernoulli Thompson sampling policy's click rate is estimated from the *uniform random*
   policy's logs by IPW, SNIPW and DR, and compared with its on-policy click rate in its own
   ``bts`` logs (the truth). The evaluated policy's probability of an item at a position is
   its frequency at that position in the ``bts`` logs (the policy changed its Beta posteriors
   during the logging period, so its per-row propensities vary; the frequency is the
   time-averaged policy the on-policy rate measures). DR's reward model is each
   (item, position)'s click rate shrunk towards its position's rate (prior weight
   ``SHRINK``), cross-fitted over two folds. 95% normal intervals. Where ``obp`` imports
   (``--obp-python``, a side environment), its IPW, SNIPW and DR run on the same arrays and
   the largest absolute difference is reported.
2. **Sample-ratio mismatch**: 100 seeded runs of 100,000 users each, assigned 50/50 by
   :func:`tailor.lifecycle.experiments.assign` (the alarm must stay quiet) and served 52/48
   (the alarm must fire), at p < 0.001.
3. **Drift**: 100 seeded runs, each with a reference of 100,000 standard-normal values
   (binned once) and 100,000 new values, unchanged (false alarms) and shifted by 0.1
   standard deviation (detections), KS at alpha 0.05; and the seconds to check 1,000,000
   values against a reference (median of 5).

Usage: ``python -m bench.lifecycle [--campaign all] [--obp-python PATH]``. Last line: one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from tailor.datasets.base import DataNotFoundError
from tailor.datasets.open_bandit import CAMPAIGNS, read_log
from tailor.lifecycle.drift import Reference
from tailor.lifecycle.experiments import assign, sample_ratio_mismatch
from tailor.lifecycle.ope import doubly_robust, ipw, snipw

console = Console(stderr=True)
SHRINK = 20.0
"""Prior weight (in impressions) of a position's click rate in DR's reward model."""
RUNS = 100
USERS = 100_000
TARGETS = {"srm_power": 0.99, "srm_false_alarm": 0.01, "drift_false_alarm": 0.05,
           "drift_power": 0.95, "drift_1m_s": 5.0}  # fmt: skip


def log_arrays(data: str | None, policy: str, campaign: str) -> dict[str, np.ndarray]:
    log = read_log(data, policy=policy, campaign=campaign)
    return {
        "item": log["item_id"].to_numpy(),
        "position": log["position"].to_numpy() - 1,  # 0-based, as obp counts
        "click": log["click"].to_numpy().astype(float),
        "propensity": log["propensity_score"].to_numpy(),
    }


def policy_table(logs: dict[str, np.ndarray], items: int, positions: int) -> np.ndarray:
    """pi(item | position): each item's share of a position's rows in the policy's logs."""
    counts = np.zeros((items, positions))
    np.add.at(counts, (logs["item"], logs["position"]), 1)
    return counts / counts.sum(axis=0, keepdims=True)


def reward_model(logs: dict[str, np.ndarray], rows: np.ndarray, items: int, positions: int):
    """Click rate per (item, position) from ``rows``, shrunk towards the position's rate."""
    clicks, shown = np.zeros((items, positions)), np.zeros((items, positions))
    np.add.at(clicks, (logs["item"][rows], logs["position"][rows]), logs["click"][rows])
    np.add.at(shown, (logs["item"][rows], logs["position"][rows]), 1)
    per_position = clicks.sum(axis=0) / np.maximum(shown.sum(axis=0), 1)
    return (clicks + SHRINK * per_position) / (shown + SHRINK)


def ope_figures(data: str | None, campaign: str, obp_python: str | None) -> dict[str, Any]:
    random_logs = log_arrays(data, "random", campaign)
    bts_logs = log_arrays(data, "bts", campaign)
    items = int(max(random_logs["item"].max(), bts_logs["item"].max())) + 1
    positions = int(max(random_logs["position"].max(), bts_logs["position"].max())) + 1
    pi = policy_table(bts_logs, items, positions)
    truth = float(bts_logs["click"].mean())
    n = len(random_logs["click"])
    item, position, click = random_logs["item"], random_logs["position"], random_logs["click"]
    target = pi[item, position]
    folds = np.arange(n) % 2  # cross-fitting: each half scored by the model of the other
    predicted, expected = np.empty(n), np.empty(n)
    q_all = np.empty((n, items, positions))
    for fold in (0, 1):
        rows = np.flatnonzero(folds == fold)
        q = reward_model(random_logs, np.flatnonzero(folds != fold), items, positions)
        predicted[rows] = q[item[rows], position[rows]]
        expected[rows] = (pi[:, position[rows]] * q[:, position[rows]]).sum(axis=0)
        q_all[rows] = q
    propensity = random_logs["propensity"]
    estimates = {
        "ipw": ipw(click, propensity, target),
        "snipw": snipw(click, propensity, target),
        "dr": doubly_robust(click, propensity, target, predicted, expected),
    }
    obp = run_obp(obp_python, random_logs, pi, q_all) if obp_python else None
    obp_difference = (
        None if obp is None else max(abs(obp[k] - estimates[k].value) for k in estimates)
    )
    return {
        "campaign": campaign,
        "rounds": n,
        "truth": truth,
        "truth_clicks": int(bts_logs["click"].sum()),
        "logged_clicks": int(click.sum()),
        "estimates": estimates,
        "obp": obp,
        "obp_max_abs_difference": obp_difference,
    }


OBP_SCRIPT = """
import json, sys
import numpy as np
from obp.ope import DoublyRobust, InverseProbabilityWeighting
from obp.ope import SelfNormalizedInverseProbabilityWeighting
d = np.load(sys.argv[1])
n, items, positions = d["q"].shape
action_dist = np.broadcast_to(d["pi"][None], (n, items, positions)).copy()
common = dict(reward=d["click"], action=d["item"], position=d["position"],
              pscore=d["propensity"], action_dist=action_dist)
out = {
    "ipw": InverseProbabilityWeighting().estimate_policy_value(**common),
    "snipw": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**common),
    "dr": DoublyRobust().estimate_policy_value(**common, estimated_rewards_by_reg_model=d["q"]),
}
import obp
print(json.dumps({**{k: float(v) for k, v in out.items()}, "version": obp.__version__}))
"""


def run_obp(python: str, logs: dict[str, np.ndarray], pi: np.ndarray, q: np.ndarray):
    """obp's estimates on the same arrays, in the side environment (None if it fails)."""
    with tempfile.TemporaryDirectory() as folder:
        arrays = Path(folder) / "ope.npz"
        np.savez(arrays, pi=pi, q=q, **logs)
        done = subprocess.run(
            [python, "-c", OBP_SCRIPT, str(arrays)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        console.print(f"obp did not run: {done.stderr.strip()[-400:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def srm_figures() -> dict[str, float]:
    quiet, fired = 0, 0
    for run in track(range(RUNS), description="SRM: 100 runs of 100,000 users", console=console):
        counts = np.bincount(
            [assign(f"user-{k}", f"bench-{run}", [1, 1]) for k in range(USERS)], minlength=2
        )
        quiet += not sample_ratio_mismatch(counts, [1, 1]).alarm
        skewed = np.random.default_rng(run).binomial(USERS, 0.52)
        fired += sample_ratio_mismatch([skewed, USERS - skewed], [1, 1]).alarm
    return {"srm_power": fired / RUNS, "srm_false_alarm": 1 - quiet / RUNS}


def drift_figures() -> dict[str, float]:
    """Each run draws its own reference: a test's false-alarm rate is over both samples (one
    fixed reference that happens to be an unusual draw alarms more often on every run)."""
    false_alarms, detections, psi_shifted = 0, 0, []
    for run in track(range(RUNS), description="drift: 100 runs of 100,000 values", console=console):
        rng = np.random.default_rng(run)
        reference = Reference.fit(rng.standard_normal(USERS))
        false_alarms += reference.check(rng.standard_normal(USERS)).drifted
        shifted = reference.check(rng.standard_normal(USERS) + 0.1)
        detections += shifted.drifted
        psi_shifted.append(shifted.psi)
    million = np.random.default_rng(RUNS).standard_normal(1_000_000)
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        reference.check(million)
        seconds.append(time.perf_counter() - started)
    return {
        "drift_false_alarm": false_alarms / RUNS,
        "drift_power": detections / RUNS,
        "drift_1m_s": statistics.median(seconds),
        "drift_psi_shifted_median": statistics.median(psi_shifted),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    parser.add_argument("--campaign", choices=CAMPAIGNS, default="all")
    parser.add_argument("--data", help="the open-bandit-sample folder (default: shared data)")
    parser.add_argument(
        "--obp-python",
        default=os.environ.get("TAILOR_OBP_PYTHON"),
        help="a Python with obp installed, to compare estimates on the same inputs",
    )
    args = parser.parse_args(argv)
    console.print(f"off-policy evaluation on the Open Bandit sample ({args.campaign}) ...")
    try:
        ope = ope_figures(args.data, args.campaign, args.obp_python)
    except (DataNotFoundError, FileNotFoundError, ValueError) as exc:
        parser.error(f"the Open Bandit sample: {exc}")
    srm = srm_figures()
    drift = drift_figures()

    estimates = ope["estimates"]
    table = Table(
        title=f"Bernoulli TS click rate from the random logs ({ope['rounds']:,} rounds, "
        f"{ope['logged_clicks']} clicks); on-policy truth {ope['truth']:.5f} "
        f"({ope['truth_clicks']} clicks)"
    )
    for column in ("estimator", "estimate", "95% interval", "relative error", "truth inside",
                   "obp"):  # fmt: skip
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for name, e in estimates.items():
        table.add_row(
            name, f"{e.value:.5f}", f"[{e.low:.5f}, {e.high:.5f}]",
            f"{abs(e.value - ope['truth']) / ope['truth']:.1%}", str(e.covers(ope["truth"])),
            "" if ope["obp"] is None else f"{ope['obp'][name]:.5f}",
        )  # fmt: skip
    console.print(table)
    checks = Table(title="alarms (100 seeded runs each) and drift speed")
    for column in ("figure", "measured", "target"):
        checks.add_column(column, justify="left" if column == "figure" else "right")
    checks.add_row("SRM fires on 52/48 at 100,000 users", f"{srm['srm_power']:.0%}", ">= 99%")
    checks.add_row("SRM false alarm on 50/50", f"{srm['srm_false_alarm']:.0%}", "<= 1%")
    checks.add_row("drift false alarm (KS, alpha 0.05)", f"{drift['drift_false_alarm']:.0%}",
                   "<= 5%")  # fmt: skip
    checks.add_row("drift detects a 0.1 sd shift", f"{drift['drift_power']:.0%}", ">= 95%")
    checks.add_row("check 1,000,000 values, s", f"{drift['drift_1m_s']:.4f}", "<= 5")
    console.print(checks)

    truth = ope["truth"]
    figures = {
        "bench": "lifecycle",
        "ope_rel_error": {k: round(abs(e.value - truth) / truth, 4) for k, e in estimates.items()},
        "ope_truth_in_ci": {k: e.covers(truth) for k, e in estimates.items()},
        "ope_estimates": {
            k: {"value": round(e.value, 6), "low": round(e.low, 6), "high": round(e.high, 6)}
            for k, e in estimates.items()
        },
        "ope_truth": round(truth, 6),
        "ope_campaign": ope["campaign"],
        "obp_max_abs_difference": ope["obp_max_abs_difference"],
        "obp_version": None if ope["obp"] is None else ope["obp"]["version"],
        **{k: round(v, 4) for k, v in srm.items()},
        **{k: round(v, 4) for k, v in drift.items()},
        "targets_met": {
            "ope_truth_in_ci": all(e.covers(truth) for e in estimates.values()),
            "obp_equal": None
            if ope["obp_max_abs_difference"] is None
            else ope["obp_max_abs_difference"] <= 1e-6,
            "srm": srm["srm_power"] >= TARGETS["srm_power"]
            and srm["srm_false_alarm"] <= TARGETS["srm_false_alarm"],
            "drift": drift["drift_false_alarm"] <= TARGETS["drift_false_alarm"]
            and drift["drift_power"] >= TARGETS["drift_power"]
            and drift["drift_1m_s"] <= TARGETS["drift_1m_s"],
        },
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
