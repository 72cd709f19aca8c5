"""Data drift: has a feature's distribution moved away from its reference?

A :class:`Reference` is computed once from the data a model learned on: quantile bin edges
(``bins`` of them, equal shares of the reference) and the reference's share in each bin. A
check of new values then costs one ``searchsorted`` over them and a few sums over the bins,
so a million values take milliseconds, and the reference data need not be kept.

Each check reports four measures, from the binned distributions:

* **PSI** (population stability index), ``sum (q - p) ln(q / p)``; by convention below 0.1
  is stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.
* **KS**: the largest gap between the two cumulative distributions at the bin edges, with
  the asymptotic two-sample p-value. On bins the gap can only be smaller than on the raw
  values, so the test is conservative: its false-alarm rate stays at or below ``alpha``.
* **Jensen-Shannon** divergence (base 2, between 0 and 1).
* **Wasserstein-1** distance, in the feature's own unit: the mean gap between the two
  quantile functions at ``QUANTILES`` evenly spaced levels (the reference's are stored).

``drifted`` is the KS test's verdict at ``alpha`` (0.05 by default): with the many events a
shop logs it detects shifts that are real, and PSI and the distances say how large they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import kstwobign

from tailor.lifecycle.checks import finite_vector

FORMAT = "tailor.lifecycle.drift/1"
DEFAULT_BINS = 50
DEFAULT_ALPHA = 0.05
_FLOOR = 1e-6  # a share of 0 in a bin would make PSI infinite
QUANTILES = 200
_LEVELS = (np.arange(QUANTILES) + 0.5) / QUANTILES


@dataclass(frozen=True)
class DriftCheck:
    psi: float
    ks: float
    ks_p_value: float
    jensen_shannon: float
    wasserstein: float
    drifted: bool
    n: int

    def summary(self) -> dict[str, float | bool | int]:
        """The figures under the names the journal and the dashboard use."""
        return {
            "psi": self.psi,
            "ks_p_value": self.ks_p_value,
            "js": self.jensen_shannon,
            "wasserstein": self.wasserstein,
            "drifted": self.drifted,
            "n": self.n,
        }


def _values(name: str, values: object) -> np.ndarray:
    array = finite_vector(name, np.asarray(values, dtype=np.float64).ravel())
    if len(array) == 0:
        raise ValueError(f"{name}: no values")
    return array


@dataclass(frozen=True)
class Reference:
    """Bin edges and shares of a feature's reference distribution (see the module)."""

    edges: np.ndarray
    """Inner edges: bin k holds values in ``(edges[k-1], edges[k]]``; the first and last bins
    are open."""
    shares: np.ndarray
    quantiles: np.ndarray
    """The reference's quantiles at ``QUANTILES`` evenly spaced levels (for Wasserstein)."""
    n: int

    @classmethod
    def fit(cls, values: object, bins: int = DEFAULT_BINS) -> Reference:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        data = _values("reference", values)
        edges = np.unique(np.quantile(data, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, data), minlength=len(edges) + 1)
        return cls(edges, counts / len(data), np.quantile(data, _LEVELS), len(data))

    def to_json(self) -> str:
        """As JSON (a few kilobytes), to check against in later runs and other processes."""
        return json.dumps(
            {
                "format": FORMAT,
                "edges": self.edges.tolist(),
                "shares": self.shares.tolist(),
                "quantiles": self.quantiles.tolist(),
                "n": self.n,
            }
        )

    @classmethod
    def from_json(cls, text: str, source: str = "the text") -> Reference:
        try:
            saved = json.loads(text)
        except json.JSONDecodeError:
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError(f"{source} does not hold a saved drift reference")
        try:
            edges, shares, quantiles = (
                np.asarray(saved[k], float) for k in ("edges", "shares", "quantiles")
            )
            n = int(saved["n"])
        except (KeyError, TypeError, ValueError):
            edges, shares, quantiles, n = np.zeros(0), np.zeros(0), np.zeros(0), 0
        if len(shares) != len(edges) + 1 or len(quantiles) != QUANTILES:
            raise ValueError(f"{source} holds a damaged drift reference: fit it again")
        return cls(edges, shares, quantiles, n)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        return cls.from_json(Path(path).read_text(), str(path))

    def check(self, values: object, *, alpha: float = DEFAULT_ALPHA) -> DriftCheck:
        """Compare ``values`` with the reference."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        data = _values("values", values)
        n = len(data)
        counts = np.bincount(np.searchsorted(self.edges, data), minlength=len(self.edges) + 1)
        shares = counts / n
        p, q = np.maximum(self.shares, _FLOOR), np.maximum(shares, _FLOOR)
        psi = float(np.sum((q - p) * np.log(q / p)))
        reference_cdf, new_cdf = np.cumsum(self.shares)[:-1], np.cumsum(shares)[:-1]
        gap = np.abs(new_cdf - reference_cdf)
        ks = float(gap.max()) if len(gap) else 0.0
        effective = n * self.n / (n + self.n)
        p_value = float(kstwobign.sf(np.sqrt(effective) * ks))
        js = float(jensenshannon(self.shares, shares, base=2) ** 2)
        wasserstein = float(np.mean(np.abs(np.quantile(data, _LEVELS) - self.quantiles)))
        return DriftCheck(
            psi=psi,
            ks=ks,
            ks_p_value=p_value,
            jensen_shannon=js,
            wasserstein=wasserstein,
            drifted=p_value < alpha,
            n=n,
        )
