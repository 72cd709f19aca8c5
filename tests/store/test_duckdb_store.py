"""DuckDB-only settings of the store."""

from __future__ import annotations

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
