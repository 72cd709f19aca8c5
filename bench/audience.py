"""Lifetime-value benchmark (issue 6): tailor's BG/NBD, Pareto/NBD and Gamma-Gamma fits against
the published CDNOW figures and, side by side in the same run, the ``lifetimes`` package.

1. **CDNOW 1/10 sample** (``cdnow/CDNOW_sample.txt`` below ``../shared/data`` or
   ``$TAILOR_DATA``): the calibration summary (39 weeks, to 1997-09-30) is computed from the
   purchase log by :func:`tailor.audience.rfm.customer_summary` and checked against the
   published summary (``cdnow_customers_summary.csv``); the three models are fitted on it and
   their parameters compared with Fader, Hardie and Lee's: BG/NBD r = 0.243, alpha = 4.414,
   a = 0.793, b = 2.426 (log-likelihood -9582.4); Pareto/NBD r = 0.553, alpha = 10.578,
   s = 0.606, beta = 11.669; Gamma-Gamma p = 6.25, q = 3.74, gamma = 15.44 (946 repeat
   buyers); E[X(39) | x = 2, t_x = 30.43, T = 38.86] = 1.226.
2. **lifetimes**, fitted on the same summaries: in this process when it imports, else with
   the Python of a side environment (``--lifetimes-python`` or ``$TAILOR_LIFETIMES_PYTHON``;
   lifetimes 0.11 needs pandas and autograd: ``python -m venv /tmp/lt && /tmp/lt/bin/pip
   install lifetimes``). Each fit is timed as the median of ``--repeats`` runs, both sides.
3. **Full CDNOW master log**: calibration on the first 39 weeks, holdout on the next 39
   (to 1998-06-30): mean absolute error of the BG/NBD's expected against the actual repeat
   purchases of each customer in the holdout, ours and lifetimes'.
4. **Churn** on the CDNOW master log and the Online Retail II purchases, temporal: with ``H``
   = ``--horizon`` days (90) and the log's last day ``L``, the model learns features at
   ``L - 2H`` with labels from the next ``H`` days and is tested on features at ``L - H``
   with labels from the last ``H`` days. AUC and Brier score of the calibrated LightGBM model
   against baselines on the same test customers: the BG/NBD (fitted on the test cut-off's
   summary) as 1 - P(alive) and as P(no purchase in the horizon), and the recency rule (days
   since the last purchase; its Brier score after an isotonic fit on the training customers).

5. **Bayesian** BG/NBD and Gamma-Gamma on the CDNOW sample (NumPyro NUTS, 4 chains of 500
   draws after 500 of warm-up; skipped with ``--no-bayes`` or without the ``bayes`` extra):
   posterior mean, 90% interval, R-hat and effective draws per parameter, divergences, the
   seconds it took, whether each published value lies in its 90% interval, and the 90%
   interval of E[X(39) | 2, 30.43, 38.86].

Usage: ``python -m bench.audience [--repeats 5] [--lifetimes-python PATH] [--no-bayes]``.
Last line: one JSON object with the figures.
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
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

from tailor.audience.churn import ChurnModel, churn_data, recency_rule
from tailor.audience.lifetime_value import BetaGeo, GammaGamma, ParetoNBD
from tailor.audience.rfm import Periods, customer_summary
from tailor.datasets.base import DataNotFoundError, dataset_path
from tailor.datasets.cdnow import load_cdnow
from tailor.datasets.online_retail import load_online_retail

console = Console(stderr=True)

PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "paretonbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
    "gammagamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}
PUBLISHED_LL = -9582.4
PUBLISHED_E_X39 = 1.226
CALIBRATION = Periods(calibration_end=date(1997, 9, 30), holdout_end=date(1998, 6, 30))

LIFETIMES_SCRIPT = r"""
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter, GammaGammaFitter
sample = pd.read_csv(sys.argv[1]); master = pd.read_csv(sys.argv[2]); repeats = int(sys.argv[3])
horizon = float(sys.argv[4])
def timed(make, *columns):
    times, model = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        model = make().fit(*columns)
        times.append(time.perf_counter() - started)
    return model, statistics.median(times)
out = {"version": __import__("lifetimes").__version__}
bg, out["bgnbd_s"] = timed(BetaGeoFitter, sample.frequency, sample.recency, sample["T"])
pn, out["paretonbd_s"] = timed(ParetoNBDFitter, sample.frequency, sample.recency, sample["T"])
rep = sample[sample.frequency > 0]
gg, out["gammagamma_s"] = timed(GammaGammaFitter, rep.frequency, rep.monetary_value)
out["bgnbd"] = bg.params_.to_dict(); out["paretonbd"] = pn.params_.to_dict()
out["gammagamma"] = {"p": gg.params_["p"], "q": gg.params_["q"], "gamma": gg.params_["v"]}
full = BetaGeoFitter().fit(master.frequency, master.recency, master["T"])
predicted = full.conditional_expected_number_of_purchases_up_to_time(
    horizon, master.frequency, master.recency, master["T"]
)
out["holdout_mae"] = float((predicted - master.holdout_frequency).abs().mean())
print(json.dumps(out))
"""


def timed(fit, repeats: int) -> tuple[Any, float]:
    times, model = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - started)
    return model, statistics.median(times)


def published_summary_matches(summary: pa.Table) -> bool:
    """Our summary of the sample log against the published one: the same multiset of
    (frequency, recency, T) to the published two decimals (the files share no customer key)."""
    published = pacsv.read_csv(dataset_path("cdnow", "cdnow_customers_summary.csv"))
    ours = sorted(
        zip(
            summary["frequency"].to_pylist(),
            np.round(summary["recency"].to_numpy(), 2).tolist(),
            np.round(summary["T"].to_numpy(), 2).tolist(),
            strict=True,
        )
    )
    theirs = sorted(
        zip(
            published["frequency"].cast(pa.float64()).to_pylist(),
            published["recency"].to_pylist(),
            published["T"].to_pylist(),
            strict=True,
        )
    )
    return ours == theirs


def run_lifetimes(
    python: str | None, sample: pa.Table, master: pa.Table, repeats: int
) -> dict[str, Any] | None:
    """lifetimes' fits and holdout error, from a side Python when it does not import here."""
    if python is None:
        try:
            import lifetimes  # noqa: F401
        except ImportError:
            console.print(
                "lifetimes is not installed here and no --lifetimes-python was given: "
                "its columns stay empty"
            )
            return None
        python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        sample_csv, master_csv = Path(folder, "sample.csv"), Path(folder, "master.csv")
        pacsv.write_csv(sample.select(["frequency", "recency", "T", "monetary_value"]), sample_csv)
        pacsv.write_csv(
            master.select(["frequency", "recency", "T", "holdout_frequency"]), master_csv
        )
        done = subprocess.run(
            [
                python, "-c", LIFETIMES_SCRIPT, str(sample_csv), str(master_csv), str(repeats),
                str(CALIBRATION.holdout_length),
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        console.print(f"lifetimes failed ({python}):\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_retail():
    return load_online_retail(None)


def churn_figures(purchases: pa.Table, horizon: int) -> dict[str, Any]:
    """Train at L - 2H, test at L - H (see the module's docstring)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score

    last = as_date(max(purchases["occurred_at"].to_pylist()))
    test_cutoff = last - timedelta(days=horizon)
    train = churn_data(purchases, test_cutoff - timedelta(days=horizon), horizon)
    test = churn_data(purchases, test_cutoff, horizon)
    model = ChurnModel().fit(train)
    truth = test.churned
    summary = test.summary
    rfm = [summary[c].to_numpy() for c in ("frequency", "recency", "T")]
    bgnbd = test.bgnbd or BetaGeo().fit(*rfm)
    scores = {
        "lightgbm": model.predict_proba(test),
        "p_alive": 1 - bgnbd.probability_alive(*rfm),
        "bgnbd_silent": bgnbd.probability_no_purchase(horizon / 7, *rfm),
    }
    rule = IsotonicRegression(out_of_bounds="clip").fit(recency_rule(train), train.churned)
    scores["recency"] = rule.predict(recency_rule(test))
    return {
        "train_cutoff": str(train.cutoff),
        "test_cutoff": str(test.cutoff),
        "train_customers": len(train.customer_id),
        "test_customers": len(test.customer_id),
        "test_churn_rate": round(float(truth.mean()), 4),
        "auc": {
            k: round(float(roc_auc_score(truth, recency_rule(test) if k == "recency" else v)), 4)
            for k, v in scores.items()
        },
        "brier": {k: round(float(brier_score_loss(truth, v)), 4) for k, v in scores.items()},
    }


def as_date(value: Any) -> date:
    return value.date() if hasattr(value, "date") else value


def relative_errors(fitted: dict[str, float], published: dict[str, float]) -> dict[str, float]:
    return {k: abs(fitted[k] - v) / abs(v) for k, v in published.items()}


def bayes_figures(x, t_x, age, spend, bgnbd: BetaGeo, gammagamma: GammaGamma) -> dict | None:
    """Posterior summaries of the Bayesian fits (None without NumPyro)."""
    try:
        from tailor.audience.bayes import BayesianBetaGeo, BayesianGammaGamma, credible_interval
    except ImportError:
        return None
    started = time.perf_counter()
    try:
        purchases = BayesianBetaGeo().fit(x, t_x, age, start=bgnbd)
        repeat = x > 0
        spending = BayesianGammaGamma().fit(x[repeat], spend[repeat], start=gammagamma)
    except ImportError as exc:
        console.print(f"Bayesian fits skipped: {exc}")
        return None
    seconds = time.perf_counter() - started
    rounded = {
        name: {
            key: {figure: round(value, 4) for figure, value in d.items()}
            for key, d in model.posterior_.diagnostics.items()
        }
        for name, model in (("bgnbd", purchases), ("gammagamma", spending))
    }
    low, high = credible_interval(
        lambda m: m.conditional_expected_purchases(39, 2, 30.43, 38.86),
        purchases.draws_as_models(1000),
    )
    return {
        **rounded,
        "divergences": purchases.posterior_.divergences + spending.posterior_.divergences,
        "problems": purchases.posterior_.problems() + spending.posterior_.problems(),
        "fit_s": round(seconds, 2),
        "published_inside_90": all(
            rounded[name][k]["q05"] <= v <= rounded[name][k]["q95"]
            for name in ("bgnbd", "gammagamma")
            for k, v in PUBLISHED[name].items()
        ),
        "e_x39_interval": [round(float(low[0]), 4), round(float(high[0]), 4)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.audience", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed fits per model (median)")
    parser.add_argument(
        "--lifetimes-python",
        default=os.environ.get("TAILOR_LIFETIMES_PYTHON"),
        help="a Python with lifetimes installed, when it does not import here",
    )
    parser.add_argument("--data", help="the cdnow folder (default: ../shared/data/cdnow)")
    parser.add_argument("--horizon", type=int, default=90, help="churn horizon in days")
    parser.add_argument(
        "--no-bayes", action="store_true", help="skip the Bayesian fits (NumPyro, about a minute)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.horizon < 1:
        parser.error("--repeats and --horizon must be at least 1")

    console.print("CDNOW sample: summary from the purchase log ...")
    try:
        sample_log, master_log = load_cdnow(args.data, sample=True), load_cdnow(args.data)
    except FileNotFoundError as exc:  # DataNotFoundError too: it says how to point at the data
        parser.error(f"the CDNOW logs: {exc}")
    sample = customer_summary(sample_log.events, CALIBRATION)
    x, t_x, age = (sample[c].to_numpy() for c in ("frequency", "recency", "T"))
    matches = published_summary_matches(sample)
    bgnbd, bg_s = timed(lambda: BetaGeo().fit(x, t_x, age), args.repeats)
    paretonbd, pn_s = timed(lambda: ParetoNBD().fit(x, t_x, age), args.repeats)
    repeat = x > 0
    spend = sample["monetary_value"].to_numpy()
    gammagamma, gg_s = timed(lambda: GammaGamma().fit(x[repeat], spend[repeat]), args.repeats)
    fitted = {
        "bgnbd": bgnbd.params_,
        "paretonbd": paretonbd.params_,
        "gammagamma": gammagamma.params_,
    }
    errors = {name: relative_errors(fitted[name], PUBLISHED[name]) for name in PUBLISHED}
    max_error = max(e for per_model in errors.values() for e in per_model.values())
    e_x39 = float(bgnbd.conditional_expected_purchases(39, 2, 30.43, 38.86)[0])

    console.print("CDNOW master log: 39 weeks of calibration, 39 of holdout ...")
    master = customer_summary(master_log.events, CALIBRATION)
    mx, mt, mT = (master[c].to_numpy() for c in ("frequency", "recency", "T"))
    full = BetaGeo().fit(mx, mt, mT)
    predicted = full.conditional_expected_purchases(CALIBRATION.holdout_length, mx, mt, mT)
    actual = master["holdout_frequency"].to_numpy()
    holdout_mae = float(np.mean(np.abs(predicted - actual)))

    churn = {}
    for name, load in (("cdnow", lambda: master_log), ("online_retail", load_retail)):
        try:
            purchases = load().events
        except DataNotFoundError as exc:
            console.print(f"churn on {name} skipped: {exc}")
            continue
        console.print(f"churn on {name}: {args.horizon}-day horizon ...")
        churn[name] = churn_figures(purchases, args.horizon)

    bayes = None
    if not args.no_bayes:
        console.print("Bayesian BG/NBD and Gamma-Gamma on the CDNOW sample (NUTS) ...")
        bayes = bayes_figures(x, t_x, age, spend, bgnbd, gammagamma)

    console.print("lifetimes on the same summaries ...")
    peer = run_lifetimes(args.lifetimes_python, sample, master, args.repeats)
    ours_s = {"bgnbd": bg_s, "paretonbd": pn_s, "gammagamma": gg_s}
    ratios = None if peer is None else {n: ours_s[n] / peer[f"{n}_s"] for n in ours_s}

    table = Table(title="CDNOW: tailor against the published parameters and lifetimes")
    for column in ("model", "parameter", "published", "tailor (± s.e.)", "rel. error", "lifetimes"):
        table.add_column(column, justify="left" if column in ("model", "parameter") else "right")
    models = {"bgnbd": bgnbd, "paretonbd": paretonbd, "gammagamma": gammagamma}
    for name, model in models.items():
        for key, value in PUBLISHED[name].items():
            theirs = "" if peer is None else f"{peer[name][key]:.4f}"
            table.add_row(
                name,
                key,
                f"{value:g}",
                f"{model.params_[key]:.4f} ± {model.standard_errors_[key]:.4f}",
                f"{errors[name][key]:.3%}",
                theirs,
            )
    console.print(table)
    timing = Table(title="fit seconds (median) and other figures")
    for column in ("figure", "tailor", "lifetimes", "target"):
        timing.add_column(column, justify="left" if column == "figure" else "right")
    for name in ours_s:
        timing.add_row(
            f"{name} fit s",
            f"{ours_s[name]:.4f}",
            "" if peer is None else f"{peer[f'{name}_s']:.4f}",
            "tailor <= half",
        )
    timing.add_row("BG/NBD log-likelihood", f"{bgnbd.log_likelihood_:.2f}", "", f"{PUBLISHED_LL}")
    timing.add_row("E[X(39) | 2, 30.43, 38.86]", f"{e_x39:.4f}", "", f"{PUBLISHED_E_X39}")
    timing.add_row("summary = published summary", str(matches), "", "True")
    timing.add_row(
        "holdout MAE (23,570 customers)",
        f"{holdout_mae:.4f}",
        "" if peer is None else f"{peer['holdout_mae']:.4f}",
        "<= lifetimes",
    )
    console.print(timing)
    churn_table = Table(title=f"churn in the next {args.horizon} days (test cut-off)")
    for column in ("data", "customers", "churned", "model", "AUC", "Brier"):
        churn_table.add_column(column, justify="left" if column in ("data", "model") else "right")
    for name, figures_ in churn.items():
        for model_name in ("lightgbm", "bgnbd_silent", "p_alive", "recency"):
            churn_table.add_row(
                name,
                f"{figures_['test_customers']:,}",
                f"{figures_['test_churn_rate']:.1%}",
                model_name,
                f"{figures_['auc'][model_name]:.4f}",
                f"{figures_['brier'][model_name]:.4f}",
            )
    console.print(churn_table)
    if bayes is not None:
        posterior_table = Table(
            title=f"Bayesian fits on the CDNOW sample ({bayes['fit_s']:.1f} s, "
            f"{bayes['divergences']} divergences)"
        )
        for column in ("model", "parameter", "published", "mean", "90% interval", "R-hat", "ESS"):
            posterior_table.add_column(
                column, justify="left" if column in ("model", "parameter") else "right"
            )
        for name in ("bgnbd", "gammagamma"):
            for key, d in bayes[name].items():
                posterior_table.add_row(
                    name, key, f"{PUBLISHED[name][key]:g}", f"{d['mean']:.4f}",
                    f"[{d['q05']:.4f}, {d['q95']:.4f}]", f"{d['r_hat']:.3f}", f"{d['ess']:.0f}",
                )  # fmt: skip
        low, high = bayes["e_x39_interval"]
        posterior_table.add_row(
            "E[X(39)]", "", f"{PUBLISHED_E_X39}", "", f"[{low}, {high}]", "", ""
        )
        console.print(posterior_table)

    rounded = {n: {k: round(v, 4) for k, v in p.items()} for n, p in fitted.items()}
    figures = {
        "bench": "audience",
        "bgnbd": {**rounded["bgnbd"], "ll": round(bgnbd.log_likelihood_, 2)},
        "paretonbd": {**rounded["paretonbd"], "ll": round(paretonbd.log_likelihood_, 2)},
        # The issue's (and lifetimes') name of the scale is v; the paper's is gamma.
        "gammagamma": {("v" if k == "gamma" else k): v for k, v in rounded["gammagamma"].items()},
        "max_param_rel_err": round(max_error, 5),
        "e_x39": round(e_x39, 4),
        "summary_matches_published": matches,
        "fit_s": {n: round(s, 4) for n, s in ours_s.items()},
        "lifetimes_fit_s": None if peer is None else {n: round(peer[f"{n}_s"], 4) for n in ours_s},
        "fit_time_ratio_vs_lifetimes": None if ratios is None else round(max(ratios.values()), 3),
        "fit_time_ratios": None if ratios is None else {n: round(r, 3) for n, r in ratios.items()},
        "holdout_mae": round(holdout_mae, 4),
        "holdout_mae_lifetimes": None if peer is None else round(peer["holdout_mae"], 4),
        "lifetimes_params": None
        if peer is None
        else {n: {k: round(v, 4) for k, v in peer[n].items()} for n in PUBLISHED},
        "lifetimes_version": None if peer is None else peer["version"],
        "bayes": bayes,
        "churn_auc": {name: f["auc"] for name, f in churn.items()},
        "churn_brier": {name: f["brier"] for name, f in churn.items()},
        "targets_met": {
            "params": max_error <= 0.005,
            "e_x39": round(e_x39, 3) == PUBLISHED_E_X39,
            "fit_time": None if ratios is None else max(ratios.values()) <= 0.5,
            "holdout_mae": None if peer is None else holdout_mae <= peer["holdout_mae"] + 1e-9,
            # The baselines: P(alive) and the recency rule.
            "churn": bool(churn)
            and all(
                f["auc"]["lightgbm"] > max(f["auc"]["p_alive"], f["auc"]["recency"])
                for f in churn.values()
            ),
        },
        # A stronger baseline than the issue asks for, reported as it falls.
        "churn_beats_bgnbd_silent": {
            name: f["auc"]["lightgbm"] > f["auc"]["bgnbd_silent"] for name, f in churn.items()
        },
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
