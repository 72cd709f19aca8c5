"""Ingest requests prepared in helper processes (``TAILOR_API__INGEST_PROCESSES``).

Parsing, validating, flattening and pseudonymizing a request is Python work that holds the
interpreter lock, and so is much of what the event writer does between its database calls.
In one process the two take turns: each time the writer comes back from the database it
waits for a preparing thread to let go of the lock, a few milliseconds per call. Measured
with 16 clients sending 500-event requests to a DuckDB store of 6 million events on this
2-core machine, a 4,000-event group commit took 30 ms alone and 120 ms beside the preparing
threads. Preparing in helper processes leaves the lock to the writer and the event loop.

A helper turns the body into a :class:`~tailor.events.ingest.PreparedRequest` (plain data)
with the tenant's key, which the server's own process then queues for its writer: the
result is the same as preparing in the server (the same code, key and pseudonyms; tests
check it). Each helper keeps its own :class:`~tailor.events.ingest.PseudonymCache`, under
the same bounds as the server's, and empties it within a second of an erasure, as the
server empties its own at once (:meth:`IngestPool.forget_raw_ids`)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any

from tailor.events.ingest import (
    PreparedRequest,
    PseudonymCache,
    prepare_events,
    read_request,
)
from tailor.events.privacy import Pseudonymizer

log = logging.getLogger(__name__)

MAX_PROCESSES = 64
WATCH_S = 0.5


class IngestPool:
    """Helper processes that prepare ingest requests.

    Parameters
    ----------
    processes : how many (at least 1). They start with the pool, by ``spawn``: a fork of a
        server running threads and holding a database could inherit a held lock.
    """

    def __init__(self, processes: int) -> None:
        if not 1 <= processes <= MAX_PROCESSES:
            raise ValueError(f"processes must be between 1 and {MAX_PROCESSES}, got {processes}")
        self.processes = processes
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")
        # Raised at each erasure; every helper's watcher empties its caches when it moves.
        self._erasures = self._context.Value("q", 0)
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=self._context,
            initializer=_watch_server,
            initargs=(os.getpid(), self._erasures),
        )
        # Helpers start on demand: start them now, or the first requests wait for the imports.
        for _ in range(self.processes):
            executor.submit(_loaded)
        return executor

    async def prepare(
        self, body: bytes, max_events: int, pseudonymizer: Pseudonymizer
    ) -> tuple[PreparedRequest, int]:
        """The prepared request and the number of events the body held. Raises what
        :func:`~tailor.events.ingest.read_request` raises; a helper that died (killed, out of
        memory) raises :class:`HelperLost` after the pool is replaced, so the client's retry
        finds it working."""
        executor = self._executor
        try:
            future = executor.submit(
                prepare_request, body, max_events, pseudonymizer, datetime.now(UTC)
            )
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(executor)
            raise HelperLost("an ingest helper process stopped; nothing was stored") from None

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                log.warning("an ingest helper process stopped; starting new ones")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()

    def forget_raw_ids(self) -> None:
        """Have every helper drop its cached raw ids within a second (after an erasure)."""
        with self._erasures.get_lock():
            self._erasures.value += 1

    def close(self) -> None:
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)


class HelperLost(RuntimeError):
    """A helper process stopped while preparing a request (nothing was stored)."""


_caches: dict[str, PseudonymCache] = {}


def _watch_server(parent: int, erasures: Any) -> None:
    """In each helper: exit when the server process is gone (killed with ``kill -9``, it
    cannot stop its helpers, and a restarted server starts new ones), and drop the cached
    raw ids when the server counts an erasure.

    Ctrl-C is the server's to handle: it reaches the whole process group, and a helper that
    took it mid-request died with a traceback in the server's log while the server was
    still finishing that request. Ignoring it, a helper finishes what it holds and stops
    when the server shuts the pool down (or when the server is gone, above)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        seen = erasures.value
        while os.getppid() == parent:
            if erasures.value != seen:
                seen = erasures.value
                _caches.clear()
            time.sleep(WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, name="tailor-watch-server", daemon=True).start()


def _cached_ids() -> int:
    """How many raw ids this helper holds in its caches (for the tests)."""
    return sum(len(cache._known) for cache in _caches.values())


def _loaded() -> None:
    """Nothing: running it means the helper has started and imported this module."""


def prepare_request(
    body: bytes, max_events: int, pseudonymizer: Pseudonymizer, received_at: datetime
) -> tuple[PreparedRequest, int]:
    """What a helper runs: the body read and prepared as the server's own threads would."""
    events, rejected = read_request(body, max_events=max_events)
    key = pseudonymizer.fingerprint
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = PseudonymCache(pseudonymizer)
    sent = len(events) + len(rejected)
    return prepare_events(events, list(rejected), received_at, cache), sent
