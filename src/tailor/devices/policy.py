"""The server's decision function: occupancy forecast in, a setpoint inside the comfort bounds out.

A home's decision for a slot is made in four steps, the same on the server (:func:`decide`),
in the plain reference (:func:`decide_reference`) and in the ONNX graph the device runs
(:mod:`tailor.devices.edge`):

1. the probability that the home is occupied in the slot, a logistic model of
   :func:`occupancy_features` (``p = sigmoid(features @ coef + intercept)``);
2. occupied (``p >= threshold``): the learned comfort setpoint of the slot;
3. not occupied: the comfort setpoint of the first slot in the next ``preheat_slots[slot]``
   slots that the schedule expects occupied (heating takes time, so it starts early), else the
   eco setpoint of the slot;
4. clipped to ``[lower_c, upper_c]``: the comfort bounds no model may leave.

The habit-learning code fills :class:`DecisionParams` from fitted models; this module only
decides.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from scipy.special import expit

from tailor.devices.features import (
    DEFAULT_SLOT_MINUTES,
    TIME_FEATURE_NAMES,
    slot_of_week,
    slots_per_week,
    time_features,
)

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "MOTION_WINDOW_SLOTS",
    "OCCUPANCY_FEATURE_NAMES",
    "PHYSICAL_RANGE_C",
    "Decision",
    "DecisionParams",
    "decide",
    "decide_reference",
    "history_slots",
    "occupancy_features",
    "occupancy_features_online",
    "slots_for",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODES = ("auto", "suggest", "off")
# Setpoints a room thermostat can hold: frost protection to the warmest heating setting.
PHYSICAL_RANGE_C = (5.0, 35.0)
# The longest motion window a feature looks at, in slots.
MOTION_WINDOW_SLOTS = 16
# "Hours since the last motion" saturates here: after half a day, longer means nothing more.
MOTION_CAP_HOURS = 12.0

OCCUPANCY_FEATURE_NAMES: tuple[str, ...] = (
    *TIME_FEATURE_NAMES,
    "motion_lag_1",
    "motion_mean_4",
    "motion_mean_16",
    "hours_since_motion",
    "motion_unknown_16",
)


def history_slots(slot_minutes: int = DEFAULT_SLOT_MINUTES) -> int:
    """How many past slots of motion the features need: 16, or 12 hours if that is longer.

    The streaming form (:func:`occupancy_features_online`) equals the batch form exactly when
    it is given at least this many past slots (fewer count as unknown, as at a series' start).
    """
    slots_per_week(slot_minutes)
    return max(MOTION_WINDOW_SLOTS, math.ceil(MOTION_CAP_HOURS * 60 / slot_minutes))


def _motion_values(values: Any, label: str) -> np.ndarray:
    motion = np.asarray(values, dtype=float).reshape(-1)
    known = motion[~np.isnan(motion)]
    if known.size and (known.min() < 0 or known.max() > 1 or np.isinf(known).any()):
        raise ValueError(
            f"{label}: motion must be 0 (none), 1 (motion seen) or NaN (unknown), "
            f"got values from {known.min()} to {known.max()}"
        )
    return motion


def occupancy_features(
    motion: pd.Series, *, timezone: str = "UTC", slot_minutes: int = DEFAULT_SLOT_MINUTES
) -> np.ndarray:
    """Features that forecast whether the home is occupied, one row per slot of ``motion``.

    Row ``t`` uses only what was known when slot ``t`` began (motion up to slot ``t-1``), so
    the forecast can start heating before the household is back.

    Parameters
    ----------
    motion : pandas.Series
        Motion per slot on the regular grid (index: slot starts, UTC, one every
        ``slot_minutes``): 1 = motion seen, 0 = none, NaN = unknown (no data).
    timezone : str
        The home's IANA time zone; the time features follow its clock.
    slot_minutes : int
        The grid's slot length; the index must step by exactly this.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(motion), 14)``, columns :data:`OCCUPANCY_FEATURE_NAMES`: the 9 time
        features of the slot, then the motion of slot ``t-1``, the mean motion over the last 4
        and the last 16 slots (unknown counts as 0), the hours since the last motion capped at
        12 and divided by 12 (1 = none seen in 12 hours), and the fraction of the last 16
        slots that were unknown. Slots before the series' first count as unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> index = pd.date_range("2024-01-01", periods=3, freq="15min", tz="UTC")
    >>> occupancy_features(pd.Series([1.0, 0.0, 0.0], index=index))[:, 9:].round(3).tolist()
    [[0.0, 0.0, 0.0, 1.0, 1.0], [1.0, 0.25, 0.062, 0.021, 0.938], [0.0, 0.25, 0.062, 0.042, 0.875]]
    """
    if not isinstance(motion, pd.Series) or not isinstance(motion.index, pd.DatetimeIndex):
        raise TypeError("motion: pass a pandas Series indexed by the slot starts (DatetimeIndex)")
    index = motion.index
    if len(index) > 1:
        steps = np.unique(np.diff(index.as_unit("ns").asi8))
        if steps.size != 1 or steps[0] != slot_minutes * 60 * 10**9:
            raise ValueError(
                f"motion: the index must step by exactly {slot_minutes} minutes (the slot grid); "
                "put the readings on the grid first (tailor.devices.quality)"
            )
    values = _motion_values(motion.to_numpy(), "motion")
    n = values.size
    lookback = history_slots(slot_minutes)
    # Pad the front with unknown slots so every row sees a full window.
    padded = np.concatenate([np.full(lookback, np.nan), values])
    seen = np.nan_to_num(padded, nan=0.0)
    unknown = np.isnan(padded).astype(float)
    seen_sum = np.concatenate([[0.0], np.cumsum(seen)])
    unknown_sum = np.concatenate([[0.0], np.cumsum(unknown)])
    end = np.arange(n) + lookback  # position of slot t in `padded`; windows end before it

    def window_mean(sums: np.ndarray, width: int) -> np.ndarray:
        return (sums[end] - sums[end - width]) / width

    position = np.arange(padded.size, dtype=float)
    last_seen = np.maximum.accumulate(np.where(seen > 0, position, -np.inf))
    # Slots since the last motion before slot t; a window of `lookback` slots spans >= 12 h,
    # so anything older saturates at the cap just as "none in the window" does.
    gap_slots = end - last_seen[end - 1]
    hours = np.minimum(gap_slots * slot_minutes / 60.0, MOTION_CAP_HOURS)
    lags = np.column_stack(
        [
            seen[end - 1],
            window_mean(seen_sum, 4),
            window_mean(seen_sum, MOTION_WINDOW_SLOTS),
            hours / MOTION_CAP_HOURS,
            window_mean(unknown_sum, MOTION_WINDOW_SLOTS),
        ]
    )
    return np.hstack([time_features(index, timezone), lags])


def occupancy_features_online(
    recent_motion: np.ndarray,
    ts: pd.Timestamp,
    *,
    timezone: str = "UTC",
    slot_minutes: int = DEFAULT_SLOT_MINUTES,
) -> np.ndarray:
    """The :func:`occupancy_features` row of ONE new slot, from a buffer of past motion.

    The streaming form the edge runner uses: it keeps the last :func:`history_slots` slots of
    motion and needs nothing else.

    Parameters
    ----------
    recent_motion : array of float
        Motion of the slots just before ``ts``, oldest first (the last entry is the slot right
        before ``ts``); 1, 0 or NaN. Fewer than :func:`history_slots` entries count the
        missing older slots as unknown; more are fine (only the newest are read).
    ts : pandas.Timestamp
        Start of the slot to decide (UTC, or naive meaning UTC).

    Returns
    -------
    numpy.ndarray
        Shape ``(14,)``, equal to the batch form's row for ``ts`` given the same history.
    """
    lookback = history_slots(slot_minutes)
    past = _motion_values(recent_motion, "recent_motion")[-lookback:]
    window = np.concatenate([np.full(lookback - past.size, np.nan), past])
    seen = np.nan_to_num(window, nan=0.0)
    last16 = window[-MOTION_WINDOW_SLOTS:]
    motion_at = np.flatnonzero(seen > 0)
    if motion_at.size:
        hours = min((lookback - motion_at[-1]) * slot_minutes / 60.0, MOTION_CAP_HOURS)
    else:
        hours = MOTION_CAP_HOURS
    lags = np.array(
        [
            seen[-1],
            seen[-4:].sum() / 4,
            seen[-MOTION_WINDOW_SLOTS:].sum() / MOTION_WINDOW_SLOTS,
            hours / MOTION_CAP_HOURS,
            np.isnan(last16).sum() / MOTION_WINDOW_SLOTS,
        ]
    )
    index = pd.DatetimeIndex([pd.Timestamp(ts)])
    return np.concatenate([time_features(index, timezone)[0], lags])


def _slot_table(name: str, values: Any, size: int, dtype: Any) -> np.ndarray:
    try:
        array = np.array(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"DecisionParams.{name}: not an array of {np.dtype(dtype)} ({exc})"
        ) from None
    if array.shape != (size,):
        raise ValueError(
            f"DecisionParams.{name}: expected one value per slot of the week, shape ({size},), "
            f"got {array.shape}"
        )
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class DecisionParams:
    """Everything a home's decisions depend on: the fitted occupancy model, the learned
    per-slot schedule and the comfort bounds. Validated on creation; arrays become read-only.

    Parameters
    ----------
    slot_minutes : int
        Slot length of the week grid (15 -> 672 slots a week).
    timezone : str
        The home's IANA time zone; slots are counted in its local time.
    feature_names : tuple of str
        Names of the occupancy model's ``k`` features, in column order.
    occupancy_coef : array, shape (k,)
        Logistic coefficients of the occupancy model.
    occupancy_intercept : float
        Its intercept.
    threshold : float
        Occupied when the probability is at least this; in (0, 1).
    comfort : array, shape (slots_per_week,)
        Setpoint (°C) wanted when the home is occupied, per slot of the week.
    eco : array, shape (slots_per_week,)
        Setpoint (°C) when it is empty.
    lower_c, upper_c : float
        The comfort bounds (°C): no decision leaves ``[lower_c, upper_c]``.
    preheat_slots : array of int, shape (slots_per_week,)
        How many slots ahead the comfort setpoint starts (the home needs time to heat up).
    expected_occupied : array of bool, shape (slots_per_week,)
        The schedule's occupancy prior: whether the learned probability of occupancy at this
        time of week reaches ``threshold``; pre-heating aims at these slots.
    mode : {"auto", "suggest", "off"}
        ``"auto"``: the device applies the setpoints. ``"suggest"``: the same numbers, which
        the API marks as suggestions for the household to accept. ``"off"``: no setpoints
        (NaN): the device keeps its own program.
    version : str
        The model version these parameters came from (registry version or hash).
    """

    slot_minutes: int
    timezone: str
    feature_names: tuple[str, ...]
    occupancy_coef: np.ndarray
    occupancy_intercept: float
    threshold: float
    comfort: np.ndarray
    eco: np.ndarray
    lower_c: float
    upper_c: float
    preheat_slots: np.ndarray
    expected_occupied: np.ndarray
    mode: Literal["auto", "suggest", "off"] = "auto"
    version: str = "0"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        minutes = self.slot_minutes
        if isinstance(minutes, bool) or not isinstance(minutes, int | np.integer):
            raise ValueError(f"DecisionParams.slot_minutes: an int, got {self.slot_minutes!r}")
        try:
            size = slots_per_week(int(self.slot_minutes))
        except ValueError as exc:
            raise ValueError(f"DecisionParams.slot_minutes: {exc}") from None
        put("slot_minutes", int(self.slot_minutes))
        try:
            ZoneInfo(str(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"DecisionParams.timezone: {self.timezone!r} is not an IANA time zone "
                "(e.g. 'Europe/Berlin')"
            ) from None
        names = tuple(self.feature_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError("DecisionParams.feature_names: a non-empty tuple of feature names")
        if len(set(names)) != len(names):
            raise ValueError("DecisionParams.feature_names: names must be unique")
        put("feature_names", names)
        coef = np.array(self.occupancy_coef, dtype=float)
        if coef.shape != (len(names),):
            raise ValueError(
                f"DecisionParams.occupancy_coef: expected shape ({len(names)},), one per feature "
                f"name, got {coef.shape}"
            )
        if not np.isfinite(coef).all():
            raise ValueError("DecisionParams.occupancy_coef: contains NaN or infinity; refit")
        coef.setflags(write=False)
        put("occupancy_coef", coef)
        for name in ("occupancy_intercept", "threshold", "lower_c", "upper_c"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"DecisionParams.{name}: a number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"DecisionParams.{name}: must be finite, got {number}")
            put(name, number)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"DecisionParams.threshold: must be in (0, 1), got {self.threshold}")
        low, high = PHYSICAL_RANGE_C
        if not self.lower_c < self.upper_c:
            raise ValueError(
                f"DecisionParams.lower_c: must be below upper_c, got {self.lower_c} >= "
                f"{self.upper_c}"
            )
        for name in ("lower_c", "upper_c"):
            if not low <= getattr(self, name) <= high:
                raise ValueError(
                    f"DecisionParams.{name}: {getattr(self, name)} °C is outside what a "
                    f"thermostat can hold ({low}..{high} °C)"
                )
        for name in ("comfort", "eco"):
            table = _slot_table(name, getattr(self, name), size, float)
            if not np.isfinite(table).all():
                raise ValueError(f"DecisionParams.{name}: contains NaN or infinity; refit")
            if table.min() < low or table.max() > high:
                raise ValueError(
                    f"DecisionParams.{name}: setpoints from {table.min()} to {table.max()} °C "
                    f"leave what a thermostat can hold ({low}..{high} °C)"
                )
            put(name, table)
        raw_preheat = np.asarray(self.preheat_slots)
        if raw_preheat.dtype.kind == "f" and not np.all(np.mod(raw_preheat, 1) == 0):
            raise ValueError("DecisionParams.preheat_slots: whole numbers of slots expected")
        if raw_preheat.dtype.kind not in "iuf":
            raise ValueError("DecisionParams.preheat_slots: an integer array expected")
        preheat = _slot_table("preheat_slots", raw_preheat, size, np.int64)
        if preheat.min() < 0 or preheat.max() >= size:
            raise ValueError(
                f"DecisionParams.preheat_slots: must be in 0..{size - 1}, got "
                f"{preheat.min()}..{preheat.max()}"
            )
        put("preheat_slots", preheat)
        raw_expected = np.asarray(self.expected_occupied)
        if raw_expected.dtype != bool:
            raise ValueError("DecisionParams.expected_occupied: a boolean array expected")
        put("expected_occupied", _slot_table("expected_occupied", raw_expected, size, bool))
        if self.mode not in MODES:
            raise ValueError(f"DecisionParams.mode: one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.version, str) or not self.version:
            raise ValueError("DecisionParams.version: a non-empty string")

    @property
    def n_slots(self) -> int:
        """Slots in a week."""
        return int(self.comfort.size)

    @cached_property
    def unoccupied_target(self) -> np.ndarray:
        """Setpoint (before clipping) per slot when the home is not occupied now: the comfort
        setpoint of the first expected-occupied slot within the pre-heat horizon, else eco."""
        target = self.eco.copy()
        for slot in range(self.n_slots):
            upcoming = _first_expected(self, slot)
            if upcoming is not None:
                target[slot] = self.comfort[upcoming]
        target.setflags(write=False)
        return target

    @cached_property
    def preheating(self) -> np.ndarray:
        """Per slot: whether an unoccupied home would already get the comfort setpoint."""
        flags = np.array([_first_expected(self, s) is not None for s in range(self.n_slots)])
        flags.setflags(write=False)
        return flags

    # --- persistence (JSON header + .npz, no pickle) -------------------------------------

    def to_bytes(self) -> bytes:
        """The saved form (what :meth:`save` writes)."""
        header = {
            "model": "devices.DecisionParams",
            "format": FORMAT_VERSION,
            "slot_minutes": self.slot_minutes,
            "timezone": self.timezone,
            "feature_names": list(self.feature_names),
            "occupancy_intercept": self.occupancy_intercept,
            "threshold": self.threshold,
            "lower_c": self.lower_c,
            "upper_c": self.upper_c,
            "mode": self.mode,
            "version": self.version,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            __header__=np.asarray(json.dumps(header)),
            occupancy_coef=self.occupancy_coef,
            comfort=self.comfort,
            eco=self.eco,
            preheat_slots=self.preheat_slots,
            expected_occupied=self.expected_occupied,
        )
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.npz``): the arrays plus a JSON header. Loading runs no code."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + ".tmp")
        staging.write_bytes(self.to_bytes())
        staging.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DecisionParams:
        """Read parameters written by :meth:`save`.

        Raises
        ------
        ValueError
            The file is missing, damaged or of another format; the message says what to do.
        """
        path = Path(path)
        fix = "re-export the home's decision parameters from the server"
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["__header__"]))
                arrays = {name: data[name] for name in data.files if name != "__header__"}
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file; {fix}") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: not readable decision parameters ({exc}); {fix}") from None
        if not isinstance(header, dict) or header.get("model") != "devices.DecisionParams":
            raise ValueError(f"{path}: not a decision-parameters file; {fix}")
        if header.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format {header.get('format')!r}, this tailor reads {FORMAT_VERSION}; "
                f"{fix}"
            )
        try:
            return cls(
                slot_minutes=int(header["slot_minutes"]),
                timezone=header["timezone"],
                feature_names=tuple(header["feature_names"]),
                occupancy_coef=arrays["occupancy_coef"],
                occupancy_intercept=header["occupancy_intercept"],
                threshold=header["threshold"],
                comfort=arrays["comfort"],
                eco=arrays["eco"],
                lower_c=header["lower_c"],
                upper_c=header["upper_c"],
                preheat_slots=arrays["preheat_slots"],
                expected_occupied=arrays["expected_occupied"],
                mode=header["mode"],
                version=header["version"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: damaged decision parameters ({exc}); {fix}") from None


def _first_expected(params: DecisionParams, slot: int) -> int | None:
    """The first slot in ``(slot, slot + preheat_slots[slot]]`` (wrapping over the week) the
    schedule expects occupied, or None."""
    for ahead in range(1, int(params.preheat_slots[slot]) + 1):
        upcoming = (slot + ahead) % params.n_slots
        if params.expected_occupied[upcoming]:
            return upcoming
    return None


@dataclass(frozen=True, eq=False)
class Decision:
    """Decisions for a batch of slots.

    Attributes
    ----------
    setpoint : array of float, shape (n,)
        °C, inside the comfort bounds; NaN everywhere in mode ``"off"``.
    occupied_probability : array of float, shape (n,)
        The occupancy model's probability for each slot.
    occupied : array of bool, shape (n,)
        ``occupied_probability >= threshold``.
    preheating : array of bool, shape (n,)
        Not occupied, but the comfort setpoint was started early for an expected arrival.
    """

    setpoint: np.ndarray
    occupied_probability: np.ndarray
    occupied: np.ndarray
    preheating: np.ndarray


def _check_inputs(
    params: DecisionParams, features: Any, slot: Any
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=float)
    if x.ndim == 1 and x.size == params.occupancy_coef.size:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != params.occupancy_coef.size:
        raise ValueError(
            f"features: expected shape (n, {params.occupancy_coef.size}) "
            f"({', '.join(params.feature_names)}), got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError("features: contain NaN or infinity; compute them with occupancy_features")
    raw = np.asarray(slot)
    if raw.dtype.kind not in "iu":
        raise ValueError(f"slot: integer slot-of-week numbers expected, got dtype {raw.dtype}")
    s = raw.astype(np.int64).reshape(-1)
    if s.size != x.shape[0]:
        raise ValueError(f"slot: {s.size} slots for {x.shape[0]} feature rows; pass one per row")
    if s.size and (s.min() < 0 or s.max() >= params.n_slots):
        raise ValueError(
            f"slot: slot-of-week numbers must be in 0..{params.n_slots - 1}; "
            "compute them with tailor.devices.features.slot_of_week"
        )
    return x, s


def decide(params: DecisionParams, features: np.ndarray, slot: np.ndarray) -> Decision:
    """Setpoints for a batch of slots (vectorized; :func:`decide_reference` is the plain loop).

    Parameters
    ----------
    params : DecisionParams
        The home's fitted parameters.
    features : array, shape (n, k)
        Occupancy features (:func:`occupancy_features`), columns ``params.feature_names``.
    slot : array of int, shape (n,)
        Slot of the week of each row (:func:`~tailor.devices.features.slot_of_week`, in the
        home's time zone).

    Returns
    -------
    Decision
        Setpoints within ``[params.lower_c, params.upper_c]`` (NaN in mode ``"off"``).
    """
    x, s = _check_inputs(params, features, slot)
    probability = expit(x @ params.occupancy_coef + params.occupancy_intercept)
    occupied = probability >= params.threshold
    target = np.where(occupied, params.comfort[s], params.unoccupied_target[s])
    setpoint = np.clip(target, params.lower_c, params.upper_c)
    if params.mode == "off":
        setpoint = np.full_like(setpoint, np.nan)
    return Decision(
        setpoint=setpoint,
        occupied_probability=probability,
        occupied=occupied,
        preheating=~occupied & params.preheating[s],
    )


def decide_reference(params: DecisionParams, features: np.ndarray, slot: np.ndarray) -> Decision:
    """:func:`decide` as a plain loop over rows, written from the definition; for tests."""
    x, s = _check_inputs(params, features, slot)
    n = x.shape[0]
    setpoint = np.empty(n)
    probability = np.empty(n)
    occupied = np.zeros(n, dtype=bool)
    preheating = np.zeros(n, dtype=bool)
    for row in range(n):
        logit = params.occupancy_intercept
        for j in range(x.shape[1]):
            logit += x[row, j] * params.occupancy_coef[j]
        # The logistic function, written so that neither branch overflows.
        if logit >= 0:
            p = 1.0 / (1.0 + math.exp(-logit))
        else:
            p = math.exp(logit) / (1.0 + math.exp(logit))
        probability[row] = p
        here = int(s[row])
        if p >= params.threshold:
            occupied[row] = True
            target = params.comfort[here]
        else:
            target = params.eco[here]
            for ahead in range(1, int(params.preheat_slots[here]) + 1):
                upcoming = (here + ahead) % params.n_slots
                if params.expected_occupied[upcoming]:
                    target = params.comfort[upcoming]
                    preheating[row] = True
                    break
        target = min(max(target, params.lower_c), params.upper_c)
        setpoint[row] = math.nan if params.mode == "off" else target
    return Decision(
        setpoint=setpoint,
        occupied_probability=probability,
        occupied=occupied,
        preheating=preheating,
    )


def slots_for(index: pd.DatetimeIndex, params: DecisionParams) -> np.ndarray:
    """Slot of the week of each timestamp in the home's local time (``params``' grid)."""
    return slot_of_week(index, params.slot_minutes, params.timezone)
