"""Buy-till-you-die models of repeat purchasing, fitted by maximum likelihood.

* :class:`BetaGeo` — BG/NBD: Fader, Hardie and Lee (2005), "'Counting Your Customers' the
  Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2).
* :class:`ParetoNBD` — Schmittlein, Morrison and Colombo (1987), in the form of Fader and
  Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions".
* :class:`GammaGamma` — spend per transaction: Fader, Hardie and Lee (2005), "RFM and CLV:
  Using Iso-Value Curves for Customer Base Analysis", JMR 42(4).

Each customer is summarized as in the papers: ``x`` repeat purchases (``frequency``), the
time ``t_x`` of the last one since the first purchase (``recency``) and the time ``T`` from the
first purchase to the end of the calibration period, all in one time unit (weeks for CDNOW).
Likelihoods are computed in log space over all customers at once; parameters are optimized
as logarithms, so they stay positive without bounds or a penalizer, and standard errors come
from the Hessian of the log-likelihood at the optimum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp

FORMAT = "tailor.audience.lifetime_value/1"
LOG_BOUND = 10.0
"""Parameters stay within e^±10 (4.5e-5 to 22,026). Data without heterogeneity (every
customer buying at one rate, nobody leaving) have their maximum at 0 or infinity, where the
predictions overflow; at the bound they stay finite, and :attr:`at_bound_` says so."""


@dataclass(frozen=True)
class ArrayMath:
    """The functions the likelihoods use, from one array library: NumPy and SciPy for the
    maximum-likelihood fits, JAX for the Bayesian ones (:mod:`tailor.audience.bayes`), so
    one formula serves both."""

    log: Any
    log1p: Any
    logaddexp: Any
    where: Any
    gammaln: Any
    betaln: Any


NUMPY = ArrayMath(np.log, np.log1p, np.logaddexp, np.where, gammaln, betaln)


class FitError(RuntimeError):
    """The optimizer did not reach a maximum of the likelihood."""


@dataclass(frozen=True)
class Summary:
    """The calibration summary of customers (arrays of one length)."""

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray

    @classmethod
    def of(cls, frequency: Any, recency: Any, T: Any) -> Summary:
        """Check and convert; a bad value raises ``ValueError`` naming the field and row."""
        x = _column("frequency", frequency)
        t_x = _column("recency", recency)
        age = _column("T", T)
        if not len(x) == len(t_x) == len(age):
            raise ValueError(
                f"frequency, recency and T must have one length, got {len(x)}, {len(t_x)} and "
                f"{len(age)}"
            )
        if len(x) == 0:
            raise ValueError("no customers: frequency, recency and T are empty")
        _check(x < 0, "frequency", x, "must be 0 or more")
        _check(x != np.round(x), "frequency", x, "must be a whole number of repeat purchases")
        _check(t_x < 0, "recency", t_x, "must be 0 or more")
        # T = 0: first bought on the last day; such a customer adds nothing to the likelihood.
        _check(age < 0, "T", age, "must be 0 or more")
        _check(t_x > age, "recency", t_x, "must not exceed T (the last purchase lies within it)")
        _check((x == 0) & (t_x != 0), "recency", t_x, "must be 0 for a customer with frequency 0")
        _check((x > 0) & (t_x == 0), "recency", t_x, "must be more than 0 when frequency > 0")
        return cls(x, t_x, age)


def _column(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    _check(~np.isfinite(array), name, array, "must be a finite number")
    return array


def _check(bad: np.ndarray, name: str, values: np.ndarray, message: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{row}] = {float(values[row])!r} {message} ({int(bad.sum())} rows like it)"
        )


class _MaximumLikelihood:
    """Fit by maximizing ``_log_likelihood`` over log-parameters; save and load as JSON."""

    parameter_names: ClassVar[tuple[str, ...]]

    def __init__(self, *, max_iterations: int = 2000) -> None:
        self.max_iterations = max_iterations

    @property
    def params_(self) -> dict[str, float]:
        self._check_fitted()
        return dict(zip(self.parameter_names, self._params.tolist(), strict=True))

    def _check_fitted(self) -> None:
        if not hasattr(self, "_params"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def _maximize(self, data: tuple[np.ndarray, ...], start: np.ndarray) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        # Customers with the same summary share a likelihood: evaluate each summary once.
        rows, weights = np.unique(np.stack(data, axis=1), axis=0, return_counts=True)
        distinct = tuple(rows.T)

        def log_likelihood(params: np.ndarray) -> float:
            return float(weights @ self._log_likelihood(params, *distinct))

        def loss(log_params: np.ndarray) -> float:
            value = -log_likelihood(np.exp(log_params))
            return value if np.isfinite(value) else 1e300

        gradient = None
        if self._gradient is not None:

            def gradient(log_params: np.ndarray) -> np.ndarray:
                params = np.exp(log_params)  # chain rule: d/d log θ = θ d/dθ
                value = -(weights @ self._gradient(params, *distinct)) * params
                return np.where(np.isfinite(value), value, 0.0)

        # Steps into overflow are expected and answered with a huge loss: no warnings.
        with np.errstate(all="ignore"):
            best = self._quasi_newton(loss, start, gradient)
            # L-BFGS-B may still stop "abnormally" in a line search at the optimum, when the
            # loss cannot fall further in double precision: a flat gradient is success too.
            flat = np.isfinite(best.fun) and np.max(np.abs(best.jac)) < 1e-3
            if not (best.success or flat):  # a rough start: Nelder-Mead finds the basin first
                rough = minimize(
                    loss, start, method="Nelder-Mead",
                    bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
                    options={"maxiter": self.max_iterations, "xatol": 1e-6, "fatol": 1e-9},
                )  # fmt: skip
                polished = self._quasi_newton(loss, rough.x, gradient)
                best = min((best, rough, polished), key=lambda result: result.fun)
        if not np.isfinite(best.fun) or best.fun >= 1e300:
            raise FitError(
                f"{type(self).__name__}: the likelihood is not finite at any point tried; "
                "check that frequency, recency and T share one time unit"
            )
        self._params = np.exp(best.x)
        self.at_bound_ = [
            name
            for name, value in zip(self.parameter_names, best.x, strict=True)
            if abs(value) >= LOG_BOUND - 1e-6
        ]
        self.log_likelihood_ = -float(best.fun)
        self.n_customers_ = len(data[0])
        with np.errstate(all="ignore"):  # a NaN here becomes a NaN standard error
            hessian = _hessian(log_likelihood, self._params)
        try:
            variances = np.diag(np.linalg.inv(-hessian))
        except np.linalg.LinAlgError:
            variances = np.full(len(self._params), np.nan)
        # A flat or curved-up direction (tiny data, a parameter at its edge) has no error bar.
        errors = np.sqrt(np.where(variances > 0, variances, np.nan))
        self.standard_errors_ = dict(zip(self.parameter_names, errors.tolist(), strict=True))

    def _quasi_newton(self, loss, start: np.ndarray, gradient=None):
        return minimize(
            loss, start, jac=gradient, method="L-BFGS-B",
            bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
            options={"maxiter": self.max_iterations, "ftol": 1e-13, "gtol": 1e-9},
        )  # fmt: skip

    # --- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        path = Path(path)
        path.write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "model": type(self).__name__,
                    "params": self.params_,
                    "standard_errors": self.standard_errors_,
                    "log_likelihood": self.log_likelihood_,
                    "n_customers": self.n_customers_,
                },
                indent=2,
            )
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        saved = read_saved(path, FORMAT, cls.__name__)
        model = cls()
        model._params = np.asarray([saved["params"][n] for n in cls.parameter_names], float)
        model.standard_errors_ = saved["standard_errors"]
        model.log_likelihood_ = saved["log_likelihood"]
        model.n_customers_ = saved["n_customers"]
        return model

    @classmethod
    def from_params(cls, **params: float) -> Self:
        """A model with given parameters (published ones, say), for predictions."""
        missing = set(cls.parameter_names) - set(params)
        extra = set(params) - set(cls.parameter_names)
        if missing or extra:
            raise ValueError(
                f"{cls.__name__} takes {', '.join(cls.parameter_names)}; "
                f"missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        values = np.asarray([params[n] for n in cls.parameter_names], float)
        if not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"{cls.__name__} parameters must be positive numbers: {params}")
        model = cls()
        model._params = values
        return model

    def _log_likelihood(self, params: np.ndarray, *data: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    _gradient: Any = None
    """Optionally, each customer's gradient of the log-likelihood (customers × parameters);
    without it the optimizer differentiates numerically."""


def read_saved(path: str | Path, format_: str, model: str) -> dict[str, Any]:
    """The JSON a model's ``save`` wrote, checked to be of that format and model."""
    saved = json.loads(Path(path).read_text())
    if saved.get("format") != format_ or saved.get("model") != model:
        raise ValueError(f"{path} does not hold a saved {model}")
    return saved


def _hessian(function, point: np.ndarray) -> np.ndarray:
    """Central-difference Hessian, with steps relative to each coordinate."""
    n = len(point)
    steps = 1e-4 * np.maximum(np.abs(point), 1e-3)
    hessian = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            shifted = []
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                p = point.copy()
                p[i] += si * steps[i]
                p[j] += sj * steps[j]
                shifted.append(function(p))
            value = (shifted[0] - shifted[1] - shifted[2] + shifted[3]) / (4 * steps[i] * steps[j])
            hessian[i, j] = hessian[j, i] = value
    return hessian


class _PurchaseModel(_MaximumLikelihood):
    """A model of repeat purchases, fitted on (frequency, recency, T)."""

    def fit(self, frequency: Any, recency: Any, T: Any) -> Self:
        data = Summary.of(frequency, recency, T)
        start = np.zeros(len(self.parameter_names))  # every parameter 1
        self._maximize((data.frequency, data.recency, data.T), start)
        return self


class BetaGeo(_PurchaseModel):
    """BG/NBD: purchases at rate λ ~ Gamma(r, α) while alive; after each purchase the
    customer drops out with probability p ~ Beta(a, b).

    Examples
    --------
    >>> model = BetaGeo().fit([2, 0, 5], [30.4, 0.0, 20.0], [38.9, 38.9, 38.9])  # doctest: +SKIP
    >>> model.conditional_expected_purchases(39, 2, 30.43, 38.86)  # doctest: +SKIP
    """

    parameter_names = ("r", "alpha", "a", "b")

    @staticmethod
    def _a3_a4(params, x, t_x, T, math: ArrayMath = NUMPY) -> tuple[Any, Any]:
        """The two terms of eq. 6's sum, in logs; A4 only for repeat buyers (else -inf)."""
        r, alpha, a, b = params
        a3 = -(r + x) * math.log(alpha + T)
        repeat = x > 0
        # The inner where keeps the unused branch finite: a NaN there would poison gradients.
        bx1 = math.where(repeat, b + x - 1, 1.0)
        a4 = math.where(
            repeat, math.log(a) - math.log(bx1) - (r + x) * math.log(alpha + t_x), -np.inf
        )
        return a3, a4

    @classmethod
    def _log_likelihood(cls, params, x, t_x, T, math: ArrayMath = NUMPY) -> Any:
        r, alpha, a, b = params
        # FHL (2005), eq. 6, with B(a+1, b+x-1)/B(a, b+x) = a / (b+x-1).
        a1 = math.gammaln(r + x) - math.gammaln(r) + r * math.log(alpha)
        a2 = math.betaln(a, b + x) - math.betaln(a, b)
        return a1 + a2 + math.logaddexp(*cls._a3_a4(params, x, t_x, T, math))

    @classmethod
    def _gradient(cls, params, x, t_x, T) -> np.ndarray:
        """d eq. 6 / d(r, α, a, b); A3 and A4 enter through their shares of exp(A3) + exp(A4)."""
        r, alpha, a, b = params
        a3, a4 = cls._a3_a4(params, x, t_x, T)
        bx1 = np.where(x > 0, b + x - 1, 1.0)
        share4 = np.exp(a4 - np.logaddexp(a3, a4))
        share3 = 1 - share4
        d_r = (
            digamma(r + x) - digamma(r) + np.log(alpha)
            - share3 * np.log(alpha + T) - share4 * np.log(alpha + t_x)
        )  # fmt: skip
        d_alpha = r / alpha - (r + x) * (share3 / (alpha + T) + share4 / (alpha + t_x))
        d_a = digamma(a + b) - digamma(a + b + x) + share4 / a
        d_b = (
            digamma(b + x) - digamma(a + b + x) - digamma(b) + digamma(a + b)
            - share4 / bx1
        )  # fmt: skip
        return np.stack([d_r, d_alpha, d_a, d_b], axis=1)

    def log_likelihood(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Each customer's log-likelihood under the fitted parameters."""
        self._check_fitted()
        data = Summary.of(frequency, recency, T)
        return self._log_likelihood(self._params, data.frequency, data.recency, data.T)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(alive | x, t_x, T): FHL (2005), eq. 11 of the technical appendix."""
        self._check_fitted()
        d = Summary.of(frequency, recency, T)
        r, alpha, a, b = self._params
        x = d.frequency
        odds = np.zeros_like(x)
        repeat = x > 0
        odds[repeat] = np.exp(
            np.log(a)
            - np.log(b + x[repeat] - 1)
            + (r + x[repeat]) * (np.log(alpha + d.T[repeat]) - np.log(alpha + d.recency[repeat]))
        )
        return 1.0 / (1.0 + odds)

    def probability_no_purchase(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T): gone, or alive and silent. A customer
        alive at T drops out only right after a purchase, so silence while alive has the
        probability E[exp(-λt)] under λ's posterior Gamma(r + x, α + T)."""
        alive = self.probability_alive(frequency, recency, T)
        r, alpha, _, _ = self._params
        d = Summary.of(frequency, recency, T)
        silent = ((alpha + d.T) / (alpha + d.T + t)) ** (r + d.frequency)
        return 1 - alive + alive * silent

    def expected_purchases(self, t: Any) -> np.ndarray:
        """E[X(t)] of a customer just acquired: FHL (2005), eq. 9."""
        self._check_fitted()
        r, alpha, a, b = self._params
        t = np.asarray(t, float)
        return (
            (a + b - 1)
            / (a - 1)
            * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        )

    def probability_of_purchases(self, count: int, t: Any) -> np.ndarray:
        """P(X(t) = ``count``): the chance that a customer just acquired makes exactly
        ``count`` repeat purchases in ``t`` periods, FHL (2005), eq. 8. Summed over a base's
        ages ``T`` it gives the expected number of customers per repeat count, the papers'
        check of the fit against the calibration histogram."""
        self._check_fitted()
        if count < 0 or count != int(count):
            raise ValueError(f"count must be a whole number 0 or more, got {count}")
        r, alpha, a, b = self._params
        t = np.asarray(t, float)
        log_stay = np.log(alpha) - np.log(alpha + t)  # ln α/(α+t)
        log_buy = np.log(t) - np.log(alpha + t) if count else 0.0  # ln t/(α+t)

        def log_poisson_gamma(j: int) -> np.ndarray:  # ln Γ(r+j)/(Γ(r) j!) (α/(α+t))^r ...^j
            terms = gammaln(r + j) - gammaln(r) - gammaln(j + 1) + r * log_stay
            return terms + (j * log_buy if j else 0.0)

        alive = np.exp(betaln(a, b + count) - betaln(a, b) + log_poisson_gamma(count))
        if count == 0:
            return alive
        below = sum(np.exp(log_poisson_gamma(j)) for j in range(count))
        gone = np.exp(betaln(a + 1, b + count - 1) - betaln(a, b)) * (1 - below)
        return alive + gone

    def conditional_expected_purchases(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> np.ndarray:
        """E[Y(t) | x, t_x, T], purchases in the next ``t`` periods: FHL (2005), eq. 10."""
        self._check_fitted()
        d = Summary.of(np.atleast_1d(frequency), np.atleast_1d(recency), np.atleast_1d(T))
        t = np.asarray(t, float)
        if (t < 0).any():
            raise ValueError("t must be 0 or more")
        r, alpha, a, b = self._params
        x, t_x, age = d.frequency, d.recency, d.T
        head = (a + b + x - 1) / (a - 1)
        tail = 1 - ((alpha + age) / (alpha + age + t)) ** (r + x) * hyp2f1(
            r + x, b + x, a + b + x - 1, t / (alpha + age + t)
        )
        repeat = (x > 0).astype(float)
        odds = (
            repeat * (a / np.maximum(b + x - 1, 1e-12)) * ((alpha + age) / (alpha + t_x)) ** (r + x)
        )
        return head * tail / (1 + odds)


class ParetoNBD(_PurchaseModel):
    """Pareto/NBD: purchases at rate λ ~ Gamma(r, α) while alive, a lifetime exponential
    with rate μ ~ Gamma(s, β)."""

    parameter_names = ("r", "alpha", "s", "beta")

    @staticmethod
    def _log_a0(params, x, t_x, T) -> np.ndarray:
        """ln A0 of Fader and Hardie (2005) eq. 2 (the cases α ≥ β and α < β)."""
        r, alpha, s, beta = params
        if alpha < beta:
            low, high, second = alpha, beta, r + x
        else:
            low, high, second = beta, alpha, s + 1
        rsx = r + s + x
        f1 = hyp2f1(rsx, second, rsx + 1, (high - low) / (high + t_x))
        f2 = hyp2f1(rsx, second, rsx + 1, (high - low) / (high + T))
        q1, q2 = high + t_x, high + T
        # F1 / q1^rsx - F2 / q2^rsx, without overflow: over a common q1^rsx q2^rsx.
        sign = np.ones_like(x)
        return logsumexp(
            [np.log(f1) + rsx * np.log(q2), np.log(f2) + rsx * np.log(q1)],
            axis=0,
            b=[sign, -sign],
        ) - rsx * np.log(q1 * q2)

    @classmethod
    def _log_likelihood(cls, params, x, t_x, T) -> np.ndarray:
        r, alpha, s, beta = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        a2 = np.logaddexp(
            -(r + x) * np.log(alpha + T) - s * np.log(beta + T),
            np.log(s) - np.log(r + s + x) + cls._log_a0(params, x, t_x, T),
        )
        return a1 + a2

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """P(alive | x, t_x, T): Fader and Hardie (2005), eq. 18."""
        self._check_fitted()
        d = Summary.of(frequency, recency, T)
        r, alpha, s, beta = self._params
        x = d.frequency
        log_odds = (
            np.log(s / (r + s + x))
            + (r + x) * np.log(alpha + d.T)
            + s * np.log(beta + d.T)
            + self._log_a0(self._params, x, d.recency, d.T)
        )
        return np.exp(-np.logaddexp(0, log_odds))

    def conditional_expected_purchases(
        self, t: Any, frequency: Any, recency: Any, T: Any
    ) -> np.ndarray:
        """E[Y(t) | x, t_x, T]: Fader and Hardie (2005), eq. 22."""
        self._check_fitted()
        r, alpha, s, beta = self._params
        d = Summary.of(np.atleast_1d(frequency), np.atleast_1d(recency), np.atleast_1d(T))
        t = np.asarray(t, float)
        x, age = d.frequency, d.T
        rate = (r + x) * (beta + age) / ((alpha + age) * (s - 1))
        share = 1 - ((beta + age) / (beta + age + t)) ** (s - 1)
        return rate * share * self.probability_alive(x, d.recency, age)


class GammaGamma(_MaximumLikelihood):
    """Spend per transaction: each customer's mean spend ν ~ Gamma(q, γ), transactions
    Gamma(p, ν); fitted on repeat buyers' average repeat spend ``z̄`` over ``x`` purchases."""

    parameter_names = ("p", "q", "gamma")

    def fit(self, frequency: Any, monetary_value: Any) -> Self:
        x, zbar = self._data(frequency, monetary_value)
        self._maximize((x, zbar), np.zeros(3))
        return self

    @staticmethod
    def _data(frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
        x = _column("frequency", frequency)
        zbar = _column("monetary_value", monetary_value)
        if len(x) != len(zbar):
            raise ValueError(
                f"frequency and monetary_value must have one length, got {len(x)} and {len(zbar)}"
            )
        _check(x <= 0, "frequency", x, "must be more than 0: fit on repeat buyers only")
        _check(x != np.round(x), "frequency", x, "must be a whole number of repeat purchases")
        _check(zbar <= 0, "monetary_value", zbar, "must be more than 0")
        return x, zbar

    @staticmethod
    def _log_likelihood(params, x, zbar, math: ArrayMath = NUMPY) -> Any:
        p, q, gamma = params
        # FHL (2005b), eq. 3: z̄ | p, q, γ, x, rearranged to stay exact where p is large and
        # γ small (the limit of spend that never varies within a customer, which the data
        # may not rule out): there lgamma(px + q) - lgamma(px) loses every digit (at px =
        # 1e20 it is off by 137), while log B(px, q) and log1p keep them.
        px = p * x
        return (
            -math.betaln(px, q)
            - q * math.log1p(x * zbar / gamma)
            - px * math.log1p(gamma / (x * zbar))
            - math.log(zbar)
        )

    @staticmethod
    def _gradient(params, x, zbar) -> np.ndarray:
        p, q, gamma = params
        px = p * x
        common = digamma(px + q)
        d_p = x * (common - digamma(px) + np.log(zbar) + np.log(x) - np.log(gamma + x * zbar))
        d_q = common - digamma(q) + np.log(gamma) - np.log(gamma + x * zbar)
        d_gamma = q / gamma - (px + q) / (gamma + x * zbar)
        return np.stack([d_p, d_q, d_gamma], axis=1)

    def conditional_expected_spend(self, frequency: Any, monetary_value: Any) -> np.ndarray:
        """E[M | p, q, γ, x, z̄]: FHL (2005b), eq. 5; a customer with no repeat purchase
        (x = 0) gets the population mean p γ / (q - 1)."""
        self._check_fitted()
        p, q, gamma = self._params
        x = _column("frequency", frequency)
        zbar = _column("monetary_value", monetary_value)
        _check(x < 0, "frequency", x, "must be 0 or more")
        _check(p * x + q <= 1, "frequency", x, f"has no finite expected spend at q = {q:.4g}")
        return p * (gamma + x * zbar) / (p * x + q - 1)


def discounted_lifetime_value(
    model: BetaGeo | ParetoNBD,
    spend: np.ndarray,
    frequency: Any,
    recency: Any,
    T: Any,
    *,
    periods: int,
    period_length: float,
    discount_rate: float,
) -> np.ndarray:
    """Discounted value of each customer's next ``periods`` periods (of ``period_length``
    model time units, e.g. 4.345 weeks for months): purchases expected in each period times
    the expected spend, discounted by ``discount_rate`` per period."""
    if periods < 1 or period_length <= 0 or discount_rate < 0:
        raise ValueError("periods must be >= 1, period_length > 0 and discount_rate >= 0")
    value = np.zeros(len(np.atleast_1d(frequency)))
    previous = np.zeros_like(value)
    for k in range(1, periods + 1):
        expected = model.conditional_expected_purchases(k * period_length, frequency, recency, T)
        value += (expected - previous) * spend / (1 + discount_rate) ** k
        previous = expected
    return value
