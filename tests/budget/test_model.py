"""The media-mix model: recovery of a published truth (MAP), NUTS end to end on simulated
channels, seeding, warm-started re-fits, save/load, carry-over in forecasts, bad inputs.

JAX compiles once per model structure and padded input shape, so the fits below share three
shapes: the PyMC-Marketing example (179 weeks), 60 and 104 simulated weeks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailor.budget.data import MediaData, MediaDataError, read_csv
from tailor.budget.model import (
    PAD_PERIODS,
    MediaMixModel,
    MMMConfig,
    _Design,
    _effect_coordinates,
    _numpyro_model,
    _structure,
)
from tailor.budget.posterior import compiled
from tailor.budget.transforms import saturate
from tailor.datasets.base import DataNotFoundError, dataset_path
from tailor.datasets.simulate.ad_channels import simulate_channels

pytest.importorskip("numpyro")

SMALL = MMMConfig(chains=2, draws=200, warmup=200)
TRUTH = {"alpha": (0.4, 0.2), "lam": (4.0, 3.0), "beta": (3.0, 2.0)}
"""PyMC-Marketing's example: y / 1000 = ... + beta * logistic(adstock(x); lam)."""


# --- fixtures (module scope: each fit runs once) ---------------------------------------------


@pytest.fixture(scope="module")
def example() -> MediaData:
    try:
        path = dataset_path("mmm-pymc-marketing", "mmm_example.csv")
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")
    return read_csv(
        path,
        date_col="date_week",
        target_col="y",
        spend_cols=["x1", "x2"],
        control_cols=["event_1", "event_2"],
        target_scale=1000,
    )


@pytest.fixture(scope="module")
def example_fit(example) -> MediaMixModel:
    return MediaMixModel(MMMConfig()).fit(example, method="map")


@pytest.fixture(scope="module")
def sim():
    return simulate_channels(channels=2, periods=60, seed=2)


@pytest.fixture(scope="module")
def map_fit(sim) -> MediaMixModel:
    return MediaMixModel(SMALL).fit(sim.data, method="map")


@pytest.fixture(scope="module")
def nuts_fit(sim, map_fit) -> MediaMixModel:
    # map_fit first: the first fit sets JAX up (one device per core) before it computes
    return MediaMixModel(SMALL).fit(sim.data, method="nuts")


# --- (a) MAP recovers the published truth ----------------------------------------------------


def test_map_recovers_the_example_truth(example_fit) -> None:
    model = example_fit
    assert model.problems() == [], model.problems()
    assert model.diagnostics_["converged"] and model.method_ == "map"
    mean = model.response("mean")
    assert mean.channels == ("x1", "x2")
    for name, tolerance in (("alpha", 0.10), ("lam", 0.15), ("beta", 0.15)):
        got, truth = getattr(mean, name), np.asarray(TRUTH[name])
        assert abs(got[0] / truth[0] - 1) < tolerance, (name, got, truth)  # x1
        assert abs(got[1] / truth[1] - 1) < 0.25, (name, got, truth)  # x2
    summary = model.summary()
    for name, truth in TRUTH.items():
        lo, hi = np.asarray(summary[name]["hdi"])
        assert np.all(lo <= truth) and np.all(truth <= hi), (name, lo, hi)
        assert np.all(np.asarray(summary[name]["sd"]) > 0)
        assert "r_hat" not in summary[name]  # MAP: no chains to compare


def test_parameter_draws_are_in_data_units(example, example_fit) -> None:
    """The model computes on scaled data; each draw as a ChannelResponse (data units, plain
    NumPy transforms) must give the model's own contributions."""
    model = example_fit
    responses = model.response_draws(count=model.config.laplace_draws)
    assert len(responses) == model.config.laplace_draws
    by_draw = np.mean([r.contributions(example.spend) for r in responses], axis=0)
    np.testing.assert_allclose(by_draw, model.contributions(example)["mean"], rtol=1e-9)
    draws = model.parameter_draws()
    np.testing.assert_allclose(draws["beta"], model.draws_["beta"] * model.scales_.target)
    np.testing.assert_allclose(draws["lam"], model.draws_["lam"] / example.spend.max(axis=0))
    np.testing.assert_array_equal(draws["alpha"], model.draws_["alpha"])  # unitless
    # the contributions and the baseline make up the mean prediction
    parts = model.contributions(example)
    predicted = model.predict(example)["mean"]
    np.testing.assert_allclose(parts["mean"].sum(axis=1) + parts["baseline"], predicted)


def test_response_summaries(example_fit) -> None:
    lo, median, hi = (example_fit.response(q) for q in (0.03, "median", 0.97))
    assert np.all(lo.beta < median.beta) and np.all(median.beta < hi.beta)
    assert median.l_max == 8 and median.adstock == "geometric"


# --- the padded, masked posterior -------------------------------------------------------------


def test_padding_is_masked_out(sim, map_fit) -> None:
    design = _Design(map_fit.scales_, SMALL, sim.data, 0)
    y = sim.data.target / map_fit.scales_.target
    padded = design.padded(y, map_fit.beta_scale_)
    size = padded["t"].shape[0]
    assert size % PAD_PERIODS == 0 and size >= 60 and size - 60 < PAD_PERIODS
    assert padded["lags"].shape == (SMALL.l_max, size, 2)
    assert padded["mask"].sum() == 60 and not padded["mask"][60:].any()
    # the program the fit compiled
    posterior = compiled(_structure(SMALL), lambda: _numpyro_model(SMALL), padded)
    z = np.random.default_rng(0).normal(0.0, 0.3, posterior.size)
    value, grad = posterior.value_and_grad(z, padded)
    # whatever the padded periods hold, the posterior is the same
    mask = padded["mask"]
    garbage = dict(
        padded,
        y=np.where(mask, padded["y"], 1e6),
        t=np.where(mask, padded["t"], -50.0),
        lags=np.where(mask[None, :, None], padded["lags"], 7.0),
        controls=np.where(mask[:, None], padded["controls"], 3.0),
    )
    value_g, grad_g = posterior.value_and_grad(z, garbage)
    assert float(value_g) == pytest.approx(float(value), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad_g), np.asarray(grad), rtol=1e-10, atol=1e-12)


# --- (b) NUTS end to end ---------------------------------------------------------------------


def test_nuts_end_to_end(sim, nuts_fit) -> None:
    model = nuts_fit
    d = model.diagnostics_
    assert d["method"] == "nuts" and {"r_hat", "ess", "divergences"} <= set(d)
    assert len(model.draws_["beta"]) == SMALL.chains * SMALL.draws
    for name in ("alpha", "lam", "beta"):
        assert len(d["r_hat"][name]) == 2 and len(d["ess"][name]) == 2
    r_hat = np.concatenate([np.atleast_1d(v) for v in d["r_hat"].values()])
    ess = np.concatenate([np.atleast_1d(v) for v in d["ess"].values()])
    assert np.all(r_hat < 1.1) and np.all(ess > 20)  # a short run, but a mixed one
    assert 0 <= d["divergences"] < 0.05 * SMALL.chains * SMALL.draws
    # problems() reports exactly what the diagnostics show
    problems = model.problems()
    assert any("R-hat" in p for p in problems) == bool((r_hat > 1.01).any())
    assert any("effective draws" in p for p in problems) == bool((ess < 200).any())
    assert any("divergent" in p for p in problems) == bool(d["divergences"])
    summary = model.summary()
    assert summary["beta"]["r_hat"] == d["r_hat"]["beta"]
    # the channels' contributions: the 94% intervals hold the truth in most periods
    parts = model.contributions(sim.data)
    truth = sim.true_contributions
    inside = (parts["lo"] <= truth) & (truth <= parts["hi"])
    assert np.all(inside.mean(axis=0) >= 0.8), inside.mean(axis=0)
    roi = model.roi(sim.data)
    for c, name in enumerate(sim.data.channels):
        assert roi[name]["roi_lo"] <= sim.roi[c] <= roi[name]["roi_hi"], (name, roi[name])
        assert roi[name]["spend"] == pytest.approx(sim.data.spend[:, c].sum())


@pytest.mark.parametrize("saturation", ["logistic", "hill"])
def test_nuts_samples_in_coordinates_with_the_same_posterior(sim, map_fit, saturation) -> None:
    """The sampler's coordinates swap each log beta for the log of the channel's effect at its
    typical spend: a shift by a function of the other coordinates, so the map inverts exactly
    and its Jacobian determinant is 1 (the posterior density is unchanged)."""
    import jax
    import jax.numpy as jnp

    config = MMMConfig(saturation=saturation, chains=1, draws=10, warmup=10)
    model = MediaMixModel(config)
    model.fit(sim.data, method="map")
    inputs = _Design(model.scales_, config, sim.data, 0).padded(
        sim.data.target / model.scales_.target, model.beta_scale_
    )
    inputs["lags"][0][:, 1] = 0.0  # a channel that never spent: its shift stays finite
    posterior = compiled(_structure(config), lambda: _numpyro_model(config), inputs)
    to_z, from_z = _effect_coordinates(posterior, inputs, config)
    z = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.5, (3, posterior.size)))
    np.testing.assert_allclose(np.asarray(from_z(to_z(z))), np.asarray(z), atol=1e-12)
    for row in z:
        jacobian = np.asarray(jax.jacfwd(to_z)(row))
        assert np.linalg.slogdet(jacobian) == pytest.approx((1.0, 0.0), abs=1e-12)
    # the new coordinate is log(beta * saturate(typical spend)) of the same parameters
    params = posterior.constrain(np.asarray(z))
    w = np.asarray(from_z(z))
    spend = inputs["lags"][0][inputs["mask"]]
    typical = np.array([spend[spend[:, 0] > 0, 0].mean(), 1.0])
    slope = params.get("slope")
    effect = params["beta"] * saturate(saturation, typical, params["lam"], slope)
    beta_at = np.flatnonzero(~np.isclose(w, np.asarray(z)).all(axis=0))
    assert len(beta_at) == 2
    np.testing.assert_allclose(w[:, beta_at], np.log(effect), rtol=1e-10)
    assert np.isfinite(w).all()


# --- (c) seeded ------------------------------------------------------------------------------


def _same_draws(a: MediaMixModel, b: MediaMixModel) -> None:
    assert a.draws_.keys() == b.draws_.keys()
    for k in a.draws_:
        np.testing.assert_array_equal(a.draws_[k], b.draws_[k], err_msg=k)


def test_map_is_seeded(sim, map_fit) -> None:
    _same_draws(MediaMixModel(SMALL).fit(sim.data, method="map"), map_fit)
    other = MediaMixModel(MMMConfig(chains=2, draws=200, warmup=200, seed=1))
    other.fit(sim.data, method="map")
    assert not np.array_equal(other.draws_["beta"], map_fit.draws_["beta"])
    np.testing.assert_allclose(other.mode_["beta"], map_fit.mode_["beta"])  # same mode


def test_nuts_is_seeded(sim, nuts_fit) -> None:
    _same_draws(MediaMixModel(SMALL).fit(sim.data, method="nuts"), nuts_fit)


# --- (d) a warm-started re-fit on one more week ----------------------------------------------


def test_warm_start_is_stable_and_agrees_with_a_cold_fit() -> None:
    data = simulate_channels(channels=2, periods=104, seed=2).data
    before = MediaMixModel(SMALL).fit(data.head(103), method="map")
    warm = MediaMixModel(SMALL).fit(data, method="map", warm_start=before)
    cold = MediaMixModel(SMALL).fit(data, method="map")
    assert warm.diagnostics_["warm_start"] and not cold.diagnostics_["warm_start"]
    assert warm.diagnostics_["converged"] and cold.diagnostics_["converged"]
    assert warm.diagnostics_["iterations"] < cold.diagnostics_["iterations"]
    roi = {name: m.roi(data) for name, m in (("before", before), ("warm", warm), ("cold", cold))}
    for channel in data.channels:
        warm_roi = roi["warm"][channel]["roi"]
        assert warm_roi == pytest.approx(roi["before"][channel]["roi"], rel=0.03)
        assert warm_roi == pytest.approx(roi["cold"][channel]["roi"], rel=0.02)


# --- (e) save and load -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["map_fit", "nuts_fit"])
def test_save_load_round_trip(request, sim, tmp_path, which) -> None:
    model = request.getfixturevalue(which)
    folder = model.save(tmp_path / "mmm")
    assert {p.name for p in folder.iterdir()} == {"model.json", "posterior.npz"}
    loaded = MediaMixModel.load(folder)
    assert loaded.config == model.config and loaded.channels_ == model.channels_
    assert loaded.method_ == model.method_ and loaded.last_date_ == model.last_date_
    assert loaded.summary() == model.summary()
    assert loaded.problems() == model.problems()
    np.testing.assert_array_equal(loaded.history_, model.history_)
    future = sim.data.slice(50, 60)
    for got, expected in (
        (
            loaded.predict(future, history=loaded.history_),
            model.predict(future, history=model.history_),
        ),
        (loaded.contributions(sim.data), model.contributions(sim.data)),
    ):
        assert got.keys() == expected.keys()
        for key in got:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert loaded.roi(sim.data) == model.roi(sim.data)


def test_loading_what_is_not_a_model(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a saved media-mix model"):
        MediaMixModel.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a saved media-mix model"):
        MediaMixModel.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "something/else"}))
    np.savez(tmp_path / "posterior.npz", x=np.zeros(1))
    with pytest.raises(ValueError, match="format 'something/else'"):
        MediaMixModel.load(tmp_path)


# --- (f) carry-over into a forecast ----------------------------------------------------------


def test_history_changes_only_the_first_periods(sim, map_fit) -> None:
    data, l_max = sim.data, SMALL.l_max
    np.testing.assert_array_equal(map_fit.history_, data.spend[-(l_max - 1) :])
    later = data.slice(40, 60)
    alone = map_fit.predict(later)["mean"]
    carried = map_fit.predict(later, history=data.spend[:40])["mean"]
    # the spend before carries into the first l_max - 1 periods (more adstock: more effect)
    assert np.all(carried[: l_max - 1] > alone[: l_max - 1])
    np.testing.assert_allclose(carried[l_max - 1 :], alone[l_max - 1 :], rtol=1e-12)
    # with its full history, a stretch is forecast exactly as inside the whole series
    whole = map_fit.predict(data)["mean"]
    np.testing.assert_allclose(carried, whole[40:], rtol=1e-10)
    zeros = map_fit.predict(later, history=np.zeros((3, 2)))["mean"]
    np.testing.assert_allclose(zeros, alone, rtol=1e-12)


def test_predict_intervals(sim, map_fit) -> None:
    out = map_fit.predict(sim.data)
    assert set(out) == {"mean", "lo", "hi", "lo_obs", "hi_obs"}
    assert all(v.shape == (60,) for v in out.values())
    assert np.all(out["lo_obs"] <= out["lo"]) and np.all(out["lo"] <= out["mean"])
    assert np.all(out["mean"] <= out["hi"]) and np.all(out["hi"] <= out["hi_obs"])
    inside = (out["lo_obs"] <= sim.data.target) & (sim.data.target <= out["hi_obs"])
    assert inside.mean() >= 0.8


# --- (g) bad inputs --------------------------------------------------------------------------


def _renamed(data: MediaData, channels: tuple[str, ...]) -> MediaData:
    return MediaData(
        dates=data.dates,
        spend=data.spend,
        target=data.target,
        channels=channels,
        controls=data.controls,
        control_names=data.control_names,
    )


def test_bad_fit_arguments(sim, map_fit) -> None:
    model = MediaMixModel(SMALL)
    with pytest.raises(ValueError, match="method: 'vi'; use 'nuts' or 'map'"):
        model.fit(sim.data, method="vi")
    with pytest.raises(ValueError, match="warm_start applies to method='map' only"):
        model.fit(sim.data, method="nuts", warm_start=map_fit)
    with pytest.raises(ValueError, match="other channels or another configuration"):
        model.fit(_renamed(sim.data, ("tv", "radio")), method="map", warm_start=map_fit)
    with pytest.raises(ValueError, match="other channels or another configuration"):
        MediaMixModel(MMMConfig(l_max=4)).fit(sim.data, method="map", warm_start=map_fit)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.fit(sim.data, method="map", warm_start=MediaMixModel(SMALL))
    with pytest.raises(MediaDataError, match="only 10 periods"):
        model.fit(sim.data.head(10), method="map")
    assert not hasattr(model, "draws_")  # nothing was fitted by any of these


def test_predict_with_other_channels(sim, map_fit) -> None:
    with pytest.raises(ValueError, match=r"channels \['tv', 'radio'\].*differ from the fitted"):
        map_fit.predict(_renamed(sim.data, ("tv", "radio")))
    with pytest.raises(ValueError, match="differ from the fitted"):
        map_fit.contributions(_renamed(sim.data, ("social", "search")))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, d: m.predict(d),
        lambda m, d: m.contributions(d),
        lambda m, d: m.roi(d),
        lambda m, d: m.summary(),
        lambda m, d: m.problems(),
        lambda m, d: m.response(),
        lambda m, d: m.response_draws(),
        lambda m, d: m.parameter_draws(),
        lambda m, d: m.save("unused"),
    ],
    ids=[
        "predict",
        "contributions",
        "roi",
        "summary",
        "problems",
        "response",
        "response_draws",
        "parameter_draws",
        "save",
    ],
)
def test_unfitted_model_raises(sim, call) -> None:
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        call(MediaMixModel(SMALL), sim.data)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"adstock": "linear"}, "adstock"),
        ({"saturation": "tanh"}, "saturation"),
        ({"l_max": 0}, "l_max"),
        ({"l_max": 53}, "l_max"),
        ({"yearly_seasonality": 11}, "yearly_seasonality"),
        ({"chains": 0}, "chains"),
        ({"draws": 5}, "draws=5"),
        ({"laplace_draws": 9}, "laplace_draws=9"),
    ],
)
def test_config_validation(changes, field) -> None:
    with pytest.raises(ValueError, match=field):
        MMMConfig(**changes)


def test_spend_share_prior_scales_each_channels_beta_by_its_share(sim) -> None:
    with pytest.raises(ValueError, match="beta_prior"):
        MMMConfig(beta_prior="flat")  # type: ignore[arg-type]
    model = MediaMixModel(MMMConfig(beta_prior="spend_share")).fit(sim.data, method="map")
    share = sim.data.spend.sum(axis=0) / sim.data.spend.sum()
    np.testing.assert_allclose(model.beta_scale_, 2 * share)
    equal = MediaMixModel(MMMConfig()).fit(sim.data, method="map")
    np.testing.assert_allclose(equal.beta_scale_, [2.0, 2.0])
    # a tighter prior on the channel with less spend pulls its effect down, never up
    small = int(np.argmin(share))
    assert model.mode_["beta"][small] <= equal.mode_["beta"][small] + 1e-9
