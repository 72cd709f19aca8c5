"""POST /v1/budget/plan and GET /v1/budget/model: scope admin, inputs checked with the field
named, optimizer refusals as 422, a tenant without a model 404."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tailor.api.app import build_tenant, create_app
from tailor.api.keys import KeyRing
from tailor.config import Settings
from tailor.workspace import open_workspace
from tests.api._serving import KEY, auth
from tests.budget.test_service import fitted_folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget-api")
    model = fitted_folder(folder / "budget")
    settings = Settings(
        store=str(folder / "t.duckdb"), secret_key=KEY, secret_key_file=folder / "secret.key"
    )
    ws = open_workspace(settings, create=True)
    tenants = {
        "default": build_tenant("default", ws, settings.api, poll_interval_s=None,
                                budget_path=model),
        "plain": build_tenant("plain", ws, settings.api, poll_interval_s=None),
    }  # fmt: skip
    ring = KeyRing(folder / "keys.json")
    keys = {}
    for name, scopes, tenant in (
        ("admin", ["admin"], None),
        ("reader", ["recommend"], None),
        ("plain", ["admin"], "plain"),
    ):
        _, keys[name] = ring.create(
            name=name, scopes=scopes, tenant=tenant, rate_per_s=1000.0, burst=1000
        )
    app = create_app(settings=settings, tenants=tenants, keys=ring)
    with TestClient(app) as client:
        yield client, keys
    ws.close()


def test_a_plan_is_answered(served) -> None:
    client, keys = served
    answer = client.post(
        "/v1/budget/plan",
        json={"budget": 20000, "horizon": 4, "bounds": {"search": [100, None]}, "quantile": 0.2},
        headers=auth(keys["admin"]),
    )
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert sum(plan["totals"]) == pytest.approx(20000, rel=1e-6)
    assert plan["quantile"] == 0.2 and plan["first_period"] and plan["reference"]
    model = client.get("/v1/budget/model", headers=auth(keys["admin"]))
    assert model.status_code == 200
    assert {"summary", "diagnostics", "problems", "channels"} <= set(model.json())


def test_who_may_ask(served) -> None:
    client, keys = served
    body = {"budget": 1000}
    assert client.post("/v1/budget/plan", json=body).status_code == 401
    assert (
        client.post("/v1/budget/plan", json=body, headers=auth(keys["reader"])).status_code == 403
    )
    missing = client.post("/v1/budget/plan", json=body, headers=auth(keys["plain"], "plain"))
    assert missing.status_code == 404 and "tailor serve --budget" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": -5}, "budget"),
        ({"horizon": 4}, "budget"),
        ({"budget": 1000, "horizon": 0}, "horizon"),
        ({"budget": 1000, "horizon": 367}, "horizon"),
        ({"budget": 1000, "quantile": 1.0}, "quantile"),
        ({"budget": 1000, "surprise": 1}, "surprise"),
        ({"budget": 1000, "target_cpa": 5, "target_roas": 2}, "target_cpa and target_roas"),
        ({"budget": 1000, "fixed": {f"c{i}": 1.0 for i in range(51)}}, "fixed"),
        ({"budget": 1000, "bounds": {"search": [-1, 5]}}, "bounds"),
        ({"budget": 1000, "recent_spend": {"search": [1.0] * 367}}, "recent_spend"),
    ],
)
def test_bad_requests_name_the_field(served, body: dict, named: str) -> None:
    client, keys = served
    answer = client.post("/v1/budget/plan", json=body, headers=auth(keys["admin"]))
    assert answer.status_code == 422, answer.text
    assert named in answer.text


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"budget": 1000, "bounds": {"nowhere": [0, 1]}}, "unknown channel 'nowhere'"),
        ({"budget": 1000, "bounds": {"search": [5000, None]}}, "minimum spends"),
        ({"budget": 1000, "recent_spend": {"search": [1.0]}}, "recent_spend"),
    ],
)
def test_the_optimizers_refusals_are_422(served, body: dict, said: str) -> None:
    client, keys = served
    answer = client.post("/v1/budget/plan", json=body, headers=auth(keys["admin"]))
    assert answer.status_code == 422, answer.text
    assert said in answer.json()["detail"]
