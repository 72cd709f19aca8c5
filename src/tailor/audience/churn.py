"""Churn risk: will a customer buy again within a horizon after a cut-off day?

Features come from :func:`~tailor.audience.rfm.customer_summary` over the purchases up to the
cut-off only, and labels from the horizon after it, so nothing a model learns can come from the
future it predicts (``tests/audience/test_churn.py`` proves it: features computed from a log
that ends at the cut-off equal those from the whole log). A LightGBM classifier learns on one
cut-off; its probabilities are calibrated (on out-of-fold scores) and each score carries
the features that pushed it up or down most (LightGBM's per-row contributions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.audience.lifetime_value import BetaGeo, FitError
from tailor.audience.rfm import Periods, customer_summary
from tailor.store.base import Store

FEATURES = (
    "frequency",
    "recency",
    "T",
    "days_since_last",
    "monetary_value",
    "total_value",
    "mean_days_between",
    "distinct_items",
    "distinct_categories",
    "return_rate",
    "bgnbd_silent",
)
"""The model's inputs: the summary at the cut-off (weeks for ``recency`` and ``T``) and the
BG/NBD's probability of no purchase in the horizon, the model fitted on the same summary."""


@dataclass(frozen=True)
class ChurnData:
    """Customers known at ``cutoff``: their features and, when the log reaches past the
    horizon, whether they churned (no purchase in the ``horizon_days`` after the cut-off)."""

    cutoff: date
    horizon_days: int
    customer_id: np.ndarray
    features: np.ndarray
    churned: np.ndarray | None
    summary: pa.Table
    bgnbd: BetaGeo | None
    """The BG/NBD fitted on ``summary`` (None when it could not be fitted)."""


def churn_data(
    purchases: pa.Table | Store,
    cutoff: date,
    horizon_days: int,
    *,
    labelled: bool = True,
    summary: pa.Table | None = None,
    bgnbd: BetaGeo | None = None,
) -> ChurnData:
    """Features at ``cutoff`` from the purchases up to it; labels from the horizon after it.

    ``labelled=False`` scores today's customers: no label is read (the horizon is the future).
    A caller that already holds that day's summary (without holdout) and the BG/NBD fitted
    on it passes them, and neither is computed again.
    """
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    if summary is None or labelled:
        holdout_end = cutoff + timedelta(days=horizon_days)
        summary = customer_summary(purchases, Periods(cutoff, holdout_end if labelled else None))
    if summary.num_rows == 0:
        raise ValueError(f"no customer bought on or before the cut-off {cutoff}")
    days_since_last = (summary["T"].to_numpy() - summary["recency"].to_numpy()) * 7.0
    columns = {
        name: summary[name].to_numpy(zero_copy_only=False).astype(float)
        for name in FEATURES
        if name not in ("days_since_last", "bgnbd_silent")
    }
    columns["days_since_last"] = days_since_last
    rfm = [summary[c].to_numpy() for c in ("frequency", "recency", "T")]
    if bgnbd is None:
        try:
            bgnbd = BetaGeo().fit(*rfm)
        except FitError:  # a degenerate log (say, nobody bought twice): the trees go without
            bgnbd = None
    columns["bgnbd_silent"] = (
        np.full(summary.num_rows, np.nan)
        if bgnbd is None
        else bgnbd.probability_no_purchase(horizon_days / 7, *rfm)
    )
    features = np.column_stack([columns[name] for name in FEATURES])
    churned = None
    if labelled:
        churned = (summary["holdout_frequency"].to_numpy() == 0).astype(np.int8)
    return ChurnData(
        cutoff=cutoff,
        horizon_days=horizon_days,
        customer_id=np.asarray(summary["customer_id"].to_pylist(), dtype=object),
        features=features,
        churned=churned,
        summary=summary,
        bgnbd=bgnbd,
    )


ISOTONIC_MIN_CUSTOMERS = 1000
"""Calibrate by isotonic regression from this many training customers on (scikit-learn's
guidance: it overfits below about a thousand); by a logistic curve below."""


class ChurnModel:
    """A calibrated LightGBM classifier of churn on :data:`FEATURES`.

    The booster learns on every customer; the calibration learns on out-of-fold scores
    (``calibration_folds`` boosters, each scoring the customers it did not learn from), so the
    calibrator never sees a score of a customer the booster has learned. It is isotonic from
    :data:`ISOTONIC_MIN_CUSTOMERS` customers on and a logistic (Platt) fit on the log-odds
    below: isotonic regression overfits a small sample, and its flat steps tie customers the
    booster had ranked apart, while a logistic curve keeps the booster's order.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM's.
    calibration_folds : folds of the out-of-fold scores the calibration learns from.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        calibration_folds: int = 3,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def _booster(self, features: np.ndarray, churned: np.ndarray) -> Any:
        from lightgbm import LGBMClassifier

        return (
            LGBMClassifier(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                random_state=self.random_state,
                n_jobs=1,
                verbose=-1,
            )
            .fit(features, churned)
            .booster_
        )

    def fit(self, data: ChurnData) -> ChurnModel:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.model_selection import StratifiedKFold

        if data.churned is None:
            raise ValueError("fit needs labelled data: churn_data(..., labelled=True)")
        if self.calibration_folds < 2:
            raise ValueError(f"calibration_folds must be at least 2, got {self.calibration_folds}")
        counts = np.bincount(data.churned, minlength=2)
        if counts.min() == 0:
            raise ValueError(
                f"every customer at {data.cutoff} has churned={int(np.argmax(counts))}: a "
                "classifier needs both outcomes; choose another cut-off or horizon"
            )
        if counts.min() < self.calibration_folds:
            raise ValueError(
                f"fewer customers of one outcome ({counts.min()}) than calibration_folds="
                f"{self.calibration_folds}: score more customers or use fewer folds"
            )
        out_of_fold = np.empty(len(data.churned))
        folds = StratifiedKFold(
            self.calibration_folds, shuffle=True, random_state=self.random_state
        )
        for learn, held in folds.split(data.features, data.churned):
            booster = self._booster(data.features[learn], data.churned[learn])
            out_of_fold[held] = booster.predict(data.features[held], raw_score=True)
        if len(data.churned) >= ISOTONIC_MIN_CUSTOMERS:
            calibration = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
            calibration.fit(_probability(out_of_fold), data.churned)
            self.calibration_ = {
                "x": np.asarray(calibration.X_thresholds_, float),
                "y": np.asarray(calibration.y_thresholds_, float),
            }
        else:
            from sklearn.linear_model import LogisticRegression

            # Unpenalized: two numbers from hundreds of customers need no shrinking.
            platt = LogisticRegression(C=1e6).fit(out_of_fold[:, None], data.churned)
            self.calibration_ = {"platt": np.array([platt.coef_[0, 0], platt.intercept_[0]], float)}
        self.booster_ = self._booster(data.features, data.churned)
        self.cutoff_ = data.cutoff
        self.horizon_days_ = data.horizon_days
        return self

    def predict_proba(self, data: ChurnData) -> np.ndarray:
        """P(churn) per customer, calibrated."""
        self._check_fitted()
        log_odds = self.booster_.predict(data.features, raw_score=True)
        if "platt" in self.calibration_:
            slope, intercept = self.calibration_["platt"]
            return _probability(slope * log_odds + intercept)
        return np.interp(_probability(log_odds), self.calibration_["x"], self.calibration_["y"])

    def explain(self, data: ChurnData, top: int = 3) -> list[list[tuple[str, float]]]:
        """Per customer, the ``top`` features by the size of their contribution to the
        log-odds of churn (positive: towards churn), from the booster."""
        self._check_fitted()
        contributions = self.booster_.predict(data.features, pred_contrib=True)[:, :-1]
        order = np.argsort(-np.abs(contributions), axis=1)[:, :top]
        return [
            [(FEATURES[j], round(float(row[j]), 4)) for j in picks]
            for row, picks in zip(contributions, order, strict=True)
        ]

    def save(self, folder: str | Path) -> Path:
        """The booster as LightGBM's text model, the calibration as arrays: no pickle."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / "churn.lightgbm.txt"))
        np.savez(folder / "churn_calibration.npz", **self.calibration_)
        (folder / "churn.json").write_text(
            json.dumps(
                {"cutoff": str(self.cutoff_), "horizon_days": self.horizon_days_,
                 "features": list(FEATURES)},
                indent=2,
            )
        )  # fmt: skip
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ChurnModel:
        from lightgbm import Booster

        folder = Path(folder)
        meta = json.loads((folder / "churn.json").read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(
                f"{folder} holds a churn model of other features ({meta['features']}): fit again"
            )
        model = cls()
        model.booster_ = Booster(model_file=str(folder / "churn.lightgbm.txt"))
        with np.load(folder / "churn_calibration.npz") as arrays:
            model.calibration_ = {name: arrays[name] for name in arrays.files}
        if not ("platt" in model.calibration_ or {"x", "y"} <= model.calibration_.keys()):
            raise ValueError(f"{folder / 'churn_calibration.npz'} holds no calibration: fit again")
        model.cutoff_ = date.fromisoformat(meta["cutoff"])
        model.horizon_days_ = int(meta["horizon_days"])
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("ChurnModel is not fitted: call fit() first")


def _probability(log_odds: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-log_odds))


def recency_rule(data: ChurnData) -> np.ndarray:
    """The rule a shop uses without a model: the longer since the last purchase, the likelier
    gone (a score, not a probability)."""
    return data.features[:, FEATURES.index("days_since_last")]
