"""A home's decision model as one ONNX graph, and the small runner that keeps deciding offline.

:func:`export_onnx` writes :func:`tailor.devices.policy.decide` as an ONNX graph (opset 17)
with everything it needs inside: the occupancy model's coefficients, the per-slot comfort and
pre-heat tables, the comfort bounds, and, as metadata, the version, time zone, slot length and
feature names. :class:`EdgeRunner` loads it with onnxruntime alone (CPU, no network, no
server) and turns a stream of motion readings into one decision per slot.

The graph computes in float64 (inputs and outputs are float32, as devices expect), so its
decisions equal the server's on the same inputs to about 1e-6 °C; :func:`max_abs_difference`
measures it.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailor.devices.features import slot_of_week, slots_per_week
from tailor.devices.policy import (
    DecisionParams,
    decide,
    history_slots,
    occupancy_features_online,
)

__all__ = [
    "INPUTS",
    "OPSET",
    "OUTPUTS",
    "EdgeDecision",
    "EdgeRunner",
    "describe",
    "export_onnx",
    "max_abs_difference",
]

logger = logging.getLogger(__name__)

OPSET = 17
# IR version 8 is what opset 17 shipped with; older runtimes on devices still read it.
IR_VERSION = 8
INPUTS = ("features", "slot")
OUTPUTS = ("setpoint", "occupied_probability", "occupied", "preheating")
_META_PREFIX = "tailor."
_MODEL_KIND = "devices.decision"


def _metadata(params: DecisionParams) -> dict[str, str]:
    return {
        "kind": _MODEL_KIND,
        "version": params.version,
        "timezone": params.timezone,
        "slot_minutes": str(params.slot_minutes),
        "feature_names": json.dumps(list(params.feature_names)),
        "mode": params.mode,
        "threshold": repr(params.threshold),
        "lower_c": repr(params.lower_c),
        "upper_c": repr(params.upper_c),
        "history_slots": str(history_slots(params.slot_minutes)),
    }


def export_onnx(params: DecisionParams, path: str | Path) -> Path:
    """Write ``params``' decision function as an ONNX model at ``path``.

    The graph: ``p = Sigmoid(MatMul(features, coef) + intercept)``; ``occupied = p >=
    threshold``; ``Where(occupied, Gather(comfort, slot), Gather(unoccupied_target, slot))``
    clipped to ``[lower_c, upper_c]`` (NaN in mode ``"off"``). Pre-heating is folded into the
    ``unoccupied_target`` table, so the graph needs no loop.

    Parameters
    ----------
    params : DecisionParams
        The home's parameters.
    path : str or Path
        Where to write the ``.onnx`` file (written whole or not at all).

    Returns
    -------
    Path
        ``path``. Inputs ``features`` float32 ``(N, k)`` and ``slot`` int64 ``(N,)``; outputs
        ``setpoint`` and ``occupied_probability`` float32 ``(N,)``, ``occupied`` and
        ``preheating`` bool ``(N,)``. Metadata ``tailor.version``, ``tailor.timezone``,
        ``tailor.slot_minutes``, ``tailor.feature_names`` (JSON) and the bounds.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(params.feature_names)

    def constant(name: str, value: Any, dtype: Any = np.float64) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name)

    initializers = [
        constant("coef", params.occupancy_coef),
        constant("intercept", params.occupancy_intercept),
        constant("threshold", params.threshold),
        constant("comfort_table", params.comfort),
        constant("unoccupied_table", params.unoccupied_target),
        constant("preheat_table", params.preheating, bool),
        constant("lower_c", params.lower_c),
        constant("upper_c", params.upper_c),
        constant("mode_on", params.mode != "off", bool),
        constant("nan", math.nan),
    ]
    node = helper.make_node
    double = TensorProto.DOUBLE
    nodes = [
        # float64 inside: a float32 logit could flip "occupied" where p sits at the threshold.
        node("Cast", ["features"], ["x64"], to=double),
        node("MatMul", ["x64", "coef"], ["logit_raw"]),
        node("Add", ["logit_raw", "intercept"], ["logit"]),
        node("Sigmoid", ["logit"], ["p64"]),
        node("GreaterOrEqual", ["p64", "threshold"], ["occupied"]),
        node("Gather", ["comfort_table", "slot"], ["comfort"], axis=0),
        node("Gather", ["unoccupied_table", "slot"], ["unoccupied"], axis=0),
        node("Where", ["occupied", "comfort", "unoccupied"], ["target"]),
        node("Clip", ["target", "lower_c", "upper_c"], ["bounded"]),
        node("Where", ["mode_on", "bounded", "nan"], ["setpoint64"]),
        node("Cast", ["setpoint64"], ["setpoint"], to=TensorProto.FLOAT),
        node("Cast", ["p64"], ["occupied_probability"], to=TensorProto.FLOAT),
        node("Gather", ["preheat_table", "slot"], ["preheat_slot"], axis=0),
        node("Not", ["occupied"], ["vacant"]),
        node("And", ["vacant", "preheat_slot"], ["preheating"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tailor_home_decision",
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("slot", TensorProto.INT64, ["N"]),
        ],
        outputs=[
            helper.make_tensor_value_info("setpoint", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("occupied_probability", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("occupied", TensorProto.BOOL, ["N"]),
            helper.make_tensor_value_info("preheating", TensorProto.BOOL, ["N"]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tailor",
        doc_string="A home's setpoint decision (tailor.devices.policy.decide).",
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model, {_META_PREFIX + key: value for key, value in _metadata(params).items()}
    )
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_bytes(model.SerializeToString())
    staging.replace(path)
    logger.info("exported decision model %s (version %s) to %s", _MODEL_KIND, params.version, path)
    return path


# --- the runner --------------------------------------------------------------------------


def _open_session(path: Path) -> Any:
    import onnxruntime as ort

    fix = "export it again with tailor.devices.edge.export_onnx"
    if not path.is_file():
        raise ValueError(f"{path}: no such model file; {fix}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a device log has no room for chatter
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own classes, none shared with Python's
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable ONNX model ({reason}); {fix}") from None


def _read_metadata(path: Path, session: Any) -> dict[str, str]:
    raw = session.get_modelmeta().custom_metadata_map
    meta = {k.removeprefix(_META_PREFIX): v for k, v in raw.items() if k.startswith(_META_PREFIX)}
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if meta.get("kind") != _MODEL_KIND or tuple(names[0]) != INPUTS or set(OUTPUTS) - set(names[1]):
        raise ValueError(
            f"{path}: not a tailor decision model (export one with tailor.devices.edge.export_onnx)"
        )
    return meta


def describe(model_path: str | Path) -> dict[str, Any]:
    """Inputs, outputs and metadata of an exported decision model (what ``tailor edge
    inspect`` prints). Raises ValueError for a missing or damaged file."""
    path = Path(model_path)
    session = _open_session(path)
    meta = _read_metadata(path, session)

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "type": t.type, "shape": list(t.shape)} for t in items]

    return {
        "path": str(path),
        "inputs": tensors(session.get_inputs()),
        "outputs": tensors(session.get_outputs()),
        "metadata": meta,
    }


@dataclass(frozen=True)
class EdgeDecision:
    """One slot's decision on the device.

    ``setpoint`` is None in mode ``"off"`` (the device keeps its own program).
    """

    ts: pd.Timestamp
    slot: int
    setpoint: float | None
    occupied_probability: float
    occupied: bool
    preheating: bool
    mode: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ts`` as ISO 8601 UTC."""
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        return out


def _parse_ts(value: Any) -> pd.Timestamp:
    if value is None or isinstance(value, bool):
        raise ValueError("reading: 'ts' is missing; give the time it was measured (ISO 8601)")
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # Epoch numbers from devices are milliseconds (what the event schema uses).
            ts = pd.Timestamp(int(value), unit="ms")
        else:
            ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"reading: 'ts' {value!r} is not a time (use ISO 8601)") from None
    if ts is pd.NaT:
        raise ValueError("reading: 'ts' is empty; give the time it was measured (ISO 8601)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class EdgeRunner:
    """Runs an exported decision model with onnxruntime, offline.

    Parameters
    ----------
    model_path : str or Path
        An ``.onnx`` file written by :func:`export_onnx`; it carries everything the runner
        needs (time zone, slot length, feature names).
    motion_metric : str
        The readings' metric that reports motion (1 = motion seen).
    max_gap_slots : int, optional
        A stream that jumps further ahead than this (default: a week of slots; the device was
        off, or its clock jumped) starts afresh at the new slot instead of emitting a decision
        for every slot it missed.

    Examples
    --------
    >>> runner = EdgeRunner("home.onnx")  # doctest: +SKIP
    >>> for decision in runner.run(readings):  # doctest: +SKIP
    ...     thermostat.set(decision.setpoint)
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        motion_metric: str = "motion",
        max_gap_slots: int | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.motion_metric = motion_metric
        self._session = _open_session(self.model_path)
        meta = _read_metadata(self.model_path, self._session)
        try:
            self.slot_minutes = int(meta["slot_minutes"])
            slots_per_week(self.slot_minutes)
            self.timezone = meta["timezone"]
            self.feature_names = tuple(json.loads(meta["feature_names"]))
            self.version = meta["version"]
            self.mode = meta["mode"]
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"{self.model_path}: damaged model metadata ({exc}); export it again"
            ) from None
        self.history = history_slots(self.slot_minutes)
        self.max_gap_slots = (
            slots_per_week(self.slot_minutes) if max_gap_slots is None else int(max_gap_slots)
        )
        if self.max_gap_slots < 1:
            raise ValueError(f"max_gap_slots: at least 1, got {max_gap_slots}")
        self._step = pd.Timedelta(minutes=self.slot_minutes)
        # Motion of the closed slots before the current one, oldest first.
        self._motion: deque[float] = deque(maxlen=self.history)
        self._current: pd.Timestamp | None = None
        self._current_motion = math.nan

    # -- one slot -------------------------------------------------------------------------

    def infer(self, features: np.ndarray, slot: np.ndarray) -> dict[str, np.ndarray]:
        """Run the graph on a batch: the ONNX outputs by name."""
        k = len(self.feature_names)
        if np.ndim(features) != 2 or np.shape(features)[1] != k:
            raise ValueError(f"features: expected shape (n, {k}), got {np.shape(features)}")
        feeds = {
            "features": np.ascontiguousarray(features, dtype=np.float32),
            "slot": np.ascontiguousarray(slot, dtype=np.int64).reshape(-1),
        }
        values = self._session.run(list(OUTPUTS), feeds)
        return dict(zip(OUTPUTS, values, strict=True))

    def decide(self, ts: Any, recent_motion: np.ndarray) -> EdgeDecision:
        """The decision for the slot containing ``ts`` given the motion of the slots before it
        (oldest first; 1, 0 or NaN for unknown)."""
        start = _parse_ts(ts).floor(self._step)
        features = occupancy_features_online(
            np.asarray(recent_motion, dtype=float),
            start,
            timezone=self.timezone,
            slot_minutes=self.slot_minutes,
        )
        slot = slot_of_week(pd.DatetimeIndex([start]), self.slot_minutes, self.timezone)
        out = self.infer(features.reshape(1, -1), slot)
        setpoint = float(out["setpoint"][0])
        return EdgeDecision(
            ts=start,
            slot=int(slot[0]),
            setpoint=None if math.isnan(setpoint) else setpoint,
            occupied_probability=float(out["occupied_probability"][0]),
            occupied=bool(out["occupied"][0]),
            preheating=bool(out["preheating"][0]),
            mode=self.mode,
            version=self.version,
        )

    # -- a stream -------------------------------------------------------------------------

    def step(self, reading: Mapping[str, Any]) -> list[EdgeDecision]:
        """Take one reading (a mapping with ``ts``, ``metric``, ``value``); return the
        decisions of the slots it opened (none while the stream stays in the same slot).

        Any metric moves the clock on; only ``motion_metric`` feeds the features. A reading
        for a slot already closed still corrects the remembered motion (if that slot is among
        the last :attr:`history`), so late deliveries count for the decisions to come.
        """
        if not isinstance(reading, Mapping):
            raise ValueError(f"reading: expected an object with ts, metric, value, got {reading!r}")
        ts = _parse_ts(reading.get("ts", reading.get("occurred_at")))
        metric = reading.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ValueError("reading: 'metric' is missing (e.g. \"motion\")")
        value = reading.get("value")
        motion: float | None = None
        if metric == self.motion_metric:
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"reading: motion 'value' {value!r} is not a number") from None
            # A NaN is no observation; anything above 0 is motion seen.
            motion = None if math.isnan(number) else float(number > 0)
        slot_start = ts.floor(self._step)
        decisions: list[EdgeDecision] = []
        if self._current is None:
            self._current = slot_start
            decisions.append(self.decide(slot_start, np.asarray(self._motion)))
        elif slot_start < self._current:
            self._late(slot_start, motion)
            return decisions
        elif (slot_start - self._current) / self._step > self.max_gap_slots:
            logger.warning(
                "readings jumped from %s to %s; starting afresh there", self._current, slot_start
            )
            self.reset()
            self._current = slot_start
            decisions.append(self.decide(slot_start, np.asarray(self._motion)))
        while self._current < slot_start:
            self._motion.append(self._current_motion)
            self._current_motion = math.nan
            self._current = self._current + self._step
            decisions.append(self.decide(self._current, np.asarray(self._motion)))
        if motion is not None:
            self._current_motion = max(np.nan_to_num(self._current_motion, nan=0.0), motion)
        return decisions

    def _late(self, slot_start: pd.Timestamp, motion: float | None) -> None:
        assert self._current is not None
        back = int((self._current - slot_start) / self._step)
        if motion is None:
            return
        if back > len(self._motion):
            logger.debug("reading for %s is older than the remembered motion; dropped", slot_start)
            return
        position = len(self._motion) - back
        self._motion[position] = max(np.nan_to_num(self._motion[position], nan=0.0), motion)

    def run(self, readings: Iterable[Mapping[str, Any]]) -> Iterator[EdgeDecision]:
        """One decision per slot from the first reading's slot to the last's, as the stream
        arrives; slots without readings count as unknown motion."""
        for reading in readings:
            yield from self.step(reading)

    def reset(self) -> None:
        """Forget the remembered motion (e.g. after the device was off for days)."""
        self._motion.clear()
        self._current = None
        self._current_motion = math.nan


def max_abs_difference(
    params: DecisionParams, onnx_path: str | Path, features: np.ndarray, slot: np.ndarray
) -> float:
    """The largest absolute gap between the server's :func:`~tailor.devices.policy.decide`
    and the ONNX model on the same rows, over setpoints (°C) and probabilities.

    The device receives float32 features, so the server decides on the same float32 values.
    Setpoints that are NaN on both sides (mode ``"off"``) agree; NaN on one side only is an
    infinite gap.
    """
    features32 = np.asarray(features, dtype=np.float32)
    server = decide(params, features32.astype(np.float64), np.asarray(slot, dtype=np.int64))
    device = EdgeRunner(onnx_path).infer(features32, slot)
    worst = 0.0
    for name, ours in (
        ("setpoint", server.setpoint),
        ("occupied_probability", server.occupied_probability),
    ):
        theirs = device[name].astype(np.float64)
        both_nan = np.isnan(ours) & np.isnan(theirs)
        gap = np.abs(ours - theirs)
        gap = np.where(both_nan, 0.0, np.where(np.isnan(gap), np.inf, gap))
        if gap.size:
            worst = max(worst, float(gap.max()))
    return worst
