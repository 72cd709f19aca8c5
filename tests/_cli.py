"""Running the ``tailor`` CLI in tests, in a folder of its own (the ``workdir`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tailor.cli import app
from tailor.config import get_settings

runner = CliRunner()
_ENVIRONMENT = ("TAILOR_STORE", "TAILOR_SECRET_KEY", "TAILOR_CONFIG", "TAILOR_API__KEYS_FILE")


def tailor(*args: str) -> Result:
    """``tailor ARGS`` with the settings read afresh (they are cached per process)."""
    get_settings.cache_clear()
    return runner.invoke(app, list(args))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with its own store, key and keys file (the defaults live under ./.tailor)."""
    monkeypatch.chdir(tmp_path)
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
