"""BG/NBD, Pareto/NBD and Gamma-Gamma: the papers' CDNOW figures, recovery of simulated
parameters, the analytic gradients against differences, and bad summaries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tailor.audience.lifetime_value import (
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    discounted_lifetime_value,
)

# Fader, Hardie and Lee (2005) and Fader and Hardie (2005), CDNOW 1/10 sample, 39 weeks.
BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def within(fitted: dict[str, float], published: dict[str, float], tolerance: float) -> None:
    for name, value in published.items():
        assert fitted[name] == pytest.approx(value, rel=tolerance), name


def columns(summary):
    return summary["frequency"], summary["recency"], summary["T"]


def test_bgnbd_reproduces_the_paper_on_cdnow(cdnow_summary):
    model = BetaGeo().fit(*columns(cdnow_summary))
    within(model.params_, BGNBD, 0.005)
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    assert round(float(model.conditional_expected_purchases(39, 2, 30.43, 38.86)[0]), 3) == 1.226
    # Standard errors from the Hessian, as lifetimes reports them for the same fit.
    within(model.standard_errors_, {"r": 0.0126, "alpha": 0.3782, "a": 0.1857, "b": 0.7054}, 0.01)


def test_paretonbd_reproduces_the_paper_on_cdnow(cdnow_summary):
    model = ParetoNBD().fit(*columns(cdnow_summary))
    within(model.params_, PARETO, 0.005)
    alive = model.probability_alive(*columns(cdnow_summary))
    assert ((alive > 0) & (alive <= 1)).all()
    assert alive[cdnow_summary["frequency"] == 0].max() < 1  # may have left before buying


def test_gamma_gamma_reproduces_the_paper_on_cdnow(cdnow_spend):
    repeat = cdnow_spend["x"] > 0
    assert repeat.sum() == 946
    model = GammaGamma().fit(cdnow_spend["x"][repeat], cdnow_spend["zbar"][repeat])
    within(model.params_, GAMMA_GAMMA, 0.005)
    spend = model.conditional_expected_spend([0, 10], [0, 40.0])
    p, q, gamma = (model.params_[k] for k in ("p", "q", "gamma"))
    assert spend[0] == pytest.approx(p * gamma / (q - 1))  # no repeat: the population mean
    assert spend[0] < spend[1] < 40  # shrunk from the customer's own mean towards it


def simulate_bgnbd(n, r, alpha, a, b, rng):
    """Customers of a BG/NBD world (FHL 2005, section 2), observed for T ~ U(20, 52) weeks."""
    T = rng.uniform(20, 52, n)
    rate = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1 / rate[i])
            if now > T[i]:
                break
            x[i] += 1
            t_x[i] = now
            if rng.random() < drop[i]:
                break
    return x, t_x, T


def test_bgnbd_recovers_the_parameters_of_a_simulated_population():
    truth = {"r": 0.8, "alpha": 6.0, "a": 1.5, "b": 4.0}
    x, t_x, T = simulate_bgnbd(6000, **truth, rng=np.random.default_rng(7))
    model = BetaGeo().fit(x, t_x, T)
    for name, value in truth.items():
        assert abs(model.params_[name] - value) < 3 * model.standard_errors_[name], name


def test_the_chance_of_each_purchase_count_matches_a_simulation_and_eq_9():
    truth = {"r": 0.8, "alpha": 6.0, "a": 1.5, "b": 4.0}
    model = BetaGeo.from_params(**truth)
    t = np.array([0.5, 10.0, 38.86, 100.0])
    chances = np.array([model.probability_of_purchases(k, t) for k in range(300)])
    np.testing.assert_allclose(chances.sum(axis=0), 1, rtol=1e-9)
    mean = (np.arange(300)[:, None] * chances).sum(axis=0)
    np.testing.assert_allclose(mean, model.expected_purchases(t), rtol=1e-7)  # 300 terms

    x, _, T = simulate_bgnbd(20000, **truth, rng=np.random.default_rng(11))
    for k in range(5):
        expected = model.probability_of_purchases(k, T).sum()
        observed = (x == k).sum()
        assert abs(observed - expected) < 4 * np.sqrt(expected), (k, observed, expected)
    with pytest.raises(ValueError, match="count"):
        model.probability_of_purchases(-1, 10.0)


def simulate_spend(n, p, q, gamma, rng):
    """Repeat buyers (1 to 7 repeat purchases) of a Gamma-Gamma world: x and mean spend."""
    x = rng.integers(1, 8, n).astype(float)
    nu = rng.gamma(q, 1 / gamma, n)
    zbar = np.array([rng.gamma(p, 1 / v, int(k)).mean() for v, k in zip(nu, x, strict=True)])
    return x, zbar


def test_gamma_gamma_recovers_the_parameters_of_a_simulated_population():
    p, q, gamma = 4.0, 5.0, 20.0
    x, zbar = simulate_spend(4000, p, q, gamma, np.random.default_rng(3))
    model = GammaGamma().fit(x, zbar)
    for name, value in {"p": p, "q": q, "gamma": gamma}.items():
        assert abs(model.params_[name] - value) < 3 * model.standard_errors_[name], name


def numeric_gradient(function, params, data, step=1e-6):
    columns_ = []
    for k in range(len(params)):
        up, down = params.copy(), params.copy()
        up[k] += step
        down[k] -= step
        columns_.append((function(up, *data) - function(down, *data)) / (2 * step))
    return np.stack(columns_, axis=1)


@pytest.mark.parametrize(
    ("model", "params", "data"),
    [
        (
            BetaGeo,
            np.array([0.3, 4.0, 0.8, 2.5]),
            (np.array([0.0, 1, 2, 7]), np.array([0.0, 3.0, 30.4, 20.0]), np.array([38.9] * 4)),
        ),
        (GammaGamma, np.array([6.0, 3.7, 15.0]), (np.array([1.0, 2, 9]), np.array([10, 35, 3.5]))),
    ],
)
def test_analytic_gradient_agrees_with_differences(model, params, data):
    analytic = model._gradient(params, *data)
    numeric = numeric_gradient(model._log_likelihood, params, data)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def paper_bgnbd(r, alpha, a, b, x, t_x, T):
    """FHL (2005) eq. 6 as printed: products of Gamma and Beta functions, no logs."""
    beta = lambda u, v: math.gamma(u) * math.gamma(v) / math.gamma(u + v)  # noqa: E731
    common = math.gamma(r + x) * alpha**r / math.gamma(r)
    value = beta(a, b + x) / beta(a, b) * common / (alpha + T) ** (r + x)
    if x > 0:
        value += beta(a + 1, b + x - 1) / beta(a, b) * common / (alpha + t_x) ** (r + x)
    return value


def test_log_space_likelihood_agrees_with_the_printed_equation():
    params = (0.243, 4.414, 0.793, 2.426)
    customers = [(0, 0.0, 38.86), (2, 30.43, 38.86), (5, 12.0, 30.0), (1, 1.71, 38.86)]
    x, t_x, T = (np.array(c, float) for c in zip(*customers, strict=True))
    ours = BetaGeo._log_likelihood(np.array(params), x, t_x, T)
    for row, (xi, txi, Ti) in enumerate(customers):
        assert ours[row] == pytest.approx(math.log(paper_bgnbd(*params, xi, txi, Ti)), rel=1e-10)


def paper_gamma_gamma(p, q, gamma, x, zbar):
    """FHL (2005b) eq. 3 as printed."""
    return (
        math.gamma(p * x + q) / (math.gamma(p * x) * math.gamma(q))
        * gamma**q * zbar ** (p * x - 1) * x ** (p * x)
        / (gamma + x * zbar) ** (p * x + q)
    )  # fmt: skip


def test_gamma_gamma_likelihood_agrees_with_the_printed_equation():
    params = (6.25, 3.74, 15.44)
    customers = [(1, 20.0), (2, 35.5), (4, 12.25), (9, 3.5)]
    x, zbar = (np.array(c, float) for c in zip(*customers, strict=True))
    ours = GammaGamma._log_likelihood(params, x, zbar)
    for row, (xi, zi) in enumerate(customers):
        assert ours[row] == pytest.approx(math.log(paper_gamma_gamma(*params, xi, zi)), rel=1e-10)


def test_gamma_gamma_likelihood_keeps_its_digits_where_spend_never_varies_within_a_customer():
    # As p grows with p*gamma = c held, z̄ = p/ν tends to InvGamma(q, scale c) whatever x is.
    # The textbook lgamma(px + q) - lgamma(px) lost every digit out there (at px = 1e20 it
    # was off by 137), which let a NUTS chain run off to p = 1e37.
    from scipy.stats import invgamma

    q, c = 3.5, 80.0
    x, zbar = np.array([1.0, 3, 12]), np.array([10.0, 25, 60])
    for p in (1e8, 1e20, 1e37):
        ours = GammaGamma._log_likelihood((p, q, c / p), x, zbar)
        np.testing.assert_allclose(ours, invgamma.logpdf(zbar, q, scale=c), rtol=1e-6)


def test_expected_purchases_grow_with_time_and_the_conditional_ones_with_activity():
    model = BetaGeo.from_params(**BGNBD)
    horizon = model.expected_purchases([1, 10, 39, 78])
    assert (np.diff(horizon) > 0).all() and horizon[0] > 0
    # A recent buyer is expected to buy more than one whose last purchase is long past.
    recent, lapsed = model.conditional_expected_purchases(39, [5, 5], [37, 5], [38, 38])
    assert recent > lapsed
    alive = model.probability_alive([0, 5, 5], [0, 37, 5], [38, 38, 38])
    assert alive[0] == 1 and alive[1] > alive[2]


def test_discounted_value_without_discount_is_expected_purchases_times_spend():
    model = BetaGeo.from_params(**BGNBD)
    args = ([2, 0], [30.43, 0], [38.86, 38.86])
    undiscounted = discounted_lifetime_value(
        model, np.array([20.0, 20.0]), *args, periods=12, period_length=4.0, discount_rate=0
    )
    expected = model.conditional_expected_purchases(48.0, *args) * 20
    np.testing.assert_allclose(undiscounted, expected)
    discounted = discounted_lifetime_value(
        model, np.array([20.0, 20.0]), *args, periods=12, period_length=4.0, discount_rate=0.01
    )
    assert (discounted < undiscounted).all()
    with pytest.raises(ValueError, match="periods must be >= 1"):
        discounted_lifetime_value(
            model, np.array([1.0]), [1], [1], [2], periods=0, period_length=4, discount_rate=0
        )


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, 2], [1.0, 5.0], [4.0, 4.0], r"recency\[1\] = 5.0 must not exceed T"),
        ([1, -1], [1.0, 0.0], [4.0, 4.0], r"frequency\[1\] = -1.0 must be 0 or more"),
        ([1.5], [1.0], [4.0], r"frequency\[0\] = 1.5 must be a whole number"),
        ([0, 0], [0.0, 2.0], [4.0, 4.0], r"recency\[1\] = 2.0 must be 0 for a customer"),
        ([2], [0.0], [4.0], r"recency\[0\] = 0.0 must be more than 0 when frequency"),
        ([0], [0.0], [-1.0], r"T\[0\] = -1.0 must be 0 or more"),
        ([1], [float("nan")], [3.0], r"recency\[0\] = nan must be a finite number"),
        ([1, 1], [1.0], [3.0, 3.0], "must have one length, got 2, 1 and 2"),
        ([], [], [], "no customers"),
    ],
)
def test_bad_summaries_name_the_field_and_the_row(frequency, recency, T, message):
    for model in (BetaGeo(), ParetoNBD()):
        with pytest.raises(ValueError, match=message):
            model.fit(frequency, recency, T)


def test_gamma_gamma_refuses_customers_without_repeat_purchases_and_free_ones():
    with pytest.raises(ValueError, match=r"frequency\[1\] = 0.0 must be more than 0: fit on"):
        GammaGamma().fit([2, 0], [10.0, 0.0])
    with pytest.raises(ValueError, match=r"monetary_value\[0\] = 0.0 must be more than 0"):
        GammaGamma().fit([2], [0.0])


def test_unfitted_models_say_so_and_saved_ones_come_back(tmp_path, cdnow_summary):
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        BetaGeo().probability_alive([1], [1.0], [2.0])
    model = BetaGeo().fit(*columns(cdnow_summary))
    again = BetaGeo.load(model.save(tmp_path / "bgnbd.json"))
    assert again.params_ == model.params_ and again.standard_errors_ == model.standard_errors_
    np.testing.assert_array_equal(
        again.conditional_expected_purchases(39, *columns(cdnow_summary)),
        model.conditional_expected_purchases(39, *columns(cdnow_summary)),
    )
    with pytest.raises(ValueError, match="does not hold a saved ParetoNBD"):
        ParetoNBD.load(tmp_path / "bgnbd.json")
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        BetaGeo.from_params(r=1, alpha=1, a=1)
    with pytest.raises(ValueError, match="must be positive"):
        BetaGeo.from_params(r=1, alpha=-1, a=1, b=1)


def test_probability_of_no_purchase_runs_from_one_to_the_probability_of_being_gone():
    model = BetaGeo.from_params(**BGNBD)
    args = ([3, 0], [20.0, 0.0], [38.0, 38.0])
    alive = model.probability_alive(*args)
    np.testing.assert_allclose(model.probability_no_purchase(0.0, *args), 1.0)
    later = [model.probability_no_purchase(t, *args) for t in (1.0, 13.0, 52.0, 1e30)]
    assert all((a > b).all() for a, b in itertools.pairwise(later))
    np.testing.assert_allclose(later[-1], 1 - alive, atol=1e-3)


def test_fits_converge_on_online_retail_without_a_penalizer():
    from datetime import date

    from tailor.audience.rfm import Periods, customer_summary
    from tailor.datasets.base import DataNotFoundError
    from tailor.datasets.online_retail import load_online_retail

    try:
        purchases = load_online_retail().events
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")
    summary = customer_summary(purchases, Periods(date(2011, 12, 9)))
    x, t_x, T = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    for model in (BetaGeo().fit(x, t_x, T), ParetoNBD().fit(x, t_x, T)):
        assert np.isfinite(model.log_likelihood_)
        assert all(np.isfinite(v) and v > 0 for v in model.standard_errors_.values())
    spend = summary["monetary_value"].to_numpy()
    repeat = (x > 0) & (spend > 0)
    gamma_gamma = GammaGamma().fit(x[repeat], spend[repeat])
    assert all(np.isfinite(v) and v > 0 for v in gamma_gamma.standard_errors_.values())


def test_customers_first_seen_on_the_last_day_add_nothing_to_the_likelihood(cdnow_summary):
    x, t_x, T = columns(cdnow_summary)
    base = BetaGeo().fit(x, t_x, T)
    today = BetaGeo().fit(np.r_[x, 0, 0], np.r_[t_x, 0, 0], np.r_[T, 0, 0])
    assert today.params_ == pytest.approx(base.params_, rel=1e-4)
    assert today.probability_alive([0], [0.0], [0.0])[0] == 1


def test_customers_who_do_not_differ_leave_parameters_at_their_bound_and_predictions_finite():
    """One purchase rate for all, nobody leaving: the maximum lies at 0 or infinity, where the
    predictions would overflow; the fit stops at the bound and says so."""
    rng = np.random.default_rng(5)
    T = rng.uniform(30, 52, 400)
    purchases = [np.sort(rng.uniform(0, t, rng.poisson(0.1 * t))) for t in T]
    x = np.array([max(len(p) - 1, 0) for p in purchases], float)
    t_x = np.array([p[-1] - p[0] if len(p) > 1 else 0.0 for p in purchases])
    age = np.array([t - p[0] if len(p) else t for p, t in zip(purchases, T, strict=True)])
    model = BetaGeo().fit(x, t_x, age)
    assert model.at_bound_
    assert all(abs(math.log(v)) <= 10 + 1e-6 for v in model.params_.values())
    assert np.isfinite(model.conditional_expected_purchases(13, x, t_x, age)).all()
