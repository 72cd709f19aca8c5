"""The ad-channel simulator: reproducible, its truth adds up, its spend looks like spend, and
its events are valid and read back into the same media data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailor.budget.data import from_events
from tailor.datasets.simulate.ad_channels import CONTROLS, SimulatedMedia, simulate_channels


@pytest.fixture(scope="module")
def sim() -> SimulatedMedia:
    return simulate_channels(seed=11)


def test_reproducible_by_seed(sim) -> None:
    again = simulate_channels(seed=11)
    np.testing.assert_array_equal(again.data.spend, sim.data.spend)
    np.testing.assert_array_equal(again.data.target, sim.data.target)
    np.testing.assert_array_equal(again.truth.beta, sim.truth.beta)
    assert again.to_events().equals(sim.to_events())
    other = simulate_channels(seed=12)
    assert not np.array_equal(other.data.spend, sim.data.spend)


def test_truth_adds_up(sim) -> None:
    data = sim.data
    np.testing.assert_allclose(
        data.target - sim.noise - sim.baseline, sim.true_contributions.sum(axis=1), atol=1e-8
    )
    np.testing.assert_allclose(sim.truth.contributions(data.spend), sim.true_contributions)
    np.testing.assert_allclose(sim.roi, sim.true_contributions.sum(0) / data.spend.sum(0))
    # ROI between 1/500 and 1/50 conversions per EUR, all different
    assert np.all((sim.roi > 1 / 500) & (sim.roi < 1 / 50))
    assert len(np.unique(np.round(sim.roi, 6))) == 10
    # noise is small next to the target and centred
    assert abs(sim.noise.mean()) < 0.02 * data.target.mean()
    assert sim.noise.std() < 0.1 * data.target.mean()


def test_shape_and_realism(sim) -> None:
    data, truth = sim.data, sim.truth
    assert data.spend.shape == (156, 10) and data.frequency == "W"
    assert data.control_names == CONTROLS and data.target_name == "conversions"
    assert truth.adstock == "geometric" and truth.saturation == "logistic" and truth.l_max == 8
    assert np.all((truth.alpha >= 0.1) & (truth.alpha <= 0.7))
    typical = np.array([data.spend[data.spend[:, c] > 0, c].mean() for c in range(10)])
    assert typical.min() < 2_000 and typical.max() > 5_000  # hundreds to tens of thousands
    assert np.all((typical > 100) & (typical < 60_000))
    sharpness = truth.lam * typical
    assert sharpness.min() < 0.3 and sharpness.max() > 2.5  # near-linear to saturated
    assert (data.spend == 0).any()  # flighting and dark weeks
    corr = np.corrcoef(data.spend.T)[np.triu_indices(10, 1)]
    assert corr.max() > 0.3  # some channels move together
    assert np.all(data.target >= 0) and np.all(data.target == np.round(data.target))
    assert 0 < data.controls[:, 0].sum() < 40 and data.controls[:, 1].sum() >= 2
    data.check_fittable()


def test_daily_and_small(sim) -> None:
    daily = simulate_channels(channels=3, periods=60, seed=2, frequency="D")
    assert daily.data.frequency == "D" and daily.data.periods == 60
    assert np.all(np.diff(daily.data.dates).astype(int) == 1)
    many = simulate_channels(channels=13, periods=20, seed=2)
    assert many.data.channels[-1] == "channel_12"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels"),
        ({"periods": 3}, "periods"),
        ({"frequency": "M"}, "frequency"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        simulate_channels(**kwargs)


def test_events_are_valid_with_deterministic_ids(sim, check_events) -> None:
    events = sim.to_events()
    assert check_events(events, sample=200) == 200
    spend = events.filter(pc.equal(events["event_type"], "ad_spend"))
    results = events.filter(pc.equal(events["event_type"], "ad_result"))
    assert spend.num_rows == 156 * 10 and results.num_rows == 156
    assert set(spend["currency"].to_pylist()) == {"EUR"}
    assert spend["event_id"][0].as_py() == "adsim-11-2021-01-04-search-spend"
    assert results["event_id"][0].as_py() == "adsim-11-2021-01-04-all-result"
    assert set(results["channel"].to_pylist()) == {"all"}
    assert results["conversions"].to_pylist() == sim.data.target.tolist()
    first = json.loads(results["properties"][0].as_py())
    assert set(first) == set(CONTROLS)
    assert len(set(events["event_id"].to_pylist())) == events.num_rows
    assert sim.to_dataset().events.num_rows == events.num_rows


class _Log:
    """Just enough of an EventReader to read the simulated events back."""

    def __init__(self, events: pa.Table) -> None:
        self.events = events

    def read_events(self, *, purpose, event_types, start, end, columns):
        keep = pc.is_in(self.events["event_type"], pa.array(event_types))
        return self.events.filter(keep).select(columns)


def test_events_read_back_into_the_same_data(sim) -> None:
    data = from_events(_Log(sim.to_events()), target="conversions", control_keys=CONTROLS)
    order = [data.channels.index(c) for c in sim.data.channels]
    np.testing.assert_allclose(data.spend[:, order], sim.data.spend)
    np.testing.assert_array_equal(data.target, sim.data.target)
    np.testing.assert_array_equal(data.controls, sim.data.controls)
    np.testing.assert_array_equal(data.dates, sim.data.dates)
