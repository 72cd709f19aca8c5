"""A filter of the event ids a DuckDB database holds, so that appending new events need not
look through every stored id."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np

PROBE_ABOVE = 100_000
"""Appends of more ids than this run the store's probe anyway: a bulk import costs as much to
look up here as the probe, whose cost follows the log."""


class StoredIdFilter:
    """The 64-bit hashes of every event id stored, and perhaps of some no longer stored.

    DuckDB keeps no key on events (see ``SqlStore._create_schema``), so the duplicate check of
    an append looks through every stored id: 160 to 190 ms at 6 million events, measured on
    2 cores, which made it most of a group commit of the HTTP ingest. This filter answers
    "none of these ids is stored" from memory in a millisecond; only an append with a possible
    match pays for the probe.

    It never misses a stored id, because every append made in this process records its ids
    here (whether or not its transaction commits) and DuckDB lets no other process write while
    this one holds the file (:func:`shared_filter` shares one filter between the connections of
    a process to the same file). A deleted, erased or rolled-back id stays in the filter: it
    can only make an append run a probe it did not need. The cost is 8 bytes per stored event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: np.ndarray | None = None  # sorted; None until loaded from the store
        self._recent = np.empty(0, np.uint64)  # sorted; added since the last fold
        self._unloaded: list[np.ndarray] = []  # added before the first load

    @property
    def loaded(self) -> bool:
        return self._stored is not None

    def load(self, stored_hashes: Callable[[], np.ndarray]) -> None:
        """Read the stored ids' hashes once (``stored_hashes`` runs the query)."""
        with self._lock:
            self._load(stored_hashes)

    def may_hold_any(self, hashes: np.ndarray, stored_hashes: Callable[[], np.ndarray]) -> bool:
        """False when none of ``hashes`` belongs to a stored id."""
        if len(hashes) == 0:
            return False
        if len(hashes) > PROBE_ABOVE:
            return True
        with self._lock:
            self._load(stored_hashes)
            assert self._stored is not None
            needles = np.sort(hashes)
            return _any_in(self._stored, needles) or _any_in(self._recent, needles)

    def add(self, hashes: np.ndarray) -> None:
        """Record ids just written (before their transaction commits)."""
        if len(hashes) == 0:
            return
        hashes = np.sort(np.asarray(hashes, np.uint64))
        with self._lock:
            if self._stored is None:
                self._unloaded.append(hashes)
                return
            # Stable sort of two sorted runs is a linear merge (timsort).
            self._recent = np.concatenate([self._recent, hashes])
            self._recent.sort(kind="stable")
            if len(self._recent) > max(65_536, len(self._stored) // 8):
                self._stored = np.concatenate([self._stored, self._recent])
                self._stored.sort(kind="stable")
                self._recent = np.empty(0, np.uint64)

    def _load(self, stored_hashes: Callable[[], np.ndarray]) -> None:
        if self._stored is not None:
            return
        stored = np.asarray(stored_hashes(), np.uint64)
        self._stored = np.sort(np.concatenate([stored, *self._unloaded]))
        self._unloaded = []


def _any_in(haystack: np.ndarray, sorted_needles: np.ndarray) -> bool:
    if len(haystack) == 0:
        return False
    at = np.searchsorted(haystack, sorted_needles)
    at[at == len(haystack)] = len(haystack) - 1
    return bool((haystack[at] == sorted_needles).any())


_shared: dict[str, tuple[StoredIdFilter, int]] = {}
_shared_lock = threading.Lock()


def shared_filter(database: str, owner: object) -> tuple[StoredIdFilter, weakref.finalize]:
    """The filter of the database file ``database``, shared by every ``owner`` in this process
    that has it open, and the call that releases ``owner``'s share (run at close; it also runs
    if the owner is collected unclosed). The filter is dropped with its last share, so a
    process that reopens the file after another process wrote to it starts afresh."""
    with _shared_lock:
        found, owners = _shared.get(database, (StoredIdFilter(), 0))
        _shared[database] = (found, owners + 1)
    return found, weakref.finalize(owner, _release, database)


def _release(database: str) -> None:
    with _shared_lock:
        found, owners = _shared.get(database, (None, 0))
        if owners <= 1:
            _shared.pop(database, None)
        else:
            _shared[database] = (found, owners - 1)
