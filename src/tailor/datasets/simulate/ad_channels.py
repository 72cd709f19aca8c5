"""A seeded simulator of advertising channels with known adstock, saturation and ROI.

Each channel's spend is a base level (hundreds to tens of thousands of EUR a week) times
flighting (always-on channels with the odd dark period; flighted channels switching on and
off in runs), a seasonal push shared by a group of channels (so their spends correlate with
each other and with demand, as real plans do), and log-normal noise. The response follows
:mod:`tailor.budget.transforms`: normalized geometric adstock (``alpha`` in 0.1-0.7,
``l_max`` 8) and logistic saturation whose ``lam`` puts the channels between near-linear and
strongly saturated at their usual spend; ``beta`` is set so each channel has a chosen return
on investment (conversions per EUR, i.e. a CPA between about 50 and 500 EUR). The baseline is
an intercept with trend, yearly seasonality, promotions and the year-end holidays. The
target is integer conversions: the expected value plus Gaussian noise, rounded; the noise
kept is whatever makes ``target = baseline + true_contributions.sum(1) + noise`` exact.

Examples
--------
>>> from tailor.datasets.simulate.ad_channels import simulate_channels
>>> sim = simulate_channels(channels=4, periods=60, seed=3)
>>> sim.data.spend.shape, sim.truth.channels[:2]
((60, 4), ('search', 'social'))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tailor.budget.data import FREQUENCIES, Frequency, MediaData
from tailor.budget.lift import LiftTests
from tailor.budget.transforms import ChannelResponse, settled_change, typical_spend
from tailor.datasets.base import Dataset
from tailor.events.table import conform_events

__all__ = ["CHANNEL_NAMES", "CONTROLS", "CURRENCY", "SimulatedMedia", "simulate_channels"]

CHANNEL_NAMES: tuple[str, ...] = (
    "search",
    "social",
    "display",
    "video",
    "tv",
    "radio",
    "email",
    "affiliate",
    "podcast",
    "print",
    "outdoor",
    "influencer",
)
"""Names of the first channels; more channels are called ``channel_12``, ``channel_13``..."""
CONTROLS: tuple[str, ...] = ("promotion", "holiday")
CURRENCY = "EUR"
L_MAX = 8
_YEAR = {"W": 365.25 / 7, "D": 365.25}
"""Periods per year, for the seasonality."""


@dataclass(frozen=True)
class SimulatedMedia:
    """A simulated media-mix data set and the truth behind it.

    Attributes
    ----------
    data : the observable part: spend, target (conversions) and controls.
    truth : the true response; ``truth.contributions(data.spend)`` is ``true_contributions``.
    true_contributions : ``(T, C)`` conversions each channel caused in each period.
    baseline : ``(T,)`` conversions without any advertising (trend, season, controls).
    noise : ``(T,)`` the rest: ``target - baseline - true_contributions.sum(1)``.
    roi : ``(C,)`` true conversions per EUR over the series (contribution sum / spend sum).
    control_effects : ``(K,)`` conversions per unit of each control.
    seed : the seed it was made with.
    """

    data: MediaData
    truth: ChannelResponse
    true_contributions: np.ndarray
    baseline: np.ndarray
    noise: np.ndarray
    roi: np.ndarray
    control_effects: np.ndarray
    seed: int

    def lift_tests(
        self,
        channels: Sequence[str],
        *,
        change: float = -1.0,
        noise: float = 0.1,
        seed: int | None = None,
    ) -> LiftTests:
        """Lift tests of ``channels`` as a shop runs them, measured on the true response.

        Each test moves the channel's typical spend per period (the mean over the periods
        it spent in) by ``change`` times itself: -1 switches it off (a geo holdout), 0.5
        raises it by half. The measured change per period is the truth's, without carry-over
        (a test runs until the adstock settles), plus Gaussian noise whose standard error,
        reported as ``sigma``, is ``noise`` times the true change.
        """
        if not (np.isfinite(change) and change >= -1.0 and change != 0.0):
            raise ValueError(f"change: {change}; a share of the spend, >= -1 and not 0")
        if not (np.isfinite(noise) and noise > 0):
            raise ValueError(f"noise: {noise}; the standard error as a share (> 0), e.g. 0.1")
        codes = [self.data.channels.index(c) for c in channels if c in self.data.channels]
        if len(codes) != len(channels) or not codes:
            raise ValueError(
                f"channels: {list(channels)}; name one or more of {', '.join(self.data.channels)}"
            )
        rng = np.random.default_rng(self.seed if seed is None else seed)
        x = typical_spend(self.data.spend[:, codes])
        truth = self.truth
        true_change = settled_change(
            truth.saturation,
            x,
            change * x,
            truth.beta[codes],
            truth.lam[codes],
            None if truth.slope is None else truth.slope[codes],
        )
        sigma = noise * np.abs(true_change)
        return LiftTests(
            channel=tuple(channels),
            x=x,
            delta_x=change * x,
            delta_y=true_change + rng.normal(0.0, sigma),
            sigma=sigma,
        )

    def to_events(self) -> pa.Table:
        """``ad_spend`` and ``ad_result`` events, as :mod:`tailor.datasets.media_mix` makes them.

        Per period (``occurred_at`` = its first day at 00:00 UTC) one ``ad_spend`` per
        channel (``cost``, ``currency`` EUR, zero periods kept) with ``event_id =
        "adsim-{seed}-{yyyy-mm-dd}-{channel}-spend"``, and one ``ad_result`` with ``channel =
        "all"``, ``conversions`` = the target, ``properties`` = the controls as JSON and
        ``event_id = "adsim-{seed}-{yyyy-mm-dd}-all-result"``. Import-ready (conformed to
        the event schema); :func:`tailor.budget.data.from_events` reads them back.
        """
        data = self.data
        days = [str(d) for d in data.dates]
        moments = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in days]
        columns: dict[str, list] = {
            k: []
            for k in (
                "event_id",
                "event_type",
                "occurred_at",
                "channel",
                "cost",
                "currency",
                "conversions",
                "properties",
            )
        }
        for t, (day, moment) in enumerate(zip(days, moments, strict=True)):
            for c, channel in enumerate(data.channels):
                columns["event_id"].append(f"adsim-{self.seed}-{day}-{channel}-spend")
                columns["event_type"].append("ad_spend")
                columns["occurred_at"].append(moment)
                columns["channel"].append(channel)
                columns["cost"].append(float(data.spend[t, c]))
                columns["currency"].append(CURRENCY)
                columns["conversions"].append(None)
                columns["properties"].append(None)
            controls = dict(zip(data.control_names, map(float, data.controls[t]), strict=True))
            columns["event_id"].append(f"adsim-{self.seed}-{day}-all-result")
            columns["event_type"].append("ad_result")
            columns["occurred_at"].append(moment)
            columns["channel"].append("all")
            columns["cost"].append(None)
            columns["currency"].append(None)
            columns["conversions"].append(float(data.target[t]))
            columns["properties"].append(json.dumps(controls, separators=(",", ":")))
        n = len(columns["event_id"])
        return conform_events(
            pa.table(
                {
                    **columns,
                    "occurred_at": pa.array(columns["occurred_at"], pa.timestamp("us", tz="UTC")),
                    "cost": pa.array(columns["cost"], pa.float64()),
                    "conversions": pa.array(columns["conversions"], pa.float64()),
                    "properties": pa.array(columns["properties"], pa.string()),
                    "line": pa.repeat(0, n).cast(pa.int64()),
                }
            )
        )

    def to_dataset(self) -> Dataset:
        """The events as a :class:`~tailor.datasets.base.Dataset` for the importer."""
        data = self.data
        return Dataset(
            name=f"ad-channels-sim-{self.seed}",
            events=self.to_events(),
            notes=[
                f"Simulated media mix: {len(data.channels)} channels x {data.periods} "
                f"{'weeks' if data.frequency == 'W' else 'days'} from {data.dates[0]}, seed "
                f"{self.seed}; target = conversions.",
                "Ground truth: simulate_channels(...) returns it (truth, true_contributions).",
            ],
        )


def _channel_names(count: int) -> tuple[str, ...]:
    return tuple(
        CHANNEL_NAMES[i] if i < len(CHANNEL_NAMES) else f"channel_{i}" for i in range(count)
    )


def _flighting(rng: np.random.Generator, periods: int, always_on: bool) -> np.ndarray:
    """1 where the channel runs. Always-on channels go dark now and then; flighted ones run
    in on/off stretches (a two-state Markov chain: mean runs of ~6 on, ~3 off)."""
    if always_on:
        on = rng.random(periods) > 0.03
    else:
        on = np.empty(periods, dtype=bool)
        state = True
        for t in range(periods):
            on[t] = state
            state = rng.random() > (0.17 if state else 0.67)
    on[0] = True  # every channel spends at least once, so its truth is identifiable
    return on.astype(float)


def simulate_channels(
    channels: int = 10,
    periods: int = 156,
    *,
    seed: int = 0,
    frequency: Frequency = "W",
    noise: float = 0.05,
    start: str = "2021-01-04",
) -> SimulatedMedia:
    """Simulate ``periods`` of spend on ``channels`` channels and the conversions they drive.

    Parameters
    ----------
    channels : number of channels (names from :data:`CHANNEL_NAMES`, then ``channel_i``).
    periods : number of weeks (``frequency="W"``) or days (``"D"``).
    seed : everything follows from it.
    frequency : ``"W"`` or ``"D"``; daily spend is a seventh of the weekly levels.
    noise : standard deviation of the Gaussian noise as a share of the mean expected target.
    start : the first period's date (ISO; a Monday for weeks).

    Returns
    -------
    SimulatedMedia
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels: must be a whole number >= 1, got {channels!r}")
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < L_MAX:
        raise ValueError(f"periods: must be a whole number >= {L_MAX}, got {periods!r}")
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency: {frequency!r}; use 'W' (weeks) or 'D' (days)")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: {noise} must be a share >= 0 of the mean target (e.g. 0.05)")
    rng = np.random.default_rng(seed)
    names = _channel_names(channels)
    t = np.arange(periods)
    year = _YEAR[frequency]
    season = np.sin(2 * np.pi * t / year)

    # Spend: level x flighting x (seasonal push and a shared factor for one group) x noise.
    level = np.exp(rng.uniform(np.log(300.0), np.log(20_000.0), channels))
    if frequency == "D":
        level /= 7.0
    always_on = rng.permutation(channels) < max(1, round(0.6 * channels))
    grouped = rng.random(channels) < 0.5
    shared = np.zeros(periods)
    for i in range(1, periods):  # AR(1) budget mood shared by the grouped channels
        shared[i] = 0.8 * shared[i - 1] + rng.normal(0.0, 0.15)
    spend = np.empty((periods, channels))
    for c in range(channels):
        push = 1.0 + 0.3 * season if grouped[c] else 1.0
        mood = np.exp(shared) if grouped[c] else 1.0
        jitter = rng.lognormal(-0.5 * 0.25**2, 0.25, periods)
        spend[:, c] = level[c] * _flighting(rng, periods, always_on[c]) * push * mood * jitter
    spend = np.round(spend, 2)

    # Response: alpha, then lam from the typical adstocked spend, then beta from the ROI.
    alpha = rng.uniform(0.1, 0.7, channels)
    sharpness = rng.permutation(np.geomspace(0.2, 3.0, channels))  # lam * usual spend
    typical = typical_spend(spend)
    lam = sharpness / typical
    roi = np.exp(rng.uniform(np.log(1 / 500), np.log(1 / 50), channels))
    shape = ChannelResponse(
        channels=names,
        adstock="geometric",
        saturation="logistic",
        l_max=L_MAX,
        alpha=alpha,
        lam=lam,
        beta=np.ones(channels),
    )
    unit = shape.contributions(spend)  # effect per unit of beta
    beta = roi * spend.sum(axis=0) / unit.sum(axis=0)
    truth = shape.with_values(beta=beta)
    contributions = truth.contributions(spend)

    # Baseline: media drive about 40% of conversions on average.
    dates = np.datetime64(start, "D") + t * FREQUENCIES[frequency]
    promotion = (rng.random(periods) < 0.08).astype(float)
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(int)
    holiday = (day_of_year + FREQUENCIES[frequency] > 357).astype(float)  # touches Dec 24-31
    controls = np.column_stack([promotion, holiday])
    intercept = 1.5 * contributions.sum(axis=1).mean()
    effects = np.array([0.25, 0.4]) * intercept
    baseline = (
        intercept * (1.0 + 0.2 * t / periods + 0.15 * season + 0.05 * np.cos(4 * np.pi * t / year))
        + controls @ effects
    )
    expected = baseline + contributions.sum(axis=1)
    drawn = expected + rng.normal(0.0, noise * expected.mean(), periods)
    target = np.maximum(np.round(drawn), 0.0)

    data = MediaData(
        dates=dates,
        spend=spend,
        target=target,
        channels=names,
        controls=controls,
        control_names=CONTROLS,
        target_name="conversions",
        frequency=frequency,
    )
    return SimulatedMedia(
        data=data,
        truth=truth,
        true_contributions=contributions,
        baseline=baseline,
        noise=target - expected,
        roi=contributions.sum(axis=0) / spend.sum(axis=0),
        control_effects=effects,
        seed=seed,
    )
