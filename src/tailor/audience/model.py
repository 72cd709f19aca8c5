"""The audience engine: one fit over the purchase log, then per-customer scores the CRM and
the API read (segment, cluster, churn risk and its reasons, P(alive), expected purchases and
spend, discounted lifetime value)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.audience.churn import ChurnModel, churn_data
from tailor.audience.lifetime_value import (
    BetaGeo,
    FitError,
    GammaGamma,
    discounted_lifetime_value,
)
from tailor.audience.rfm import Periods, customer_summary
from tailor.audience.segments import Clusters, cluster_customers, rfm_segments
from tailor.files import replace_text
from tailor.store.base import Store

FORMAT = "tailor.audience/1"


@dataclass(frozen=True)
class AudienceConfig:
    """``horizon_days``: the churn horizon and the window of expected purchases;
    lifetime value over ``clv_periods`` periods of ``clv_period_days`` days, discounted by
    ``discount_rate`` per period; clusters chosen among ``2..max_clusters``.

    ``intervals``: also fit the Bayesian BG/NBD and Gamma-Gamma (NumPyro, the ``bayes``
    extra) and score each customer's central ``interval_level`` credible interval of P(alive),
    expected purchases and lifetime value, over ``interval_draws`` posterior draws."""

    horizon_days: int = 90
    clv_periods: int = 12
    clv_period_days: float = 30.0
    discount_rate: float = 0.01
    max_clusters: int = 8
    intervals: bool = False
    interval_level: float = 0.9
    interval_draws: int = 100

    def __post_init__(self) -> None:
        if self.horizon_days < 1 or self.clv_periods < 1:
            raise ValueError("horizon_days and clv_periods must be at least 1")
        if not self.clv_period_days > 0 or not 0 <= self.discount_rate < 1:
            raise ValueError("clv_period_days must be > 0 and discount_rate in [0, 1)")
        if self.max_clusters < 2:
            raise ValueError("max_clusters must be at least 2")
        if not 0 < self.interval_level < 1 or self.interval_draws < 10:
            raise ValueError("interval_level must be in (0, 1) and interval_draws at least 10")


class AudienceModel:
    """Fitted on the purchases up to ``as_of``: the BG/NBD and Gamma-Gamma models on that
    day's summary, the churn model on the ``horizon_days`` before it (features at
    ``as_of - horizon``, labels from the horizon that ends at ``as_of``) and the clusters."""

    def __init__(self, config: AudienceConfig | None = None) -> None:
        self.config = config or AudienceConfig()

    def fit(self, purchases: pa.Table | Store, as_of: date) -> AudienceModel:
        """``purchases``: a store (its SQL engine summarizes them) or a table of purchase
        rows; see :func:`~tailor.audience.rfm.customer_summary`."""
        summary = customer_summary(purchases, Periods(as_of))
        if summary.num_rows < 3:
            raise ValueError(
                f"only {summary.num_rows} customer(s) bought on or before {as_of}: the models "
                "need a customer base (import purchase events first)"
            )
        x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
        self.bgnbd_ = BetaGeo().fit(x, t_x, T)
        repeat = x > 0
        self.spend_ = None
        self.notes_: list[str] = []
        try:
            spend = summary["monetary_value"].to_numpy()
            self.spend_ = GammaGamma().fit(x[repeat & (spend > 0)], spend[repeat & (spend > 0)])
        except (ValueError, FitError) as exc:
            self.notes_.append(f"no spend model ({exc}): lifetime value uses each mean spend")
        self.churn_ = None
        horizon = self.config.horizon_days
        try:
            train = churn_data(purchases, as_of - timedelta(days=horizon), horizon)
            self.churn_ = ChurnModel().fit(train)
        except ValueError as exc:
            self.notes_.append(f"no churn model ({exc}): churn_risk is the BG/NBD's")
        for part in (self.bgnbd_, self.spend_):
            if part is not None and part.at_bound_:
                self.notes_.append(
                    f"{type(part).__name__}: {', '.join(part.at_bound_)} at the edge of its range "
                    "(the customers barely differ in this respect); predictions stay finite"
                )
        self.posteriors_: dict[str, Any] = {}
        if self.config.intervals:
            self._fit_posteriors(x, t_x, T, summary["monetary_value"].to_numpy())
        self.clusters_: Clusters = cluster_customers(summary, max_k=self.config.max_clusters)
        self.as_of_ = as_of
        self.customers_ = summary.num_rows
        return self

    def _fit_posteriors(self, x, t_x, T, spend) -> None:
        from tailor.audience.bayes import BayesianBetaGeo, BayesianGammaGamma

        self.posteriors_["bgnbd"] = BayesianBetaGeo().fit(x, t_x, T, start=self.bgnbd_)
        if self.spend_ is not None:
            repeat = (x > 0) & (spend > 0)
            self.posteriors_["gammagamma"] = BayesianGammaGamma().fit(
                x[repeat], spend[repeat], start=self.spend_
            )
        for name, fitted in self.posteriors_.items():
            for problem in fitted.posterior_.problems():
                self.notes_.append(f"Bayesian {name} did not settle ({problem}): read its "
                                   "intervals with care, or fit on more history")  # fmt: skip

    def _intervals(self, rfm: list[np.ndarray], mean_spend: np.ndarray) -> dict[str, Any]:
        """Each customer's credible intervals (``NAME_low``, ``NAME_high`` columns)."""
        from tailor.audience.bayes import credible_interval

        config = self.config
        purchases = self.posteriors_["bgnbd"].draws_as_models(config.interval_draws)
        spend_model = self.posteriors_.get("gammagamma")
        spends = (
            spend_model.draws_as_models(config.interval_draws)
            if spend_model is not None
            else [None] * len(purchases)
        )
        pairs = min(len(purchases), len(spends))  # a shorter posterior pairs fewer draws
        purchases, spends = purchases[:pairs], spends[:pairs]

        def spend_of(model) -> np.ndarray:
            if model is None:
                return np.where(mean_spend > 0, mean_spend, 0.0)
            return model.conditional_expected_spend(rfm[0], mean_spend)

        def clv(purchase_model, spend_model) -> np.ndarray:
            return discounted_lifetime_value(
                purchase_model,
                spend_of(spend_model),
                *rfm,
                periods=config.clv_periods,
                period_length=config.clv_period_days / 7,
                discount_rate=config.discount_rate,
            )

        horizon_weeks = config.horizon_days / 7
        level = config.interval_level
        out: dict[str, Any] = {}
        for name, predict, models in (
            ("p_alive", lambda m: m.probability_alive(*rfm), (purchases,)),
            (
                "expected_purchases",
                lambda m: m.conditional_expected_purchases(horizon_weeks, *rfm),
                (purchases,),
            ),
            ("clv", clv, (purchases, spends)),
        ):
            low, high = credible_interval(predict, *models, level=level)
            digits = 2 if name == "clv" else 4
            out[f"{name}_low"] = np.round(low, digits)
            out[f"{name}_high"] = np.round(high, digits)
        return out

    def score(self, purchases: pa.Table | Store, as_of: date | None = None) -> pa.Table:
        """One row per customer who bought on or before ``as_of`` (default: the fit's day)."""
        self._check_fitted()
        as_of = as_of or self.as_of_
        config = self.config
        summary = customer_summary(purchases, Periods(as_of))
        if summary.num_rows == 0:
            raise ValueError(f"no customer bought on or before {as_of}")
        rfm = [summary[c].to_numpy() for c in ("frequency", "recency", "T")]
        horizon_weeks = config.horizon_days / 7
        silent = self.bgnbd_.probability_no_purchase(horizon_weeks, *rfm)
        reasons: list[list[tuple[str, float]]]
        if self.churn_ is not None:
            today = churn_data(
                purchases,
                as_of,
                config.horizon_days,
                labelled=False,
                summary=summary,
                bgnbd=self.bgnbd_ if as_of == self.as_of_ else None,
            )
            churn_risk = self.churn_.predict_proba(today)
            reasons = self.churn_.explain(today)
        else:
            churn_risk, reasons = silent, [[] for _ in range(summary.num_rows)]
        mean_spend = summary["monetary_value"].to_numpy()
        if self.spend_ is not None:
            spend = self.spend_.conditional_expected_spend(rfm[0], mean_spend)
        else:
            spend = np.where(mean_spend > 0, mean_spend, summary["total_value"].to_numpy())
        clv = discounted_lifetime_value(
            self.bgnbd_,
            spend,
            *rfm,
            periods=config.clv_periods,
            period_length=config.clv_period_days / 7,
            discount_rate=config.discount_rate,
        )
        expected = self.bgnbd_.conditional_expected_purchases(horizon_weeks, *rfm)
        for name, values in (
            ("expected purchases", expected),
            ("lifetime value", clv),
            ("churn risk", churn_risk),
        ):
            if not np.isfinite(values).all():
                raise ValueError(
                    f"the model's {name} is not finite for some customers: refit on more "
                    "history (`tailor audience fit`)"
                )
        segments = rfm_segments(summary)
        intervals = self._intervals(rfm, mean_spend) if self.posteriors_ else {}
        return pa.table(
            {
                "customer_id": summary["customer_id"],
                "segment": segments["segment"],
                "r_score": segments["r_score"],
                "f_score": segments["f_score"],
                "m_score": segments["m_score"],
                "cluster": pa.array(self.clusters_.assign(summary), pa.int32()),
                "churn_risk": np.round(churn_risk, 4),
                "churn_reasons": [
                    json.dumps([{"feature": f, "contribution": c} for f, c in r]) for r in reasons
                ],
                "p_alive": np.round(self.bgnbd_.probability_alive(*rfm), 4),
                "expected_purchases": np.round(expected, 4),
                "expected_spend": np.round(spend, 2),
                "clv": np.round(clv, 2),
                "frequency": rfm[0],
                "recency_weeks": rfm[1],
                "tenure_weeks": rfm[2],
                "total_value": summary["total_value"],
                "distinct_categories": summary["distinct_categories"],
                "last_purchase": summary["last_purchase"],
                **intervals,
            }
        )

    def describe(self) -> dict[str, Any]:
        """What was fitted, for people: parameters, clusters and notes."""
        self._check_fitted()
        return {
            "as_of": str(self.as_of_),
            "customers": self.customers_,
            "config": asdict(self.config),
            "bgnbd": self.bgnbd_.params_,
            "bgnbd_standard_errors": self.bgnbd_.standard_errors_,
            "gammagamma": None if self.spend_ is None else self.spend_.params_,
            "churn_model": self.churn_ is not None,
            "clusters": {
                "k": self.clusters_.k,
                "silhouettes": self.clusters_.silhouettes,
                "descriptions": self.clusters_.descriptions,
            },
            "posteriors": {
                name: {
                    "parameters": fitted.posterior_.diagnostics,
                    "divergences": fitted.posterior_.divergences,
                    "draws": fitted.posterior_.size,
                }
                for name, fitted in self.posteriors_.items()
            },
            "notes": self.notes_,
        }

    # --- persistence (JSON, arrays and LightGBM's text model; no pickle) -------------------
    def save(self, folder: str | Path) -> Path:
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.bgnbd_.save(folder / "bgnbd.json")
        if self.spend_ is not None:
            self.spend_.save(folder / "gammagamma.json")
        if self.churn_ is not None:
            self.churn_.save(folder / "churn")
        for name, fitted in self.posteriors_.items():
            fitted.save(folder / f"{name}_posterior.json")
        clusters = self.clusters_
        np.savez(
            folder / "clusters.npz",
            centers=clusters.centers,
            mean=clusters.mean,
            scale=clusters.scale,
        )
        # Last, and whole or not at all: servers reload when this header changes.
        replace_text(
            folder / "audience.json",
            json.dumps({"format": FORMAT, **self.describe()}, indent=2, default=str),
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> AudienceModel:
        folder = Path(folder)
        path = folder / "audience.json"
        if not path.exists():
            raise ValueError(f"{folder} holds no audience model (run `tailor audience fit`)")
        try:
            return cls._load(folder, json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ValueError(
                f"{folder} holds a damaged or incompatible audience model ({exc!r}): fit again "
                "with `tailor audience fit`"
            ) from None

    @classmethod
    def _load(cls, folder: Path, meta: dict[str, Any]) -> AudienceModel:
        path = folder / "audience.json"
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} model")
        model = cls(AudienceConfig(**meta["config"]))
        model.bgnbd_ = BetaGeo.load(folder / "bgnbd.json")
        spend_path = folder / "gammagamma.json"
        model.spend_ = GammaGamma.load(spend_path) if spend_path.exists() else None
        model.churn_ = ChurnModel.load(folder / "churn") if meta["churn_model"] else None
        model.posteriors_ = {}
        if model.config.intervals:
            from tailor.audience.bayes import BayesianBetaGeo, BayesianGammaGamma

            for name, kind in (("bgnbd", BayesianBetaGeo), ("gammagamma", BayesianGammaGamma)):
                if name in meta.get("posteriors", {}):
                    model.posteriors_[name] = kind.load(folder / f"{name}_posterior.json")
        with np.load(folder / "clusters.npz") as arrays:
            described = meta["clusters"]
            model.clusters_ = Clusters(
                labels=np.empty(0, int),
                k=described["k"],
                silhouettes={int(k): v for k, v in described["silhouettes"].items()},
                descriptions=described["descriptions"],
                centers=arrays["centers"],
                mean=arrays["mean"],
                scale=arrays["scale"],
            )
        model.as_of_ = date.fromisoformat(meta["as_of"])
        model.customers_ = meta["customers"]
        model.notes_ = meta["notes"]
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "bgnbd_"):
            raise RuntimeError("AudienceModel is not fitted: call fit() first")
