"""Fixtures shared by the API tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(served):
    """A client of the module's ``served`` app (its lifespan running), the keys as
    ``client.tokens``; server errors come back as 500 answers, as a real client sees them."""
    with TestClient(served.app, raise_server_exceptions=False) as c:
        c.tokens = served.tokens
        yield c
