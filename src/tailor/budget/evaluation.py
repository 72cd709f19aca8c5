"""Out-of-sample checks of a media-mix model: the last weeks held out, and rolling origins.

A media-mix model is judged on periods it did not see, forecast with the spend that was
actually made then and the carry-over from the fitted periods. The peer is what an analyst
would build in an afternoon: ridge regression (scikit-learn) on the same transforms (the same
adstock and saturation forms, one decay and one curvature for every channel picked by a grid
on the training periods' own last stretch), trend, seasonality and controls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tailor.budget.data import MediaData
from tailor.budget.lift import LiftTests
from tailor.budget.model import MediaMixModel, Method, MMMConfig, _Design, _Scales
from tailor.budget.transforms import adstock_weights, apply_adstock, lagged, saturate

RIDGE_DECAYS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RIDGE_CURVATURES = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
"""Logistic curvature per unit of spend scaled to its maximum (as the model's lam)."""


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error; periods whose actual value is 0 are left out."""
    actual = np.asarray(actual, float)
    predicted = np.broadcast_to(np.asarray(predicted, float), actual.shape)
    keep = actual != 0
    if not keep.any():
        raise ValueError("MAPE is undefined: every actual value is 0")
    return float(np.mean(np.abs((actual[keep] - predicted[keep]) / actual[keep])))


@dataclass(frozen=True)
class HoldoutResult:
    periods: int
    mape: float
    ridge_mape: float
    coverage: float
    """Share of held-out periods inside the model's 94% predictive interval."""
    actual: np.ndarray
    predicted: np.ndarray
    ridge_predicted: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "periods": self.periods,
            "mape": self.mape,
            "ridge_mape": self.ridge_mape,
            "coverage": self.coverage,
            "actual": self.actual.tolist(),
            "predicted": self.predicted.tolist(),
            "ridge_predicted": self.ridge_predicted.tolist(),
        }


def _split(data: MediaData, periods: int) -> tuple[MediaData, MediaData]:
    if not 1 <= periods < data.periods:
        raise ValueError(
            f"holdout: {periods} periods; hold out at least 1 and fewer than the "
            f"{data.periods} periods of the data"
        )
    cut = data.periods - periods
    return data.head(cut), data.slice(cut, data.periods)


def holdout(
    config: MMMConfig,
    data: MediaData,
    periods: int,
    *,
    method: Method = "nuts",
    model: MediaMixModel | None = None,
    lift_tests: LiftTests | None = None,
) -> HoldoutResult:
    """Fit on all but the last ``periods`` periods (or use ``model``, fitted on them) and
    forecast those, with the actual spend and the carry-over of the fitted periods.
    ``lift_tests`` calibrate the fit as they calibrate the model being judged."""
    train, test = _split(data, periods)
    if model is None:
        model = MediaMixModel(config).fit(train, method=method, lift_tests=lift_tests)
    forecast = model.predict(test, history=model.history_)
    ridge = RidgeBaseline(config).fit(train).predict(test, history=train.spend)
    inside = (test.target >= forecast["lo_obs"]) & (test.target <= forecast["hi_obs"])
    return HoldoutResult(
        periods=periods,
        mape=mape(test.target, forecast["mean"]),
        ridge_mape=mape(test.target, ridge),
        coverage=float(inside.mean()),
        actual=test.target,
        predicted=forecast["mean"],
        ridge_predicted=ridge,
    )


def rolling_origin(
    config: MMMConfig,
    data: MediaData,
    *,
    folds: int = 3,
    horizon: int = 8,
    method: Method = "map",
    progress: Callable[[int, int], None] | None = None,
    lift_tests: LiftTests | None = None,
) -> list[HoldoutResult]:
    """Time-series cross-validation: ``folds`` expanding-window fits, each forecasting the
    next ``horizon`` periods; the last fold ends at the data's end. MAP fits by default, each
    warm-started from the previous fold's mode, as the scheduled re-fits run."""
    if folds < 1 or horizon < 1:
        raise ValueError(f"folds and horizon must be at least 1, got {folds} and {horizon}")
    first = data.periods - folds * horizon
    if first < 20:
        raise ValueError(
            f"{folds} folds of {horizon} periods leave {first} periods for the first fit; "
            "use fewer folds or a shorter horizon"
        )
    results, previous = [], None
    for fold in range(folds):
        end = first + (fold + 1) * horizon
        window = data.head(end)
        train, _ = _split(window, horizon)
        warm = previous if method == "map" else None
        model = MediaMixModel(config).fit(
            train, method=method, warm_start=warm, lift_tests=lift_tests
        )
        results.append(holdout(config, window, horizon, method=method, model=model))
        previous = model
        if progress is not None:
            progress(fold + 1, folds)
    return results


class RidgeBaseline:
    """Ridge regression on adstocked, saturated spend plus trend, seasonality and controls
    (see the module docstring). One decay and one curvature for all channels, chosen on
    the last fifth of the training periods, then refitted on all of them."""

    def __init__(self, config: MMMConfig) -> None:
        self.config = config

    def _features(self, design: _Design, decay: float, curvature: float) -> np.ndarray:
        channels = design.lags.shape[2]
        weights = adstock_weights("geometric", self.config.l_max, np.full(channels, decay))
        media = saturate("logistic", apply_adstock(design.lags, weights), curvature)
        return np.column_stack([design.t, design.fourier, design.controls, media])

    def fit(self, data: MediaData) -> RidgeBaseline:
        from sklearn.linear_model import RidgeCV

        self.scales_ = _Scales(
            target=1.0,
            spend=np.where(data.spend.max(0) > 0, data.spend.max(0), 1.0),
            controls=np.where(np.abs(data.controls).max(0) > 0, np.abs(data.controls).max(0), 1.0),
            periods=data.periods,
            start=data.dates[0],
            step_days=7 if data.frequency == "W" else 1,
        )
        design = _Design(self.scales_, self.config, data, 0)
        cut = data.periods - max(data.periods // 5, 1)
        best = (np.inf, 0.0, 1.0)
        for decay, curvature in itertools.product(RIDGE_DECAYS, RIDGE_CURVATURES):
            x = self._features(design, decay, curvature)
            fitted = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(x[:cut], data.target[:cut])
            error = float(np.mean((fitted.predict(x[cut:]) - data.target[cut:]) ** 2))
            if error < best[0]:
                best = (error, decay, curvature)
        _, self.decay_, self.curvature_ = best
        x = self._features(design, self.decay_, self.curvature_)
        self.ridge_ = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(x, data.target)
        return self

    def predict(self, data: MediaData, *, history: np.ndarray | None = None) -> np.ndarray:
        offset = int((data.dates[0] - self.scales_.start).astype(int)) // self.scales_.step_days
        design = _Design(self.scales_, self.config, data, offset)
        if history is not None:
            design.lags = lagged(
                data.spend / self.scales_.spend, self.config.l_max, np, history / self.scales_.spend
            )
        return self.ridge_.predict(self._features(design, self.decay_, self.curvature_))


def select_config(
    base: MMMConfig,
    data: MediaData,
    *,
    l_max: tuple[int, ...] = (4, 8, 12),
    changepoints: tuple[int, ...] = (0, 5),
    folds: int = 3,
    horizon: int = 8,
    lift_tests: LiftTests | None = None,
) -> tuple[MMMConfig, list[dict[str, Any]]]:
    """The carry-over length and trend flexibility chosen by :func:`rolling_origin` MAP
    forecasts (on forecasts, never on parameters), by :func:`one_standard_error`. Returns the
    chosen configuration and each candidate's score: its mean out-of-sample MAPE
    (``cv_mape``), that mean's standard error (``cv_se``) and the folds' MAPEs. Every fit
    takes ``lift_tests``, as the final one will."""
    scores = []
    for lags, points in itertools.product(sorted(l_max), sorted(changepoints)):
        config = replace(base, l_max=lags, trend_changepoints=points)
        folds_done = rolling_origin(
            config, data, folds=folds, horizon=horizon, method="map", lift_tests=lift_tests
        )
        errors = np.array([f.mape for f in folds_done])
        finite = bool(np.all(np.isfinite(errors)))
        scores.append(
            {
                "l_max": lags,
                "trend_changepoints": points,
                "cv_mape": float(errors.mean()) if finite else float("inf"),
                "cv_se": float(errors.std(ddof=1) / np.sqrt(len(errors)))
                if finite and len(errors) > 1
                else 0.0,
                "fold_mape": errors.tolist(),
            }
        )
    best = one_standard_error(scores)
    chosen = replace(base, l_max=best["l_max"], trend_changepoints=best["trend_changepoints"])
    return chosen, scores


def one_standard_error(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The simplest candidate whose mean error is within one standard error of the lowest
    (Breiman et al.'s one-standard-error rule, glmnet's ``lambda.1se``).

    A few rolling folds cannot tell apart candidates whose mean errors differ by less than
    their spread, and the lowest mean alone then picks whichever one the noise favoured:
    on ``mmm_roas_data.csv`` it took 12 weeks of carry-over where the data has 4, and the
    channels' contributions came out 6-8% off instead of 4%. Simplest means fewest trend
    changepoints (each adds a parameter), then the shortest carry-over; when no candidate
    could be scored (every mean infinite), the simplest.

    Examples
    --------
    >>> one_standard_error([
    ...     {"l_max": 4, "trend_changepoints": 0, "cv_mape": 0.050, "cv_se": 0.004},
    ...     {"l_max": 12, "trend_changepoints": 0, "cv_mape": 0.047, "cv_se": 0.004},
    ... ])["l_max"]
    4
    """
    best = min(scores, key=lambda s: s["cv_mape"])
    within = [s for s in scores if s["cv_mape"] <= best["cv_mape"] + best["cv_se"]]
    return min(within, key=lambda s: (s["trend_changepoints"], s["l_max"], s["cv_mape"]))
