"""The lifecycle dashboard: its key and cookie, its bad-input answers, escaping, and the JSON
route's data (in-process; tests/api/test_dashboard_browser.py renders it in Chromium)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tailor.api.charts import fmt_rate
from tailor.api.dashboard import COOKIE, TENANT_COOKIE
from tailor.lifecycle import attribution, journal, registry
from tests.api._serving import auth
from tests.lifecycle._traffic import close_shop, open_shop, start_ab, visit

SECTIONS = ("kpis", "experiments", "drift", "segments", "models", "operations")


@pytest.fixture
def shop(tmp_path):
    shop = open_shop(tmp_path)
    yield shop
    close_shop(shop)


def _admin(shop) -> dict[str, str]:
    return auth(shop.served.tokens["admin"])


def _login(client: TestClient, key: str, **fields: str):
    return client.post("/dashboard/login", data={"key": key, **fields}, follow_redirects=False)


def test_the_page_needs_an_admin_key(shop):
    anonymous = shop.client.get("/dashboard")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("text/html")
    assert 'data-testid="login-form"' in anonymous.text and 'type="password"' in anonymous.text
    assert "script-src" not in anonymous.headers["content-security-policy"]  # none allowed
    assert "default-src 'none'" in anonymous.headers["content-security-policy"]
    reader = shop.client.get("/dashboard", headers=auth(shop.served.tokens["recommend"]))
    assert reader.status_code == 403 and "admin scope" in reader.text
    assert 'data-testid="login-form"' in reader.text
    not_a_key = shop.client.get("/dashboard", headers={"Authorization": "Bearer nope"})
    assert not_a_key.status_code == 401
    page = shop.client.get("/dashboard", headers=_admin(shop))
    assert page.status_code == 200
    assert all(f'data-testid="{s}"' in page.text for s in SECTIONS)
    assert page.headers["cache-control"] == "no-store"
    nowhere = shop.client.get("/dashboard", headers={**_admin(shop), "X-Tailor-Tenant": "nope"})
    assert nowhere.status_code == 404 and "no tenant" in nowhere.text


def test_login_sets_an_http_only_cookie_and_logout_clears_it(shop):
    client = shop.client
    answer = _login(client, shop.served.tokens["admin"], tenant="default")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookies = answer.headers.get_list("set-cookie")
    key_cookie = next(c for c in cookies if c.startswith(f"{COOKIE}="))
    assert "HttpOnly" in key_cookie and "SameSite=strict" in key_cookie
    assert "Path=/dashboard" in key_cookie and "Secure" not in key_cookie  # plain http here
    assert any(c.startswith(f"{TENANT_COOKIE}=default") for c in cookies)
    page = client.get("/dashboard")
    assert page.status_code == 200, page.text[:300]
    assert all(f'data-testid="{s}"' in page.text for s in SECTIONS)
    assert 'data-testid="tenant">default<' in page.text
    assert client.get("/v1/admin/dashboard").status_code == 401  # the cookie is the page's only
    out = client.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/dashboard").status_code == 401


def test_the_cookie_is_secure_over_https(shop):
    with TestClient(shop.served.app, base_url="https://testserver") as client:
        answer = _login(client, shop.served.tokens["admin"])
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"]
        assert client.get("/dashboard").status_code == 200


def test_bad_logins_get_the_form_with_a_message_never_a_5xx(shop):
    client = shop.client
    wrong = _login(client, "tlr_" + "a" * 12 + "_" + "b" * 40)
    assert wrong.status_code == 401 and "Not a valid key" in wrong.text
    assert 'data-testid="login-form"' in wrong.text and COOKIE not in wrong.headers.get(
        "set-cookie", ""
    )
    reader = _login(client, shop.served.tokens["recommend"])
    assert reader.status_code == 403 and "admin scope" in reader.text
    long_key = _login(client, "x" * 201)
    assert long_key.status_code == 422 and "at most 200" in long_key.text
    assert _login(client, "").status_code == 422
    tenant = _login(client, shop.served.tokens["admin"], tenant="<b>nope</b>")
    assert tenant.status_code == 404 and "<b>nope" not in tenant.text
    assert "&lt;b&gt;nope" in tenant.text
    assert _login(client, shop.served.tokens["admin"], tenant="t" * 65).status_code == 422
    big = client.post(
        "/dashboard/login",
        content=b"key=" + b"x" * 5000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    as_json = client.post("/dashboard/login", json={"key": shop.served.tokens["admin"]})
    assert as_json.status_code == 415
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/dashboard/login", content=b"key=%ff", headers=form).status_code == 400
    assert client.post("/dashboard/login", content=b"key=a&key=b", headers=form).status_code == 400
    assert client.post("/dashboard/login", content=b"&" * 50, headers=form).status_code < 500
    # A cookie holding a revoked or made-up key: the form again, and the cookie cleared.
    client.cookies.set(COOKIE, "tlr_nothing", path="/dashboard")
    stale = client.get("/dashboard")
    assert stale.status_code == 401 and "no longer valid" in stale.text
    assert f'{COOKIE}=""' in stale.headers["set-cookie"]
    client.cookies.clear()
    huge = client.get("/dashboard", headers={"X-Tailor-Tenant": "t" * 65, **_admin(shop)})
    assert huge.status_code == 422


def test_values_from_users_are_escaped(shop, monkeypatch):
    store = shop.store
    registry.register(
        store, "recommend", shop.served.model_path, version="v<b>1", metrics={"ndcg<i>": 0.5}
    )
    alert = {"source": "x", "severity": "warning", "message": "<script>alert(1)</script>"}
    journal.write(store, "alert", alert)
    journal.write(
        store,
        "drift",
        {"features": {'<img src=x onerror="alert(1)">': {"psi": 0.3, "drifted": True}}},
    )
    page = shop.client.get("/dashboard", headers=_admin(shop)).text
    assert "v<b>1" not in page and "v&lt;b&gt;1" in page
    assert "ndcg&lt;i&gt;" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_the_json_route_shows_the_store(shop, monkeypatch):
    store = shop.store
    start_ab(shop)
    shop.serving.follow_experiments()
    visit(shop, range(60), lambda arm: 0.3, purchase_rate=0.5)
    kpis = attribution.version_kpis(store)
    journal.write(store, "kpi", {"window_hours": 24.0, "versions": kpis})
    registry.register(
        store, "recommend", shop.served.model_path, version="odd", metrics={"nan": math.nan}
    )
    scores = [json.dumps({"segment": s, "clv": 1.0}) for s in ("loyal", "loyal", "new")]
    store.replace_scores("audience", ["s1", "s2", "s3"], scores, datetime.now(UTC))

    answer = shop.client.get("/v1/admin/dashboard", headers=_admin(shop))
    assert answer.status_code == 200, answer.text[:300]
    data = answer.json()
    assert data["tenant"] == "default"
    versions = {m["version"]: m for m in data["models"]["versions"]}
    assert versions[shop.control]["metrics"] == {"ndcg_at_10": 0.1}
    assert versions[shop.control]["aliases"] == ["production"]
    assert versions["odd"]["metrics"] == {"nan": None}  # JSON has no NaN
    [experiment] = data["experiments"]
    assert experiment["name"] == "ranker-test" and experiment["status"] == "running"
    assert sum(experiment["result"]["users"].values()) == 60
    assert experiment["result"]["verdict"] == "collecting"
    latest = data["kpis"]["latest"]["versions"]
    assert {r["model_version"] for r in latest} == {shop.control, shop.treatment}
    assert latest == json.loads(json.dumps(kpis))
    assert data["segments"]["segments"] == [
        {"segment": "loyal", "customers": 2},
        {"segment": "new", "customers": 1},
    ]
    page = shop.client.get("/dashboard", headers=_admin(shop)).text
    for row in latest:
        assert f'data-version="{row["model_version"]}">{fmt_rate(row["ctr"])}<' in page
    assert 'data-testid="chart-kpi-ctr"' in page and 'data-testid="chart-segments"' in page
    assert 'data-testid="chart-experiment-means"' in page

    # An analysis that fails on odd data is shown as its message; the page still renders.
    def odd(store, experiment):
        raise ValueError("control needs at least two subjects")

    monkeypatch.setattr(attribution, "analyze", odd)
    page = shop.client.get("/dashboard", headers=_admin(shop))
    assert page.status_code == 200 and "control needs at least two subjects" in page.text
    assert shop.client.get("/v1/admin/dashboard").status_code == 401
    reader = auth(shop.served.tokens["recommend"])
    assert shop.client.get("/v1/admin/dashboard", headers=reader).status_code == 403


def test_the_openapi_spec_has_the_json_route_only(shop):
    paths = shop.client.get("/openapi.json").json()["paths"]
    assert "/v1/admin/dashboard" in paths
    assert not [p for p in paths if p.startswith("/dashboard")]


def test_no_generated_login_form_gets_a_5xx(shop):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    kinds = st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=x",
            "multipart/form-data",
            "text/plain",
            "",
        ]
    )

    @given(body=st.binary(max_size=3000), kind=kinds, tenant=st.text(max_size=80))
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(body: bytes, kind: str, tenant: str) -> None:
        headers = {"Content-Type": kind} if kind else {}
        answer = shop.client.post("/dashboard/login", content=body, headers=headers)
        assert answer.status_code < 500, (body[:80], kind, answer.text[:200])
        form = {"key": tenant, "tenant": tenant}
        answer = shop.client.post("/dashboard/login", data=form, follow_redirects=False)
        assert 400 <= answer.status_code < 500, (tenant, answer.text[:200])

    check()
