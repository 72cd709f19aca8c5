"""MQTT broker fixtures: the tests run against a real Mosquitto.

``mqtt_broker`` is the broker on 127.0.0.1:1883 (port: ``TAILOR_TEST_MQTT_PORT``) when one
listens there, else a private Mosquitto started for the session on a free port. Without
either the MQTT tests are skipped, with the reason shown, unless ``TAILOR_TEST_REQUIRE_MQTT=1``
(as in CI), which fails them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_MQTT = os.environ.get("TAILOR_TEST_REQUIRE_MQTT") == "1"
MOSQUITTO = os.environ.get("TAILOR_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
SHARED_HOST = "127.0.0.1"
SHARED_PORT = int(os.environ.get("TAILOR_TEST_MQTT_PORT", "1883"))


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    private: bool
    """True when the tests started it (nothing else uses it)."""


def _unavailable(reason: str) -> None:
    if REQUIRE_MQTT:
        pytest.fail(f"TAILOR_TEST_REQUIRE_MQTT=1 but {reason}")
    pytest.skip(f"MQTT tests skipped: {reason}")


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _paho_missing() -> str | None:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "paho-mqtt is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def mosquitto_binary() -> str:
    """The Mosquitto binary, for tests that start (and restart) a private broker."""
    reason = _paho_missing()
    if reason:
        _unavailable(reason)
    if not Path(MOSQUITTO).is_file():
        _unavailable(
            f"no mosquitto binary at {MOSQUITTO} (apt-get install mosquitto, or set "
            "TAILOR_TEST_MOSQUITTO)"
        )
    return MOSQUITTO


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A running broker: the one on 127.0.0.1:1883, or a private one started here."""
    reason = _paho_missing()
    if reason:
        _unavailable(reason)
    if _listening(SHARED_HOST, SHARED_PORT):
        yield Broker(SHARED_HOST, SHARED_PORT, private=False)
        return
    if not Path(MOSQUITTO).is_file():
        _unavailable(
            f"nothing listens on {SHARED_HOST}:{SHARED_PORT} and there is no mosquitto binary "
            f"at {MOSQUITTO} to start one"
        )
    from tailor.devices.mqtt import Mosquitto

    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), binary=MOSQUITTO).start()
    try:
        yield Broker("127.0.0.1", broker.port, private=True)
    finally:
        broker.stop()


@pytest.fixture
def private_broker(mosquitto_binary: str, tmp_path: Path) -> Iterator:
    """A Mosquitto of this test's own (persistence on), which the test may stop and start."""
    from tailor.devices.mqtt import Mosquitto

    broker = Mosquitto(tmp_path / "mosquitto", binary=mosquitto_binary).start()
    try:
        yield broker
    finally:
        broker.stop()
