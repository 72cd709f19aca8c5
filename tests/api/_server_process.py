"""``tailor serve`` as a real subprocess (for tests that kill it), and its workspace.

:func:`prepare_shop` does what ``tailor init``, ``tailor import`` and ``tailor keys create``
would: a store holding the small test shop, a pseudonymization key file, a saved model and a
keys file with one admin key. :class:`ServerProcess` starts ``tailor serve`` on a free
loopback port with only ``TAILOR_...`` environment settings, waits until it answers, and can
``kill()`` it with SIGKILL (by its pid, nothing else) and start it again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tailor.api.keys import KeyRing
from tailor.config import Settings
from tailor.events.importer import import_table
from tailor.workspace import open_workspace
from tests.api._serving import OPT_OUT, raw_events, save_model, shop_events, shop_items

START_TIMEOUT_S = 120.0  # a loaded 2-core machine imports numpy, pyarrow and duckdb slowly


@dataclass(frozen=True)
class Shop:
    """A workspace on disk that a ``tailor serve`` process can be pointed at."""

    folder: Path
    store: str
    secret_key_file: Path
    keys_file: Path
    model: Path
    token: str

    def env(self) -> dict[str, str]:
        """The process environment: settings through ``TAILOR_...`` variables only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
        env.update(
            TAILOR_STORE=self.store,
            TAILOR_SECRET_KEY_FILE=str(self.secret_key_file),
            TAILOR_API__KEYS_FILE=str(self.keys_file),
            TAILOR_PRIVACY__CONSENT_DEFAULT=_json(OPT_OUT),
            TAILOR_LOG_LEVEL="WARNING",
        )
        return env


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def prepare_shop(folder: Path, store: str | None = None) -> Shop:
    """Create the store (DuckDB file in ``folder`` unless ``store`` is given), its key, the
    shop's items and events, a saved model and an admin key (high rate limit)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        store=store or str(folder / "tailor.duckdb"),
        secret_key_file=folder / "secret.key",
        privacy={"consent_default": OPT_OUT},
    )
    ws = open_workspace(settings, create=True)  # what `tailor init` does
    try:
        import_table(ws.store, shop_items(), pseudonymizer=ws.pseudonymizer, entity="items")
        import_table(ws.store, raw_events(shop_events()), pseudonymizer=ws.pseudonymizer)
        save_model(ws, folder / "model")
    finally:
        ws.close()
    keys_file = folder / "api_keys.json"
    ring = KeyRing(keys_file)
    _, token = ring.create(
        name="reliability", scopes=["admin"], tenant="default", rate_per_s=1e6, burst=1_000_000
    )
    ring.save()
    model = folder / "model"
    return Shop(folder, settings.store, settings.secret_key_file, keys_file, model, token)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """One ``tailor serve`` process at a time for ``shop``, always on the same port."""

    shop: Shop
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.shop.folder / "serve.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        script = Path(sys.executable).with_name("tailor")
        prefix = (
            [str(script)]
            if script.is_file()
            else [sys.executable, "-c", "from tailor.cli import main; main()"]
        )
        return [
            *prefix,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--model",
            str(self.shop.model),
        ]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until ``/v1/ready`` answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv(),
                cwd=self.shop.folder,  # no stray tailor.toml
                env=self.shop.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"tailor serve exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.get("/v1/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"tailor serve did not get ready in {timeout_s:.0f}s:\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown code runs) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL if it takes longer than ``timeout_s``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"
