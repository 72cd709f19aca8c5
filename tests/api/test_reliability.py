"""Reliability: the server killed mid-stream, and PostgreSQL going away while serving.

- ``kill -9`` of a real ``tailor serve`` process during a stream of batched ingests, over
  and over: every acknowledged event is in the store exactly once, nothing that was never
  sent is, and clients that retry unacknowledged batches with the same ids lose nothing.
  One kill runs in the default suite; five run under ``-m slow``.
- PostgreSQL behind a TCP proxy that the test takes down (every connection closed, new ones
  refused, as in a restart or a network partition) and brings back: recommendations keep
  being answered from memory, ingestion (and every other write, and the data export)
  answers 503 with ``Retry-After`` and stores nothing, and the same request succeeds once
  the database is back, stored once. ``/v1/ready`` stays 200 with the same model: readiness
  means "answers recommendations", which holds, so a load balancer keeps the server; the
  outage shows as 503s on writes (counted by status in ``/metrics``).
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from tailor.errors import StoreError, StoreUnavailable
from tailor.store import open_store
from tests.api._server_process import ServerProcess, Shop, prepare_shop
from tests.api._serving import auth, close, serve
from tests.conftest import view

WAIT_S = 120.0  # how long any one step may take on a loaded machine before the test fails
BATCH = 200


# --- kill -9 during ingestion ---------------------------------------------------------------


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def shop(request: pytest.FixtureRequest, tmp_path) -> Shop:
    store = None if request.param == "duckdb" else request.getfixturevalue("postgres_schema_url")
    return prepare_shop(tmp_path / "shop", store)


@pytest.fixture
def server(shop: Shop) -> Iterator[ServerProcess]:
    process = ServerProcess(shop)
    yield process
    process.stop()  # never leave a server behind, whatever the test did


@dataclass
class Ledger:
    """What the clients sent and what the server acknowledged (shared by client threads)."""

    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    accepted: int = 0  # the sum of `accepted` over the answers that came back
    transport_failures: int = 0  # connection refused or reset, no answer
    unavailable: int = 0  # 503 answers
    errors: list[str] = field(default_factory=list)  # anything else: a bug
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)


def ingest_client(
    number: int, server: ServerProcess, ledger: Ledger, stop: threading.Event
) -> None:
    """Post batches of BATCH new events; retry a batch with the same ids until it is
    acknowledged (or the test stops the client)."""
    headers = auth(server.shop.token)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=WAIT_S) as http:
        b = 0
        while not stop.is_set():
            batch = [
                view(f"k{number}-{b}-{i}", f"user{number}-{i % 40}", f"coffee-{i % 8}")
                for i in range(BATCH)
            ]
            ids = [event["event_id"] for event in batch]
            with ledger.lock:
                ledger.sent.update(ids)
            while not stop.is_set():
                try:
                    answer = http.post("/v1/events", json={"events": batch})
                except httpx.TransportError:
                    with ledger.lock:
                        ledger.transport_failures += 1
                    time.sleep(0.02)
                    continue
                if answer.status_code == 503:
                    with ledger.lock:
                        ledger.unavailable += 1
                    time.sleep(0.02)
                    continue
                body = answer.json() if answer.status_code == 200 else {}
                if body.get("rejected") != [] or body["accepted"] + body["duplicates"] != BATCH:
                    with ledger.lock:
                        ledger.errors.append(f"{answer.status_code}: {answer.text[:300]}")
                    stop.set()
                    return
                with ledger.lock:
                    ledger.acked.update(ids)
                    ledger.accepted += body["accepted"]
                break
            b += 1


def wait_until(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; server log:\n{server.log_tail()}")
        time.sleep(0.01)


def stored_rows(store_url: str) -> Counter[tuple[str, int]]:
    """How many times each (event_id, line) of the clients' events is in the store."""
    store = open_store(store_url)
    try:
        table = store.read_events(purpose=None, columns=["event_id", "line"])
    finally:
        store.close()
    rows = zip(table["event_id"].to_pylist(), table["line"].to_pylist(), strict=True)
    return Counter(row for row in rows if row[0].startswith("k"))


def run_kills(server: ServerProcess, *, kills: int, clients: int, seed: int) -> Ledger:
    """Start the server, stream batches from ``clients`` threads, SIGKILL the server
    ``kills`` times at random moments (each time after it stored some batches since its
    restart), restart it each time, and end with one more kill mid-stream."""
    rng = random.Random(seed)
    ledger, stop = Ledger(), threading.Event()
    server.start()
    threads = [
        threading.Thread(target=ingest_client, args=(n, server, ledger, stop), daemon=True)
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        for kill in range(kills + 1):
            before = ledger.acked_count()
            wait_until(
                lambda before=before: ledger.acked_count() >= before + 2 * BATCH or stop.is_set(),
                f"batches to be acknowledged after start {server.starts}",
                server,
            )
            time.sleep(rng.uniform(0.0, 0.6))
            server.kill()
            if kill < kills:
                time.sleep(rng.uniform(0.0, 0.3))  # clients hammer a closed port meanwhile
                server.start()
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT_S)
    return ledger


def check_exactly_once(ledger: Ledger, store_url: str) -> None:
    assert ledger.errors == [], ledger.errors
    assert ledger.acked, "nothing was acknowledged"
    assert ledger.transport_failures > 0, "no request ever met a dead server"
    stored = stored_rows(store_url)
    twice = {row: n for row, n in stored.items() if n > 1}
    assert not twice, f"{len(twice)} events stored more than once, e.g. {list(twice)[:5]}"
    stored_ids = {event_id for event_id, _ in stored}
    missing = ledger.acked - stored_ids
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert stored_ids <= ledger.sent, "the store holds events nobody sent"
    # Answers lost to a kill after the commit make the store hold more than was answered.
    assert ledger.accepted <= len(stored_ids)


def test_kill_9_once_during_ingestion_loses_and_doubles_nothing(server: ServerProcess):
    ledger = run_kills(server, kills=1, clients=2, seed=1)
    check_exactly_once(ledger, server.shop.store)


@pytest.mark.slow
def test_kill_9_repeatedly_during_ingestion_loses_and_doubles_nothing(server: ServerProcess):
    ledger = run_kills(server, kills=5, clients=3, seed=20240601)
    check_exactly_once(ledger, server.shop.store)
    assert server.starts == 6


# --- PostgreSQL going away ------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy to ``target`` that a test can take down and bring back.

    Down means what a database restart or a network partition looks like to a client: every
    proxied connection is closed and new connections are refused (the listening socket is
    closed). Up listens on the same port again.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="pg-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        return sock

    def _accept_loop(self) -> None:
        while not self._closed:
            listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed by take_down()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is None:  # taken down meanwhile
                    client.close()
                    upstream.close()
                    continue
                self._connections |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._connections -= {a, b}
            for sock in (a, b):
                sock.close()

    def take_down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
        if listener is not None:
            listener.close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump, which closes both ends

    def bring_back(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                listener = self._listen(self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with self._lock:
            self._listener = listener

    def close(self) -> None:
        self._closed = True
        self.take_down()
        self._thread.join(5)


@pytest.fixture
def proxied(postgres_url: str, postgres_schema_url: str) -> Iterator[tuple[TcpProxy, str, str]]:
    """A proxy to the test PostgreSQL server, the schema's URL through it, and the direct URL."""
    parts = urlsplit(postgres_schema_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}127.0.0.1:{proxy.port}"
    through = urlunsplit(parts._replace(netloc=netloc))
    yield proxy, through, postgres_schema_url
    proxy.close()


def events_batch(prefix: str, n: int = 20) -> dict:
    return {"events": [view(f"{prefix}-{i}", f"c{i % 20}", f"coffee-{i % 8}") for i in range(n)]}


def ids_in_store(url: str, prefix: str) -> Counter[str]:
    store = open_store(url)
    try:
        table = store.read_events(purpose=None, columns=["event_id"])
    finally:
        store.close()
    return Counter(e for e in table["event_id"].to_pylist() if e.startswith(prefix))


@pytest.mark.postgres
def test_postgres_going_away_serves_from_memory_and_refuses_ingestion(tmp_path, proxied):
    proxy, through, direct = proxied
    served = serve(tmp_path, store=through)
    headers = auth(served.tokens["admin"])
    try:
        with TestClient(served.app) as client:
            before = client.post("/v1/events", json=events_batch("before"), headers=headers)
            assert before.json()["accepted"] == 20
            cached = client.get("/v1/users/c1/recommendations?k=5", headers=headers)
            assert cached.status_code == 200 and cached.json()["items"]

            proxy.take_down()
            # Reads are answered from memory: a cached answer, a fresh one, item lookups.
            for path in (
                "/v1/users/c1/recommendations?k=5",
                "/v1/users/t3/recommendations?k=7&country=FR",
                "/v1/users/never-seen/recommendations?k=3",
                "/v1/items/coffee-1/similar?k=3",
                "/v1/items/coffee-1/bought-together?k=3",
            ):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
                assert answer.json()["items"], path
            # Readiness is about answering recommendations, which still works: the server
            # stays in the load balancer; the outage shows as 503s on writes.
            ready = client.get("/v1/ready")
            assert ready.status_code == 200 and ready.json()["ready"] is True
            # Ingestion: the broken connection, then refused reconnections, both 503.
            during = events_batch("during")
            for _ in range(3):
                answer = client.post("/v1/events", json=during, headers=headers)
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "1"
                assert "retry with the same event_ids" in answer.json()["detail"]
            # Every other write says the same (nothing changed, retry): consent, catalog,
            # erasure; and so does the data export, which reads the store.
            for method, path, body in (
                ("PUT", "/v1/users/c2/consent", {"purpose": "analytics", "granted": True}),
                ("PUT", "/v1/items/coffee-1", {"available": False}),
                ("PUT", "/v1/items", {"items": [{"item_id": "tea-9", "title": "new tea"}]}),
                ("DELETE", "/v1/users/c3", None),
                ("GET", "/v1/users/c1/data", None),
            ):
                answer = client.request(method, path, json=body, headers=headers)
                assert answer.status_code == 503, (method, path, answer.text)
                assert answer.headers["Retry-After"] == "1"
            recommended = client.get("/v1/users/c1/recommendations?k=5", headers=headers)
            assert recommended.status_code == 200
            assert ids_in_store(direct, "during") == Counter()  # nothing acknowledged or stored
            assert client.get("/metrics").status_code == 200
            assert client.get("/v1/ready").json()["model_version"] == ready.json()["model_version"]

            proxy.bring_back()
            for _attempt in range(50):  # a client honouring Retry-After (shortened here)
                answer = client.post("/v1/events", json=during, headers=headers)
                if answer.status_code != 503:
                    break
                time.sleep(0.1)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
            again = client.post("/v1/events", json=during, headers=headers).json()
            assert again == {"accepted": 0, "duplicates": 20, "rejected": []}
            item = client.put("/v1/items/coffee-1", json={"available": False}, headers=headers)
            assert item.status_code == 200, item.text
            after = client.get("/v1/users/c1/recommendations?k=5", headers=headers)
            assert after.status_code == 200 and after.json()["items"]
    finally:
        close(served)
    assert ids_in_store(direct, "during") == Counter({f"during-{i}": 1 for i in range(20)})
    assert ids_in_store(direct, "before") == Counter({f"before-{i}": 1 for i in range(20)})


def test_only_a_lost_store_connection_is_a_503(tmp_path, monkeypatch):
    """The 503 handler looks at the error (and its cause); any other store error stays a
    logged 500."""
    psycopg = pytest.importorskip("psycopg")
    served = serve(tmp_path)
    headers = auth(served.tokens["admin"])
    serving = served.tenants["default"].serving
    outage = StoreError("cannot connect to PostgreSQL")
    outage.__cause__ = psycopg.OperationalError("connection refused")
    try:
        with TestClient(served.app, raise_server_exceptions=False) as client:
            for error, status in (
                (psycopg.OperationalError("server closed the connection unexpectedly"), 503),
                (outage, 503),
                (StoreUnavailable("the event store is unavailable"), 503),
                (StoreError("the table is corrupt"), 500),
                (RuntimeError("a bug"), 500),
            ):

                def fail(user, error=error):
                    raise error

                monkeypatch.setattr(serving, "export_user", fail)
                answer = client.get("/v1/users/c1/data", headers=headers)
                assert answer.status_code == status, (error, answer.text)
                assert ("Retry-After" in answer.headers) == (status == 503)
    finally:
        close(served)
