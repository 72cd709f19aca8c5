"""Requests generated from the OpenAPI spec (schemathesis), and event batches: never a 5xx.

Every request carries a valid admin key, so it gets past authentication and the checks
reach the routes themselves (a run that collected 401s would prove nothing); every other
request also names the key's tenant, as generated tenant names are almost always unknown
(404). The spec describes events only as objects, so event batches are generated apart,
from valid events of every type with fields replaced by arbitrary values.

``make test`` runs :data:`EXAMPLES` examples per route (``TAILOR_FUZZ_EXAMPLES``, same
examples every run); ``make test-slow`` runs at least :data:`SLOW_REQUESTS` spec requests
(``TAILOR_FUZZ_REQUESTS``, counted) and 1,000 event batches, freshly generated each run.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tailor.budget.service import BudgetService  # noqa: E402
from tailor.devices.service import DevicesService  # noqa: E402
from tests.api._serving import Served, close, serve  # noqa: E402
from tests.budget.test_service import fitted_folder  # noqa: E402


def _homes(served: Served, folder):
    from tailor.datasets.simulate.homes import simulate_homes
    from tailor.devices.service import fit_homes
    from tailor.events.importer import import_table

    workspace = served.tenants["default"].workspace
    sim = simulate_homes(n_homes=1, weeks=2, seed=2)
    import_table(workspace.store, sim.to_events(), pseudonymizer=workspace.pseudonymizer)
    fit_homes(workspace.store, folder)
    return folder


EXAMPLES = int(os.environ.get("TAILOR_FUZZ_EXAMPLES", "12"))
SLOW_REQUESTS = int(os.environ.get("TAILOR_FUZZ_REQUESTS", "3000"))


@pytest.fixture
def served_app(tmp_path):
    s = serve(tmp_path, max_batch_events=20)
    # A budget model too, so the budget routes' handlers run (not only their 404).
    s.tenants["default"].extras["budget"] = BudgetService(fitted_folder(tmp_path / "budget"))
    # And home models, so the device routes reach their lookup of the (generated) device id.
    s.tenants["default"].extras["devices"] = DevicesService(_homes(s, tmp_path / "homes"))
    for tenant in s.tenants.values():
        tenant.start()
    yield s
    for tenant in s.tenants.values():
        tenant.close()
    close(s)


def fuzz(
    served: Served, examples: int, *, derandomize: bool = False
) -> Counter[tuple[str, str, int]]:
    """Up to ``examples`` generated requests per operation; (method, path, status) counts.
    Fails at the first 5xx, naming the request. ``derandomize``: the same examples on every
    run (the default suite's few examples must not be flaky)."""
    token = served.tokens["admin"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    statuses: Counter[tuple[str, str, int]] = Counter()

    def checker(operation):
        method, path = operation.method.upper(), operation.path

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,  # nothing replayed from or written to .hypothesis/
            derandomize=derandomize,
        )
        def check(case):
            headers = {"Authorization": f"Bearer {token}"}
            if sum(statuses.values()) % 2 == 0:
                headers["X-Tailor-Tenant"] = "default"
            response = case.call(headers=headers)
            statuses[method, path, response.status_code] += 1
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:300],
            )

        return check

    for operation in operations:
        checker(operation)()
    return statuses


def check_answers(statuses: Counter[tuple[str, str, int]]) -> None:
    assert not [key for key in statuses if key[2] >= 500]
    assert not [key for key in statuses if key[2] == 401], "a request was not authenticated"
    succeeded = {(method, path) for method, path, status in statuses if status < 300}
    # A generated device or home id is never one of the fitted homes: the handler's own 404
    # ("not in the fitted homes") is how far it can get.
    succeeded |= {
        (method, path)
        for method, path, status in statuses
        if status == 404 and ("{device_id}" in path or "{home_id}" in path)
    }
    # Authentication, scope and tenant were passed and the handlers ran to the end for most
    # operations, including every write.
    for write in (
        ("PUT", "/v1/items/{item_id}"),
        ("PUT", "/v1/users/{user_id}/consent"),
        ("DELETE", "/v1/users/{user_id}"),
        ("GET", "/v1/users/{user_id}/recommendations"),
    ):
        assert write in succeeded, (write, sorted(statuses.items()))
    operations = {(method, path) for method, path, _ in statuses}
    assert len(succeeded) >= len(operations) * 2 // 3, sorted(statuses.items())


def test_no_generated_request_gets_a_5xx(served_app):
    check_answers(fuzz(served_app, EXAMPLES, derandomize=True))


@pytest.mark.slow
def test_thousands_of_generated_requests_get_no_5xx(served_app, capsys):
    schema = schemathesis.openapi.from_asgi("/openapi.json", served_app.app)
    parameterized = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.body or any(True for _ in op.iter_parameters())
    ]
    # Operations without parameters (health, metrics) give one example each.
    per_operation = math.ceil(SLOW_REQUESTS * 1.15 / len(parameterized))
    started = time.perf_counter()
    statuses = fuzz(served_app, per_operation)
    elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    by_status: Counter[int] = Counter()
    for (_, _, status), n in statuses.items():
        by_status[status] += n
    with capsys.disabled():
        counts = dict(sorted(by_status.items()))
        print(f"\nfuzz: {total} requests in {elapsed:.0f}s; by status {counts}")
    check_answers(statuses)
    assert total >= SLOW_REQUESTS


# --- events: the spec says "objects", so generate events near valid ones --------------------


def _iso(moment) -> str:
    return moment.isoformat()


def event_strategy():
    """An event of every type (tests.events.test_ingest.EVERY_TYPE) with up to three fields
    replaced by arbitrary JSON values, timestamps or odd strings, and duplicate ids."""
    from datetime import UTC

    from hypothesis import strategies as st

    from tests.events.test_ingest import EVERY_TYPE

    moments = st.datetimes(timezones=st.sampled_from([UTC, None])).map(_iso)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=300),
        moments,
        st.sampled_from(["e1", "e2", "", " ", "\x00", "view", "EUR", "1e400", "-0"]),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=5,
    )

    @st.composite
    def event(draw):
        data = dict(draw(st.sampled_from(EVERY_TYPE)))
        fields = sorted({*data, "context", "properties", "items", "unknown"})
        for name in draw(st.sets(st.sampled_from(fields), max_size=3)):
            if draw(st.booleans()) and name in data:
                del data[name]
            else:
                data[name] = draw(values)
        if draw(st.booleans()):
            data["event_id"] = draw(st.sampled_from(["e1", "e2", "e3"]))
        return data

    return st.lists(event(), min_size=1, max_size=20)


def fuzz_events(served: Served, examples: int, *, derandomize: bool = False) -> Counter[int]:
    from fastapi.testclient import TestClient

    headers = {"Authorization": f"Bearer {served.tokens['admin']}"}
    statuses: Counter[int] = Counter()
    client = TestClient(served.app)  # no lifespan: the fixture started the tenants
    try:

        @given(batch=event_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=derandomize,
        )
        def check(batch):
            response = client.post("/v1/events", json={"events": batch}, headers=headers)
            statuses[response.status_code] += 1
            assert response.status_code in (200, 422), (batch, response.text[:300])
            body = response.json()
            answered = body["accepted"] + body["duplicates"] + len(body["rejected"])
            assert answered == len(batch), (batch, body)
            indices = [r["index"] for r in body["rejected"]]
            assert len(set(indices)) == len(indices) and all(0 <= i < len(batch) for i in indices)

        check()
    finally:
        client.close()
    return statuses


def test_generated_events_are_answered_event_by_event(served_app):
    statuses = fuzz_events(served_app, EXAMPLES * 5, derandomize=True)
    assert statuses[200] > 0, statuses  # some batches held valid events


@pytest.mark.slow
def test_a_thousand_generated_event_batches_are_answered_event_by_event(served_app):
    statuses = fuzz_events(served_app, 1000)
    assert sum(statuses.values()) >= 1000 and statuses[200] > 0, statuses
