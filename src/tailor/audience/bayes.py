"""Bayesian BG/NBD and Gamma-Gamma (NumPyro): credible intervals around every prediction.

The maximum-likelihood fits of :mod:`tailor.audience.lifetime_value` give one best value per
parameter; a marketing team deciding on a retention budget also wants to know how sure that
value is. Here the same likelihoods (one formula, evaluated by JAX) meet weakly informative
priors, ``log θ ~ Normal(0, 3)`` for every parameter θ (a factor of 20 either way at one
standard deviation), and NUTS draws from the posterior. The chains start at the
maximum-likelihood point, so warm-up is short; convergence is reported, not hidden: R-hat,
effective sample size and divergent transitions per fit (:attr:`Posterior.diagnostics`).

Per-customer intervals (P(alive), expected purchases, lifetime value) come from evaluating the
closed-form predictions of the maximum-likelihood classes at each posterior draw. The two
models are fitted on separate data, so their posterior is the product of the two, and
pairing the k-th draw of each is a draw from it.

Needs the ``bayes`` extra (``pip install 'tailor[bayes]'``); it enables 64-bit floats in JAX
for this process, as the likelihood sums thousands of customers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from tailor.audience.lifetime_value import (
    ArrayMath,
    BetaGeo,
    GammaGamma,
    Summary,
    _MaximumLikelihood,
    read_saved,
)

FORMAT = "tailor.audience.bayes/1"
PRIOR_SCALE = 3.0
"""Standard deviation of the Normal prior on each log-parameter."""


def _jax():
    try:
        import jax
        import jax.numpy as jnp
        import jax.scipy.special as special
        import numpyro
    except ImportError:
        raise ImportError(
            "the Bayesian lifetime-value models need NumPyro and JAX: pip install 'tailor[bayes]'"
        ) from None
    numpyro.enable_x64()
    math = ArrayMath(jnp.log, jnp.log1p, jnp.logaddexp, jnp.where, special.gammaln, special.betaln)
    return jax, jnp, numpyro, math


def _normal_scores(by_chain: np.ndarray) -> np.ndarray:
    """Each draw replaced by the normal quantile of its rank among all chains' draws."""
    from scipy.stats import norm, rankdata

    ranks = rankdata(by_chain, method="average", axis=None).reshape(by_chain.shape)
    return norm.ppf((ranks - 0.375) / (by_chain.size + 0.25))


@dataclass(frozen=True)
class Posterior:
    """Draws of each parameter (chains × draws, flattened chain by chain) and how well the
    sampler did: per parameter the mean, sd, 5% and 95% quantiles, rank-normalized split
    R-hat (the larger of bulk and folded) and bulk effective sample size (``diagnostics``,
    computed when sampled and saved with the draws, so a loaded model describes itself
    without NumPyro)."""

    draws: dict[str, np.ndarray]
    chains: int
    divergences: int
    diagnostics: dict[str, dict[str, float]]

    @classmethod
    def of(cls, draws: dict[str, np.ndarray], chains: int, divergences: int) -> Posterior:
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        diagnostics = {}
        for name, values in draws.items():
            by_chain = values.reshape(chains, -1)
            # Rank-normalized (Vehtari et al. 2021, as Stan and ArviZ report them). R-hat on
            # raw values assumes a finite variance; where the data cannot bound a parameter
            # from above (Gamma-Gamma's p when spend hardly varies within a customer) its
            # draws reach the thousands and a few far ones decide it. The folded ranks also
            # compare the chains' tails, which the bulk ranks miss.
            bulk = _normal_scores(by_chain)
            folded = _normal_scores(np.abs(by_chain - np.median(by_chain)))
            diagnostics[name] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)),
                "q05": float(np.quantile(values, 0.05)),
                "q95": float(np.quantile(values, 0.95)),
                "r_hat": float(max(split_gelman_rubin(bulk), split_gelman_rubin(folded))),
                "ess": float(effective_sample_size(bulk)),
            }
        return cls(draws, chains, divergences, diagnostics)

    @property
    def size(self) -> int:
        return len(next(iter(self.draws.values())))

    def problems(self) -> list[str]:
        """Signs the sampler did not converge: R-hat above 1.01, fewer than 100 effective
        draws of a parameter, divergent transitions."""
        found = [
            f"{name}: R-hat {d['r_hat']:.3f}, effective draws {d['ess']:.0f}"
            for name, d in self.diagnostics.items()
            if not (d["r_hat"] <= 1.01 and d["ess"] >= 100)
        ]
        if self.divergences:
            found.append(f"{self.divergences} divergent transitions")
        return found

    def thinned(self, count: int) -> list[dict[str, float]]:
        """``count`` draws spread evenly over all chains (all when there are fewer)."""
        picks = np.unique(np.linspace(0, self.size - 1, min(count, self.size)).round().astype(int))
        return [{name: float(v[i]) for name, v in self.draws.items()} for i in picks]


class _Bayesian:
    """NUTS over the log-parameters of a maximum-likelihood class's likelihood."""

    point_model: ClassVar[type[_MaximumLikelihood]]

    def __init__(
        self, *, draws: int = 500, warmup: int = 500, chains: int = 4, seed: int = 0
    ) -> None:
        if draws < 10 or warmup < 10 or chains < 2:
            raise ValueError(
                "draws and warmup must be at least 10 and chains at least 2 (R-hat compares "
                f"chains); got draws={draws}, warmup={warmup}, chains={chains}"
            )
        self.draws, self.warmup, self.chains, self.seed = draws, warmup, chains, seed

    def _sample(self, data: tuple[np.ndarray, ...], start: _MaximumLikelihood) -> None:
        jax, jnp, numpyro, math = _jax()
        import numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS, init_to_value

        names = self.point_model.parameter_names
        rows, weights = np.unique(np.stack(data, axis=1), axis=0, return_counts=True)
        columns = tuple(jnp.asarray(c) for c in rows.T)
        weights = jnp.asarray(weights, dtype=jnp.float64)
        log_likelihood = self.point_model._log_likelihood

        def model() -> None:
            logs = [numpyro.sample(f"log_{n}", dist.Normal(0.0, PRIOR_SCALE)) for n in names]
            params = [jnp.exp(v) for v in logs]
            for name, value in zip(names, params, strict=True):
                numpyro.deterministic(name, value)
            numpyro.factor("likelihood", weights @ log_likelihood(params, *columns, math=math))

        start_values = {f"log_{n}": float(np.log(v)) for n, v in start.params_.items()}
        mcmc = MCMC(
            NUTS(model, init_strategy=init_to_value(values=start_values), dense_mass=True),
            num_warmup=self.warmup,
            num_samples=self.draws,
            num_chains=self.chains,
            chain_method="vectorized",  # one CPU device: all chains in one program
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(self.seed), extra_fields=("diverging",))
        samples = mcmc.get_samples()
        self.posterior_ = Posterior.of(
            draws={n: np.asarray(samples[n], dtype=float) for n in names},
            chains=self.chains,
            divergences=int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
        )
        self.point_ = start

    def _check_fitted(self) -> None:
        if not hasattr(self, "posterior_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def draws_as_models(self, count: int = 200) -> list[Any]:
        """Up to ``count`` posterior draws, each as a model of the maximum-likelihood class
        (all its predictions work)."""
        self._check_fitted()
        return [self.point_model.from_params(**d) for d in self.posterior_.thinned(count)]

    # --- persistence (JSON with the draws; no pickle) ---------------------------------------
    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        path = Path(path)
        posterior = self.posterior_
        path.write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "model": type(self).__name__,
                    "settings": {
                        "draws": self.draws, "warmup": self.warmup,
                        "chains": self.chains, "seed": self.seed,
                    },
                    "chains": posterior.chains,
                    "divergences": posterior.divergences,
                    "diagnostics": posterior.diagnostics,
                    "draws": {k: v.tolist() for k, v in posterior.draws.items()},
                    "point": self.point_.params_,
                }
            )
        )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        saved = read_saved(path, FORMAT, cls.__name__)
        model = cls(**saved["settings"])
        model.posterior_ = Posterior(
            draws={k: np.asarray(v, float) for k, v in saved["draws"].items()},
            chains=saved["chains"],
            divergences=saved["divergences"],
            diagnostics=saved["diagnostics"],
        )
        model.point_ = cls.point_model.from_params(**saved["point"])
        return model


class BayesianBetaGeo(_Bayesian):
    """BG/NBD with a posterior over (r, α, a, b).

    Examples
    --------
    >>> model = BayesianBetaGeo().fit(frequency, recency, T)  # doctest: +SKIP
    >>> model.posterior_.diagnostics["r"]  # doctest: +SKIP
    {'mean': 0.243, 'sd': 0.013, 'q05': 0.223, 'q95': 0.264, 'r_hat': 1.0, 'ess': 1893.0}
    """

    point_model = BetaGeo

    def fit(self, frequency: Any, recency: Any, T: Any, *, start: BetaGeo | None = None) -> Self:
        """``start``: the maximum-likelihood fit on the same data, when already at hand."""
        data = Summary.of(frequency, recency, T)
        columns = (data.frequency, data.recency, data.T)
        self._sample(columns, start or BetaGeo().fit(*columns))
        return self


class BayesianGammaGamma(_Bayesian):
    """Gamma-Gamma with a posterior over (p, q, γ)."""

    point_model = GammaGamma

    def fit(self, frequency: Any, monetary_value: Any, *, start: GammaGamma | None = None) -> Self:
        columns = GammaGamma._data(frequency, monetary_value)
        self._sample(columns, start or GammaGamma().fit(*columns))
        return self


def credible_interval(
    predict: Callable[..., np.ndarray], *models: list[Any], level: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of ``predict(*draw)`` over paired posterior draws
    (``models`` are lists of equal length from :meth:`_Bayesian.draws_as_models`)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if len({len(m) for m in models}) != 1:
        raise ValueError("pair draws of equal count from each model")
    values = np.stack([predict(*draw) for draw in zip(*models, strict=True)])
    tail = (1 - level) / 2
    return np.quantile(values, tail, axis=0), np.quantile(values, 1 - tail, axis=0)
