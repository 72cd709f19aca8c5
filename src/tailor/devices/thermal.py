"""Learned heat-up and cool-down rates of a home, so pre-heating reaches the setpoint on time.

The home is one thermal node: the first-order RC model, the simplest of the grey-box models
Bacher & Madsen compare (P. Bacher and H. Madsen, "Identifying suitable models for the heat
dynamics of buildings", *Energy and Buildings* 43(7), 2011, model :math:`T_i`):

.. math::

    \\frac{dT}{dt} = a\\,(T_{out} - T) + b\\,u_{heat} - c\\,u_{cool} + d            \\qquad (1)

with :math:`T` the indoor temperature (°C), :math:`u` the heating and cooling duty (the fraction
of the time each ran, 0..1) and, per hour, :math:`a` the heat loss rate (1/h, one over the RC
time constant), :math:`b` the heating rate at full duty (°C/h), :math:`c` the cooling rate (°C/h)
and :math:`d` the internal and solar gains (°C/h). This is what ecobee calls Smart Recovery:
knowing :math:`a` and :math:`b`, the thermostat starts heating early enough to be at the comfort
setpoint when the comfort period starts, not an hour after.

The gains :math:`d` are a constant: sun through the windows, cooking and people come and go
around it. Strong solar gains break that assumption in a way least squares cannot see: the sun
shines when it is warmest outside, so the fit credits the outside air with the sun's heat and
overstates the loss rate :math:`a` (by about a quarter on a simulated sunny home). Bacher &
Madsen add measured solar irradiance :math:`\\Phi_s` as an input for that; do so here when
irradiance data arrives.

With the inputs held over a step of :math:`\\Delta t` hours (zero-order hold), (1) integrates to

.. math::

    T_{t+1} - T_t = (1 - e^{-a \\Delta t})\\left(T_{out} - T_t
                    + \\frac{b\\,u_{heat} - c\\,u_{cool} + d}{a}\\right)              \\qquad (2)

which is linear in :math:`(T_{out} - T_t, u_{heat}, u_{cool}, 1)`. :class:`ThermalModel` fits
that regression by least squares on consecutive valid steps only (never across a gap) and maps
its coefficients back to the continuous rates of (1), so the rates do not depend on the grid's
step and a model fitted on 5-minute data plans in 15-minute slots. One bias remains: a
thermostat steers on its own noisy reading, so the duty reacts to the very sensor noise the
regression sees. On simulated homes with 0.05 °C of sensor noise this overstates :math:`b` by
1-3% and a rarely running cooling's :math:`c` by up to ~10%.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_RATES", "ThermalModel", "step_pairs"]

logger = logging.getLogger(__name__)

MODEL_NAME = "tailor.devices.thermal.ThermalModel"
FORMAT_VERSION = 1
REQUIRED_COLUMNS = ("indoor_temp", "outdoor_temp", "heating")

DEFAULT_RATES: dict[str, float] = {
    "loss_rate": 0.08,
    "heat_rate": 3.0,
    "cool_rate": 2.0,
    "gain": 0.3,
}
"""Rates of a typical, moderately insulated home, used by :meth:`ThermalModel.default`.

A loss rate of 0.08/h is a 12.5-hour time constant: with the heating off, a home 10 °C above
the outside cools by 0.8 °C in the first hour. A heating rate of 3 °C/h at full duty warms it by
about 2 °C an hour on a 5 °C day; 0.3 °C/h of gains keeps a free-running home 3.75 °C above the
outside. Sized so a 4 °C morning recovery on a 5 °C day takes just under two hours, the usual
span of a thermostat's smart-recovery window.
"""

_MIN_DUTY_SD = 0.05
"""Duty with a smaller standard deviation is taken as constant: its rate is not identifiable."""
_DUTY_TOLERANCE = 1e-6


def _grid_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The grid's slot length: its ``freq``, else its most common spacing."""
    if index.freq is not None:
        return pd.Timedelta(index.freq)
    if len(index) < 2:
        raise ValueError("the grid needs at least two rows to have a time step")
    spacing = pd.Series(index[1:] - index[:-1])
    step = spacing.mode().iloc[0]
    if step <= pd.Timedelta(0):
        raise ValueError("the grid's index has repeated timestamps; build it with one row per slot")
    return pd.Timedelta(step)


def _metric(grid: pd.DataFrame, name: str, *, skip_filled: bool) -> np.ndarray:
    """One metric column as floats, NaN where missing (or filled, when ``skip_filled``)."""
    values = pd.to_numeric(grid[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    gap_column = f"{name}_gap"
    if skip_filled and gap_column in grid.columns:
        # A filled value is an interpolation: a straight line there would teach the model a
        # made-up rate of change, so it counts as missing.
        filled = grid[gap_column].astype("boolean").fillna(True).to_numpy(dtype=bool)
        values = np.where(filled, np.nan, values)
    return values


def _check_duty(values: np.ndarray, name: str) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < -_DUTY_TOLERANCE or finite.max() > 1 + _DUTY_TOLERANCE):
        raise ValueError(
            f"{name} must be a duty fraction between 0 and 1 (the share of the slot it ran); "
            f"got values from {finite.min():g} to {finite.max():g}. Divide minutes by the slot "
            "length before fitting."
        )


def step_pairs(grid: pd.DataFrame, *, skip_filled: bool = True) -> pd.DataFrame:
    """The consecutive pairs of valid grid rows a thermal fit learns from.

    Parameters
    ----------
    grid : pandas.DataFrame
        A grid frame (regular UTC index) with ``indoor_temp``, ``outdoor_temp``, ``heating``
        and optionally ``cooling``. Missing values are NaN.
    skip_filled : bool, default True
        Treat values flagged in ``<metric>_gap`` columns as missing.

    Returns
    -------
    pandas.DataFrame
        Indexed by the start of each step, with columns ``indoor``, ``indoor_next``,
        ``outdoor``, ``heating``, ``cooling`` (0 when the grid has none) and ``hours`` (the step
        length). A pair is kept only when both rows are exactly one step apart and every input
        is present, so no step ever spans a gap.
    """
    if not isinstance(grid, pd.DataFrame):
        raise TypeError(f"grid must be a pandas DataFrame, got {type(grid).__name__}")
    missing = [name for name in REQUIRED_COLUMNS if name not in grid.columns]
    if missing:
        raise ValueError(
            f"the grid lacks {', '.join(missing)}; a thermal fit needs indoor_temp, "
            "outdoor_temp and heating (duty 0..1) columns"
        )
    if not isinstance(grid.index, pd.DatetimeIndex):
        raise ValueError("the grid must be indexed by a DatetimeIndex of slot starts")
    if not grid.index.is_monotonic_increasing:
        raise ValueError("the grid's index is not sorted; sort it by time (grid.sort_index())")
    if len(grid) < 2:
        columns = ["indoor", "indoor_next", "outdoor", "heating", "cooling", "hours"]
        return pd.DataFrame(columns=columns, index=grid.index[:0], dtype=float)
    step = _grid_step(grid.index)
    indoor = _metric(grid, "indoor_temp", skip_filled=skip_filled)
    outdoor = _metric(grid, "outdoor_temp", skip_filled=skip_filled)
    heating = _metric(grid, "heating", skip_filled=skip_filled)
    _check_duty(heating, "heating")
    has_cooling = "cooling" in grid.columns
    cooling = (
        _metric(grid, "cooling", skip_filled=skip_filled) if has_cooling else np.zeros(len(grid))
    )
    if has_cooling:
        _check_duty(cooling, "cooling")
    index = grid.index
    valid = (
        np.asarray((index[1:] - index[:-1]) == step)
        & np.isfinite(indoor[:-1])
        & np.isfinite(indoor[1:])
        & np.isfinite(outdoor[:-1])
        & np.isfinite(heating[:-1])
        & np.isfinite(cooling[:-1])
    )
    return pd.DataFrame(
        {
            "indoor": indoor[:-1][valid],
            "indoor_next": indoor[1:][valid],
            "outdoor": outdoor[:-1][valid],
            "heating": heating[:-1][valid],
            "cooling": cooling[:-1][valid],
            "hours": step / pd.Timedelta(hours=1),
        },
        index=index[:-1][valid],
    )


def _as_result(values: np.ndarray, scalar: bool) -> float | np.ndarray:
    return float(values) if scalar else values


class ThermalModel:
    """First-order RC model of a home's heating, cooling and heat loss, eq. (1).

    Parameters
    ----------
    min_rows : int, default 192
        The fewest consecutive pairs of valid rows :meth:`fit` accepts: 192 is two days of
        15-minute slots, about the least that shows the heating both on and off across
        different outdoor temperatures.
    skip_filled : bool, default True
        Ignore values the quality step filled in (``<metric>_gap`` True): an interpolated
        stretch has a made-up slope.

    Attributes
    ----------
    loss_rate_ : float
        :math:`a`, the heat loss rate per hour (1 / the RC time constant in hours).
    heat_rate_ : float
        :math:`b`, how fast full heating warms the home, °C/h, before losses.
    cool_rate_ : float
        :math:`c`, how fast full cooling cools it, °C/h; NaN when the data had no cooling.
    gain_ : float
        :math:`d`, internal and solar gains, °C/h.
    residual_sd_ : float
        Standard deviation of the one-step prediction error, °C per step (NaN for
        :meth:`default`).
    std_errors_ : dict of str to float
        Approximate standard errors of the four rates (NaN for :meth:`default`).
    n_rows_ : int
        Step pairs the fit used (0 for :meth:`default`).
    step_minutes_ : float
        The step of the grid it was fitted on; the default step of :meth:`predict_temperature`.
    is_default_ : bool
        True when the rates are :data:`DEFAULT_RATES`, not learned.

    Examples
    --------
    >>> model = ThermalModel.default()
    >>> round(model.heat_up_minutes(17.0, 21.0, outdoor_c=5.0))
    110
    >>> model.heat_up_minutes(17.0, 60.0, outdoor_c=5.0)
    inf
    """

    def __init__(self, *, min_rows: int = 192, skip_filled: bool = True) -> None:
        self.min_rows = min_rows
        self.skip_filled = skip_filled

    # ----------------------------------------------------------------------------- fitting
    def fit(self, grid: pd.DataFrame) -> ThermalModel:
        """Learn the rates of eq. (1) from a grid frame.

        Parameters
        ----------
        grid : pandas.DataFrame
            Grid frame with ``indoor_temp``, ``outdoor_temp``, ``heating`` (duty 0..1) and
            optionally ``cooling``; see :func:`step_pairs` for what counts as a valid step.

        Returns
        -------
        ThermalModel
            ``self``, fitted.

        Raises
        ------
        ValueError
            Too few valid steps, heating that never varies, or rates that make no physical
            sense (a home that does not lose heat, heating that does not warm it).
        """
        if not isinstance(self.min_rows, int | np.integer) or self.min_rows < 10:
            raise ValueError(f"min_rows must be an integer of at least 10, got {self.min_rows!r}")
        pairs = step_pairs(grid, skip_filled=self.skip_filled)
        n = len(pairs)
        if n < self.min_rows:
            raise ValueError(
                f"a thermal fit needs at least {self.min_rows} consecutive pairs of valid rows "
                f"(two days of 15-minute slots by default) and the grid has {n}; collect more "
                "telemetry, or use ThermalModel.default() until there is enough"
            )
        heating = pairs["heating"].to_numpy()
        if heating.std() < _MIN_DUTY_SD:
            raise ValueError(
                f"the heating duty barely varies (sd {heating.std():.3f} over {n} steps), so its "
                "effect cannot be told apart from the heat loss; fit on a period where the "
                "heating switches on and off, or use ThermalModel.default()"
            )
        cooling = pairs["cooling"].to_numpy()
        learn_cooling = bool(cooling.std() >= _MIN_DUTY_SD)
        if "cooling" in grid.columns and not learn_cooling:
            logger.info("cooling barely varies in the data; the cooling rate is not learned")
        dt = float(pairs["hours"].iloc[0])
        indoor = pairs["indoor"].to_numpy()
        y = (pairs["indoor_next"].to_numpy() - indoor) / dt
        columns = [pairs["outdoor"].to_numpy() - indoor, heating]
        if learn_cooling:
            columns.append(-cooling)
        columns.append(np.ones(n))
        x = np.column_stack(columns)
        coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
        if rank < x.shape[1]:
            raise ValueError(
                "the inputs are collinear (e.g. the indoor-outdoor difference never changes); "
                "fit on a longer period with more varied weather"
            )
        # Eq. (2): coef[0] = (1 - exp(-a dt)) / dt; the other coefficients carry the same
        # factor over a, which we divide back out to get continuous-time rates.
        alpha = float(coef[0])
        if not 0.0 < alpha * dt < 1.0:
            raise ValueError(
                f"the fitted heat loss rate ({alpha:.4f}/h) is not physical: the data do not show "
                "the home drifting toward the outdoor temperature. Check that outdoor_temp is in "
                "°C and belongs to this home, or use ThermalModel.default()"
            )
        loss_rate = -math.log1p(-alpha * dt) / dt
        scale = loss_rate / alpha
        heat_rate = float(coef[1]) * scale
        if heat_rate <= 0:
            raise ValueError(
                f"the fitted heating rate ({heat_rate:.3f} °C/h) is not positive: the indoor "
                "temperature does not rise when the heating runs. Check that 'heating' is this "
                "home's duty (0..1) and the sensor is indoors, or use ThermalModel.default()"
            )
        residuals = y - x @ coef
        dof = max(n - x.shape[1], 1)
        sigma2 = float(residuals @ residuals) / dof
        se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(x.T @ x)))

        self.loss_rate_ = loss_rate
        self.heat_rate_ = heat_rate
        self.cool_rate_ = float(coef[2]) * scale if learn_cooling else math.nan
        self.gain_ = float(coef[-1]) * scale
        self.residual_sd_ = math.sqrt(sigma2) * dt
        # Delta method for a; the ratio a/alpha held fixed for the others, which is close
        # enough for rates known to a few percent.
        self.std_errors_ = {
            "loss_rate": float(se[0]) / (1.0 - alpha * dt),
            "heat_rate": float(se[1]) * scale,
            "cool_rate": float(se[2]) * scale if learn_cooling else math.nan,
            "gain": float(se[-1]) * scale,
        }
        self.n_rows_ = n
        self.step_minutes_ = dt * 60.0
        self.is_default_ = False
        logger.debug(
            "thermal fit on %d steps: a=%.4f/h b=%.3f°C/h d=%.3f°C/h",
            n,
            self.loss_rate_,
            self.heat_rate_,
            self.gain_,
        )
        return self

    @classmethod
    def default(cls, *, step_minutes: float = 15.0) -> ThermalModel:
        """A model with :data:`DEFAULT_RATES`, for a home without enough data yet.

        Parameters
        ----------
        step_minutes : float, default 15
            Step used by :meth:`predict_temperature` when none is given.
        """
        model = cls()
        model.loss_rate_ = DEFAULT_RATES["loss_rate"]
        model.heat_rate_ = DEFAULT_RATES["heat_rate"]
        model.cool_rate_ = DEFAULT_RATES["cool_rate"]
        model.gain_ = DEFAULT_RATES["gain"]
        model.residual_sd_ = math.nan
        model.std_errors_ = dict.fromkeys(DEFAULT_RATES, math.nan)
        model.n_rows_ = 0
        model.step_minutes_ = float(step_minutes)
        model.is_default_ = True
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "loss_rate_"):
            raise RuntimeError(
                "ThermalModel is not fitted: call fit(grid) first, or use ThermalModel.default()"
            )

    # --------------------------------------------------------------------------- prediction
    def predict_step(
        self,
        indoor: Any,
        outdoor: Any,
        heating: Any,
        cooling: Any = 0.0,
        *,
        step_minutes: float | None = None,
    ) -> np.ndarray:
        """Indoor temperature one step later, eq. (2); all inputs broadcast.

        Parameters
        ----------
        indoor, outdoor : array_like
            Temperatures at the start of the step, °C.
        heating, cooling : array_like
            Duty over the step, 0..1. ``cooling`` is ignored when no cooling rate was learned.
        step_minutes : float, optional
            Step length; defaults to :attr:`step_minutes_`.

        Returns
        -------
        numpy.ndarray
            Temperature at the end of the step, °C.
        """
        self._check_fitted()
        step = self.step_minutes_ if step_minutes is None else float(step_minutes)
        return self._step(indoor, outdoor, heating, cooling, step / 60.0)

    def _step(self, indoor: Any, outdoor: Any, heating: Any, cooling: Any, hours: float) -> Any:
        drive = self._drive(np.asarray(heating, dtype=float), np.asarray(cooling, dtype=float))
        equilibrium = np.asarray(outdoor, dtype=float) + drive / self.loss_rate_
        return equilibrium + (np.asarray(indoor, dtype=float) - equilibrium) * math.exp(
            -self.loss_rate_ * hours
        )

    def _drive(self, heating: Any, cooling: Any) -> np.ndarray:
        """Everything but the heat loss in eq. (1), °C/h."""
        cool = self.cool_rate_ if np.isfinite(self.cool_rate_) else 0.0
        return np.asarray(self.heat_rate_ * heating - cool * cooling + self.gain_, dtype=float)

    def predict_temperature(
        self,
        start_temp: float,
        outdoor: Any,
        heating: Any,
        steps: int,
        *,
        cooling: Any = 0.0,
        step_minutes: float | None = None,
    ) -> np.ndarray:
        """Simulate the indoor temperature forward for ``steps`` steps.

        Parameters
        ----------
        start_temp : float
            Indoor temperature now, °C.
        outdoor : float or array_like of length ``steps``
            Outdoor temperature over each step, °C.
        heating : float or array_like of length ``steps``
            Heating duty over each step, 0..1.
        steps : int
            How many steps to simulate.
        cooling : float or array_like of length ``steps``, default 0
            Cooling duty over each step.
        step_minutes : float, optional
            Step length; defaults to :attr:`step_minutes_`.

        Returns
        -------
        numpy.ndarray
            ``steps + 1`` temperatures: ``start_temp``, then the end of each step.
        """
        self._check_fitted()
        if steps < 0:
            raise ValueError(f"steps must be at least 0, got {steps}")
        step = self.step_minutes_ if step_minutes is None else float(step_minutes)
        inputs = []
        for name, value in (("outdoor", outdoor), ("heating", heating), ("cooling", cooling)):
            array = np.broadcast_to(np.asarray(value, dtype=float), (steps,))
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} has missing values; fill them before predicting")
            inputs.append(array)
        out = np.empty(steps + 1)
        out[0] = float(start_temp)
        for t in range(steps):
            out[t + 1] = self._step(out[t], inputs[0][t], inputs[1][t], inputs[2][t], step / 60.0)
        return out

    def _minutes_to_reach(
        self, from_c: Any, to_c: Any, outdoor_c: Any, drive: np.ndarray, rising: bool
    ) -> float | np.ndarray:
        """Time for eq. (1) with constant inputs to carry the home from one temperature to
        another, in minutes; inf when it settles short of the target."""
        scalar = all(np.ndim(v) == 0 for v in (from_c, to_c, outdoor_c, drive))
        start, target, outdoor = (np.asarray(v, dtype=float) for v in (from_c, to_c, outdoor_c))
        equilibrium = outdoor + drive / self.loss_rate_
        with np.errstate(divide="ignore", invalid="ignore"):
            # T(t) = T_eq + (T_0 - T_eq) exp(-a t), solved for T(t) = target.
            fraction = (target - equilibrium) / (start - equilibrium)
            minutes = -np.log(fraction) / self.loss_rate_ * 60.0
        done = target <= start if rising else target >= start
        reachable = (fraction > 0) & (fraction <= 1)
        minutes = np.where(done, 0.0, np.where(reachable, minutes, np.inf))
        if np.any(np.isinf(minutes)):
            logger.info(
                "target unreachable: the home settles at %s °C, short of the target",
                np.round(np.atleast_1d(equilibrium)[:3], 1),
            )
        return _as_result(minutes, scalar)

    def heat_up_minutes(
        self, from_c: Any, to_c: Any, outdoor_c: Any, *, duty: float = 1.0
    ) -> float | np.ndarray:
        """Minutes of heating to warm the home from ``from_c`` to ``to_c``.

        The closed form of eq. (1) with constant outdoor temperature and heating duty:
        :math:`t = \\ln\\frac{T_0 - T_{eq}}{T_{target} - T_{eq}} / a` with
        :math:`T_{eq} = T_{out} + (b\\,u + d) / a`.

        Parameters
        ----------
        from_c, to_c : float or array_like
            Start and target indoor temperature, °C.
        outdoor_c : float or array_like
            Outdoor temperature, °C.
        duty : float, default 1
            Heating duty while warming up.

        Returns
        -------
        float or numpy.ndarray
            Minutes (0 when already warm enough). ``inf`` when the target is unreachable:
            with this heating the home settles at :math:`T_{eq}`, below ``to_c`` (an
            undersized heater on a very cold day).
        """
        self._check_fitted()
        drive = self._drive(duty, 0.0)
        return self._minutes_to_reach(from_c, to_c, outdoor_c, drive, rising=True)

    def cool_down_minutes(
        self, from_c: Any, to_c: Any, outdoor_c: Any, *, cooling: bool | None = None
    ) -> float | np.ndarray:
        """Minutes for the home to cool from ``from_c`` down to ``to_c`` (closed form of (1)).

        Parameters
        ----------
        from_c, to_c : float or array_like
            Start and target indoor temperature, °C.
        outdoor_c : float or array_like
            Outdoor temperature, °C.
        cooling : bool, optional
            True: with cooling at full duty (needs a learned :attr:`cool_rate_`). False: heating
            off, free drift. None (default): cooling when a cooling rate was learned, else
            free drift.

        Returns
        -------
        float or numpy.ndarray
            Minutes (0 when already cool enough). ``inf`` when the target is unreachable: the
            home settles above ``to_c``, e.g. drifting freely toward a warm outside.
        """
        self._check_fitted()
        has_cooling = bool(np.isfinite(self.cool_rate_))
        if cooling and not has_cooling:
            raise ValueError(
                "this model learned no cooling rate (the data had no cooling); call "
                "cool_down_minutes(..., cooling=False) for the free drift"
            )
        use = has_cooling if cooling is None else bool(cooling)
        drive = self._drive(0.0, 1.0 if use else 0.0)
        return self._minutes_to_reach(from_c, to_c, outdoor_c, drive, rising=False)

    def preheat_slots(
        self,
        comfort_by_slot: Any,
        eco_by_slot: Any,
        outdoor_by_slot: Any,
        slot_minutes: float = 15,
        max_slots: int = 16,
        *,
        wrap: bool = True,
    ) -> np.ndarray:
        """How many slots before each comfort start the heating must begin (Smart Recovery).

        The target in force in slot ``i`` is ``comfort_by_slot[i]``, or ``eco_by_slot[i]`` where
        the comfort value is NaN (no comfort wanted then). A comfort start is a slot whose
        comfort target is above the previous slot's target. Starting from that previous
        target, the answer is the fewest whole slots ``k`` of full heating, under the outdoor
        temperatures of slots ``i-k .. i-1``, that bring the home to the comfort
        target by the start of slot ``i`` (simulated with eq. (2)).

        Parameters
        ----------
        comfort_by_slot : array_like of float, shape (n,)
            Comfort setpoint per slot, °C; NaN where no comfort is wanted.
        eco_by_slot : float or array_like of float, shape (n,)
            Setback (eco) setpoint per slot, °C.
        outdoor_by_slot : float or array_like of float, shape (n,)
            Expected outdoor temperature per slot, °C (a forecast, or the slot's typical value).
        slot_minutes : float, default 15
            Slot length.
        max_slots : int, default 16
            Cap on the answer: a comfort start that needs longer (or cannot be reached at all)
            gets ``max_slots``, so the heating starts as early as the planner allows.
        wrap : bool, default True
            The slots are a cycle (a time-of-week profile): slot 0 follows the last one.

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
            0 where no pre-heating is needed, else 1..``max_slots`` slots of lead time.
        """
        self._check_fitted()
        comfort = np.asarray(comfort_by_slot, dtype=float)
        if comfort.ndim != 1 or comfort.size == 0:
            raise ValueError("comfort_by_slot must be a non-empty 1-D array, one value per slot")
        n = comfort.size
        eco = np.broadcast_to(np.asarray(eco_by_slot, dtype=float), (n,))
        outdoor = np.broadcast_to(np.asarray(outdoor_by_slot, dtype=float), (n,))
        if max_slots < 1:
            raise ValueError(f"max_slots must be at least 1, got {max_slots}")
        if slot_minutes <= 0:
            raise ValueError(f"slot_minutes must be positive, got {slot_minutes}")
        target = np.where(np.isfinite(comfort), comfort, eco)
        if not np.all(np.isfinite(target)):
            raise ValueError("every slot needs a comfort or an eco setpoint; fill the NaNs")
        if not np.all(np.isfinite(outdoor)):
            raise ValueError(
                "outdoor_by_slot has missing values; fill them with a forecast or the slot's "
                "typical outdoor temperature"
            )
        hours = slot_minutes / 60.0
        out = np.zeros(n, dtype=np.int64)
        previous = np.roll(target, 1)
        starts = np.flatnonzero(np.isfinite(comfort) & (target > previous))
        if not wrap:
            starts = starts[starts > 0]
        for i in starts:
            lead = max_slots
            # Heating that starts k slots early runs through slots i-k .. i-1; grow k one slot
            # at a time, simulating from the new start each time.
            for k in range(1, max_slots + 1):
                slots = np.arange(i - k, i)
                slots = slots % n if wrap else np.clip(slots, 0, None)
                temperature = previous[i]
                for j in slots:
                    temperature = float(self._step(temperature, outdoor[j], 1.0, 0.0, hours))
                if temperature >= comfort[i] - 1e-9:
                    lead = k
                    break
            else:
                logger.info(
                    "slot %d: %.1f °C not reached within %d slots of heating; starting at the cap",
                    i,
                    comfort[i],
                    max_slots,
                )
            out[i] = lead
        return out

    # ---------------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """The model as a JSON-serializable dict (NaN written as None)."""
        self._check_fitted()

        def clean(value: float) -> float | None:
            return None if not math.isfinite(value) else float(value)

        return {
            "model": MODEL_NAME,
            "format_version": FORMAT_VERSION,
            "config": {"min_rows": int(self.min_rows), "skip_filled": bool(self.skip_filled)},
            "loss_rate": clean(self.loss_rate_),
            "heat_rate": clean(self.heat_rate_),
            "cool_rate": clean(self.cool_rate_),
            "gain": clean(self.gain_),
            "residual_sd": clean(self.residual_sd_),
            "std_errors": {key: clean(value) for key, value in self.std_errors_.items()},
            "n_rows": int(self.n_rows_),
            "step_minutes": float(self.step_minutes_),
            "is_default": bool(self.is_default_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThermalModel:
        """Rebuild a model written by :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("model") != MODEL_NAME:
            raise ValueError(f"not a saved ThermalModel (expected model={MODEL_NAME!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"saved ThermalModel has format_version {data.get('format_version')!r}; this "
                f"version of tailor reads {FORMAT_VERSION}: refit the model"
            )

        def number(value: Any) -> float:
            return math.nan if value is None else float(value)

        model = cls(**data.get("config", {}))
        model.loss_rate_ = number(data["loss_rate"])
        model.heat_rate_ = number(data["heat_rate"])
        model.cool_rate_ = number(data["cool_rate"])
        model.gain_ = number(data["gain"])
        model.residual_sd_ = number(data["residual_sd"])
        model.std_errors_ = {key: number(value) for key, value in data["std_errors"].items()}
        model.n_rows_ = int(data["n_rows"])
        model.step_minutes_ = float(data["step_minutes"])
        model.is_default_ = bool(data["is_default"])
        if not (model.loss_rate_ > 0 and model.heat_rate_ > 0):
            raise ValueError("saved ThermalModel has non-positive rates; refit the model")
        return model
