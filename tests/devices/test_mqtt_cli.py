"""``tailor devices mqtt``: the CLI ingests a device's messages from a real broker."""

from __future__ import annotations

import threading
import time

import pytest

from tailor.config import get_settings
from tailor.devices.mqtt import MqttPublisher
from tailor.workspace import open_workspace
from tests._cli import tailor, workdir  # noqa: F401  (fixture)

pytestmark = pytest.mark.mqtt

MESSAGE = {
    "event_id": "cli-r1",
    "occurred_at": "2026-01-05T07:00:00Z",
    "metric": "indoor_temp",
    "value": 19.4,
    "unit": "C",
}


def test_mqtt_command_stores_what_devices_publish(mqtt_broker, workdir) -> None:  # noqa: F811
    assert tailor("init").exit_code == 0
    result = {}

    def run() -> None:
        result["cli"] = tailor(
            "devices", "mqtt", "--port", str(mqtt_broker.port), "--tenant", "clitest", "--for", "6"
        )

    thread = threading.Thread(target=run)
    thread.start()
    # Until the ingestor has subscribed, published messages go nowhere: send the same event
    # (one event_id, stored once) a few times.
    with MqttPublisher(port=mqtt_broker.port) as publisher:
        for _ in range(10):
            publisher.publish_event("clitest", "home-1", "thermostat-1", "telemetry", MESSAGE)
            time.sleep(0.3)
    thread.join(timeout=30)
    cli = result["cli"]
    assert cli.exit_code == 0, cli.output
    assert "written 1" in " ".join(cli.output.split())
    get_settings.cache_clear()
    with open_workspace(get_settings()) as ws:
        table = ws.store.read_events(purpose=None, event_types=["telemetry"])
        assert table.num_rows == 1
        assert table["device_id"][0].as_py() == ws.pseudonymizer.pseudonymize(
            "device", "thermostat-1"
        )


def test_mqtt_command_names_an_unreachable_broker(workdir) -> None:  # noqa: F811
    from tailor.devices.mqtt import free_port

    assert tailor("init").exit_code == 0
    result = tailor("devices", "mqtt", "--port", str(free_port()), "--for", "1")
    assert result.exit_code == 1
    assert "never reached the MQTT broker" in " ".join(result.output.split())
