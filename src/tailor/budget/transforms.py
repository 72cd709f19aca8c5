"""How spend becomes effect: carry-over (adstock) and diminishing returns (saturation).

One set of formulas serves the model (JAX, inside NumPyro), the optimizer (JAX, for its
gradients) and the simulator and reports (NumPy): every function takes the array module as
``xp``. Shapes: spend is ``(T, C)`` (periods × channels), parameters are ``(C,)``.

Adstock follows Jin et al. (2017), "Bayesian Methods for Media Mix Modeling with Carryover and
Shape Effects" (Google), eqs. 1-3: the effect of period t is a weighted sum of the spend of
periods t, t-1, ..., t-L+1,

    adstock(x)_t = sum_l w(l) x_{t-l} / sum_l w(l)        (normalized, as PyMC-Marketing's
                                                           ``normalize=True``)

with geometric weights w(l) = alpha^l, delayed weights w(l) = alpha^((l - theta)^2) (a peak
theta periods after the spend), or Weibull-PDF weights (shape k, scale lambda, in periods).
Saturation is logistic, (1 - e^(-lam x)) / (1 + e^(-lam x)) (PyMC-Marketing's
``logistic_saturation``), or Hill, x^s / (x^s + K^s) (Jin et al., eq. 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

ADSTOCKS = ("geometric", "delayed", "weibull")
SATURATIONS = ("logistic", "hill")
Adstock = Literal["geometric", "delayed", "weibull"]
Saturation = Literal["logistic", "hill"]


def check_forms(adstock: str, saturation: str) -> None:
    """A ValueError naming the field when either form is not one tailor knows."""
    if adstock not in ADSTOCKS:
        raise ValueError(f"adstock: {adstock!r}; use one of {', '.join(ADSTOCKS)}")
    if saturation not in SATURATIONS:
        raise ValueError(f"saturation: {saturation!r}; use one of {', '.join(SATURATIONS)}")


def lagged(spend: Any, l_max: int, xp: Any = np, history: Any = None) -> Any:
    """``(L, T, C)``: spend shifted by 0..L-1 periods. Before the first period the spend is
    ``history`` (``(H, C)``, oldest first: the carry-over in flight) where given, else 0."""
    t, c = spend.shape
    if history is None:
        history = xp.zeros((0, c), dtype=spend.dtype)
    pad = l_max - 1
    known = history[max(history.shape[0] - pad, 0) :]
    zeros = xp.zeros((pad - known.shape[0], c), dtype=spend.dtype)
    padded = xp.concatenate([zeros, known, spend], axis=0)
    return xp.stack([padded[pad - lag : pad - lag + t] for lag in range(l_max)])


def adstock_weights(kind: Adstock, l_max: int, alpha: Any, theta: Any = None, xp: Any = np) -> Any:
    """``(C, L)`` normalized lag weights. ``alpha`` is the decay rate (geometric, delayed) or
    the Weibull shape; ``theta`` the delay (delayed) or the Weibull scale."""
    lags = xp.arange(l_max, dtype=float)[None, :]
    alpha = xp.asarray(alpha)[:, None]
    if kind == "geometric":
        weights = alpha**lags
    elif kind == "delayed":
        weights = alpha ** ((lags - xp.asarray(theta)[:, None]) ** 2)
    elif kind == "weibull":
        shape, scale = alpha, xp.asarray(theta)[:, None]
        z = (lags + 1.0) / scale  # lag 0 is the first period: the PDF at 0 is 0 or infinite
        weights = (shape / scale) * z ** (shape - 1) * xp.exp(-(z**shape))
    else:
        raise ValueError(f"adstock: unknown kind {kind!r}; use one of {', '.join(ADSTOCKS)}")
    return weights / weights.sum(axis=1, keepdims=True)


def apply_adstock(lags: Any, weights: Any, xp: Any = np) -> Any:
    """``(T, C)`` adstocked spend from :func:`lagged` spend and ``(C, L)`` weights."""
    return xp.einsum("ltc,cl->tc", lags, weights)


def saturate(kind: Saturation, x: Any, lam: Any, slope: Any = None, xp: Any = np) -> Any:
    """Saturated effect in (0, 1). Logistic: ``lam`` is the curvature per unit of x. Hill:
    ``lam`` is the half-saturation point K and ``slope`` the shape s."""
    if kind == "logistic":
        e = xp.exp(-lam * x)
        return (1.0 - e) / (1.0 + e)
    if kind == "hill":
        # 0 ** slope has a NaN derivative in slope (0 * log 0): periods without spend would
        # poison the gradient of every fit, so they take the power of 1 and are zeroed after.
        spent = x > 0
        xs = xp.where(spent, xp.where(spent, x, 1.0) ** slope, 0.0)
        return xs / (xs + lam**slope)
    raise ValueError(f"saturation: unknown kind {kind!r}; use one of {', '.join(SATURATIONS)}")


def typical_spend(spend: np.ndarray, *, never: float = np.nan) -> np.ndarray:
    """Each channel's mean spend over the periods it spent in (``(T, C)`` → ``(C,)``);
    ``never`` for a channel that spent in none."""
    spend = np.asarray(spend, dtype=float)
    spent = spend > 0
    count = spent.sum(axis=0)
    total = np.where(spent, spend, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), never)


def settled_change(
    kind: Saturation,
    x: Any,
    delta_x: Any,
    beta: Any,
    lam: Any,
    slope: Any = None,
    xp: Any = np,
) -> Any:
    """The change of a channel's effect per period when its spend per period moves from ``x``
    to ``x + delta_x`` and stays there until the carry-over settles (normalized adstock of a
    constant spend is that spend): what a lift test measures."""
    return beta * (
        saturate(kind, x + delta_x, lam, slope, xp=xp) - saturate(kind, x, lam, slope, xp=xp)
    )


@dataclass(frozen=True)
class ChannelResponse:
    """Everything that turns a spend plan into channel effects, in the data's own units.

    ``beta`` is the effect (in target units per period) of a fully saturated channel;
    ``lam``/``slope`` act on adstocked spend in spend units. The fitted model gives one of
    these per posterior summary (mean or a quantile); the simulator keeps its truth in one.
    """

    channels: tuple[str, ...]
    adstock: Adstock
    saturation: Saturation
    l_max: int
    alpha: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    theta: np.ndarray | None = None
    slope: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_forms(self.adstock, self.saturation)
        if self.l_max < 1:
            raise ValueError(f"l_max must be at least 1, got {self.l_max}")
        c = len(self.channels)
        for name in ("alpha", "lam", "beta", "theta", "slope"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (c,):
                raise ValueError(f"{name}: expected {c} values (one per channel), got {value!r}")

    def contributions(self, spend: Any, history: Any = None, xp: Any = np) -> Any:
        """``(T, C)`` effect of each channel per period for ``spend`` ``(T, C)``, with
        ``history`` (``(H, C)`` spend of the periods just before, oldest first) carried in."""
        weights = adstock_weights(self.adstock, self.l_max, self.alpha, self.theta, xp=xp)
        adstocked = apply_adstock(lagged(spend, self.l_max, xp, history), weights, xp)
        return self.beta * saturate(self.saturation, adstocked, self.lam, self.slope, xp=xp)

    def with_values(self, **values: np.ndarray) -> ChannelResponse:
        return replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channels": list(self.channels),
            "adstock": self.adstock,
            "saturation": self.saturation,
            "l_max": self.l_max,
        }
        for name in ("alpha", "lam", "beta", "theta", "slope"):
            value = getattr(self, name)
            out[name] = None if value is None else [float(v) for v in value]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelResponse:
        arrays = {
            name: None if data.get(name) is None else np.asarray(data[name], float)
            for name in ("alpha", "lam", "beta", "theta", "slope")
        }
        return cls(
            channels=tuple(data["channels"]),
            adstock=data["adstock"],
            saturation=data["saturation"],
            l_max=int(data["l_max"]),
            **arrays,
        )
