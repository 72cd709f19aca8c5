"""Stores behind one contract: DuckDB (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Sequence

from tailor.store.base import AppendResult, ErasureCounts, Store, UpsertResult

__all__ = ["AppendResult", "ErasureCounts", "Store", "UpsertResult", "open_store"]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str, *, opt_out_purposes: Sequence[str] = ()) -> Store:
    """Open (creating its tables if needed) the store at ``url``.

    A ``postgresql://`` URL opens PostgreSQL (needs the ``postgres`` extra); anything else is
    a DuckDB file path (``:memory:`` for a throw-away store).
    """
    if is_postgres_url(url):
        from tailor.store.postgres_store import PostgresStore

        return PostgresStore(url, opt_out_purposes=opt_out_purposes)
    from tailor.store.duckdb_store import DuckDBStore

    return DuckDBStore(url, opt_out_purposes=opt_out_purposes)
