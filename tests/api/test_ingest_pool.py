"""``POST /v1/events`` with helper processes (``api.ingest_processes``): the same answers and
the same stored rows as the server's own threads, bad bodies still 4xx, a lost helper 503."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from tailor.api.ingest_pool import IngestPool, _cached_ids, prepare_request
from tailor.events.ingest import RequestBodyError, read_request
from tailor.events.privacy import Pseudonymizer
from tests.api._serving import auth, close, serve
from tests.api.test_app import check_one_event_then_a_batch, view

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def served(tmp_path):
    s = serve(
        tmp_path, second_tenant=True, max_batch_events=5, max_body_bytes=4000, ingest_processes=1
    )
    yield s
    close(s)


def stored(served, tenant: str, event_id: str) -> dict:
    rows = served.tenants[tenant].workspace.store.read_events(purpose=None).to_pylist()
    return next(row for row in rows if row["event_id"] == event_id)


def test_helpers_answer_and_store_as_the_server_threads_do(client, served):
    assert isinstance(served.app.state.tailor.ingest_pool, IngestPool)
    check_one_event_then_a_batch(client)
    # Stored under the tenant's own key: the pseudonym the server itself computes.
    pseudonymizer = served.tenants["default"].workspace.pseudonymizer
    row = stored(served, "default", "x2")
    assert row["subject_id"] == pseudonymizer.pseudonymize("subject", "u1")
    assert row["item_id"] == "tea-2" and row["received_at"] is not None
    # The answer's view reaches the sessions (the writer's hook ran in the server).
    recommended = client.get(
        "/v1/users/u1/recommendations?k=3", headers=auth(client.tokens["recommend"])
    )
    assert recommended.status_code == 200


def test_each_tenant_keeps_its_key_through_the_helpers(client, served):
    other = auth(client.tokens["other"], tenant="shop-b")
    r = client.post("/v1/events", json=view("b-x1", "u1", "b-tea-1"), headers=other)
    assert r.status_code == 200, r.text
    row = stored(served, "shop-b", "b-x1")
    assert row["subject_id"] == served.tenants["shop-b"].workspace.pseudonymizer.pseudonymize(
        "subject", "u1"
    )


def test_a_helper_keeps_one_pseudonym_cache_per_key():
    body = json.dumps({"events": [view("e1", "alice", "tea-1")]}).encode()
    now = datetime.now(UTC)
    first, second = Pseudonymizer(b"1" * 32), Pseudonymizer(b"2" * 32)
    for key in (first, second, first):
        prepared, sent = prepare_request(body, 10, key, now)
        assert sent == 1 and prepared.ids == ["e1"]
        subject = prepared.table.column("subject_id").to_pylist()
        assert subject == [key.pseudonymize("subject", "alice")]


def test_bad_bodies_are_still_4xx_naming_the_problem(client):
    h = auth(client.tokens["ingest"])
    batch = {"events": [view(f"b{i}", "u1", "tea-1") for i in range(6)]}
    big = client.post("/v1/events", json=batch, headers=h)
    assert big.status_code == 413 and "at most 5" in big.json()["detail"]
    not_json = client.post("/v1/events", content=b"{nope", headers=h)
    assert not_json.status_code == 400 and "JSON" in not_json.json()["detail"]
    empty = client.post("/v1/events", content=b"", headers=h)
    assert empty.status_code == 400 and "JSON" in empty.json()["detail"]
    a_list = client.post("/v1/events", json=[view("l1", "u1", "tea-1")], headers=h)
    assert a_list.status_code == 422 and "one event object" in a_list.json()["detail"]
    huge = client.post("/v1/events", content=b"{" + b" " * 5000 + b"}", headers=h)
    assert huge.status_code == 413  # refused while reading, before any helper sees it
    extra = client.post("/v1/events", json={"events": [], "more": 1}, headers=h)
    assert extra.status_code == 422 and "more" in extra.json()["detail"]
    listless = client.post("/v1/events", json={"events": 3}, headers=h)
    assert listless.status_code == 422 and "list" in listless.json()["detail"]
    bad = client.post("/v1/events", json={"events": [{"event_id": "y", "bogus": 1}]}, headers=h)
    assert bad.status_code == 422 and bad.json()["accepted"] == 0
    assert bad.json()["rejected"][0]["reason"] == "events[0].event_type: field required"


def test_a_lost_helper_is_a_503_and_the_retry_is_stored(client, served):
    pool = served.app.state.tailor.ingest_pool
    h = auth(client.tokens["ingest"])
    assert client.post("/v1/events", json=view("k0", "u1", "tea-1"), headers=h).status_code == 200
    broken = pool._executor
    for process in list(broken._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while broken._broken is False and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broken._broken, "the executor never noticed its helper died"
    lost = client.post("/v1/events", json=view("k1", "u1", "tea-1"), headers=h)
    assert lost.status_code == 503 and lost.headers["Retry-After"]
    assert "helper process stopped" in lost.json()["detail"]
    retry = client.post("/v1/events", json=view("k1", "u1", "tea-1"), headers=h)
    assert retry.status_code == 200 and retry.json()["accepted"] == 1
    assert pool._executor is not broken


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{nope", 400, "not valid JSON"),
        (b"[1, 2]", 422, "send one event object"),
        (b'{"events": {}}', 422, "must be a list"),
        (b'{"events": [], "x": 1}', 422, "unknown ['x']"),
    ],
)
def test_read_request_names_what_is_wrong_with_a_body(body, status, words):
    with pytest.raises(RequestBodyError) as caught:
        read_request(body, max_events=10)
    assert caught.value.status == status and words in str(caught.value)


def test_a_pool_needs_at_least_one_process():
    with pytest.raises(ValueError, match="between 1 and 64"):
        IngestPool(0)


def test_helpers_exit_when_the_server_is_killed(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(
        "import os, signal, time\n"
        "from tailor.api.ingest_pool import IngestPool\n"
        "if __name__ == '__main__':\n"
        "    pool = IngestPool(1)\n"
        "    deadline = time.monotonic() + 60\n"
        "    while not pool._executor._processes and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    print(*pool._executor._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    helpers = [int(pid) for pid in done.stdout.split()]
    assert len(helpers) == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(helpers[0]):
        time.sleep(0.1)
    assert not _alive(helpers[0]), "the helper outlived the killed server"


def test_ctrl_c_is_the_servers_to_handle_not_the_helpers(client, served):
    """Ctrl-C reaches the whole process group: the helpers keep working and leave the
    shutdown to the server."""
    pool = served.app.state.tailor.ingest_pool
    h = auth(client.tokens["ingest"])
    assert client.post("/v1/events", json=view("c0", "u1", "tea-1"), headers=h).status_code == 200
    helpers = list(pool._executor._processes.values())
    assert helpers
    for process in helpers:
        os.kill(process.pid, signal.SIGINT)
    time.sleep(0.5)
    assert all(_alive(process.pid) for process in helpers)
    answer = client.post("/v1/events", json=view("c1", "u1", "tea-1"), headers=h)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert pool._executor._processes.keys() == {p.pid for p in helpers}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_erasure_empties_the_raw_id_caches_of_the_server_and_its_helpers(client, served):
    pool = served.app.state.tailor.ingest_pool
    h = auth(client.tokens["ingest"])
    assert client.post("/v1/events", json=view("r1", "u7", "tea-1"), headers=h).status_code == 200
    assert pool._executor.submit(_cached_ids).result() > 0
    served.tenants["default"].writer.pseudonyms.pseudonymize_many("subject", ["someone"])
    erased = client.delete("/v1/users/u7", headers=auth(client.tokens["admin"]))
    assert erased.status_code == 200, erased.text
    assert served.tenants["default"].writer.pseudonyms._known == {}
    deadline = time.monotonic() + 10
    while pool._executor.submit(_cached_ids).result() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool._executor.submit(_cached_ids).result() == 0
