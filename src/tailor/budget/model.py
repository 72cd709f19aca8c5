"""The Bayesian media-mix model (NumPyro): how each channel's spend drives the target.

    y_t = intercept + trend · t + Fourier(day of year)_t · phi + controls_t · gamma
          + sum_c beta_c · saturation(adstock(x_c)_t ; lam_c) + eps_t,   eps_t ~ N(0, sigma)

(Jin et al. 2017, eq. 5, without the hierarchy; the transforms are in
:mod:`tailor.budget.transforms`). The target is divided by its largest absolute value and each
channel's spend by its largest value before fitting, so one set of weakly informative priors
suits any currency and any size of shop; they are PyMC-Marketing's defaults on the same scaled
data (alpha ~ Beta(1, 3), lam ~ Gamma(3, 1), beta ~ HalfNormal(2), Fourier ~ Laplace(0, 1),
controls and intercept ~ Normal(0, 2), sigma ~ HalfNormal(2)), which makes the two packages'
fits comparable. Every result is reported back in the data's own units: beta in target units
per period at full saturation, lam per unit of adstocked spend.

Two ways to fit:

* ``method="nuts"``: NUTS over every parameter, chains run together in one compiled program
  (in coordinates where each channel's effect at its typical spend replaces log beta, see
  :func:`_effect_coordinates`); R-hat, effective sample size and divergent transitions are
  reported
  (:attr:`MediaMixModel.diagnostics_`) and :meth:`MediaMixModel.problems` lists what fails.
* ``method="map"``: the posterior mode by L-BFGS with JAX gradients in the unconstrained space,
  then a Laplace approximation (the inverse Hessian there) for the draws: seconds instead of
  tens of seconds, for frequent re-planning. ``warm_start`` starts from an earlier fit's
  mode, so a re-fit on a week more data moves from where the last one ended.

Both are seeded: the same data and configuration give the same posterior. Lift tests
(:mod:`tailor.budget.lift`) add experiments' measured changes to the likelihood.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from tailor.budget.data import MediaData
from tailor.budget.lift import LiftTests
from tailor.budget.posterior import Compiled, compiled, load_jax
from tailor.budget.transforms import (
    Adstock,
    ChannelResponse,
    Saturation,
    adstock_weights,
    apply_adstock,
    check_forms,
    lagged,
    saturate,
    settled_change,
    typical_spend,
)

FORMAT = "tailor.budget.mmm/1"
HDI_PROB = 0.94
Method = Literal["nuts", "map"]
DAYS_PER_YEAR = 365.25
CHANNEL_PARAMS = ("alpha", "theta", "lam", "slope", "beta")


@dataclass(frozen=True)
class MMMConfig:
    """Model structure and sampler settings (saved with the model)."""

    adstock: Adstock = "geometric"
    l_max: int = 8
    saturation: Saturation = "logistic"
    yearly_seasonality: int = 2
    """Fourier order of the yearly pattern (0: none; only for data spanning a year or more)."""
    trend: bool = True
    trend_changepoints: int = 0
    """Points (evenly spaced over the fitted periods) where the trend's slope may change,
    Prophet-style, with a sparse Laplace prior on each change: a shop's growth is rarely a
    straight line, and a trend drawn too straight leaks into channels that ran late."""
    chains: int = 2
    draws: int = 1000
    warmup: int = 1000
    laplace_draws: int = 1000
    seed: int = 0
    beta_prior: Literal["equal", "spend_share"] = "equal"
    """``equal``: beta ~ HalfNormal(2) for every channel (PyMC-Marketing's default).
    ``spend_share``: HalfNormal(channels x the channel's share of all spend), the prior
    PyMC-Marketing's guide recommends: a channel that got a tenth of the money is not
    expected, before any data, to drive as much as one that got half."""

    def __post_init__(self) -> None:
        check_forms(self.adstock, self.saturation)
        if self.beta_prior not in ("equal", "spend_share"):
            raise ValueError(f"beta_prior: {self.beta_prior!r}; use 'equal' or 'spend_share'")
        if not 1 <= self.l_max <= 52:
            raise ValueError(f"l_max: {self.l_max}; carry-over of 1 to 52 periods")
        if not 0 <= self.yearly_seasonality <= 10:
            raise ValueError(f"yearly_seasonality: {self.yearly_seasonality}; use 0 to 10")
        if self.chains < 1 or self.draws < 10 or self.warmup < 10 or self.laplace_draws < 10:
            raise ValueError(
                "chains must be at least 1 and draws, warmup and laplace_draws at least 10; got "
                f"chains={self.chains}, draws={self.draws}, warmup={self.warmup}, "
                f"laplace_draws={self.laplace_draws}"
            )


@dataclass(frozen=True)
class _Scales:
    target: float
    spend: np.ndarray
    controls: np.ndarray
    periods: int
    """Periods of the fitted data: the trend's unit (t / periods)."""
    start: np.datetime64
    step_days: int


PAD_PERIODS = 26
"""Fits pad the series to a multiple of this many periods (masked out of the likelihood), so
re-fits as weeks arrive reuse one compiled program for half a year of weekly data."""


class _Design:
    """The fixed inputs of the mean, on the model's scale, for a stretch of periods."""

    def __init__(self, scales: _Scales, config: MMMConfig, data: MediaData, offset: int) -> None:
        self.lags = lagged(data.spend / scales.spend, config.l_max)
        self.t = (offset + np.arange(data.periods)) / scales.periods
        doy = (data.dates - np.datetime64("1970-01-01")).astype(int) % DAYS_PER_YEAR
        order = np.arange(1, config.yearly_seasonality + 1)
        angle = 2 * np.pi * doy[:, None] * order[None, :] / DAYS_PER_YEAR
        self.fourier = np.concatenate([np.sin(angle), np.cos(angle)], axis=1)
        self.controls = data.controls / scales.controls

    def with_history(self, history: np.ndarray, scales: _Scales, l_max: int) -> _Design:
        """Carry-over from the spend just before (``(H, C)``, data units) into the lags."""
        spend = self.lags[0]
        self.lags = lagged(spend, l_max, np, history / scales.spend)
        return self

    def padded(self, y: np.ndarray, beta_scale: np.ndarray) -> dict[str, np.ndarray]:
        """The inputs and ``y`` padded with masked periods to a multiple of
        :data:`PAD_PERIODS`."""
        t = len(self.t)
        extra = -t % PAD_PERIODS

        def pad(a: np.ndarray, axis: int) -> np.ndarray:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, extra)
            return np.pad(a, widths)

        return {
            "lags": pad(self.lags, 1),
            "t": pad(self.t, 0),
            "fourier": pad(self.fourier, 0),
            "controls": pad(self.controls, 0),
            "y": pad(y, 0),
            "mask": pad(np.ones(t, bool), 0),
            "beta_scale": np.asarray(beta_scale, float),
            **_no_lift_tests(),  # a fit with lift tests replaces them
        }


def _mean(
    params: dict[str, Any], inputs: dict[str, Any] | _Design, config: MMMConfig, xp: Any
) -> tuple[Any, Any]:
    """The mean (scaled) and the channel contributions (scaled, ``(T, C)``)."""
    if isinstance(inputs, _Design):
        inputs = vars(inputs)
    weights = adstock_weights(
        config.adstock, config.l_max, params["alpha"], params.get("theta"), xp=xp
    )
    adstocked = apply_adstock(xp.asarray(inputs["lags"]), weights, xp)
    channel = params["beta"] * saturate(
        config.saturation, adstocked, params["lam"], params.get("slope"), xp=xp
    )
    mu = params["intercept"] + channel.sum(axis=1)
    if config.trend:
        t = xp.asarray(inputs["t"])
        mu = mu + params["trend"] * t
        if config.trend_changepoints:
            knots = xp.arange(1, config.trend_changepoints + 1) / (config.trend_changepoints + 1)
            hinges = xp.maximum(t[:, None] - knots[None, :], 0.0)
            mu = mu + hinges @ params["trend_changes"]
    if inputs["fourier"].shape[1]:
        mu = mu + xp.asarray(inputs["fourier"]) @ params["fourier"]
    if inputs["controls"].shape[1]:
        mu = mu + xp.asarray(inputs["controls"]) @ params["gamma"]
    return mu, channel


def _lift_effect(params: dict[str, Any], inputs: dict[str, Any], config: MMMConfig, xp: Any) -> Any:
    """The change of the (scaled) target per period that each lift test's change of spend
    makes on the model's curve, without carry-over (see :mod:`tailor.budget.lift`)."""
    channel = inputs["lift_channel"]
    slope = params.get("slope")
    return settled_change(
        config.saturation,
        inputs["lift_x"],
        inputs["lift_delta_x"],
        params["beta"][channel],
        params["lam"][channel],
        None if slope is None else slope[channel],
        xp=xp,
    )


def _structure(config: MMMConfig) -> tuple:
    """What tells two compiled posteriors apart (priors and likelihood, not sampler settings)."""
    return (
        config.adstock,
        config.saturation,
        config.l_max,
        config.trend,
        config.trend_changepoints,
    )


def _numpyro_model(config: MMMConfig) -> Any:
    """The model as a function of its inputs (:meth:`_Design.padded`), so one compiled
    program serves every data set of the same shape."""
    _, jnp, numpyro = load_jax()
    import numpyro.distributions as dist

    def model(inputs: dict[str, Any]) -> None:
        params: dict[str, Any] = {}
        with numpyro.plate("channel", inputs["lags"].shape[2]):
            if config.adstock == "geometric":
                params["alpha"] = numpyro.sample("alpha", dist.Beta(1.0, 3.0))
            elif config.adstock == "delayed":
                params["alpha"] = numpyro.sample("alpha", dist.Beta(1.0, 3.0))
                params["theta"] = numpyro.sample("theta", dist.Uniform(0.0, config.l_max - 1.0))
            else:  # weibull: shape and scale (periods)
                params["alpha"] = numpyro.sample("alpha", dist.Gamma(2.0, 1.0))
                params["theta"] = numpyro.sample("theta", dist.Gamma(2.0, 1.0))
            if config.saturation == "logistic":
                params["lam"] = numpyro.sample("lam", dist.Gamma(3.0, 1.0))
            else:  # hill: half-saturation (scaled spend) and slope
                params["lam"] = numpyro.sample("lam", dist.Gamma(2.0, 2.0))
                params["slope"] = numpyro.sample("slope", dist.Gamma(3.0, 2.0))
            params["beta"] = numpyro.sample("beta", dist.HalfNormal(inputs["beta_scale"]))
        params["intercept"] = numpyro.sample("intercept", dist.Normal(0.0, 2.0))
        if config.trend:
            params["trend"] = numpyro.sample("trend", dist.Normal(0.0, 1.0))
            if config.trend_changepoints:
                params["trend_changes"] = numpyro.sample(
                    "trend_changes",
                    dist.Laplace(0.0, 0.5).expand([config.trend_changepoints]).to_event(1),
                )
        if inputs["fourier"].shape[1]:
            params["fourier"] = numpyro.sample(
                "fourier", dist.Laplace(0.0, 1.0).expand([inputs["fourier"].shape[1]]).to_event(1)
            )
        if inputs["controls"].shape[1]:
            params["gamma"] = numpyro.sample(
                "gamma", dist.Normal(0.0, 2.0).expand([inputs["controls"].shape[1]]).to_event(1)
            )
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        mu, _ = _mean(params, inputs, config, jnp)
        with numpyro.handlers.mask(mask=inputs["mask"]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=inputs["y"])
        if inputs["lift_channel"].shape[0]:
            numpyro.sample(
                "lift",
                dist.Normal(_lift_effect(params, inputs, config, jnp), inputs["lift_sigma"]),
                obs=inputs["lift_delta_y"],
            )

    return model


def _no_lift_tests() -> dict[str, np.ndarray]:
    empty = np.zeros(0)
    return {
        "lift_channel": np.zeros(0, np.int64),
        **{f"lift_{k}": empty for k in ("x", "delta_x", "delta_y", "sigma")},
    }


def _lift_inputs(
    tests: LiftTests | None, channel: np.ndarray | None, scales: _Scales
) -> dict[str, np.ndarray]:
    """The lift tests on the model's scale (empty arrays without any: one compiled program
    serves every fit without tests)."""
    if tests is None:
        return _no_lift_tests()
    spend = scales.spend[channel]
    spend = np.where(spend > 0, spend, 1.0)
    return {
        "lift_channel": channel,
        "lift_x": tests.x / spend,
        "lift_delta_x": tests.delta_x / spend,
        "lift_delta_y": tests.delta_y / scales.target,
        "lift_sigma": tests.sigma / scales.target,
    }


def _effect_coordinates(
    posterior: Compiled, inputs: dict[str, np.ndarray], config: MMMConfig
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Maps between the sampler's coordinates and the posterior's, in which each channel's
    ``log beta`` is replaced by the log of its effect at its typical spend,
    ``log(beta * saturate(typical spend))``.

    The data pin down a channel's effect at the spend it usually gets far better than beta
    and the curvature apart: a flatter curve with a larger beta fits nearly as well, so in
    ``(log beta, log lam)`` the posterior is a narrow curved ridge that NUTS crosses in small
    steps (on mmm_example, 317 effective draws of beta2 out of 2,000). In the effect's
    coordinate the ridge runs along an axis. The map only shifts ``log beta`` by a function
    of the other coordinates, so its Jacobian is 1: the posterior is the same, only the
    sampler's path changes. Works on ``(..., size)`` arrays; ``to_z`` is JAX-traceable.
    """
    _, jnp, _ = load_jax()
    where = posterior.unravel(jnp.arange(posterior.size))
    where = {name: np.asarray(at).astype(int) for name, at in where.items()}
    beta_at = where["beta"]
    spend = np.asarray(inputs["lags"][0])[np.asarray(inputs["mask"])]
    typical = typical_spend(spend, never=1.0)

    def log_saturation(flat: Any) -> Any:
        def value(name: str) -> Any:
            return posterior.transforms[name](flat[..., where[name]])

        slope = value("slope") if "slope" in where else None
        return jnp.log(saturate(config.saturation, typical, value("lam"), slope, xp=jnp))

    def to_z(w: Any) -> Any:
        return w.at[..., beta_at].add(-log_saturation(w))

    def from_z(z: Any) -> Any:
        return z.at[..., beta_at].add(log_saturation(z))

    return to_z, from_z


class MediaMixModel:
    """A media-mix model of one target and its channels (see the module docstring).

    Examples
    --------
    >>> from tailor.budget.data import read_csv
    >>> data = read_csv("mmm_example.csv", date_col="date_week", target_col="y",
    ...                 spend_cols=["x1", "x2"], control_cols=["event_1", "event_2"],
    ...                 target_scale=1000)  # doctest: +SKIP
    >>> model = MediaMixModel(MMMConfig()).fit(data)  # doctest: +SKIP
    >>> model.summary()["alpha"]["mean"]  # doctest: +SKIP
    [0.41, 0.19]
    """

    def __init__(self, config: MMMConfig | None = None) -> None:
        self.config = config or MMMConfig()

    # --- fitting -------------------------------------------------------------------------
    def fit(
        self,
        data: MediaData,
        *,
        method: Method = "nuts",
        warm_start: MediaMixModel | None = None,
        lift_tests: LiftTests | None = None,
    ) -> Self:
        """Fit on ``data`` (see the module docstring for the two methods). ``warm_start``
        (``map`` only) is an earlier fit of the same channels and configuration.
        ``lift_tests`` (:mod:`tailor.budget.lift`) add each experiment's measured change of
        the target to the likelihood; their channels must be among the data's."""
        if method not in ("nuts", "map"):
            raise ValueError(f"method: {method!r}; use 'nuts' or 'map'")
        if warm_start is not None:
            if method != "map":
                raise ValueError("warm_start applies to method='map' only, not to 'nuts'")
            warm_start._check_fitted()
            if warm_start.channels_ != data.channels or warm_start.config != self.config:
                raise ValueError(
                    "warm_start: the earlier fit has other channels or another configuration; "
                    "fit from scratch instead"
                )
        data.check_fittable()
        lift_channel = None if lift_tests is None else lift_tests.codes(data.channels)
        self.channels_ = data.channels
        self.control_names_ = data.control_names
        self.target_name_ = data.target_name
        self.frequency_ = data.frequency
        self.scales_ = _Scales(
            target=float(np.abs(data.target).max()) or 1.0,
            spend=data.spend.max(axis=0),
            controls=np.where(
                np.abs(data.controls).max(axis=0) > 0, np.abs(data.controls).max(axis=0), 1.0
            )
            if data.controls.shape[1]
            else np.ones(0),
            periods=data.periods,
            start=data.dates[0],
            step_days=7 if data.frequency == "W" else 1,
        )
        design = _Design(self.scales_, self.config, data, 0)
        y = data.target / self.scales_.target
        channels = len(data.channels)
        share = data.spend.sum(axis=0) / data.spend.sum()
        self.beta_scale_ = (
            np.full(channels, 2.0) if self.config.beta_prior == "equal" else channels * share
        )
        self.lift_tests_ = lift_tests
        inputs = design.padded(y, self.beta_scale_)
        inputs.update(_lift_inputs(lift_tests, lift_channel, self.scales_))
        started = time.perf_counter()
        if method == "nuts":
            draws, self.diagnostics_ = self._nuts(inputs)
        else:
            draws, self.diagnostics_ = self._laplace(inputs, warm_start)
        self.fit_seconds_ = time.perf_counter() - started
        self.method_ = method
        self.draws_ = draws
        carried = self.config.l_max - 1  # the spend whose carry-over reaches past the data
        self.history_ = data.spend[data.periods - carried :].copy()
        self.last_date_ = data.dates[-1]
        return self

    def _nuts(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """NUTS with each chain started at a draw of the Laplace approximation: the chains
        begin spread around the mode, so warm-up is short and R-hat still compares chains
        that started apart."""
        jax, jnp, _numpyro = load_jax()
        from numpyro.diagnostics import summary
        from numpyro.infer import MCMC, NUTS

        cfg = self.config
        posterior = compiled(_structure(cfg), lambda: _numpyro_model(cfg), inputs)
        mode, _, cov_root = posterior.laplace(posterior.start(None), inputs)
        rng = np.random.default_rng(cfg.seed)
        starts = mode + rng.standard_normal((cfg.chains, len(mode))) @ cov_root.T
        to_z, from_z = _effect_coordinates(posterior, inputs, cfg)
        potential = posterior.bound(inputs)
        mcmc = MCMC(
            NUTS(potential_fn=lambda w: potential(to_z(w)), target_accept_prob=0.9),
            num_warmup=cfg.warmup,
            num_samples=cfg.draws,
            num_chains=cfg.chains,
            # a device per chain where JAX has them, else every chain in one program
            chain_method="parallel" if jax.local_device_count() >= cfg.chains else "vectorized",
            progress_bar=False,
        )
        mcmc.run(
            jax.random.PRNGKey(cfg.seed),
            init_params=from_z(jnp.asarray(starts if cfg.chains > 1 else starts[0])),
            extra_fields=("diverging",),
        )
        flat_w = jnp.asarray(mcmc.get_samples()).reshape(cfg.chains * cfg.draws, -1)
        flat_z = np.asarray(to_z(flat_w))
        flat = posterior.constrain(flat_z)
        grouped = {k: v.reshape(cfg.chains, cfg.draws, *v.shape[1:]) for k, v in flat.items()}
        stats = summary(grouped, prob=HDI_PROB)
        diagnostics = {
            "method": "nuts",
            "chains": cfg.chains,
            "draws": cfg.draws,
            "warmup": cfg.warmup,
            "divergences": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
            "r_hat": {k: np.atleast_1d(s["r_hat"]).tolist() for k, s in stats.items()},
            "ess": {k: np.atleast_1d(s["n_eff"]).tolist() for k, s in stats.items()},
        }
        self.mode_ = {k: v[0] for k, v in posterior.constrain(mode[None, :]).items()}
        return flat, diagnostics

    def _laplace(
        self, inputs: dict[str, np.ndarray], warm_start: MediaMixModel | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        load_jax()  # a clear ImportError, before any work
        cfg = self.config
        posterior = compiled(_structure(cfg), lambda: _numpyro_model(cfg), inputs)
        mode, result, cov_root = posterior.laplace(
            posterior.start(None if warm_start is None else warm_start.mode_), inputs
        )
        rng = np.random.default_rng(cfg.seed)
        z = mode + rng.standard_normal((cfg.laplace_draws, len(mode))) @ cov_root.T
        draws = posterior.constrain(z)
        self.mode_ = {k: v[0] for k, v in posterior.constrain(mode[None, :]).items()}
        diagnostics = {
            "method": "map",
            "converged": bool(result.success),
            "iterations": int(result.nit),
            "message": str(result.message),
            "non_positive_curvature": int(result.non_positive_curvature),
            "warm_start": warm_start is not None,
        }
        return draws, diagnostics

    # --- results -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "draws_"):
            raise RuntimeError("MediaMixModel is not fitted: call fit() first")

    def parameter_draws(self) -> dict[str, np.ndarray]:
        """Posterior draws of every parameter in the data's units (``beta`` in target units
        per period, ``lam`` per unit of adstocked spend; Hill's ``lam`` is the half-saturation
        spend)."""
        self._check_fitted()
        scales = self.scales_
        out = {k: np.asarray(v, float) for k, v in self.draws_.items()}
        out["beta"] = out["beta"] * scales.target
        out["lam"] = (
            out["lam"] / scales.spend
            if self.config.saturation == "logistic"
            else (out["lam"] * scales.spend)
        )
        for name in ("intercept", "trend", "trend_changes", "fourier", "gamma", "sigma"):
            if name in out:
                out[name] = out[name] * scales.target
        if "gamma" in out:
            out["gamma"] = out["gamma"] / scales.controls
        return out

    def summary(self) -> dict[str, dict[str, list[float] | float]]:
        """Per parameter: mean, sd and the 94% highest-density interval (``hdi``) in the
        data's units, with R-hat and effective draws after NUTS."""
        from numpyro.diagnostics import hpdi

        out = {}
        for name, values in self.parameter_draws().items():
            lo, hi = hpdi(values, prob=HDI_PROB, axis=0)
            entry: dict[str, Any] = {
                "mean": _plain(values.mean(axis=0)),
                "sd": _plain(values.std(axis=0, ddof=1)),
                "hdi": [_plain(lo), _plain(hi)],
            }
            if self.diagnostics_["method"] == "nuts":
                entry["r_hat"] = _plain(np.asarray(self.diagnostics_["r_hat"][name]))
                entry["ess"] = _plain(np.asarray(self.diagnostics_["ess"][name]))
            out[name] = entry
        return out

    def problems(self) -> list[str]:
        """Signs the fit is not to be trusted: after NUTS an R-hat above 1.01, fewer than
        200 effective draws, divergent transitions; after MAP an optimizer that did not
        converge or a Hessian that is not positive definite."""
        self._check_fitted()
        d = self.diagnostics_
        found = []
        if d["method"] == "nuts":
            for name, values in d["r_hat"].items():
                if max(values) > 1.01:
                    found.append(f"{name}: R-hat {max(values):.3f} > 1.01")
            for name, values in d["ess"].items():
                if min(values) < 200:
                    found.append(f"{name}: only {min(values):.0f} effective draws")
            if d["divergences"]:
                found.append(f"{d['divergences']} divergent transitions")
        else:
            if not d["converged"]:
                found.append(f"the optimizer did not converge: {d['message']}")
            if d["non_positive_curvature"]:
                found.append(
                    f"{d['non_positive_curvature']} direction(s) without curvature at the mode: "
                    "the Laplace intervals there are not reliable"
                )
        return found

    def response(self, summary: Literal["mean", "median"] | float = "mean") -> ChannelResponse:
        """The channels' response at the posterior mean, median or a quantile (0-1) of each
        parameter, for the optimizer."""
        draws = self.parameter_draws()

        def pick(values: np.ndarray) -> np.ndarray:
            if summary == "mean":
                return values.mean(axis=0)
            if summary == "median":
                return np.median(values, axis=0)
            return np.quantile(values, float(summary), axis=0)

        return self._response_of({k: pick(draws[k]) for k in CHANNEL_PARAMS if k in draws})

    def response_draws(self, count: int = 200) -> list[ChannelResponse]:
        """``count`` posterior draws (evenly spaced over the chains) as responses."""
        draws = self.parameter_draws()
        size = len(draws["beta"])
        picks = np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))
        return [
            self._response_of({k: draws[k][i] for k in CHANNEL_PARAMS if k in draws}) for i in picks
        ]

    def _response_of(self, values: dict[str, np.ndarray]) -> ChannelResponse:
        return ChannelResponse(
            channels=self.channels_,
            adstock=self.config.adstock,
            saturation=self.config.saturation,
            l_max=self.config.l_max,
            **values,
        )

    def _design(self, data: MediaData, history: np.ndarray | None) -> _Design:
        if data.channels != self.channels_ or data.control_names != self.control_names_:
            raise ValueError(
                f"data: channels {list(data.channels)} and controls {list(data.control_names)} "
                f"differ from the fitted {list(self.channels_)} and {list(self.control_names_)}"
            )
        offset = int((data.dates[0] - self.scales_.start).astype(int)) // self.scales_.step_days
        design = _Design(self.scales_, self.config, data, offset)
        if history is not None:
            design.with_history(np.asarray(history, float), self.scales_, self.config.l_max)
        return design

    def _draw_means(self, data: MediaData, history: np.ndarray | None) -> tuple[Any, Any]:
        """Mean and contributions for each posterior draw, data units: ``(S, T)``, ``(S, T, C)``."""
        design = self._design(data, history)
        draws = self.draws_
        size = len(draws["beta"])
        mus, channels = [], []
        for i in range(size):
            mu, channel = _mean({k: v[i] for k, v in draws.items()}, design, self.config, np)
            mus.append(mu)
            channels.append(channel)
        scale = self.scales_.target
        return np.asarray(mus) * scale, np.asarray(channels) * scale

    def predict(self, data: MediaData, *, history: np.ndarray | None = None) -> dict[str, Any]:
        """Expected target per period (mean and 94% interval of the mean, plus the interval
        with the noise: ``lo_obs``/``hi_obs``). ``history``: the spend of the periods before
        ``data`` (data units), whose carry-over reaches into it; for periods right after the
        fitted ones pass :attr:`history_`."""
        self._check_fitted()
        mus, _ = self._draw_means(data, history)
        noise = self.parameter_draws()["sigma"][:, None]
        rng = np.random.default_rng(self.config.seed)
        observed = mus + rng.standard_normal(mus.shape) * noise
        lo, hi = np.quantile(mus, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=0)
        lo_obs, hi_obs = np.quantile(observed, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=0)
        return {"mean": mus.mean(axis=0), "lo": lo, "hi": hi, "lo_obs": lo_obs, "hi_obs": hi_obs}

    def contributions(
        self, data: MediaData, *, history: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Each channel's contribution per period ``(T, C)``: mean and 94% interval, and the
        baseline (everything but the channels) per period."""
        self._check_fitted()
        mus, channels = self._draw_means(data, history)
        lo, hi = np.quantile(channels, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=0)
        return {
            "mean": channels.mean(axis=0),
            "lo": lo,
            "hi": hi,
            "baseline": (mus - channels.sum(axis=2)).mean(axis=0),
        }

    def roi(self, data: MediaData) -> dict[str, dict[str, float]]:
        """Per channel over ``data``: total contribution and return on spend
        (contribution / spend), mean and 94% interval."""
        self._check_fitted()
        _, channels = self._draw_means(data, None)
        totals = channels.sum(axis=1)  # (S, C)
        spend = data.spend.sum(axis=0)
        out = {}
        for c, name in enumerate(self.channels_):
            ratio = totals[:, c] / spend[c] if spend[c] > 0 else np.full(len(totals), np.nan)
            lo, hi = np.quantile(ratio, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2])
            out[name] = {
                "contribution": float(totals[:, c].mean()),
                "spend": float(spend[c]),
                "roi": float(ratio.mean()),
                "roi_lo": float(lo),
                "roi_hi": float(hi),
            }
        return out

    def lift_check(self) -> list[dict[str, float | str]]:
        """Each lift test the fit was calibrated with, against what the fitted curves say the
        same change of spend does per period: ``measured`` and its ``sigma``, the model's
        ``model`` mean with its 94% interval (``model_lo``, ``model_hi``), and ``z``, the gap
        in the test's standard errors (beyond about 2, the experiment and the rest of the
        data disagree: check the test, or the model's structure). Empty without tests."""
        self._check_fitted()
        tests = self.lift_tests_
        if tests is None:
            return []
        codes = tests.codes(self.channels_)
        draws = self.parameter_draws()
        slope = draws.get("slope")
        change = settled_change(
            self.config.saturation,
            tests.x[None, :],
            tests.delta_x[None, :],
            draws["beta"][:, codes],
            draws["lam"][:, codes],
            None if slope is None else slope[:, codes],
        )
        lo, hi = np.quantile(change, [(1 - HDI_PROB) / 2, (1 + HDI_PROB) / 2], axis=0)
        mean = change.mean(axis=0)
        return [
            {
                "channel": tests.channel[i],
                "x": float(tests.x[i]),
                "delta_x": float(tests.delta_x[i]),
                "measured": float(tests.delta_y[i]),
                "sigma": float(tests.sigma[i]),
                "model": float(mean[i]),
                "model_lo": float(lo[i]),
                "model_hi": float(hi[i]),
                "z": float((mean[i] - tests.delta_y[i]) / tests.sigma[i]),
            }
            for i in range(len(tests))
        ]

    # --- persistence (JSON header + .npz, no pickle) -------------------------------------
    def save(self, folder: str | Path) -> Path:
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "posterior.npz",
            **{f"draw_{k}": v for k, v in self.draws_.items()},
            **{f"mode_{k}": v for k, v in self.mode_.items()},
            history=self.history_,
            spend_scale=self.scales_.spend,
            control_scale=self.scales_.controls,
        )
        header = {
            "format": FORMAT,
            "config": asdict(self.config),
            "channels": list(self.channels_),
            "controls": list(self.control_names_),
            "target": self.target_name_,
            "frequency": self.frequency_,
            "target_scale": self.scales_.target,
            "periods": self.scales_.periods,
            "start": str(self.scales_.start),
            "last_date": str(self.last_date_),
            "method": self.method_,
            "fit_seconds": self.fit_seconds_,
            "diagnostics": self.diagnostics_,
            "lift_tests": None if self.lift_tests_ is None else self.lift_tests_.to_json(),
        }
        (folder / "model.json").write_text(json.dumps(header, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> MediaMixModel:
        folder = Path(folder)
        try:
            header = json.loads((folder / "model.json").read_text())
            arrays = np.load(folder / "posterior.npz")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: not a saved media-mix model ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else None
            raise ValueError(f"{folder}: format {found!r}, expected {FORMAT!r}")
        try:
            model = cls(MMMConfig(**header["config"]))
            model.channels_ = tuple(header["channels"])
            model.control_names_ = tuple(header["controls"])
            model.target_name_ = header["target"]
            model.frequency_ = header["frequency"]
            model.scales_ = _Scales(
                target=float(header["target_scale"]),
                spend=arrays["spend_scale"],
                controls=arrays["control_scale"],
                periods=int(header["periods"]),
                start=np.datetime64(header["start"], "D"),
                step_days=7 if header["frequency"] == "W" else 1,
            )
            model.draws_ = {k[5:]: arrays[k] for k in arrays.files if k.startswith("draw_")}
            model.mode_ = {k[5:]: arrays[k] for k in arrays.files if k.startswith("mode_")}
            model.history_ = arrays["history"]
            model.last_date_ = np.datetime64(header["last_date"], "D")
            model.method_ = header["method"]
            model.fit_seconds_ = float(header["fit_seconds"])
            model.diagnostics_ = header["diagnostics"]
            lift = header.get("lift_tests")  # absent from models saved before lift tests
            model.lift_tests_ = None if lift is None else LiftTests.from_json(lift)
        except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{folder}: a damaged media-mix model ({exc!r})") from None
        return model


def _plain(values: np.ndarray) -> list[float] | float:
    values = np.asarray(values, float)
    return float(values) if values.ndim == 0 else [float(v) for v in values]
