"""Ingest benchmark: tailor's import path against a plain DuckDB load of the same file.

Simulates a shop event log (5 million rows; ``--quick``: 1 million), then in the same run:

* ``raw``: plain DuckDB, ``CREATE TABLE ... AS SELECT * FROM read_parquet(...)`` into a new
  database file: the physical reference, with no validation and no pseudonymization;
* ``tailor``: ``tailor.events.importer.import_file`` into a new DuckDB store: every row
  converted and validated, ids pseudonymized with HMAC-SHA256, duplicates and erased subjects
  filtered, all in one transaction;
* ``postgres``: the same import into PostgreSQL (``COPY``), when a server answers at
  ``$TAILOR_BENCH_POSTGRES_URL`` (default: the tests' local server); ``null`` otherwise.

Usage: ``python -m bench.ingest [--quick] [--rows N] [--no-postgres]``. The simulated file is
kept in ``bench-out/`` and reused by later runs with the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from tailor.datasets.simulate.shop import ShopConfig, write_shop
from tailor.events.importer import import_file
from tailor.events.privacy import Pseudonymizer
from tailor.store import open_store

POSTGRES_URL = os.environ.get(
    "TAILOR_BENCH_POSTGRES_URL",
    os.environ.get("TAILOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
console = Console(stderr=True)


def simulated_file(rows: int, out_dir: Path) -> Path:
    """A simulated event log of about ``rows`` rows, generated once and reused."""
    path = out_dir / f"ingest-shop-{rows}.parquet"
    if path.exists():
        return path
    config = ShopConfig(users=max(rows // 20, 100), items=max(rows // 100, 100), events=rows)
    write_shop(config, path, progress=True)
    return path


def raw_load(path: Path, work: Path) -> float:
    """Seconds for plain DuckDB to load the file into a table of a new database file."""
    con = duckdb.connect(str(work / "raw.duckdb"))
    started = time.perf_counter()
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{path}')").fetchall()
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def tailor_import(path: Path, url: str) -> tuple[float, int]:
    """(seconds, rows written) for tailor's import of the file into the store at ``url``."""
    store = open_store(url)
    try:
        started = time.perf_counter()
        report = import_file(store, path, pseudonymizer=Pseudonymizer(os.urandom(32)))
        seconds = time.perf_counter() - started
    finally:
        store.close()
    if report.rejected:
        raise SystemExit(f"the simulated file had {report.rejected} rejected rows")
    return seconds, report.written


def postgres_import(path: Path) -> tuple[float, int] | None:
    """The same import into a fresh schema of a PostgreSQL server, or None without one."""
    try:
        import psycopg
    except ImportError:
        return None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as con:
            con.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError:
        return None
    try:
        return tailor_import(path, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 million rows instead of 5")
    parser.add_argument("--rows", type=int, help="simulated rows (overrides --quick)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="file cache folder")
    args = parser.parse_args(argv)
    target = args.rows if args.rows is not None else (1_000_000 if args.quick else 5_000_000)
    if target < 1:
        parser.error("--rows must be at least 1")
    path = simulated_file(target, args.out)
    rows = pq.ParquetFile(path).metadata.num_rows
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-ingest-"))
    try:
        console.print(f"{rows:,} rows in {path}; loading with plain DuckDB ...")
        raw_seconds = raw_load(path, work)
        console.print("importing through tailor into DuckDB ...")
        tailor_seconds, written = tailor_import(path, str(work / "tailor.duckdb"))
        pg = None
        if not args.no_postgres:
            console.print(f"importing through tailor into PostgreSQL ({POSTGRES_URL}) ...")
            pg = postgres_import(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if written != rows:
        raise SystemExit(f"tailor wrote {written:,} of {rows:,} rows")
    figures = {
        "bench": "ingest",
        "rows": rows,
        "rows_per_s": round(rows / tailor_seconds),
        "raw_rows_per_s": round(rows / raw_seconds),
        "ratio_vs_raw": round(raw_seconds / tailor_seconds, 3),
        "postgres_rows_per_s": round(rows / pg[0]) if pg else None,
    }
    table = Table(title=f"ingest: {rows:,} simulated shop events (Parquet)")
    for name in ("path", "seconds", "rows/s", "vs raw"):
        table.add_column(name, justify="left" if name == "path" else "right")
    table.add_row(
        "plain DuckDB read_parquet", f"{raw_seconds:.2f}", f"{rows / raw_seconds:,.0f}", "1.00"
    )
    table.add_row(
        "tailor import → DuckDB",
        f"{tailor_seconds:.2f}",
        f"{rows / tailor_seconds:,.0f}",
        f"{raw_seconds / tailor_seconds:.2f}",
    )
    if pg:
        table.add_row("tailor import → PostgreSQL", f"{pg[0]:.2f}", f"{rows / pg[0]:,.0f}", "")
    else:
        table.add_row("tailor import → PostgreSQL", "-", "no server", "")
    Console().print(table)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
