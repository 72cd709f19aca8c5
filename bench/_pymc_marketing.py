"""Fit PyMC-Marketing's MMM on the PyMC-Marketing example data and print one JSON line.

Standalone benchmark runner: it runs in its own virtual environment (see the benchmark
README) and must not import project code.

Usage::

    /tmp/pmm/bin/python bench/_pymc_marketing.py --csv PATH [--chains 2 --draws 1000
        --tune 1000 --seed 0]

The model follows PyMC-Marketing's example notebook: ``multidimensional.MMM`` with
``GeometricAdstock(l_max=8)``, ``LogisticSaturation()``, channels x1, x2, controls
event_1, event_2, t, ``yearly_seasonality=2`` and the installed version's default priors.
The target ``y`` is divided by 1000 first, so that the true betas are 3 and 2.

Unit conversion. Before fitting, PyMC-Marketing divides each channel by its maximum over
dates (``channel_scale``) and the target by its maximum (``target_scale``); see
``MMM._compute_scales`` (default ``Scaling`` method "max") and ``mmm.get_scales_as_xarray()``.
The data were generated in the data's own units as
``beta_c * logistic(adstock(x_c), lam_c)``, so:

* ``alpha`` (geometric adstock decay) is scale-free;
* ``logistic(x / s, lam_s) = logistic(x, lam_s / s)``, so ``lam = lam_scaled / channel_scale``;
* the contribution is modelled in target-scaled units, so ``beta = beta_scaled * target_scale``
  (in y/1000 units).

The conversion is applied per posterior draw; reported values are posterior means and
94% HDIs. The last line of stdout is the JSON result; everything else goes to stderr.
"""

import argparse
import contextlib
import json
import sys
import time

import arviz as az
import pandas as pd
import pymc_marketing
from pymc_marketing.mmm import GeometricAdstock, LogisticSaturation
from pymc_marketing.mmm.multidimensional import MMM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    df = pd.read_csv(args.csv)
    df["date_week"] = pd.to_datetime(df["date_week"], format="%m/%d/%Y")
    X = df.drop(columns="y")
    y = (df["y"] / 1000.0).rename("y")

    mmm = MMM(
        date_column="date_week",
        target_column="y",
        channel_columns=["x1", "x2"],
        control_columns=["event_1", "event_2", "t"],
        adstock=GeometricAdstock(l_max=8),
        saturation=LogisticSaturation(),
        yearly_seasonality=2,
    )

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON line
        t0 = time.perf_counter()
        idata = mmm.fit(
            X,
            y,
            chains=args.chains,
            cores=args.chains,
            draws=args.draws,
            tune=args.tune,
            random_seed=args.seed,
            progressbar=False,
        )
        fit_s = time.perf_counter() - t0

    scales = mmm.get_scales_as_xarray()
    post = idata.posterior
    draws = {
        "alpha": post["adstock_alpha"],
        "lam": post["saturation_lam"] / scales["channel_scale"],
        "beta": post["saturation_beta"] * scales["target_scale"],
    }
    params, hdi94 = {}, {}
    for prefix, da in draws.items():
        hdi = az.hdi(da.rename(prefix).to_dataset(), hdi_prob=0.94)[prefix]
        for i, channel in enumerate(["x1", "x2"], start=1):
            name = f"{prefix}{i}"
            params[name] = float(da.sel(channel=channel).mean())
            hdi94[name] = [float(v) for v in hdi.sel(channel=channel).values]

    result = {
        "fit_s": round(fit_s, 3),
        "params": params,
        "hdi94": hdi94,
        "version": pymc_marketing.__version__,
        "chains": args.chains,
        "draws": args.draws,
        "tune": args.tune,
        "divergences": int(idata.sample_stats["diverging"].sum()),
    }
    print(
        f"scales: channel={scales['channel_scale'].values.tolist()} "
        f"target={float(scales['target_scale'])}",
        file=sys.stderr,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
