"""Device events over MQTT against a real Mosquitto: same rows as HTTP, idempotent, invalid
messages quarantined, acknowledgement only after the commit, nothing lost across a restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tailor.devices.mqtt import (
    MAX_PAYLOAD_BYTES,
    MessageError,
    MqttIngestor,
    MqttPublisher,
    TopicError,
    broker_restart_check,
    encode_payload,
    event_from_message,
    parse_topic,
    run_ingestor,
    subscription_for,
    topic_for,
)
from tailor.events.ingest import ERASED_REASON, GroupCommitWriter, ingest_batch
from tailor.events.privacy import Pseudonymizer
from tailor.store import Store, open_store

WAIT_S = 15.0


def wait_for(condition: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def reading(event_id: str, value: float = 20.5, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": "2024-05-01T10:00:00Z",
        "metric": "indoor_temp",
        "value": value,
        "unit": "C",
        "device_time": "2024-05-01T09:59:58Z",
    } | extra


def setpoint(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": "2024-05-01T18:00:00Z",
        "metric": "setpoint",
        "value": 21.5,
        "previous_value": 19.0,
        "unit": "C",
    }


def rows(store: Store) -> list[dict[str, Any]]:
    table = store.read_events(purpose=None, event_types=["telemetry", "device_adjustment"])
    found = table.drop_columns(["received_at"]).to_pylist()
    return sorted(found, key=lambda r: r["event_id"])


@pytest.fixture
def key() -> Pseudonymizer:
    return Pseudonymizer(bytes(range(32)))


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "store.duckdb"))
    yield s
    s.close()


@pytest.fixture
def tenant() -> str:
    """A tenant of the test's own, so that tests sharing the broker on 1883 never meet."""
    return f"t{uuid.uuid4().hex[:10]}"


def ingestor_for(store: Store, key: Pseudonymizer, tenant: str, port: int, **kw) -> MqttIngestor:
    options = dict(tenant=tenant, port=port, flush_ms=10.0, session_expiry_s=120)
    return MqttIngestor(store, key, **(options | kw))


# --- topics and payloads (no broker) -------------------------------------------------------------


def test_topic_round_trip_and_the_subscription_matches_it():
    topic = topic_for("acme", "home-1", "thermo:1", "adjustment")
    assert topic == "tailor/acme/homes/home-1/devices/thermo:1/adjustment"
    parts = parse_topic(topic)
    assert (parts.tenant, parts.home_id, parts.device_id, parts.kind) == (
        "acme",
        "home-1",
        "thermo:1",
        "adjustment",
    )
    assert parts.event_type == "device_adjustment"
    assert subscription_for("acme") == "tailor/acme/homes/+/devices/+/+"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acme", "home/1", "d", "telemetry"), "home_id must not contain '/'"),
        (("acme", "h", "d+", "telemetry"), "device_id must not contain"),
        (("ac#me", "h", "d", "telemetry"), "tenant must not contain"),
        (("acme", "", "d", "telemetry"), "home_id must be non-empty"),
        (("acme", " h", "d", "telemetry"), "without leading or trailing spaces"),
        (("acme", "h" * 129, "d", "telemetry"), "home_id has 129 characters"),
        (("acme", "h", "d", "status"), "unknown kind 'status'; use one of telemetry, adjustment"),
    ],
)
def test_topic_for_refuses_what_cannot_be_a_topic_level(args, message):
    with pytest.raises(TopicError, match=message):
        topic_for(*args)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("tailor/acme/homes/h/devices/d", "6 levels, expected 7"),
        ("tailor/acme/houses/h/devices/d/telemetry", "does not follow tailor/<tenant>/homes"),
        ("other/acme/homes/h/devices/d/telemetry", "does not follow"),
        ("tailor/acme/homes//devices/d/telemetry", "home_id must be non-empty"),
        ("tailor/acme/homes/h/devices/d/status", "unknown kind 'status'"),
    ],
)
def test_parse_topic_says_what_is_wrong_without_quoting_ids(topic, message):
    with pytest.raises(TopicError, match=message) as info:
        parse_topic(topic)
    assert "houses/h/" not in str(info.value)


def test_event_from_message_takes_type_home_and_device_from_the_topic():
    topic = topic_for("acme", "home-1", "t-1", "adjustment")
    event = event_from_message(topic, encode_payload(setpoint("a1")), tenant="acme")
    assert event["event_type"] == "device_adjustment"
    assert (event["subject_id"], event["device_id"]) == ("home-1", "t-1")
    assert event["previous_value"] == 19.0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "payload: not valid JSON"),
        (b"\xff\xfe", "payload: not valid JSON"),
        (b"[1, 2]", "payload: must be a JSON object, got list"),
        (encode_payload(reading("r1", subject_id="x")), "subject_id come\\(s\\) from the topic"),
        (encode_payload(reading("r1", device_id="x")), "device_id come\\(s\\) from the topic"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), f"more than the {MAX_PAYLOAD_BYTES} allowed"),
    ],
)
def test_event_from_message_refuses_bad_payloads(payload, message):
    with pytest.raises(MessageError, match=message):
        event_from_message(topic_for("acme", "h", "d", "telemetry"), payload)


def test_event_from_message_refuses_another_tenants_topic():
    with pytest.raises(MessageError, match="tenant 'other' is not this ingestor's 'acme'"):
        event_from_message(topic_for("other", "h", "d", "telemetry"), b"{}", tenant="acme")


def test_encode_payload_refuses_naive_timestamps():
    assert b'"2024-05-01T10:00:00+00:00"' in encode_payload(
        {"occurred_at": datetime(2024, 5, 1, 10, tzinfo=UTC)}
    )
    with pytest.raises(TypeError, match="time-zone aware"):
        encode_payload({"occurred_at": datetime(2024, 5, 1, 10)})


def test_ingestor_refuses_bad_settings(store, key):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        MqttIngestor(store, key, batch_size=0)
    with pytest.raises(ValueError, match=r"receive_maximum must be in 1\.\.65535"):
        MqttIngestor(store, key, receive_maximum=0)
    with pytest.raises(TopicError, match="tenant must not contain"):
        MqttIngestor(store, key, tenant="a/b")


# --- against a broker ----------------------------------------------------------------------------


@pytest.mark.mqtt
def test_mqtt_events_are_stored_as_the_http_path_stores_them(
    mqtt_broker, store, key, tenant, tmp_path
):
    with ingestor_for(store, key, tenant, mqtt_broker.port) as ingestor:
        assert ingestor.subscribed
        with MqttPublisher(port=mqtt_broker.port) as pub:
            sent = pub.publish_many(
                [
                    (topic_for(tenant, "home-1", "thermo-1", "telemetry"), reading("r1")),
                    (topic_for(tenant, "home-1", "thermo-1", "adjustment"), setpoint("a1")),
                ]
            )
        assert sent == 2
        assert wait_for(lambda: ingestor.stats()["written"] == 2), ingestor.stats()
        assert wait_for(lambda: ingestor.stats()["acknowledged"] == 2), ingestor.stats()
    # The same events through POST /v1/events' validator and writer, into a second store.
    http_store = open_store(str(tmp_path / "http.duckdb"))
    ids = {"subject_id": "home-1", "device_id": "thermo-1"}
    http_events = [
        reading("r1") | {"event_type": "telemetry"} | ids,
        setpoint("a1") | {"event_type": "device_adjustment"} | ids,
    ]
    with GroupCommitWriter(http_store, key) as writer:
        assert ingest_batch(writer, http_events, max_events=10).result(WAIT_S).accepted == 2
    mqtt_rows, http_rows = rows(store), rows(http_store)
    http_store.close()
    assert mqtt_rows == http_rows
    telemetry = mqtt_rows[1]
    assert telemetry["event_id"] == "r1" and telemetry["value"] == 20.5
    assert telemetry["subject_id"] == key.pseudonymize("subject", "home-1")
    assert telemetry["device_id"] == key.pseudonymize("device", "thermo-1")
    assert mqtt_rows[0]["previous_value"] == 19.0


@pytest.mark.mqtt
def test_a_repeated_event_id_is_stored_once(mqtt_broker, store, key, tenant):
    topic = topic_for(tenant, "home-1", "thermo-1", "telemetry")
    with ingestor_for(store, key, tenant, mqtt_broker.port) as ingestor:
        with MqttPublisher(port=mqtt_broker.port) as pub:
            assert pub.publish_event(tenant, "home-1", "thermo-1", "telemetry", reading("r1"))
            assert wait_for(lambda: ingestor.stats()["written"] == 1)
            # a device retrying after a lost PUBACK, and a repeat inside one batch
            assert pub.publish_many([(topic, reading("r1"))] * 3) == 3
        assert wait_for(lambda: ingestor.stats()["duplicates"] == 3), ingestor.stats()
        # The PUBACKs go out after the commit's counts: wait for them too, not race them.
        assert wait_for(lambda: ingestor.stats()["acknowledged"] == 4), ingestor.stats()
    assert [r["event_id"] for r in rows(store)] == ["r1"]


@pytest.mark.mqtt
def test_invalid_messages_are_quarantined_and_do_not_block_the_queue(
    mqtt_broker, store, key, tenant
):
    good = topic_for(tenant, "home-1", "thermo-1", "telemetry")
    bad = [
        (good, b"{oops", "payload: not valid JSON"),
        (f"tailor/{tenant}/homes/home-1/devices/thermo-1/status", b"{}", "unknown kind 'status'"),
        (f"tailor/{tenant}/homes/ home-1/devices/thermo-1/telemetry", b"{}", "leading or trailing"),
        (good, encode_payload(reading("x0", note="z" * 17_000)), "more than the 16384 allowed"),
        (good, encode_payload(reading("x1", value="warm")), "payload.value: input should be"),
        (good, encode_payload(reading("x2", previous_value=1.0)), "payload.previous_value"),
        (good, encode_payload({"event_id": "x3", "value": 1.0}), "payload.occurred_at: field"),
        (good, encode_payload(reading("x4", subject_id="home-1")), "subject_id come(s) from"),
    ]
    with ingestor_for(store, key, tenant, mqtt_broker.port, batch_size=4) as ingestor:
        with MqttPublisher(port=mqtt_broker.port) as pub:
            acked = pub.publish_many([(topic, payload) for topic, payload, _ in bad])
            acked += pub.publish_many([(good, reading("r-after"))])
        assert acked == len(bad) + 1
        assert wait_for(lambda: ingestor.stats()["written"] == 1), ingestor.stats()
        stats = ingestor.stats()
        assert stats["quarantined"] == len(bad)
        assert stats["acknowledged"] == len(bad) + 1  # quarantined ones are acknowledged too
        reasons = [q.reason for q in ingestor.quarantine]
    for (_, _, expected), reason in zip(bad, reasons, strict=True):
        assert expected in reason, (expected, reason)
        assert "home-1" not in reason and "thermo-1" not in reason  # reasons name no raw ids
    assert ingestor.quarantine[0].payload == b"{oops"
    assert len(ingestor.quarantine[3].payload) == 1024  # only the head of a large one is kept
    assert [r["event_id"] for r in rows(store)] == ["r-after"]


@pytest.mark.mqtt
def test_an_erased_home_is_quarantined_not_stored(mqtt_broker, store, key, tenant):
    store.erase_subject(key.pseudonymize("subject", "gone"), erased_at=datetime.now(UTC))
    with ingestor_for(store, key, tenant, mqtt_broker.port) as ingestor:
        with MqttPublisher(port=mqtt_broker.port) as pub:
            pub.publish_event(tenant, "gone", "thermo-1", "telemetry", reading("e1"))
            pub.publish_event(tenant, "kept", "thermo-1", "telemetry", reading("e2"))
        assert wait_for(lambda: ingestor.stats()["quarantined"] == 1), ingestor.stats()
        assert wait_for(lambda: ingestor.stats()["written"] == 1)
        assert ingestor.quarantine[0].reason == ERASED_REASON
    assert [r["event_id"] for r in rows(store)] == ["e2"]


@pytest.mark.mqtt
def test_an_erasure_made_elsewhere_drops_the_cached_raw_ids_even_when_idle(
    mqtt_broker, store, key, tenant
):
    """Erased by another process (here: straight in the store, as the API or the CLI of
    another process would), the person's raw id leaves this process's memory within about
    a second, with no message arriving meanwhile; their next message is refused."""
    with ingestor_for(store, key, tenant, mqtt_broker.port) as ingestor:
        ingestor.erasure_check_s = 0.2
        with MqttPublisher(port=mqtt_broker.port) as pub:
            pub.publish_event(tenant, "leaving", "thermo-1", "telemetry", reading("e1"))
            assert wait_for(lambda: ingestor.stats()["written"] == 1), ingestor.stats()
            raw_ids = lambda: {raw for _, raw in ingestor._writer.pseudonyms._known}  # noqa: E731
            assert "leaving" in raw_ids()
            cached = ingestor._writer.pseudonyms._known
            time.sleep(0.5)  # idle looks that find no erasure keep the cache
            assert "leaving" in raw_ids() and ingestor._writer.pseudonyms._known is cached
            store.erase_subject(key.pseudonymize("subject", "leaving"), erased_at=datetime.now(UTC))
            assert wait_for(lambda: "leaving" not in raw_ids(), timeout=5.0)
            pub.publish_event(tenant, "leaving", "thermo-1", "telemetry", reading("e2"))
            assert wait_for(lambda: ingestor.stats()["quarantined"] == 1), ingestor.stats()
    assert rows(store) == []  # the erasure deleted e1; e2 was refused


class _BrokenStore:
    """The store with appends failing, as when the database went away."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def append_events(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        raise OSError("disk went away")


@pytest.mark.mqtt
def test_a_message_is_acknowledged_only_after_its_commit(mqtt_broker, store, key, tenant):
    broken = _BrokenStore(store)
    client_id = f"tailor-ingest-{tenant}"
    failing = ingestor_for(broken, key, tenant, mqtt_broker.port, client_id=client_id)
    with failing, MqttPublisher(port=mqtt_broker.port) as pub:
        assert pub.publish_event(tenant, "home-1", "thermo-1", "telemetry", reading("r1"))
        assert wait_for(lambda: broken.attempts >= 2)  # retried, never acknowledged
        assert failing.stats()["acknowledged"] == 0
        assert failing.stats()["commit_failures"] >= 1
    # The broker kept the unacknowledged message in the session and redelivers it.
    with ingestor_for(store, key, tenant, mqtt_broker.port, client_id=client_id) as ingestor:
        assert wait_for(lambda: ingestor.stats()["written"] == 1), ingestor.stats()
    assert [r["event_id"] for r in rows(store)] == ["r1"]


@pytest.mark.mqtt
def test_the_session_queues_messages_while_the_ingestor_is_away(mqtt_broker, store, key, tenant):
    with ingestor_for(store, key, tenant, mqtt_broker.port):
        pass  # creates the persistent session and its subscription
    with MqttPublisher(port=mqtt_broker.port) as pub:
        topic = topic_for(tenant, "home-1", "thermo-1", "telemetry")
        assert pub.publish_many([(topic, reading(f"q{i}")) for i in range(5)]) == 5
    with ingestor_for(store, key, tenant, mqtt_broker.port) as ingestor:
        assert wait_for(lambda: ingestor.stats()["written"] == 5), ingestor.stats()
    assert len(rows(store)) == 5


@pytest.mark.mqtt
def test_the_ingestor_reconnects_when_the_broker_comes_back(private_broker, store, key, tenant):
    options = dict(reconnect_min_s=0.1, reconnect_max_s=0.5)
    with ingestor_for(store, key, tenant, private_broker.port, **options) as ingestor:
        private_broker.stop()
        assert wait_for(lambda: not ingestor.subscribed)
        private_broker.start()
        assert wait_for(ingestor.wait_subscribed), "did not reconnect"
        with MqttPublisher(port=private_broker.port) as pub:
            assert pub.publish_event(tenant, "home-1", "thermo-1", "telemetry", reading("r1"))
        assert wait_for(lambda: ingestor.stats()["written"] == 1), ingestor.stats()
        assert ingestor.stats()["connects"] == 2


@pytest.mark.mqtt
def test_counters_are_exposed_to_prometheus(mqtt_broker, store, key, tenant):
    registry = CollectorRegistry()
    with ingestor_for(store, key, tenant, mqtt_broker.port, registry=registry) as ingestor:
        with MqttPublisher(port=mqtt_broker.port) as pub:
            pub.publish_event(tenant, "home-1", "thermo-1", "telemetry", reading("r1"))
            pub.publish_many([(topic_for(tenant, "h", "d", "telemetry"), b"nope")])
        assert wait_for(lambda: ingestor.stats()["acknowledged"] == 2)
        text = generate_latest(registry).decode()
    assert f'tailor_mqtt_messages_total{{outcome="written",tenant="{tenant}"}} 1.0' in text
    assert f'tailor_mqtt_messages_total{{outcome="quarantined",tenant="{tenant}"}} 1.0' in text
    assert f'tailor_mqtt_connected{{tenant="{tenant}"}} 1.0' in text


@pytest.mark.mqtt
def test_run_ingestor_consumes_until_stopped(mqtt_broker, store, key, tenant):
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(
            run_ingestor(
                store,
                tenant,
                "127.0.0.1",
                mqtt_broker.port,
                pseudonymizer=key,
                stop=stop,
                flush_ms=10.0,
                session_expiry_s=120,
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    try:
        with MqttPublisher(port=mqtt_broker.port) as pub:
            # published before the subscription exists would be dropped: retry until stored
            assert wait_for(
                lambda: (
                    pub.publish_event(tenant, "h", "d", "telemetry", reading("r1"))
                    and len(rows(store)) == 1
                )
            )
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert result["written"] == 1


@pytest.mark.mqtt
def test_nothing_acknowledged_is_lost_across_a_broker_restart(mosquitto_binary, tmp_path):
    result = broker_restart_check(60, mosquitto=mosquitto_binary, workdir=tmp_path, quiet_s=1.0)
    assert result["acknowledged"] == 60
    assert result["lost"] == 0
    assert result["stored"] == 60
    assert result["duplicates"] == 0
    assert result["quarantined"] == 0


@pytest.mark.mqtt
def test_the_restart_check_reports_loss_when_the_broker_forgets(mosquitto_binary, tmp_path):
    result = broker_restart_check(
        60, mosquitto=mosquitto_binary, workdir=tmp_path, persistence=False, quiet_s=1.0
    )
    assert result["acknowledged"] == 60
    # at least the half queued while the ingestor was away (and any message the broker had
    # not delivered yet when it stopped)
    assert result["lost"] >= 30
    assert result["stored"] + result["lost"] == 60
