"""Device telemetry and manual adjustments over MQTT, into the event store.

A device publishes one JSON object per reading (QoS 1) to
``tailor/<tenant>/homes/<home_id>/devices/<device_id>/<kind>``, ``kind`` being ``telemetry``
or ``adjustment``. The topic supplies ``event_type``, ``subject_id`` (the home) and
``device_id``; the payload carries the rest of the event (``event_id``, ``occurred_at``,
``metric``, ``value``, ``unit``, ``device_time``, ``previous_value``). The message then goes
through the same validation (:func:`tailor.events.ingest.validate_batch`) and the same writer
(:class:`tailor.events.ingest.GroupCommitWriter`: flatten, pseudonymize, idempotent append by
``event_id``) as ``POST /v1/events``, so an event stored from MQTT and one stored over HTTP are
the same rows.

Delivery is at least once and nothing acknowledged is lost: :class:`MqttIngestor` keeps a
persistent MQTT v5 session under a stable client id (the broker queues messages while it is
away) and acknowledges a message (PUBACK) only after the store transaction holding it has
committed. A redelivered message is stored once, by its ``event_id``. An invalid message is
acknowledged too, and quarantined with its reason, so it never blocks the ones behind it.
:func:`broker_restart_check` measures the promise end to end against a real Mosquitto that is
restarted between publishing and consuming.

Examples
--------
>>> topic_for("acme", "home-1", "thermostat-1", "telemetry")
'tailor/acme/homes/home-1/devices/thermostat-1/telemetry'
>>> parse_topic("tailor/acme/homes/home-1/devices/thermostat-1/adjustment").event_type
'device_adjustment'
>>> event_from_message(
...     "tailor/acme/homes/home-1/devices/t-1/telemetry",
...     b'{"event_id": "r1", "occurred_at": "2024-05-01T10:00:00Z", "metric": "indoor_temp",'
...     b' "value": 20.5, "unit": "C"}',
... )["subject_id"]
'home-1'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from tailor.errors import StoreUnavailable
from tailor.events.columns import ID_LENGTH

# The HTTP path's validator and group-commit writer: MQTT must store exactly what HTTP stores.
# They live in tailor.events.ingest but import nothing of the web framework.
from tailor.events.ingest import GroupCommitWriter, IngestResult, validate_batch
from tailor.events.privacy import Pseudonymizer
from tailor.store import Store, open_store

log = logging.getLogger(__name__)

TOPIC_ROOT = "tailor"
KINDS: dict[str, str] = {"telemetry": "telemetry", "adjustment": "device_adjustment"}
"""Topic kind -> event type."""
MAX_PAYLOAD_BYTES = 16 * 1024
FROM_TOPIC = ("event_type", "subject_id", "device_id")
"""Event fields the topic supplies; a payload that repeats them is refused."""
TOPIC_LAYOUT = "tailor/<tenant>/homes/<home_id>/devices/<device_id>/<kind>"
QUARANTINE_PAYLOAD_BYTES = 1024
"""How much of a quarantined payload is kept in memory (for inspection, never logged)."""
ERASURE_CHECK_S = 1.0
"""How often an ingestor looks for erasures made elsewhere (one count of the tombstones)."""
_FORBIDDEN_IN_LEVEL = ("/", "+", "#", "\x00")


class TopicError(ValueError):
    """A topic that does not follow :data:`TOPIC_LAYOUT`, or an id that cannot be a level."""


class MessageError(ValueError):
    """A message that cannot become an event (bad topic, size, JSON or field); the text is its
    quarantine reason and never quotes raw ids."""


# --- topics and payloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceTopic:
    """The parts of a device topic."""

    tenant: str
    home_id: str
    device_id: str
    kind: str

    @property
    def event_type(self) -> str:
        return KINDS[self.kind]


def _check_level(what: str, value: object) -> str:
    """``value`` as one topic level; the message names the level, never the (raw id) value."""
    if not isinstance(value, str):
        raise TopicError(f"{what} must be a string, got {type(value).__name__}")
    if not value or value != value.strip():
        raise TopicError(f"{what} must be non-empty, without leading or trailing spaces")
    if len(value) > ID_LENGTH:
        raise TopicError(f"{what} has {len(value)} characters; at most {ID_LENGTH} are allowed")
    if any(c in value for c in _FORBIDDEN_IN_LEVEL):
        raise TopicError(f"{what} must not contain '/', '+', '#' or NUL (MQTT topic syntax)")
    return value


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise TopicError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]


def topic_for(tenant: str, home_id: str, device_id: str, kind: str) -> str:
    """The topic a device publishes ``kind`` (``telemetry`` or ``adjustment``) messages to.

    Raises
    ------
    TopicError
        when an id is empty, padded with spaces, too long, or holds ``/``, ``+``, ``#``.
    """
    parts = (
        _check_level("tenant", tenant),
        _check_level("home_id", home_id),
        _check_level("device_id", device_id),
        _check_kind(kind),
    )
    return f"{TOPIC_ROOT}/{parts[0]}/homes/{parts[1]}/devices/{parts[2]}/{parts[3]}"


def subscription_for(tenant: str) -> str:
    """The topic filter that matches every device topic of ``tenant``."""
    return f"{TOPIC_ROOT}/{_check_level('tenant', tenant)}/homes/+/devices/+/+"


def parse_topic(topic: str) -> DeviceTopic:
    """Split a device topic into tenant, home, device and kind.

    Raises
    ------
    TopicError
        naming what is wrong (never quoting the home or device id).
    """
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a string, got {type(topic).__name__}")
    levels = topic.split("/")
    if len(levels) != 7:
        raise TopicError(f"topic has {len(levels)} levels, expected 7: {TOPIC_LAYOUT}")
    root, tenant, homes, home_id, devices, device_id, kind = levels
    if root != TOPIC_ROOT or homes != "homes" or devices != "devices":
        raise TopicError(f"topic does not follow {TOPIC_LAYOUT}")
    return DeviceTopic(
        tenant=_check_level("tenant", tenant),
        home_id=_check_level("home_id", home_id),
        device_id=_check_level("device_id", device_id),
        kind=_check_kind(kind),
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("timestamps must be time-zone aware (e.g. datetime.now(UTC))")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_payload(fields: Mapping[str, Any]) -> bytes:
    """A payload for :func:`topic_for`'s topic: the event's fields as compact JSON (aware
    datetimes as ISO 8601)."""
    return json.dumps(dict(fields), separators=(",", ":"), default=_json_default).encode()


def event_from_message(
    topic: str,
    payload: bytes,
    *,
    tenant: str | None = None,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> dict[str, Any]:
    """The raw event (as ``POST /v1/events`` would receive it) of one MQTT message.

    Parameters
    ----------
    topic, payload : the message.
    tenant : when given, a topic of another tenant is refused.
    max_payload_bytes : larger payloads are refused before they are parsed.

    Returns
    -------
    dict
        The payload's fields plus ``event_type``, ``subject_id`` (the home) and ``device_id``
        from the topic; not yet validated (:func:`tailor.events.ingest.validate_batch` does that).

    Raises
    ------
    MessageError
        for a bad topic, an oversize or non-JSON payload, a payload that is not an object or
        that repeats a field the topic supplies.
    """
    try:
        parts = parse_topic(topic)
    except TopicError as exc:
        raise MessageError(f"topic: {exc}") from None
    if tenant is not None and parts.tenant != tenant:
        raise MessageError(f"topic: tenant {parts.tenant!r} is not this ingestor's {tenant!r}")
    if len(payload) > max_payload_bytes:
        raise MessageError(
            f"payload: {len(payload)} bytes, more than the {max_payload_bytes} allowed; send "
            "one reading per message"
        )
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"payload: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MessageError(f"payload: must be a JSON object, got {type(data).__name__}")
    repeated = [name for name in FROM_TOPIC if name in data]
    if repeated:
        raise MessageError(
            f"payload: {', '.join(repeated)} come(s) from the topic ({TOPIC_LAYOUT}); "
            "leave them out of the payload"
        )
    return data | {
        "event_type": parts.event_type,
        "subject_id": parts.home_id,
        "device_id": parts.device_id,
    }


# --- the ingestor -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quarantined:
    """A message that was acknowledged but not stored, and why.

    ``payload`` holds at most :data:`QUARANTINE_PAYLOAD_BYTES` of it; it stays in memory only
    (it may hold raw ids) and is never logged.
    """

    received_at: datetime
    topic: str | None
    reason: str
    payload: bytes


@dataclass
class _Message:
    generation: int
    """The connection it arrived on; a PUBACK on a later connection would be for another
    message, so only messages of the current connection are acknowledged."""
    mid: int
    qos: int
    topic: str | None
    payload: bytes
    received_at: datetime


class MqttIngestor:
    """Subscribes to a tenant's device topics and stores each message as an event.

    Messages are buffered and written in batches (every ``batch_size`` messages or
    ``flush_ms`` after the first one of a batch arrived) by a :class:`GroupCommitWriter`; the
    PUBACK of every message in a batch is sent after the batch's transaction committed. Until
    then the broker holds the message and redelivers it if the ingestor goes away.

    The writer remembers recent raw ids (their pseudonyms cost an HMAC each). An erasure made
    anywhere else (the API of ``tailor serve``, ``tailor erase``) reaches this process
    only through the store, so the flusher counts the store's tombstones every
    ``erasure_check_s`` seconds, busy or idle, and drops every cached raw id when the count
    moved: the person's raw id does not linger here either, and their events are refused at
    the write whatever the cache held.

    Parameters
    ----------
    store : the tenant's event store.
    pseudonymizer : the store's key (ids are pseudonymized before they are written).
    tenant : the tenant whose topics are consumed (``tailor/<tenant>/...``).
    host, port : the broker.
    client_id : the MQTT client id that names the persistent session; keep it stable across
        restarts (default ``tailor-ingest-<tenant>``) and run one ingestor per id: a second
        connection with the same id takes the session over.
    batch_size : the most messages one store transaction takes.
    flush_ms : how long a partly filled batch waits for more messages.
    max_payload_bytes : larger payloads are quarantined unread.
    session_expiry_s : how long the broker keeps the session (and queues messages) while the
        ingestor is away.
    receive_maximum : how many unacknowledged messages the broker may send at once (MQTT v5
        Receive Maximum); keep it above ``batch_size`` or batches wait for ``flush_ms``.
    keepalive_s : MQTT keep-alive.
    reconnect_min_s, reconnect_max_s : reconnect backoff (doubling) when the broker goes away.
    quarantine_size : how many quarantined messages are kept in :attr:`quarantine` (oldest
        dropped first).
    username, password : broker credentials, if it wants any.
    registry : a Prometheus registry to expose the counters in (see :meth:`collector`).

    Attributes
    ----------
    received, written, duplicates, quarantined, acknowledged, commit_failures, connects : int
        Running totals. ``written`` counts events stored now; ``duplicates`` events already
        stored (a redelivery, or a repeated ``event_id``).
    quarantine : deque of Quarantined
        The most recent quarantined messages.

    Examples
    --------
    >>> from tailor.store import open_store
    >>> ingestor = MqttIngestor(open_store(":memory:"), Pseudonymizer(b"k" * 32), tenant="acme")
    >>> ingestor.subscription
    'tailor/acme/homes/+/devices/+/+'
    """

    def __init__(
        self,
        store: Store,
        pseudonymizer: Pseudonymizer,
        *,
        tenant: str = "default",
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str | None = None,
        batch_size: int = 500,
        flush_ms: float = 50.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 1000,
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        quarantine_size: int = 1000,
        username: str | None = None,
        password: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.subscription = subscription_for(tenant)
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("max_payload_bytes", max_payload_bytes, 1),
            ("session_expiry_s", session_expiry_s, 1),
            ("keepalive_s", keepalive_s, 1),
            ("quarantine_size", quarantine_size, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be in 1..65535, got {receive_maximum}")
        if flush_ms < 0:
            raise ValueError(f"flush_ms must be 0 or more, got {flush_ms}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(
                "reconnect_min_s must be positive and at most reconnect_max_s, got "
                f"{reconnect_min_s} and {reconnect_max_s}"
            )
        self.store = store
        self.pseudonymizer = pseudonymizer
        self.tenant = tenant
        self.host = host
        self.port = port
        self.client_id = client_id or f"tailor-ingest-{tenant}"
        self.batch_size = batch_size
        self.flush_ms = flush_ms
        self.max_payload_bytes = max_payload_bytes
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.username = username
        self.password = password
        self.quarantine: deque[Quarantined] = deque(maxlen=quarantine_size)
        self.received = self.written = self.duplicates = self.quarantined = 0
        self.acknowledged = self.commits = self.commit_failures = self.connects = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._buffer: list[_Message] = []
        self._generation = 0
        self._connected = False
        self._accepting = False
        self._stopping = False
        self._subscribed = threading.Event()
        self._stop_requested = threading.Event()
        self._client: mqtt.Client | None = None
        self._writer: GroupCommitWriter | None = None
        self._flusher: threading.Thread | None = None
        self.erasure_check_s = ERASURE_CHECK_S
        self._tombstones: int | None = None  # the count last seen; None: not looked yet
        self._tombstones_checked = float("-inf")
        if registry is not None:
            registry.register(self.collector())

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._flusher is not None

    @property
    def subscribed(self) -> bool:
        """True once the broker granted the subscription on the current connection."""
        return self._subscribed.is_set()

    def start(self, *, wait_s: float = 10.0) -> MqttIngestor:
        """Connect (in the background, retrying with backoff) and start consuming.

        Waits up to ``wait_s`` seconds for the subscription; if the broker is not there by
        then, a warning is logged and the ingestor keeps trying (see :attr:`subscribed`).
        """
        if self.running:
            return self
        self._writer = GroupCommitWriter(
            self.store, self.pseudonymizer, max_batch_events=self.batch_size, max_wait_ms=0
        ).start()
        self._stop_requested.clear()
        with self._lock:
            self._stopping = False
            self._accepting = True
        self._flusher = threading.Thread(
            target=self._run, name=f"tailor-mqtt-{self.tenant}", daemon=True
        )
        self._flusher.start()
        self._client = self._make_client()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = self.receive_maximum
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        if wait_s > 0 and not self._subscribed.wait(wait_s):
            log.warning(
                "MQTT broker at %s:%d did not accept the subscription within %.0f s; still "
                "trying (is the broker running?)",
                self.host,
                self.port,
                wait_s,
            )
        return self

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until subscribed (True) or ``timeout`` seconds passed (False)."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Write and acknowledge what was received, then disconnect, keeping the session.

        Messages that arrive while stopping are neither stored nor acknowledged: the broker
        keeps them, with everything published later, for the next start under this client id.
        """
        if not self.running:
            return
        with self._cond:
            self._accepting = False
            self._stopping = True
            self._cond.notify_all()
        self._stop_requested.set()
        assert self._flusher is not None and self._client is not None
        self._flusher.join(timeout)
        if self._flusher.is_alive():
            log.warning("MQTT ingestor did not drain within %s s; the broker redelivers", timeout)
        # A normal DISCONNECT keeps the session (its expiry was set at CONNECT); the PUBACKs
        # queued before it are sent first. A busy broker may still hold some of them unread
        # when the next connection under this client id takes the session over: it then
        # redelivers those messages, which are stored once (counted as duplicates).
        self._client.disconnect()
        self._client.loop_stop()
        if self._writer is not None:
            self._writer.close(timeout)
        self._client = self._writer = self._flusher = None
        self._subscribed.clear()
        with self._lock:
            self._buffer = []
            self._connected = False

    def __enter__(self) -> MqttIngestor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """The running totals as a dict."""
        with self._lock:
            return {
                "received": self.received,
                "written": self.written,
                "duplicates": self.duplicates,
                "quarantined": self.quarantined,
                "acknowledged": self.acknowledged,
                "commits": self.commits,
                "commit_failures": self.commit_failures,
                "connects": self.connects,
            }

    def collector(self) -> Collector:
        """A Prometheus collector of the counters (``tailor_mqtt_messages_total`` by outcome,
        ``tailor_mqtt_connected``), read at scrape time."""
        return _MqttCollector(self)

    # --- MQTT callbacks (paho's network thread) -----------------------------------------------
    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,  # PUBACK only after the commit (see _ack)
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self.connects += 1
        log.info(
            "connected to MQTT broker %s:%d (session %s)",
            self.host,
            self.port,
            "resumed" if flags.session_present else "new",
        )
        # Subscribing again on a resumed session is harmless; on a new one (the broker lost
        # it) it is what starts the flow again.
        client.subscribe(self.subscription, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("MQTT broker refused the subscription %s: %s", self.subscription, failed)
            return
        if any(rc.value < 1 for rc in reason_codes):
            log.warning("MQTT broker granted QoS 0 only: messages can be lost on a restart")
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._connected = False
            stopping = self._stopping
        self._subscribed.clear()
        if not stopping:
            log.warning(
                "lost the MQTT broker %s:%d (%s); reconnecting with backoff up to %.0f s",
                self.host,
                self.port,
                reason_code,
                self.reconnect_max_s,
            )

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        # Must not raise (paho would drop the connection): decode only, validate later.
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        received_at = datetime.now(UTC)
        with self._cond:
            if not self._accepting:
                return  # stopping: left unacknowledged, the broker redelivers it later
            self._buffer.append(
                _Message(
                    self._generation, message.mid, message.qos, topic, message.payload, received_at
                )
            )
            self.received += 1
            if len(self._buffer) >= self.batch_size or len(self._buffer) == 1:
                self._cond.notify()

    # --- the flusher thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._forget_raw_ids_after_erasures()
            if not batch:
                continue
            try:
                self._process(batch)
            except Exception:  # never let one batch kill the thread: its messages stay unacked
                log.exception("MQTT batch of %d messages failed; left for redelivery", len(batch))

    def _take(self) -> list[_Message] | None:
        """The next batch; an empty one when nothing came for ``erasure_check_s`` (time to
        look at the tombstones); None when stopping."""
        with self._cond:
            while not self._buffer:
                if self._stopping:
                    return None
                if not self._cond.wait(self.erasure_check_s):
                    return []
            deadline = time.monotonic() + self.flush_ms / 1000
            while len(self._buffer) < self.batch_size and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._buffer[: self.batch_size]
            del self._buffer[: self.batch_size]
            return batch

    def _forget_raw_ids_after_erasures(self) -> None:
        """Drop the writer's cached raw ids when the store's tombstones changed since the last
        look (at most one count every ``erasure_check_s``)."""
        now = time.monotonic()
        if now - self._tombstones_checked < self.erasure_check_s or self._writer is None:
            return
        self._tombstones_checked = now
        try:
            count = self.store.count_tombstones()
        except Exception as exc:  # the store's trouble shows at the next commit, which retries
            log.warning("could not count the erasures (%s); the raw-id cache is dropped", exc)
            self._writer.forget_raw_ids()
            return
        if count != self._tombstones:
            self._writer.forget_raw_ids()
            self._tombstones = count

    def _process(self, batch: list[_Message]) -> None:
        """Validate, write and acknowledge one batch; quarantine its invalid messages (in the
        order received, once the batch is settled)."""
        reasons: dict[int, str] = {}  # batch position -> quarantine reason
        raws: list[dict[str, Any]] = []
        positions: list[int] = []  # batch position of each raw event
        for position, message in enumerate(batch):
            try:
                if message.topic is None:
                    raise MessageError("topic: not valid UTF-8")
                raws.append(
                    event_from_message(
                        message.topic,
                        message.payload,
                        tenant=self.tenant,
                        max_payload_bytes=self.max_payload_bytes,
                    )
                )
                positions.append(position)
            except MessageError as exc:
                reasons[position] = str(exc)
        result = IngestResult(0, 0)
        if raws:
            events, rejected = validate_batch(raws, max_events=len(raws))
            for r in rejected:
                reasons[positions[r.index]] = _as_payload_reason(r.reason, r.index)
            kept = [p for p in positions if p not in reasons]  # batch position of each event
            if events:
                committed = self._commit(events)
                if committed is None:
                    return  # stopping with the store down: nothing acknowledged, all redelivered
                result = committed
                for r in result.rejected:  # e.g. the home was erased
                    reasons[kept[r.index]] = _as_payload_reason(r.reason, r.index)
        for position in sorted(reasons):
            self._quarantine(batch[position], reasons[position])
        with self._lock:
            self.written += result.accepted
            self.duplicates += result.duplicates
        self._ack(batch)

    def _commit(self, events: Sequence[Any]) -> IngestResult | None:
        """Write the events, retrying with backoff while the store is unavailable (the
        messages stay unacknowledged meanwhile); None when stopping before it succeeded."""
        assert self._writer is not None
        delay = 0.1
        while True:
            try:
                result = self._writer.submit(events).result()
                with self._lock:
                    self.commits += 1
                return result
            except StoreUnavailable as exc:
                with self._lock:
                    self.commit_failures += 1
                if self._stop_requested.is_set():
                    log.warning("store unavailable while stopping (%s); the broker redelivers", exc)
                    return None
                log.warning("store unavailable (%s); retrying in %.1f s", exc, delay)
                self._stop_requested.wait(delay)  # one last try when stop() interrupts it
                delay = min(delay * 2, 5.0)

    def _ack(self, batch: list[_Message]) -> None:
        """PUBACK every message of a committed batch, in the order received."""
        client = self._client
        with self._lock:
            current = self._generation if self._connected else -1
        sent = 0
        for message in batch:
            if message.generation == current and message.qos > 0 and client is not None:
                client.ack(message.mid, message.qos)
                sent += 1
        with self._lock:
            self.acknowledged += sent

    def _quarantine(self, message: _Message, reason: str) -> None:
        self.quarantine.append(
            Quarantined(
                message.received_at,
                message.topic,
                reason,
                bytes(message.payload[:QUARANTINE_PAYLOAD_BYTES]),
            )
        )
        with self._lock:
            self.quarantined += 1
        log.warning("quarantined an MQTT message: %s", reason)


def _as_payload_reason(reason: str, index: int) -> str:
    """A validator's ``events[i].field: ...`` reason as ``payload.field: ...``."""
    return reason.replace(f"events[{index}]", "payload")


class _MqttCollector(Collector):
    def __init__(self, ingestor: MqttIngestor) -> None:
        self._ingestor = ingestor

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        ingestor = self._ingestor
        stats = ingestor.stats()
        messages = CounterMetricFamily(
            "tailor_mqtt_messages",
            "MQTT messages by outcome: received, written (stored), duplicate (already stored), "
            "quarantined (invalid, acknowledged and dropped), acknowledged (PUBACK sent).",
            labels=["tenant", "outcome"],
        )
        for outcome, key in (
            ("received", "received"),
            ("written", "written"),
            ("duplicate", "duplicates"),
            ("quarantined", "quarantined"),
            ("acknowledged", "acknowledged"),
        ):
            messages.add_metric([ingestor.tenant, outcome], stats[key])
        failures = CounterMetricFamily(
            "tailor_mqtt_commit_failures",
            "Store transactions of the MQTT ingestor that failed (retried).",
            labels=["tenant"],
        )
        failures.add_metric([ingestor.tenant], stats["commit_failures"])
        connected = GaugeMetricFamily(
            "tailor_mqtt_connected", "1 while subscribed to the broker.", labels=["tenant"]
        )
        connected.add_metric([ingestor.tenant], 1 if ingestor.subscribed else 0)
        yield from (messages, failures, connected)


def run_ingestor(
    store: Store,
    tenant: str,
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    pseudonymizer: Pseudonymizer,
    stop: threading.Event | None = None,
    **options: Any,
) -> dict[str, int]:
    """Consume ``tenant``'s device topics into ``store`` until Ctrl-C (or ``stop`` is set).

    ``options`` go to :class:`MqttIngestor` (``client_id``, ``batch_size``, ``flush_ms``...).
    Returns the ingestor's final :meth:`~MqttIngestor.stats`.
    """
    ingestor = MqttIngestor(store, pseudonymizer, tenant=tenant, host=host, port=port, **options)
    stop = stop or threading.Event()
    ingestor.start(wait_s=0)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        log.info("stopping the MQTT ingestor")
    finally:
        ingestor.stop()
    return ingestor.stats()


# --- publishing -------------------------------------------------------------------------------


class MqttPublisher:
    """Publishes at QoS 1 and counts what the broker acknowledged (for devices, tests and the
    benchmark).

    Parameters
    ----------
    host, port : the broker.
    client_id : default a random one (a clean session: a publisher needs no queue).
    timeout_s : how long :meth:`connect` and :meth:`publish_many` wait.
    max_inflight : unacknowledged messages on the wire at once.

    Examples
    --------
    >>> with MqttPublisher(port=1883) as pub:  # doctest: +SKIP
    ...     pub.publish_event("acme", "home-1", "t-1", "telemetry", {"event_id": "r1", ...})
    True
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str | None = None,
        timeout_s: float = 10.0,
        max_inflight: int = 100,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if timeout_s <= 0 or max_inflight < 1:
            raise ValueError("timeout_s must be positive and max_inflight at least 1")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"tailor-pub-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *args: self._connected.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def connect(self) -> MqttPublisher:
        """Connect and wait for the broker's CONNACK.

        Raises
        ------
        ConnectionError
            when the broker does not answer within ``timeout_s``.
        """
        self._client.connect_async(self.host, self.port, clean_start=True)
        self._client.loop_start()
        if not self._connected.wait(self.timeout_s):
            self.close()
            raise ConnectionError(
                f"no MQTT broker answered at {self.host}:{self.port} within {self.timeout_s} s; "
                "start one (e.g. mosquitto -p PORT) or fix host/port"
            )
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, topic: str, payload: bytes | str | Mapping[str, Any]) -> mqtt.MQTTMessageInfo:
        """Queue one QoS 1 message (a mapping is sent as JSON); wait on the returned info."""
        if isinstance(payload, Mapping):
            payload = encode_payload(payload)
        return self._client.publish(topic, payload, qos=1)

    def publish_acknowledged(
        self, messages: Iterable[tuple[str, bytes | str | Mapping[str, Any]]]
    ) -> list[bool]:
        """Publish every message, then wait (``timeout_s`` in all) for the broker's PUBACKs;
        per message, whether it was acknowledged."""
        infos = [self.publish(topic, payload) for topic, payload in messages]
        deadline = time.monotonic() + self.timeout_s
        acked = []
        for info in infos:
            # ValueError: not queued (queue full); RuntimeError: the connection failed.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(deadline - time.monotonic(), 0.001))
            acked.append(info.is_published())
        return acked

    def publish_many(self, messages: Iterable[tuple[str, bytes | str | Mapping[str, Any]]]) -> int:
        """How many of ``messages`` the broker acknowledged."""
        return sum(self.publish_acknowledged(messages))

    def publish_event(
        self, tenant: str, home_id: str, device_id: str, kind: str, fields: Mapping[str, Any]
    ) -> bool:
        """Publish one event's payload to its device topic; True once acknowledged."""
        return self.publish_many([(topic_for(tenant, home_id, device_id, kind), fields)]) == 1


# --- the broker-restart check -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now (for a private broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Mosquitto:
    """A private Mosquitto broker on ``127.0.0.1:port`` with its files in ``workdir``.

    ``persistence=True`` saves sessions and queued messages to ``workdir/mosquitto.db`` on
    every change and at shutdown, so a restart (:meth:`stop` then :meth:`start`) keeps them.
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        port: int | None = None,
        binary: str = "/usr/sbin/mosquitto",
        persistence: bool = True,
        max_queued_messages: int = 10_000,
    ) -> None:
        if not Path(binary).is_file():
            raise FileNotFoundError(
                f"no mosquitto binary at {binary}: install it (apt-get install mosquitto) or "
                "pass its path"
            )
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.binary = binary
        self.config = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "autosave_on_changes true",
            "autosave_interval 1",  # with autosave_on_changes: save after every change
            f"max_queued_messages {max_queued_messages}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # as root it would switch to 'mosquitto', locked out
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log_path = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while not port_open("127.0.0.1", self.port, 0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-500:]
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {tail}")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _restart_messages(tenant: str, n: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(event_id, topic, payload): telemetry, every tenth a manual setpoint change."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        event_id = f"restart-{i:07d}"
        at = (start + timedelta(minutes=i)).isoformat()
        home, device = f"home-{i % 7}", f"thermostat-{i % 7}"
        if i % 10 == 9:
            fields = {"event_id": event_id, "occurred_at": at, "metric": "setpoint"}
            fields |= {"value": 20.0 + i % 3, "previous_value": 19.0, "unit": "C"}
            yield event_id, topic_for(tenant, home, device, "adjustment"), fields
        else:
            fields = {"event_id": event_id, "occurred_at": at, "metric": "indoor_temp"}
            fields |= {"value": 19.0 + (i % 40) / 10, "unit": "C", "device_time": at}
            yield event_id, topic_for(tenant, home, device, "telemetry"), fields


def _stored_ids(store: Store) -> list[str]:
    table = store.read_events(purpose=None, event_types=list(KINDS.values()), columns=["event_id"])
    return table.column("event_id").to_pylist()


def broker_restart_check(
    n_messages: int = 1000,
    *,
    mosquitto: str = "/usr/sbin/mosquitto",
    workdir: str | Path | None = None,
    persistence: bool = True,
    quiet_s: float = 1.5,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Publish through a broker restart and count acknowledged messages that were not stored.

    A private Mosquitto (persistence on, saved on every change) and an ingestor into a fresh
    DuckDB store are started; half the messages are published and consumed; the ingestor
    stops (its persistent session keeps queuing) and the other half is published, each
    waiting for its PUBACK; the broker is stopped (SIGTERM) and started again on the same
    persistence file; the ingestor is started again and runs until no new message or row
    arrived for ``quiet_s`` seconds (or ``timeout_s`` passed).

    Parameters
    ----------
    n_messages : how many events to publish (telemetry and setpoint changes, 7 homes).
    mosquitto : the broker binary.
    workdir : where the broker's and the store's files go (default a temporary folder,
        removed afterwards).
    persistence : False runs the broker without persistence, which loses the queued half:
        a check that it can fail.
    quiet_s, timeout_s : when to stop waiting for the redelivered messages.

    Returns
    -------
    dict
        ``sent``, ``acknowledged`` (PUBACKs the publisher got), ``stored`` (distinct event ids
        in the store), ``lost`` (acknowledged ids not stored: must be 0), ``duplicates``
        (rows stored more than once: must be 0), ``redelivered`` (messages the ingestor found
        already stored), ``quarantined``, ``persistence``.
    """
    if n_messages < 2:
        raise ValueError(f"n_messages must be at least 2, got {n_messages}")
    with tempfile.TemporaryDirectory(prefix="tailor-mqtt-") as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        broker = Mosquitto(
            root / "broker",
            binary=mosquitto,
            persistence=persistence,
            max_queued_messages=max(1000, 2 * n_messages),
        )
        store = open_store(str(root / f"store-{uuid.uuid4().hex[:8]}.duckdb"))
        key = Pseudonymizer(secrets.token_bytes(32))
        tenant = "restart-check"
        options = dict(
            tenant=tenant,
            port=broker.port,
            client_id=f"tailor-restart-check-{uuid.uuid4().hex[:8]}",
            batch_size=200,
            flush_ms=20.0,
            session_expiry_s=3600,
            reconnect_min_s=0.1,
            reconnect_max_s=1.0,
        )
        messages = list(_restart_messages(tenant, n_messages))
        half = n_messages // 2
        acknowledged: set[str] = set()
        totals = {"redelivered": 0, "quarantined": 0}

        def publish(part: list[tuple[str, str, dict[str, Any]]]) -> None:
            with MqttPublisher(port=broker.port, timeout_s=max(10.0, len(part) / 50)) as pub:
                acked = pub.publish_acknowledged((topic, fields) for _, topic, fields in part)
            acknowledged.update(m[0] for m, ok in zip(part, acked, strict=True) if ok)

        def consumed(ingestor: MqttIngestor) -> None:
            stats = ingestor.stats()
            totals["redelivered"] += stats["duplicates"]
            totals["quarantined"] += stats["quarantined"]

        broker.start()
        try:
            ingestor = MqttIngestor(store, key, **options)  # type: ignore[arg-type]
            ingestor.start()
            if not ingestor.subscribed:
                raise RuntimeError(f"the ingestor could not subscribe on port {broker.port}")
            publish(messages[:half])
            ingestor.stop()  # the session persists: the broker queues the rest for it
            consumed(ingestor)
            publish(messages[half:])
            broker.stop()
            broker.start()
            ingestor = MqttIngestor(store, key, **options)  # type: ignore[arg-type]
            ingestor.start()
            _wait_quiet(ingestor, store, quiet_s=quiet_s, timeout_s=timeout_s)
            ingestor.stop()
            consumed(ingestor)
        finally:
            broker.stop()
        ids = _stored_ids(store)
        store.close()
    distinct = set(ids)
    return {
        "sent": n_messages,
        "acknowledged": len(acknowledged),
        "stored": len(distinct),
        "lost": len(acknowledged - distinct),
        "duplicates": len(ids) - len(distinct),
        "redelivered": totals["redelivered"],
        "quarantined": totals["quarantined"],
        "persistence": persistence,
    }


def _wait_quiet(ingestor: MqttIngestor, store: Store, *, quiet_s: float, timeout_s: float) -> None:
    """Return once neither the ingestor's message count nor the store's row count changed for
    ``quiet_s`` seconds after it subscribed (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    ingestor.wait_subscribed(timeout_s)
    last = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = (ingestor.stats()["received"], store.count_events())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)
    log.warning("messages were still arriving after %.0f s", timeout_s)
