"""DuckDB-only settings of the store."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tailor.errors import StoreError
from tailor.store import open_store
from tailor.store.duckdb_store import CHECKPOINT_THRESHOLD


def test_checkpoint_threshold_is_raised_on_every_connection(tmp_path):
    store = open_store(str(tmp_path / "t.duckdb"))
    try:
        with store.engine() as con:
            (setting,) = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
    finally:
        store.close()
    assert CHECKPOINT_THRESHOLD == "64MB"
    assert setting.replace(" ", "") in {"61.0MiB", "64.0MB"}  # DuckDB prints binary units


def test_a_store_held_by_another_process_says_how_to_go_on(tmp_path):
    """A running ``tailor serve`` holds its DuckDB file: a CLI command against it must say
    so and point to the API, not fail with DuckDB's lock message alone."""
    path = tmp_path / "held.duckdb"
    open_store(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', "
            "flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=r"tailor serve.*DELETE /v1/users/\{id\}"):
            open_store(str(path))
    finally:
        holder.kill()
        holder.wait()
