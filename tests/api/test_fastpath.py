"""The recommendation fast path answers exactly as the FastAPI route does.

Two apps over identical shops, one with the fast path and one without, get the same
requests; every answer (status, body without the random ``recommendation_id``, the headers
a client acts on) must agree. A spy on the fast path's authorization shows which requests it
answered itself and which it left to the route.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

import tailor.api.fastpath as fastpath
from tests.api._serving import auth, close, serve

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REC = "/v1/users/{user}/recommendations"
TEA = quote("Drinks > Tea")
COFFEE = quote("Drinks > Coffee")

# (query, whether the fast path answers it itself, the route's status for a valid user id)
QUERIES = [
    ("", True, 200),
    ("k=5&country=DE", True, 200),
    ("k=3&include_category=" + TEA, True, 200),
    ("exclude_category=" + TEA + "&exclude_category=" + COFFEE, True, 200),
    ("device=mobile&source=email&k=7", True, 200),
    ("unknown=1&k=4", True, 200),  # unknown parameters are ignored by both
    ("k=50", True, 200),
    ("&".join(["include_category=" + TEA] * 20), True, 200),
    ("k=0", False, 422),
    ("k=51", False, 422),
    ("k=abc", False, 422),
    ("k=", False, 422),
    ("&".join(["include_category=" + TEA] * 21), False, 422),
    ("country=" + "x" * 65, False, 422),
    ("k=%2B5", False, 200),  # '+5': the route reads 5
    ("k=5&k=6", False, 200),  # the route reads the last
    ("country=", False, 200),
]
# (user id in the path, the status when the query is valid: None for the query's own)
USERS = [
    ("c3", None),
    ("t7", None),
    ("nobody-known", None),
    (quote("a user \u00e9"), None),
    (quote("a user/with a slash", safe=""), 404),  # decoded, the path has no such route
    ("x" * 129, 422),
]


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    both = {}
    opened = []
    for fast in (True, False):
        folder = tmp_path_factory.mktemp("fast" if fast else "route")
        served = serve(folder, second_tenant=True, max_k=50, fast_path=fast)
        if opened:  # one key ring, so a token means the same to both apps
            served.app.state.tailor.keys = opened[0].app.state.tailor.keys
            served.tokens = opened[0].tokens
        opened.append(served)
        both[fast] = TestClient(served.app, raise_server_exceptions=False).__enter__()
        both[fast].tokens = served.tokens
    yield both
    for client in both.values():
        client.__exit__(None, None, None)
    for served in opened:
        close(served)


@pytest.fixture
def answered(monkeypatch):
    """How many requests the fast path authorized (it answers each one it authorizes)."""
    calls = []
    real = fastpath.authorize

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastpath, "authorize", spy)
    return calls


def _same_answer(clients, path: str, headers: dict[str, str]) -> int:
    fast = clients[True].get(path, headers=headers)
    route = clients[False].get(path, headers=headers)
    assert fast.status_code == route.status_code, (path, fast.text, route.text)
    for name in ("content-type", "retry-after", "www-authenticate"):
        assert fast.headers.get(name) == route.headers.get(name), (path, name)
    body_fast, body_route = fast.json(), route.json()
    if fast.status_code == 200:  # the ids are random, the versions are the models' own
        assert len(body_fast.pop("recommendation_id")) == 32
        assert body_fast.pop("model_version").startswith("itemknn-")
        for name in ("recommendation_id", "model_version"):
            body_route.pop(name)
    assert body_fast == body_route, path
    return fast.status_code


@pytest.mark.parametrize(("user", "user_status"), USERS)
def test_every_query_gets_the_routes_answer(clients, answered, user, user_status):
    token = clients[True].tokens["recommend"]
    for query, taken, status in QUERIES:
        before = len(answered)
        path = REC.format(user=user) + (f"?{query}" if query else "")
        assert _same_answer(clients, path, auth(token)) == (user_status or status), path
        assert len(answered) - before == (1 if taken and user_status is None else 0), path


def test_refusals_are_the_routes_refusals(clients, answered):
    tokens = clients[True].tokens
    path = REC.format(user="c3") + "?k=5"
    cases = [
        {},  # no key
        {"Authorization": "Bearer tlr_nope_nope"},
        {"Authorization": f"Basic {tokens['recommend']}"},
        auth(tokens["ingest"]),  # lacks the scope
        auth(tokens["other"]),  # shop-b's key on the default tenant
        auth(tokens["recommend"], tenant="shop-b"),
        auth(tokens["recommend"], tenant="no-such-shop"),
    ]
    statuses = [_same_answer(clients, path, headers) for headers in cases]
    assert statuses == [401, 401, 401, 403, 404, 404, 404]
    # The other tenant's key reaches its own shop through the fast path.
    assert _same_answer(clients, path, auth(tokens["other"], tenant="shop-b")) == 200
    assert len(answered) == len(cases) + 1


def _route_count(client, status: int) -> float:
    for line in client.get("/metrics").text.splitlines():
        if (
            line.startswith("tailor_http_requests_total{")
            and 'route="/v1/users/{user_id}/recommendations"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_fast_path_is_counted_under_the_route(clients, answered):
    # The fast path sits outside the metrics middleware: it counts its own answers,
    # refusals included, once each.
    client = clients[True]
    before = {status: _route_count(client, status) for status in (200, 401)}
    client.get(REC.format(user="c1"), headers=auth(client.tokens["recommend"]))
    client.get(REC.format(user="c1"), headers=auth(client.tokens["recommend"]))
    client.get(REC.format(user="c1"), headers={"Authorization": "Bearer tlr_nope_nope"})
    assert len(answered) == 3
    assert _route_count(client, 200) - before[200] == 2
    assert _route_count(client, 401) - before[401] == 1


def test_rate_limit_and_no_model_answer_as_the_route(tmp_path):
    answers = {}
    for fast in (True, False):
        folder = tmp_path / str(fast)
        folder.mkdir()
        served = serve(folder, fast_path=fast)
        key = served.app.state.tailor.keys
        slow, token = key.create(name="slow", scopes=["recommend"], rate_per_s=0.01, burst=1)
        key.save()
        with TestClient(served.app, raise_server_exceptions=False) as client:
            first = client.get(REC.format(user="c1"), headers=auth(token))
            second = client.get(REC.format(user="c1"), headers=auth(token))
            served.tenants["default"].serving.loaded = None  # as before any model loads
            not_ready = client.get(REC.format(user="c1"), headers=auth(served.tokens["admin"]))
        answers[fast] = [
            (
                r.status_code,
                r.headers.get("retry-after"),
                r.json().get("detail", "").replace(slow.key_id, "KEY"),
            )
            for r in (first, second, not_ready)
        ]
        close(served)
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [200, 429, 503]
