"""Federated averaging of the shared comfort model: NumPy reference, Flower run, central peer."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tailor.devices import federated
from tailor.devices.federated import (
    FEATURE_NAMES,
    IOT_EXTRA_MESSAGE,
    FederatedConfig,
    FlowerNotInstalledError,
    comfort_features,
    compare,
    fedavg_reference,
    local_update,
    mae,
    ridge_loss,
    train_central,
    train_federated,
)

N_FEATURES = len(FEATURE_NAMES)


def _make_home(rng: np.random.Generator, *, weeks: int = 3, tz: str = "UTC"):
    """One household: its own comfort level, wake-up and return hours, and weekend habit."""
    index = pd.date_range("2024-01-01", periods=weeks * 7 * 24, freq="h", tz="UTC")
    local = index.tz_convert(tz)
    hour = np.asarray(local.hour + local.minute / 60, dtype=float)
    weekend = np.asarray(local.day_of_week >= 5)
    comfort = rng.uniform(19.0, 22.5)
    wake = rng.uniform(5.5, 8.0) + 1.5 * weekend
    back = rng.uniform(16.0, 19.0)
    outdoor = 4 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 2, len(index))
    awake = (hour >= wake) & (hour < 23)
    away = ~weekend & (hour >= wake + 1.5) & (hour < back)
    setpoint = comfort - 3.0 * ~awake - 1.5 * away - 0.05 * (outdoor - 5)
    setpoint = np.round((setpoint + rng.normal(0, 0.3, len(index))) * 2) / 2  # 0.5 °C steps
    return comfort_features(index, outdoor, tz), setpoint


def _make_homes(seed: int, n: int, prefix: str = "home"):
    rng = np.random.default_rng(seed)
    zones = ["UTC", "Europe/Paris", "America/New_York"]
    return {f"{prefix}-{h}": _make_home(rng, tz=zones[h % 3]) for h in range(n)}


@pytest.fixture(scope="module")
def homes():
    return _make_homes(seed=7, n=6)


# --- config and inputs ---------------------------------------------------------------------


def test_config_defaults():
    config = FederatedConfig()
    assert (config.rounds, config.local_epochs, config.fraction_fit) == (20, 5, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rounds": 0}, "rounds"),
        ({"rounds": 2.5}, "rounds"),
        ({"rounds": True}, "rounds"),
        ({"local_epochs": -1}, "local_epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"l2": -0.1}, "l2"),
        ({"l2": float("inf")}, "l2"),
        ({"fraction_fit": 0.0}, "fraction_fit"),
        ({"fraction_fit": 1.5}, "fraction_fit"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_config_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FederatedConfig(**kwargs)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        FederatedConfig().rounds = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({}, "non-empty"),
        ({"a": (np.ones((3, 2)), np.ones(4))}, "as many rows"),
        ({"a": (np.ones(3), np.ones(3))}, "2-D"),
        ({"a": (np.empty((0, 2)), np.empty(0))}, "no rows"),
        ({"a": (np.array([[1.0, np.nan]]), np.ones(1))}, "NaN"),
        ({"a": (np.ones((2, 2)), np.array([1.0, np.inf]))}, "NaN or infinite"),
        ({"a": (np.ones((2, 2)), np.ones(2)), "b": (np.ones((2, 3)), np.ones(2))}, "features"),
        ({"a": (np.ones((2, 2)), np.ones(2), np.ones(2))}, "pair"),
    ],
)
def test_bad_homes_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        fedavg_reference(bad, FederatedConfig(rounds=1))
    with pytest.raises(ValueError, match=match):
        train_central(bad)


def test_comfort_features_scale_outdoor_with_fixed_constants():
    index = pd.date_range("2024-01-06", periods=4, freq="6h", tz="UTC")  # a Saturday
    X = comfort_features(index, [5.0, 15.0, -5.0, 25.0])
    assert X.shape == (4, N_FEATURES)
    np.testing.assert_allclose(X[:, -1], [0.0, 1.0, -1.0, 2.0])
    assert np.all(X[:, FEATURE_NAMES.index("weekend")] == 1.0)
    with pytest.raises(ValueError, match="one value per timestamp"):
        comfort_features(index, [1.0, 2.0])
    with pytest.raises(ValueError, match="fill the gaps"):
        comfort_features(index, [1.0, np.nan, 2.0, 3.0])


def test_predict_checks_the_number_of_columns():
    with pytest.raises(ValueError, match="columns"):
        mae(np.zeros(N_FEATURES + 1), np.ones((3, 2)), np.ones(3))


# --- the algorithm -------------------------------------------------------------------------


def test_central_is_ridge_from_scikit_learn(homes):
    from sklearn.linear_model import Ridge

    l2 = 0.01
    X = np.vstack([X_h for X_h, _ in homes.values()])
    y = np.concatenate([y_h for _, y_h in homes.values()])
    ridge = Ridge(alpha=l2 * len(y)).fit(X, y)
    weights = train_central(homes, l2=l2)
    np.testing.assert_allclose(weights[:-1], ridge.coef_, atol=1e-8)
    assert weights[-1] == pytest.approx(ridge.intercept_, abs=1e-8)


def test_central_solution_is_a_fixed_point_of_local_training():
    # One home: its own ridge optimum has zero gradient, so local steps must not move it.
    rng = np.random.default_rng(1)
    X, y = rng.uniform(-1, 1, (80, 4)), rng.normal(20, 1, 80)
    optimum = train_central({"a": (X, y)}, l2=0.1)
    moved, n_h = local_update(optimum, X, y, local_epochs=10, learning_rate=0.5, l2=0.1)
    assert n_h == 80
    np.testing.assert_allclose(moved, optimum, atol=1e-10)
    # and from elsewhere the steps go downhill
    start = np.zeros(5)
    stepped, _ = local_update(start, X, y, local_epochs=3, learning_rate=0.5, l2=0.1)
    assert ridge_loss(stepped, X, y, 0.1) < ridge_loss(start, X, y, 0.1)


def test_reference_converges_toward_central(homes):
    central = train_central(homes, l2=1e-3)
    short = fedavg_reference(homes, FederatedConfig(rounds=3))
    long = fedavg_reference(homes, FederatedConfig(rounds=150))
    assert np.linalg.norm(long.weights - central) < 0.3 * np.linalg.norm(short.weights - central)
    # Several local steps on different homes make FedAvg settle near, not at, the pooled
    # optimum (client drift), so the loss falls and then flattens rather than hitting it.
    assert long.loss_history[-1] < long.loss_history[0] - 0.02
    X = np.vstack([X_h for X_h, _ in homes.values()])
    y = np.concatenate([y_h for _, y_h in homes.values()])
    assert long.loss_history[-1] == pytest.approx(ridge_loss(central, X, y, 1e-3), rel=0.01)
    assert (long.rounds, long.clients, long.n_samples, long.backend) == (150, 6, len(y), "numpy")


def test_federated_within_ten_percent_of_central_on_held_out_homes(homes):
    test_homes = _make_homes(seed=99, n=3, prefix="new")
    result = compare(homes, test_homes, FederatedConfig(), backend="numpy")
    assert set(result) == {"federated_mae", "central_mae", "ratio", "rounds", "clients"}
    assert result["ratio"] == pytest.approx(result["federated_mae"] / result["central_mae"])
    assert 0.9 < result["ratio"] < 1.1
    assert (result["rounds"], result["clients"]) == (20, 6)
    # the shared model is better than the bare prior every home would otherwise start from
    X = np.vstack([X_h for X_h, _ in test_homes.values()])
    y = np.concatenate([y_h for _, y_h in test_homes.values()])
    assert result["federated_mae"] < mae(federated.initial_weights(N_FEATURES), X, y)


def test_compare_rejects_unknown_backend_and_mismatched_test_features(homes):
    with pytest.raises(ValueError, match="backend"):
        compare(homes, homes, backend="spark")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        compare(homes, {"x": (np.ones((3, 2)), np.ones(3))}, backend="numpy")


def test_partial_participation_is_seeded(homes):
    config = FederatedConfig(rounds=5, fraction_fit=0.5, seed=3)
    first, again = fedavg_reference(homes, config), fedavg_reference(homes, config)
    other = fedavg_reference(homes, FederatedConfig(rounds=5, fraction_fit=0.5, seed=4))
    full = fedavg_reference(homes, FederatedConfig(rounds=5))
    np.testing.assert_array_equal(first.weights, again.weights)
    assert not np.allclose(first.weights, other.weights)
    assert not np.allclose(first.weights, full.weights)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_raises_instead_of_returning_a_broken_model(homes):
    with pytest.raises(FloatingPointError, match="learning_rate"):
        fedavg_reference(homes, FederatedConfig(rounds=20, learning_rate=50.0))


# --- Flower --------------------------------------------------------------------------------


def test_missing_flwr_says_which_extra_to_install(monkeypatch, homes):
    monkeypatch.setitem(sys.modules, "flwr", None)  # makes `import flwr` fail
    with pytest.raises(ImportError, match=r"pip install 'tailor\[iot\]'") as info:
        train_federated(homes)
    assert isinstance(info.value, FlowerNotInstalledError)
    assert str(info.value) == IOT_EXTRA_MESSAGE


def test_missing_ray_says_which_extra_to_install(monkeypatch, homes):
    pytest.importorskip("flwr")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a)
    )
    with pytest.raises(FlowerNotInstalledError, match="iot extra"):
        train_federated(homes)


def test_failed_replies_name_the_reason():
    ok = SimpleNamespace(has_error=lambda: False)
    bad = SimpleNamespace(has_error=lambda: True, error=SimpleNamespace(reason="disk full"))
    federated._raise_on_failed_replies([ok, ok], "train", 1)
    with pytest.raises(RuntimeError, match=r"1 of 2 homes failed to train in round 4: disk full"):
        federated._raise_on_failed_replies([ok, bad], "train", 4)


FLOWER_CONFIG = FederatedConfig(rounds=6, local_epochs=4, learning_rate=0.4, l2=0.01)


@pytest.fixture(scope="module")
def flower_run(homes):
    """One Flower simulation (Ray start-up dominates, ~20 s here), with the server's view."""
    pytest.importorskip("flwr")
    from flwr.serverapp.strategy import FedAvg

    seen: dict[str, list] = {"train": [], "evaluate": []}

    def spy(step, original):
        def aggregate(self, server_round, replies):
            replies = list(replies)
            seen[step].extend(_what_the_server_got(msg) for msg in replies)
            return original(self, server_round, replies)

        return aggregate

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FedAvg, "aggregate_train", spy("train", FedAvg.aggregate_train))
        mp.setattr(FedAvg, "aggregate_evaluate", spy("evaluate", FedAvg.aggregate_evaluate))
        result = train_federated(homes, FLOWER_CONFIG)
    return result, seen


def _what_the_server_got(msg):
    content = msg.content
    arrays = [
        array.numpy() for record in content.array_records.values() for array in record.values()
    ]
    metrics = {
        key: value for record in content.metric_records.values() for key, value in record.items()
    }
    return {"arrays": arrays, "metrics": metrics, "configs": len(content.config_records)}


def test_flower_equals_the_numpy_reference(flower_run, homes):
    result, _ = flower_run
    reference = fedavg_reference(homes, FLOWER_CONFIG)
    assert result.backend == "flower"
    assert (result.rounds, result.clients, result.n_samples) == (6, 6, reference.n_samples)
    np.testing.assert_allclose(result.weights, reference.weights, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.loss_history, reference.loss_history, rtol=1e-9)


def test_only_weights_and_counts_reach_the_server(flower_run, homes):
    _, seen = flower_run
    sizes = sorted(len(y) for _, y in homes.values())
    rounds = FLOWER_CONFIG.rounds
    assert len(seen["train"]) == len(seen["evaluate"]) == rounds * len(homes)
    for reply in seen["train"]:
        # one weight vector, nothing shaped like a home's rows
        assert [a.shape for a in reply["arrays"]] == [(N_FEATURES + 1,)]
        assert set(reply["metrics"]) == {"num-examples", "train-loss"}
        assert reply["configs"] == 0
    for reply in seen["evaluate"]:
        assert reply["arrays"] == []
        assert set(reply["metrics"]) == {"num-examples", "loss"}
    counts = sorted(reply["metrics"]["num-examples"] for reply in seen["train"][: len(homes)])
    assert counts == sizes
