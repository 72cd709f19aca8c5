"""Adstock and saturation against plain-loop references (NumPy and JAX), and the
ChannelResponse checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tailor.budget.transforms import (
    ChannelResponse,
    adstock_weights,
    apply_adstock,
    lagged,
    saturate,
)

jnp = pytest.importorskip("jax.numpy")

XPS = [pytest.param(np, id="numpy"), pytest.param(jnp, id="jax")]
# JAX may run in float32 (x64 is switched on by the model only)
RTOL = {np: 1e-12, jnp: 2e-5}


# --- the references: one number at a time ---------------------------------------------------


def reference_weight(kind: str, lag: int, alpha: float, theta: float | None) -> float:
    """Unnormalized weight of ``lag`` periods back (Jin et al. 2017, eqs. 1-3)."""
    if kind == "geometric":
        return alpha**lag
    if kind == "delayed":
        return alpha ** ((lag - theta) ** 2)
    # weibull PDF (shape alpha, scale theta) at lag + 1 periods
    z = (lag + 1) / theta
    return (alpha / theta) * z ** (alpha - 1) * math.exp(-(z**alpha))


def reference_adstock(
    kind: str,
    spend: np.ndarray,
    l_max: int,
    alpha: np.ndarray,
    theta: np.ndarray | None = None,
    history: np.ndarray | None = None,
) -> np.ndarray:
    """sum_l w(l) x_{t-l} / sum_l w(l), with x before period 0 taken from ``history``
    (oldest first) and 0 before that."""
    periods, channels = spend.shape
    history = np.zeros((0, channels)) if history is None else history
    out = np.zeros((periods, channels))
    for c in range(channels):
        th = None if theta is None else theta[c]
        weights = [reference_weight(kind, lag, alpha[c], th) for lag in range(l_max)]
        total = sum(weights)
        for t in range(periods):
            acc = 0.0
            for lag in range(l_max):
                back = t - lag
                if back >= 0:
                    x = spend[back, c]
                elif len(history) + back >= 0:
                    x = history[len(history) + back, c]
                else:
                    x = 0.0
                acc += weights[lag] * x
            out[t, c] = acc / total
    return out


def reference_saturation(
    kind: str, x: np.ndarray, lam: np.ndarray, slope: np.ndarray | None = None
) -> np.ndarray:
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = x[t, c]
            if kind == "logistic":
                out[t, c] = (1 - math.exp(-lam[c] * v)) / (1 + math.exp(-lam[c] * v))
            else:
                s, k = slope[c], lam[c]
                out[t, c] = v**s / (v**s + k**s)
    return out


# --- fixtures --------------------------------------------------------------------------------

ADSTOCK_CASES = {
    "geometric": (np.array([0.0, 0.3, 0.85]), None),
    "delayed": (np.array([0.2, 0.5, 0.9]), np.array([0.0, 1.5, 4.0])),
    "weibull": (np.array([0.5, 1.0, 2.5]), np.array([0.7, 2.0, 5.0])),
}


@pytest.fixture(scope="module")
def spend() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 50.0, (15, 3))
    x[3:6, 1] = 0.0  # a dark stretch
    return x


@pytest.fixture(scope="module")
def history() -> np.ndarray:
    return np.random.default_rng(8).gamma(2.0, 40.0, (4, 3))


def _np(a) -> np.ndarray:
    return np.asarray(a, dtype=float)


# --- adstock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("xp", XPS)
@pytest.mark.parametrize("kind", list(ADSTOCK_CASES))
@pytest.mark.parametrize("l_max", [1, 3, 6])
def test_adstock_matches_the_loop(xp, kind, l_max, spend) -> None:
    alpha, theta = ADSTOCK_CASES[kind]
    weights = adstock_weights(
        kind, l_max, xp.asarray(alpha), None if theta is None else xp.asarray(theta), xp=xp
    )
    got = apply_adstock(lagged(xp.asarray(spend), l_max, xp), weights, xp)
    expected = reference_adstock(kind, spend, l_max, alpha, theta)
    np.testing.assert_allclose(_np(got), expected, rtol=RTOL[xp], atol=1e-9)


@pytest.mark.parametrize("xp", XPS)
@pytest.mark.parametrize("kind", list(ADSTOCK_CASES))
@pytest.mark.parametrize("rows", [0, 2, 4])
def test_adstock_with_history_matches_the_loop(xp, kind, rows, spend, history) -> None:
    """History shorter than, equal to and longer than the l_max - 1 periods that matter."""
    alpha, theta = ADSTOCK_CASES[kind]
    l_max = 4
    past = history[len(history) - rows :]
    weights = adstock_weights(
        kind, l_max, xp.asarray(alpha), None if theta is None else xp.asarray(theta), xp=xp
    )
    got = apply_adstock(lagged(xp.asarray(spend), l_max, xp, xp.asarray(past)), weights, xp)
    expected = reference_adstock(kind, spend, l_max, alpha, theta, past)
    np.testing.assert_allclose(_np(got), expected, rtol=RTOL[xp], atol=1e-9)
    if rows:
        without = reference_adstock(kind, spend, l_max, alpha, theta)
        # the carry-over reaches the first l_max - 1 periods only, and only upward
        assert np.all(expected[: l_max - 1] >= without[: l_max - 1] - 1e-12)
        assert not np.allclose(expected[: l_max - 1], without[: l_max - 1])
        np.testing.assert_array_equal(expected[l_max - 1 :], without[l_max - 1 :])


def test_only_the_last_l_max_minus_one_history_rows_count(spend, history) -> None:
    alpha, _ = ADSTOCK_CASES["geometric"]
    weights = adstock_weights("geometric", 3, alpha)
    last_two = apply_adstock(lagged(spend, 3, np, history[-2:]), weights)
    everything = apply_adstock(lagged(spend, 3, np, history), weights)
    np.testing.assert_array_equal(last_two, everything)


def test_lagged_shape_and_content(spend, history) -> None:
    lags = lagged(spend, 3, np, history)
    assert lags.shape == (3, 15, 3)
    np.testing.assert_array_equal(lags[0], spend)
    np.testing.assert_array_equal(lags[1, 1:], spend[:-1])
    np.testing.assert_array_equal(lags[1, 0], history[-1])
    np.testing.assert_array_equal(lags[2, 0], history[-2])
    np.testing.assert_array_equal(lags[2, 1], history[-1])
    no_history = lagged(spend, 3)
    np.testing.assert_array_equal(no_history[2, :2], 0.0)


@pytest.mark.parametrize("xp", XPS)
@pytest.mark.parametrize("kind", list(ADSTOCK_CASES))
def test_weights_sum_to_one_and_follow_their_formula(xp, kind) -> None:
    alpha, theta = ADSTOCK_CASES[kind]
    l_max = 8
    weights = _np(
        adstock_weights(
            kind, l_max, xp.asarray(alpha), None if theta is None else xp.asarray(theta), xp=xp
        )
    )
    assert weights.shape == (3, l_max)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=RTOL[xp])
    assert np.all(weights >= 0)
    for c in range(3):
        raw = [
            reference_weight(kind, lag, alpha[c], None if theta is None else theta[c])
            for lag in range(l_max)
        ]
        np.testing.assert_allclose(weights[c], np.array(raw) / sum(raw), rtol=RTOL[xp], atol=1e-12)


def test_weight_shapes_are_what_the_names_say() -> None:
    geometric = adstock_weights("geometric", 6, np.array([0.5]))[0]
    np.testing.assert_allclose(geometric[1:] / geometric[:-1], 0.5)  # constant decay
    delayed = adstock_weights("delayed", 8, np.array([0.5]), np.array([3.0]))[0]
    assert int(np.argmax(delayed)) == 3  # the peak theta periods after the spend
    assert adstock_weights("geometric", 1, np.array([0.9]))[0].tolist() == [1.0]


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="adstock: unknown kind 'linear'"):
        adstock_weights("linear", 4, np.array([0.5]))
    with pytest.raises(ValueError, match="saturation: unknown kind 'tanh'"):
        saturate("tanh", np.ones((2, 1)), np.ones(1))


# --- saturation ------------------------------------------------------------------------------


@pytest.mark.parametrize("xp", XPS)
def test_logistic_matches_the_formula(xp, spend) -> None:
    lam = np.array([1e-3, 1e-2, 5e-2])
    got = saturate("logistic", xp.asarray(spend), xp.asarray(lam), xp=xp)
    np.testing.assert_allclose(
        _np(got), reference_saturation("logistic", spend, lam), rtol=RTOL[xp], atol=1e-9
    )
    assert float(_np(saturate("logistic", np.zeros((1, 1)), np.ones(1))).max()) == 0.0
    assert np.all(_np(got) < 1.0)


@pytest.mark.parametrize("xp", XPS)
def test_hill_matches_the_formula(xp, spend) -> None:
    half, slope = np.array([50.0, 100.0, 300.0]), np.array([0.7, 1.0, 3.0])
    got = saturate("hill", xp.asarray(spend), xp.asarray(half), xp.asarray(slope), xp=xp)
    expected = reference_saturation("hill", spend, half, slope)
    np.testing.assert_allclose(_np(got), expected, rtol=RTOL[xp], atol=1e-9)
    # K is the half-saturation point
    at_half = saturate("hill", half[None, :], half, slope)
    np.testing.assert_allclose(at_half, 0.5)


def test_hill_gradient_is_finite_where_nothing_was_spent() -> None:
    """A period without spend gives 0 and a finite gradient in every parameter, including
    what shapes the spend itself (the adstock's: d(x ** slope)/dx is infinite at 0 for a
    slope below 1, times dx = 0 gave NaN, which made Hill fits on flighted data fail)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    spend = jnp.asarray([[0.0, 0.0], [20.0, 0.0], [80.0, 5.0]])

    def total(lam, slope, carry):
        return saturate("hill", spend * carry, lam, slope, xp=jnp).sum()

    lam, slope, carry = jnp.asarray([50.0, 10.0]), jnp.asarray([0.7, 2.0]), jnp.asarray(0.9)
    value = saturate("hill", spend, lam, slope, xp=jnp)
    assert float(value[0, 0]) == 0.0 and float(value[1, 1]) == 0.0
    for grad in jax.grad(total, argnums=(0, 1, 2))(lam, slope, carry):
        assert np.isfinite(np.asarray(grad)).all()
        assert (np.abs(np.asarray(grad)) > 0).all()


# --- ChannelResponse -------------------------------------------------------------------------


def _response(**changes) -> ChannelResponse:
    values = {
        "channels": ("search", "tv"),
        "adstock": "delayed",
        "saturation": "hill",
        "l_max": 5,
        "alpha": np.array([0.4, 0.7]),
        "lam": np.array([80.0, 200.0]),
        "beta": np.array([30.0, 12.0]),
        "theta": np.array([0.0, 2.0]),
        "slope": np.array([1.0, 2.0]),
    }
    values.update(changes)
    return ChannelResponse(**values)


@pytest.mark.parametrize("xp", XPS)
@pytest.mark.parametrize("with_history", [False, True])
def test_contributions_compose_the_references(xp, with_history, spend, history) -> None:
    response = _response()
    x, past = spend[:, :2], history[:, :2] if with_history else None
    got = response.contributions(
        xp.asarray(x), history=None if past is None else xp.asarray(past), xp=xp
    )
    adstocked = reference_adstock("delayed", x, 5, response.alpha, response.theta, past)
    expected = response.beta * reference_saturation("hill", adstocked, response.lam, response.slope)
    np.testing.assert_allclose(_np(got), expected, rtol=RTOL[xp], atol=1e-9)


def test_json_round_trip() -> None:
    response = _response()
    again = ChannelResponse.from_json(response.to_json())
    assert again.channels == response.channels and again.l_max == 5
    for name in ("alpha", "lam", "beta", "theta", "slope"):
        np.testing.assert_array_equal(getattr(again, name), getattr(response, name))
    plain = ChannelResponse.from_json(
        _response(adstock="geometric", saturation="logistic", theta=None, slope=None).to_json()
    )
    assert plain.theta is None and plain.slope is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"adstock": "linear"}, "adstock"),
        ({"saturation": "tanh"}, "saturation"),
        ({"l_max": 0}, "l_max"),
        ({"alpha": np.array([0.4])}, "alpha"),
        ({"lam": np.array([1.0, 2.0, 3.0])}, "lam"),
        ({"beta": np.ones((2, 1))}, "beta"),
        ({"theta": np.array([1.0])}, "theta"),
        ({"slope": np.array(2.0)}, "slope"),
    ],
)
def test_validation_names_the_field(changes, field) -> None:
    with pytest.raises(ValueError, match=rf"^{field}"):
        _response(**changes)


def test_typical_spend_is_the_mean_over_the_periods_that_spent() -> None:
    from tailor.budget.transforms import typical_spend

    spend = np.array([[0.0, 0.0, 4.0], [10.0, 0.0, 0.0], [30.0, 0.0, 8.0]])
    np.testing.assert_array_equal(typical_spend(spend, never=1.0), [20.0, 1.0, 6.0])
    assert np.isnan(typical_spend(spend)[1])
