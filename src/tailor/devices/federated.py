"""The shared default comfort model, trained across homes without moving their telemetry.

Every home starts from one default model before it has habits of its own (cold start): a
ridge regression of the setpoint occupants chose (°C) on the time-of-week features of
:mod:`~tailor.devices.features` and the outdoor temperature. Here that model is trained
with Federated Averaging (McMahan et al. 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", Algorithm 1): each home runs a few full-batch
gradient steps on its own data from the global weights, and the server averages the
returned weights, weighted by each home's number of rows ``n_h``. Only weight vectors
and two scalars per home (``n_h`` and a loss) travel; the rows stay with their home.

Three trainers share one algorithm so they can be compared:

- :func:`train_federated` runs it in Flower's simulation (the ``[iot]`` extra), one
  client per home;
- :func:`fedavg_reference` runs the same updates in plain NumPy, and the tests check
  that both agree;
- :func:`train_central` is the peer that pools all rows in one place (closed-form ridge).

Features are scaled with fixed constants, never with statistics of the data, so that
scaling leaks nothing about any home: the time features are already in [-1, 1] and the
outdoor temperature becomes ``(t - 5 °C) / 10 °C`` (:func:`comfort_features`).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> homes = {}
>>> for h in range(3):
...     X = rng.uniform(-1, 1, size=(50, 4))
...     y = 20 + X @ np.array([1.0, -0.5, 0.2, 0.0]) + h * 0.5
...     homes[f"home-{h}"] = (X, y)
>>> fed = fedavg_reference(homes, FederatedConfig(rounds=50))
>>> central = train_central(homes, l2=fed.config.l2)
>>> X, y = np.vstack([X for X, _ in homes.values()]), np.hstack([y for _, y in homes.values()])
>>> bool(0.9 < mae(fed.weights, X, y) / mae(central, X, y) < 1.1)
True

``train_federated(homes, config)`` gives the same weights as ``fedavg_reference`` through
Flower; ``compare(train_homes, test_homes, config)`` scores both trainings on held-out homes.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from tailor.devices.features import TIME_FEATURE_NAMES, time_features

__all__ = [
    "FEATURE_NAMES",
    "IOT_EXTRA_MESSAGE",
    "OUTDOOR_TEMP_CENTER",
    "OUTDOOR_TEMP_SCALE",
    "SETPOINT_PRIOR",
    "FederatedConfig",
    "FederatedResult",
    "FlowerNotInstalledError",
    "comfort_features",
    "compare",
    "fedavg_reference",
    "initial_weights",
    "local_update",
    "mae",
    "predict",
    "ridge_loss",
    "train_central",
    "train_federated",
]

logger = logging.getLogger(__name__)

IOT_EXTRA_MESSAGE = "federated training needs the iot extra: pip install 'tailor[iot]'"

#: Fixed scaling of the outdoor temperature: ``(t - center) / scale``. Constants rather than
#: a mean and a standard deviation, because computing those would need the raw readings.
OUTDOOR_TEMP_CENTER = 5.0
OUTDOOR_TEMP_SCALE = 10.0
#: The intercept every training run starts from (°C): a common indoor setpoint, so gradient
#: descent spends its steps on the shape of the day rather than on reaching 20 °C from 0.
SETPOINT_PRIOR = 20.0
FEATURE_NAMES: tuple[str, ...] = (*TIME_FEATURE_NAMES, "outdoor_temp")

# The arrays a home sends back live under these keys in Flower's records.
_ARRAYS_KEY = "arrays"
_CONFIG_KEY = "config"
_WEIGHT_KEY = "num-examples"


class FlowerNotInstalledError(ImportError):
    """Flower (or Ray, its simulation backend) is missing: install the ``[iot]`` extra."""


@dataclass(frozen=True)
class FederatedConfig:
    """Hyperparameters of federated averaging on the ridge comfort model.

    Parameters
    ----------
    rounds : int, default 20
        Communication rounds: the server sends the global weights and averages the replies.
    local_epochs : int, default 5
        Full-batch gradient steps each home takes per round, starting from the global weights.
    learning_rate : float, default 0.5
        Gradient-descent step size. Features are scaled to about [-1, 1], where 0.5 is
        stable; a loss that becomes infinite raises and asks for a smaller value.
    l2 : float, default 1e-3
        Ridge penalty on the coefficients (not on the intercept), per row: the loss is
        ``mean((Xw + b - y)^2) / 2 + l2 / 2 * |w|^2``.
    fraction_fit : float, default 1.0
        Share of homes asked to train in each round (at least one). With 1.0 every home
        trains every round and the result is deterministic.
    seed : int, default 0
        Seeds the choice of homes when ``fraction_fit < 1`` in :func:`fedavg_reference`
        (Flower samples with its own generator).
    """

    rounds: int = 20
    local_epochs: int = 5
    learning_rate: float = 0.5
    l2: float = 1e-3
    fraction_fit: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not _finite_number(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate!r}"
            )
        if not _finite_number(self.l2) or self.l2 < 0:
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2!r}")
        if not _finite_number(self.fraction_fit) or not 0 < self.fraction_fit <= 1:
            raise ValueError(f"fraction_fit must be in (0, 1], got {self.fraction_fit!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


@dataclass
class FederatedResult:
    """What a training run produced.

    Attributes
    ----------
    weights : ndarray of shape (n_features + 1,)
        Coefficients, then the intercept (last).
    loss_history : ndarray of shape (rounds,)
        Pooled ridge loss of the global model after each round. Each home computes it on
        its own rows and only the scalar travels; the average is weighted by ``n_h``.
    rounds : int
        Rounds run.
    clients : int
        Homes (one client each).
    n_samples : int
        Rows across all homes; none of them left their home.
    backend : str
        ``"flower"`` or ``"numpy"``.
    config : FederatedConfig
        The hyperparameters used.
    """

    weights: np.ndarray
    loss_history: np.ndarray
    rounds: int
    clients: int
    n_samples: int
    backend: str
    config: FederatedConfig = field(default_factory=FederatedConfig)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted setpoint (°C) for feature rows ``X``."""
        return predict(self.weights, X)


def comfort_features(
    index: pd.DatetimeIndex, outdoor_temp: Sequence[float] | np.ndarray, timezone: str = "UTC"
) -> np.ndarray:
    """Feature rows of the shared comfort model: :data:`FEATURE_NAMES`, one per timestamp.

    The nine time features of :func:`~tailor.devices.features.time_features` (local time of
    the home), then the outdoor temperature scaled as ``(t - 5) / 10`` with fixed constants.

    Parameters
    ----------
    index : DatetimeIndex
        When each row happened (UTC, or naive meaning UTC).
    outdoor_temp : array-like of shape (n,)
        Outdoor temperature in °C at each timestamp; fill gaps before calling.
    timezone : str, default "UTC"
        The home's IANA time zone.

    Returns
    -------
    ndarray of shape (n, 10)
    """
    outdoor = np.asarray(outdoor_temp, dtype=float)
    if outdoor.ndim != 1 or len(outdoor) != len(index):
        raise ValueError(
            f"outdoor_temp must be 1-D with one value per timestamp ({len(index)}), "
            f"got shape {outdoor.shape}"
        )
    if not np.all(np.isfinite(outdoor)):
        raise ValueError("outdoor_temp has NaN or infinite values: fill the gaps first")
    scaled = (outdoor - OUTDOOR_TEMP_CENTER) / OUTDOOR_TEMP_SCALE
    return np.column_stack([time_features(index, timezone), scaled])


def initial_weights(n_features: int) -> np.ndarray:
    """The starting global weights: zero coefficients and :data:`SETPOINT_PRIOR` intercept."""
    weights = np.zeros(n_features + 1)
    weights[-1] = SETPOINT_PRIOR
    return weights


def predict(weights: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``X @ coefficients + intercept`` (the intercept is the last weight)."""
    weights = np.asarray(weights, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] + 1 != weights.shape[0]:
        raise ValueError(
            f"X must have {weights.shape[0] - 1} columns for these weights, got shape {X.shape}"
        )
    return X @ weights[:-1] + weights[-1]


def mae(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error (°C) of the model ``weights`` on rows ``X`` and setpoints ``y``."""
    y = np.asarray(y, dtype=float)
    return float(np.mean(np.abs(predict(weights, X) - y)))


def ridge_loss(weights: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> float:
    """``mean((Xw + b - y)^2) / 2 + l2 / 2 * |w|^2``; the intercept ``b`` is not penalized."""
    residual = predict(weights, X) - np.asarray(y, dtype=float)
    return float(0.5 * np.mean(residual**2) + 0.5 * l2 * np.sum(weights[:-1] ** 2))


def local_update(
    weights: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    *,
    local_epochs: int,
    learning_rate: float,
    l2: float,
) -> tuple[np.ndarray, int]:
    """One home's part of a round: ``local_epochs`` full-batch gradient steps on its ridge loss.

    This is ClientUpdate of McMahan et al. (2017, Algorithm 1) with one batch of all the
    home's rows, which keeps the update deterministic.

    Returns
    -------
    weights : ndarray of shape (n_features + 1,)
        The home's weights after its local steps.
    n_h : int
        Its number of rows, the weight of its reply in the average.
    """
    w = np.array(weights, dtype=float, copy=True)
    n_h = X.shape[0]
    # Penalize the coefficients only, like scikit-learn's Ridge with an intercept.
    penalty_mask = np.ones_like(w)
    penalty_mask[-1] = 0.0
    for _ in range(local_epochs):
        residual = X @ w[:-1] + w[-1] - y
        grad = np.empty_like(w)
        grad[:-1] = X.T @ residual / n_h
        grad[-1] = residual.mean()
        grad += l2 * penalty_mask * w
        w -= learning_rate * grad
    return w, n_h


def train_central(
    homes: Mapping[str, tuple[np.ndarray, np.ndarray]], l2: float = 1e-3
) -> np.ndarray:
    """The centralized peer: the exact ridge fit on all homes' rows pooled in one place.

    Minimizes the same loss as federated training, ``mean((Xw + b - y)^2) / 2 +
    l2 / 2 * |w|^2`` over the pooled rows (scikit-learn's ``Ridge(alpha=l2 * n)``), by
    solving its normal equations.

    Returns
    -------
    ndarray of shape (n_features + 1,)
        Coefficients, then the intercept.
    """
    if not _finite_number(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
    parts = _check_homes(homes)
    X = np.vstack([X_h for X_h, _ in parts])
    y = np.concatenate([y_h for _, y_h in parts])
    n = X.shape[0]
    design = np.column_stack([X, np.ones(n)])
    gram = design.T @ design / n
    gram[np.arange(X.shape[1]), np.arange(X.shape[1])] += l2
    rhs = design.T @ y / n
    try:
        return np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        # Only reachable with l2 == 0 and collinear features: take the minimum-norm solution.
        return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def fedavg_reference(
    homes: Mapping[str, tuple[np.ndarray, np.ndarray]], config: FederatedConfig | None = None
) -> FederatedResult:
    """Federated averaging in plain NumPy: the reference for :func:`train_federated`.

    The updates are those Flower runs: every round, the sampled homes run
    :func:`local_update` from the global weights and the server takes their average
    weighted by ``n_h`` (McMahan et al. 2017, Algorithm 1). With ``fraction_fit=1.0`` both
    give the same weights up to rounding.
    """
    config = FederatedConfig() if config is None else config
    parts = _check_homes(homes)
    rng = np.random.default_rng(config.seed)
    n_train = _homes_per_round(len(parts), config.fraction_fit)
    weights = initial_weights(parts[0][0].shape[1])
    history = []
    for _ in range(config.rounds):
        chosen = (
            range(len(parts))
            if n_train == len(parts)
            else sorted(rng.choice(len(parts), size=n_train, replace=False))
        )
        updates = [
            local_update(
                weights,
                *parts[h],
                local_epochs=config.local_epochs,
                learning_rate=config.learning_rate,
                l2=config.l2,
            )
            for h in chosen
        ]
        total = sum(n_h for _, n_h in updates)
        weights = sum(w_h * (n_h / total) for w_h, n_h in updates)
        history.append(_pooled_loss(weights, parts, config.l2))
        _check_finite(weights, history[-1], config)
    return FederatedResult(
        weights=np.asarray(weights),
        loss_history=np.asarray(history),
        rounds=config.rounds,
        clients=len(parts),
        n_samples=sum(len(y_h) for _, y_h in parts),
        backend="numpy",
        config=config,
    )


def train_federated(
    homes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    config: FederatedConfig | None = None,
    *,
    max_workers: int | None = None,
) -> FederatedResult:
    """Federated averaging across homes in Flower's simulation, one client per home.

    Each home's ``(X_h, y_h)`` is reachable only from its own client (looked up by
    partition id); the server app sees the global weights, the replies' weights and, per
    home, ``n_h`` and a loss. The loss history comes from Flower's evaluate step: each home
    scores the new global weights on its rows.

    Parameters
    ----------
    homes : mapping of home id to (X, y)
        ``X`` of shape (n_h, n_features), e.g. from :func:`comfort_features`; ``y`` the
        setpoints (°C) chosen at those rows.
    config : FederatedConfig, optional
        Defaults to ``FederatedConfig()``.
    max_workers : int, optional
        Clients trained at the same time (Ray actors of one CPU each). Defaults to
        ``min(2, homes, CPUs)``.

    Returns
    -------
    FederatedResult

    Raises
    ------
    FlowerNotInstalledError
        Flower or Ray is missing: ``pip install 'tailor[iot]'``.
    RuntimeError
        A home failed to train or to report (the reason each client gave is in the message).
    """
    flwr = _require_flwr()
    config = FederatedConfig() if config is None else config
    parts = _check_homes(homes)
    n_clients = len(parts)
    n_features = parts[0][0].shape[1]
    workers = max_workers if max_workers is not None else min(2, n_clients, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")

    client_app = _make_client_app(parts)
    outcome: dict[str, Any] = {}
    server_app = _make_server_app(config, n_clients, n_features, outcome)
    backend_config = {
        "init_args": {
            "num_cpus": workers,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": "ERROR",
            # Clients' failures come back to the server as error replies, which we raise.
            "log_to_driver": False,
        },
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    }
    logger.info(
        "federated training: %d homes, %d rounds, %d workers", n_clients, config.rounds, workers
    )
    with _quiet_flower():
        flwr.simulation.run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=n_clients,
            backend_config=backend_config,
        )
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    if "weights" not in outcome:
        raise RuntimeError("the Flower simulation ended without a global model; see its log")
    weights = outcome["weights"]
    history = np.asarray(outcome["loss_history"], dtype=float)
    _check_finite(weights, history[-1] if len(history) else 0.0, config)
    return FederatedResult(
        weights=weights,
        loss_history=history,
        rounds=config.rounds,
        clients=n_clients,
        n_samples=sum(len(y_h) for _, y_h in parts),
        backend="flower",
        config=config,
    )


def compare(
    train_homes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    test_homes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    config: FederatedConfig | None = None,
    *,
    backend: Literal["flower", "numpy"] = "flower",
) -> dict[str, float | int]:
    """Federated against centralized training, scored by MAE (°C) on held-out homes' rows.

    Returns
    -------
    dict
        ``federated_mae``, ``central_mae``, ``ratio`` (federated / central; 1.0 means no
        loss from keeping the data at home), ``rounds`` and ``clients``.
    """
    config = FederatedConfig() if config is None else config
    if backend == "flower":
        result = train_federated(train_homes, config)
    elif backend == "numpy":
        result = fedavg_reference(train_homes, config)
    else:
        raise ValueError(f"backend must be 'flower' or 'numpy', got {backend!r}")
    central = train_central(train_homes, l2=config.l2)
    test = _check_homes(test_homes)
    X_test = np.vstack([X_h for X_h, _ in test])
    y_test = np.concatenate([y_h for _, y_h in test])
    if X_test.shape[1] != result.weights.shape[0] - 1:
        raise ValueError(
            f"test homes have {X_test.shape[1]} features, training homes "
            f"{result.weights.shape[0] - 1}: build both with comfort_features"
        )
    federated_mae = mae(result.weights, X_test, y_test)
    central_mae = mae(central, X_test, y_test)
    return {
        "federated_mae": federated_mae,
        "central_mae": central_mae,
        "ratio": federated_mae / central_mae if central_mae > 0 else float("inf"),
        "rounds": result.rounds,
        "clients": result.clients,
    }


# --- Flower apps -------------------------------------------------------------------------


def _make_client_app(parts: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """One ClientApp serving every home: it picks its home's rows by partition id."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def own_rows(context: Any) -> tuple[np.ndarray, np.ndarray]:
        return parts[int(context.node_config["partition-id"])]

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        X, y = own_rows(context)
        cfg = msg.content[_CONFIG_KEY]
        global_weights = msg.content[_ARRAYS_KEY].to_numpy_ndarrays()[0]
        weights, n_h = local_update(
            global_weights,
            X,
            y,
            local_epochs=int(cfg["local-epochs"]),
            learning_rate=float(cfg["learning-rate"]),
            l2=float(cfg["l2"]),
        )
        metrics = {"train-loss": ridge_loss(weights, X, y, float(cfg["l2"])), _WEIGHT_KEY: n_h}
        content = RecordDict(
            {_ARRAYS_KEY: ArrayRecord([weights]), "metrics": MetricRecord(metrics)}
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Any, context: Any) -> Any:
        X, y = own_rows(context)
        cfg = msg.content[_CONFIG_KEY]
        weights = msg.content[_ARRAYS_KEY].to_numpy_ndarrays()[0]
        metrics = {"loss": ridge_loss(weights, X, y, float(cfg["l2"])), _WEIGHT_KEY: len(y)}
        return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def _make_server_app(
    config: FederatedConfig, n_clients: int, n_features: int, outcome: dict[str, Any]
) -> Any:
    """The ServerApp: FedAvg for ``config.rounds``; writes its result into ``outcome``."""
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    class _AllRepliesFedAvg(FedAvg):
        # Flower's FedAvg keeps the old global model when replies fail; a comfort model
        # quietly trained on fewer homes than asked is worse than an error.
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            _raise_on_failed_replies(replies, "train", server_round)
            return super().aggregate_train(server_round, replies)

        def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            _raise_on_failed_replies(replies, "evaluate", server_round)
            return super().aggregate_evaluate(server_round, replies)

    n_train = _homes_per_round(n_clients, config.fraction_fit)
    strategy = _AllRepliesFedAvg(
        fraction_train=config.fraction_fit,
        fraction_evaluate=1.0,
        min_train_nodes=n_train,
        min_evaluate_nodes=n_clients,
        min_available_nodes=n_clients,
        weighted_by_key=_WEIGHT_KEY,
        arrayrecord_key=_ARRAYS_KEY,
        configrecord_key=_CONFIG_KEY,
    )
    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        hyper = {"local-epochs": config.local_epochs, "learning-rate": config.learning_rate}
        try:
            result = strategy.start(
                grid=grid,
                initial_arrays=ArrayRecord([initial_weights(n_features)]),
                num_rounds=config.rounds,
                train_config=ConfigRecord({**hyper, "l2": config.l2}),
                evaluate_config=ConfigRecord({"l2": config.l2}),
            )
        except _FailedReplies as err:
            outcome["error"] = str(err)
            return
        outcome["weights"] = result.arrays.to_numpy_ndarrays()[0].astype(float)
        outcome["loss_history"] = [
            float(result.evaluate_metrics_clientapp[r]["loss"])
            for r in sorted(result.evaluate_metrics_clientapp)
        ]

    return app


class _FailedReplies(RuntimeError):
    pass


def _raise_on_failed_replies(replies: list[Any], step: str, server_round: int) -> None:
    failed = [msg for msg in replies if msg.has_error()]
    if failed:
        reasons = "; ".join(sorted({str(msg.error.reason) for msg in failed}))
        raise _FailedReplies(
            f"{len(failed)} of {len(replies)} homes failed to {step} in round {server_round}: "
            f"{reasons}"
        )


# --- helpers -----------------------------------------------------------------------------


def _require_flwr() -> Any:
    """Import Flower and check Ray is there, or say how to install them."""
    # Flower reports usage to its servers unless told not to; a feature whose point is
    # keeping home data at home should not phone out by default (an explicit setting wins).
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    try:
        flwr = importlib.import_module("flwr")
        importlib.import_module("flwr.simulation")
        importlib.import_module("flwr.serverapp.strategy")
        if importlib.util.find_spec("ray") is None:
            raise ImportError("No module named 'ray'")
    except ImportError as err:
        raise FlowerNotInstalledError(IOT_EXTRA_MESSAGE) from err
    return flwr


class _DropRunSimulationDeprecation(logging.Filter):
    # `run_simulation` logs a deprecation pointing at the `flwr run` CLI, which needs a
    # packaged Flower App and a SuperLink; an in-process library call has no such
    # alternative, so the notice is noise on every call. Every other warning passes.
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("DEPRECATED FEATURE" in message and "run_simulation" in message)


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """Flower logs every round at INFO; keep its warnings and errors only, for this call."""
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    drop = _DropRunSimulationDeprecation()
    flwr_logger.setLevel(logging.WARNING)
    flwr_logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            # Ray's tip about a future change to GPU visibility when no GPU is asked for;
            # these clients use none, so it does not concern us.
            warnings.filterwarnings(
                "ignore", message="Tip: In future versions of Ray", category=FutureWarning
            )
            yield
    finally:
        flwr_logger.removeFilter(drop)
        flwr_logger.setLevel(previous)


def _check_homes(
    homes: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each home's (X, y) as float arrays, checked; in the mapping's order."""
    if not isinstance(homes, Mapping) or not homes:
        raise ValueError("homes must be a non-empty mapping of home id to (X, y)")
    parts = []
    n_features = None
    for home, pair in homes.items():
        try:
            X_raw, y_raw = pair
        except (TypeError, ValueError):
            raise ValueError(f"home {home!r}: expected a pair (X, y)") from None
        X = np.asarray(X_raw, dtype=float)
        y = np.asarray(y_raw, dtype=float)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"home {home!r}: X must be 2-D and y 1-D with as many rows, "
                f"got X {X.shape} and y {y.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError(f"home {home!r} has no rows: leave it out until it has data")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError(f"home {home!r} has NaN or infinite values: clean its rows first")
        if n_features is None:
            n_features = X.shape[1]
        elif X.shape[1] != n_features:
            raise ValueError(
                f"home {home!r} has {X.shape[1]} features, others {n_features}: "
                "build every home's rows with comfort_features"
            )
        parts.append((X, y))
    return parts


def _homes_per_round(n_homes: int, fraction_fit: float) -> int:
    # The same count Flower's FedAvg samples: int(n * fraction), at least one.
    return max(1, int(n_homes * fraction_fit))


def _pooled_loss(
    weights: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], l2: float
) -> float:
    # The n_h-weighted mean of the homes' losses, as Flower's evaluate step aggregates it.
    total = sum(len(y_h) for _, y_h in parts)
    return float(sum(ridge_loss(weights, X_h, y_h, l2) * (len(y_h) / total) for X_h, y_h in parts))


def _check_finite(weights: np.ndarray, loss: float, config: FederatedConfig) -> None:
    if not (np.all(np.isfinite(weights)) and math.isfinite(loss)):
        raise FloatingPointError(
            f"federated training diverged (learning_rate={config.learning_rate}): lower "
            "learning_rate, or scale features with comfort_features"
        )


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
