"""Requests generated from the OpenAPI spec (schemathesis): never a 5xx.

``make test`` runs a few examples per route; ``TAILOR_FUZZ_EXAMPLES=300 make test-slow``
runs a few thousand in all.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.api._serving import close, serve  # noqa: E402

EXAMPLES = int(os.environ.get("TAILOR_FUZZ_EXAMPLES", "12"))


@pytest.fixture
def served_app(tmp_path):
    s = serve(tmp_path, max_batch_events=20)
    for tenant in s.tenants.values():
        tenant.start()
    yield s
    for tenant in s.tenants.values():
        tenant.close()
    close(s)


def test_no_generated_request_gets_a_5xx(served_app):
    from hypothesis import given

    token = served_app.tokens["admin"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", served_app.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:300],
            )

        check()
