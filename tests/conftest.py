"""Shared fixtures: every store test runs against DuckDB and a real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tailor.events.privacy import Pseudonymizer
from tailor.events.schema import parse_event, to_flat_rows
from tailor.store import Store, open_store
from tests._cli import workdir  # noqa: F401 - the CLI tests' folder fixture, shared

# The media-mix model runs its chains on one XLA device per core, which JAX reads once, at its
# first computation: set here so that it holds whichever test starts JAX first.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")

POSTGRES_URL = os.environ.get(
    "TAILOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("TAILOR_TEST_REQUIRE_POSTGRES") == "1"


def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'tailor[postgres]')"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL server at {POSTGRES_URL} ({str(exc).strip()[:80]})"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    reason = _postgres_unavailable()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"TAILOR_TEST_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(f"PostgreSQL store tests skipped: {reason}; set TAILOR_TEST_POSTGRES_URL")
    return POSTGRES_URL


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(bytes(range(32)))


RECEIVED = datetime(2024, 6, 1, tzinfo=UTC)


def events_table(*events: dict, received_at: datetime = RECEIVED) -> pa.Table:
    """Typed events (dicts as an API client sends them) as stored rows, ids NOT pseudonymized."""
    from tailor.events.importer import raw_event_table

    rows = []
    for data in events:
        for row in to_flat_rows(parse_event(data)):
            row["received_at"] = received_at
            rows.append(row)
    return raw_event_table(rows)


def view(event_id: str, subject: str, item: str = "i1", at: str = "2024-05-01T10:00:00Z") -> dict:
    return {
        "event_id": event_id,
        "event_type": "view",
        "subject_id": subject,
        "occurred_at": at,
        "item_id": item,
    }


def consent(
    event_id: str, subject: str, granted: bool, at: str, purpose: str = "personalization"
) -> dict:
    return {
        "event_id": event_id,
        "event_type": "consent",
        "subject_id": subject,
        "occurred_at": at,
        "purpose": purpose,
        "granted": granted,
    }
