"""What a serving process holds in memory, per tenant: the model, live sessions and caches.

:class:`ServingState` answers every read request from memory:

- the current :class:`~tailor.recommend.service.RecommendationService`, swapped atomically (one
  reference assignment) on a reload, a catalog change or an erasure; readers take the
  reference once per request and never see a half-made change;
- **session state**: each user's recent interactions, fed by the ingest writer's commit hook
  (and, with several worker processes, by a tailer thread reading what other workers
  stored), passed to the model as ``session_events`` so a view changes the next answer
  without retraining;
- a **top-N cache** per (user, context, filters): the first request computes its ``k``
  items (at least :data:`CACHE_MIN_K`), later ones with that ``k`` or less slice them. An
  entry is valid only for the generation (model or catalog change, erasure) and the
  session version it was computed for, so nothing stale is ever served. A miss for a user
  the model knows is cheap too: the model's precomputed candidates
  (:mod:`tailor.recommend.candidates`) spare the scoring pass;
- the consent state for personalization (a user without consent gets the non-personal
  answer, whatever their history);
- the running experiment of the engine (:mod:`tailor.lifecycle.rollouts`): which arm, and so
  which model version, answers each subject, with the other arms' models loaded beside the
  served one;
- the served answers (``recommendation_id`` → pseudonym, model version, experiment arm and
  propensity), queued and written to the store's ``served_recommendations`` by the poller
  each second, so later impressions, clicks and purchases can be attributed; a ring of the
  latest ones with their items stays in memory for the user's data export.

Ids here are always pseudonyms; the API pseudonymizes the raw id before it calls in.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import HTTPException

from tailor.events.erasure import ErasureReport, erase
from tailor.lifecycle.rollouts import Router
from tailor.recommend.interactions import INTERACTION_TYPES, epoch_ms
from tailor.recommend.service import RecommendationService, RecommendedItem
from tailor.workspace import Workspace

log = logging.getLogger(__name__)

CACHE_MIN_K = 10
"""Items computed per cache entry at least (a page); a request for more computes its k."""
FALLBACK_MODEL = "popularity"
CATALOG_META = "serving.catalog_version"
"""Store meta key bumped on every catalog change through the API (other workers follow it)."""
ERASURE_OVERLAP = timedelta(minutes=5)
"""How far back each look for new erasures re-reads the tombstones: an erasure stamped
before its commit became visible, or by a machine whose clock runs behind, is still met."""


@dataclass(frozen=True)
class LoadedModel:
    """The service being served and where it came from."""

    service: RecommendationService
    version: str
    fallback: bool
    reason: str | None
    source: str | None
    loaded_at: datetime
    signature: tuple[float, int] | None = None


class AnswerIds:
    """Ids for served answers: 128 random bits as 32 hex digits, like ``uuid4().hex``, but
    drawn from the system's randomness 256 at a time (a uuid4 per answer cost 5 µs, 1.5% of
    a cached answer; this, half a µs). A forked child starts with an empty pool, so two
    processes never hand out the same ids."""

    BATCH = 256

    def __init__(self) -> None:
        self._pool: list[str] = []
        os.register_at_fork(after_in_child=self._pool.clear)

    def next(self) -> str:
        try:
            return self._pool.pop()  # atomic: threads never get the same id
        except IndexError:
            blob = os.urandom(16 * self.BATCH).hex()
            self._pool.extend(blob[i : i + 32] for i in range(0, len(blob), 32))
            return self._pool.pop()


ANSWER_IDS = AnswerIds()
"""One pool per process (the fork hook is registered once)."""


@dataclass(frozen=True)
class Served:
    """One answer: its id (for attribution) and its items, already written as a JSON array
    (:data:`Answer`): what the route sends and the cache keeps, written once per computed
    answer rather than once per request."""

    recommendation_id: str
    item_ids: tuple[str, ...]
    items_json: bytes
    version: str
    experiment: str | None = None
    arm: str | None = None

    @property
    def items(self) -> list[RecommendedItem]:
        return [RecommendedItem(**fields) for fields in orjson.loads(self.items_json)]


Answer = tuple[tuple[str, ...], bytes]
"""An answer's item ids and its items as a JSON array of objects, in order."""

# Every item's object starts with its id (the dataclass's first field), and a quote inside
# a JSON string is escaped: this is found only between two items.
_NEXT_ITEM = b'},{"item_id":'
if dataclass_fields(RecommendedItem)[0].name != "item_id":
    raise ImportError("RecommendedItem's first field must be item_id (see _NEXT_ITEM)")


def answer_of(items: Sequence[RecommendedItem]) -> Answer:
    return tuple(item.item_id for item in items), orjson.dumps(items)


def first_of(answer: Answer, k: int) -> Answer:
    """The answer's first ``k`` items."""
    item_ids, items_json = answer
    if k >= len(item_ids):
        return answer
    end = -1
    for _ in range(k):
        end = items_json.index(_NEXT_ITEM, end + 1)
    return item_ids[:k], items_json[: end + 1] + b"]"


class SessionStore:
    """Recent interactions per user: a bounded deque each, least recently active users
    dropped past ``max_users``. Thread-safe; every change bumps the user's sequence number
    (what cache entries are checked against)."""

    def __init__(self, *, max_users: int = 100_000, max_events: int = 50) -> None:
        self.max_users = max_users
        self.max_events = max_events
        self._users: OrderedDict[str, tuple[deque, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, user: str, item: str, kind: str, occurred_ms: int) -> None:
        with self._lock:
            self._seq += 1
            entry = self._users.pop(user, None)
            events = entry[0] if entry else deque(maxlen=self.max_events)
            events.append((item, kind, occurred_ms))
            self._users[user] = (events, self._seq)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def add_many(
        self,
        users: Sequence[str],
        items: Sequence[str],
        kinds: Sequence[str],
        occurred_ms: Sequence[int],
    ) -> None:
        """:meth:`add` for many interactions in order, under one lock and one sequence
        number: the ingest writer's hook calls this once per commit, and a lock round and a
        pop/re-insert per event cost more than the events' own work there."""
        with self._lock:
            self._seq += 1
            seq, users_map, max_events = self._seq, self._users, self.max_events
            touched: dict[str, deque] = {}
            for user, item, kind, ms in zip(users, items, kinds, occurred_ms, strict=True):
                events = touched.get(user)
                if events is None:
                    entry = users_map.get(user)
                    events = touched[user] = entry[0] if entry else deque(maxlen=max_events)
                events.append((item, kind, ms))
            # Most recently active last, as add() leaves them: by each user's last event.
            for user in reversed(dict.fromkeys(reversed(users))):
                users_map[user] = (touched[user], seq)
                users_map.move_to_end(user)
            while len(users_map) > self.max_users:
                users_map.popitem(last=False)

    def get(self, user: str) -> tuple[tuple[tuple[str, str], ...], int]:
        """(item, event type) pairs, oldest first, and the session's version (0: none)."""
        with self._lock:
            entry = self._users.get(user)
            if entry is None:
                return (), 0
            return tuple((item, kind) for item, kind, _ in entry[0]), entry[1]

    def events(self, user: str) -> list[tuple[str, str, int]]:
        with self._lock:
            entry = self._users.get(user)
            return list(entry[0]) if entry else []

    def drop(self, user: str) -> None:
        with self._lock:
            self._users.pop(user, None)

    def prune(self, until_ms: int) -> None:
        """Forget events at or before ``until_ms`` (a new model already learned them)."""
        with self._lock:
            self._seq += 1
            for user in list(self._users):
                events, _ = self._users[user]
                kept = deque((e for e in events if e[2] > until_ms), maxlen=self.max_events)
                if kept:
                    self._users[user] = (kept, self._seq)
                else:
                    del self._users[user]

    def __len__(self) -> int:
        return len(self._users)


class TopCache:
    """LRU of precomputed answers; an entry carries the generation and session version it
    was computed for and is served only while both still hold.

    Keys are JSON bytes and entries tuples of ints, strings and bytes (an :data:`Answer`): the
    cyclic garbage collector untracks such tuples the first time it meets them. Kept as
    objects (a key tuple, the answer's dataclasses) each miss left a dozen tracked objects
    behind, and while the cache filled the collector ran every couple of thousand requests,
    walking twenty thousand cold objects at a time, during which no request was answered
    (6 to 49 ms, measured with ``gc.callbacks`` over 30,000 in-process requests). A hit
    hands back the written answer: nothing is decoded or built again.
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[int, int, int, tuple, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, generation: int, session: int, k: int) -> Answer | None:
        """The entry's answer when it is current and was computed for ``k`` or more."""
        packed = orjson.dumps(key)
        with self._lock:
            entry = self._entries.get(packed)
            if entry is not None:
                self._entries.move_to_end(packed)
        if entry is not None and entry[0] == generation and entry[1] == session and entry[2] >= k:
            self.hits += 1
            return entry[3], entry[4]
        self.misses += 1
        return None

    def put(self, key: tuple, generation: int, session: int, k: int, answer: Answer) -> None:
        """Keep ``answer``, the one for ``k`` (fewer items when the rules allow fewer)."""
        if self.max_entries <= 0:
            return
        entry = (generation, session, k, *answer)
        packed = orjson.dumps(key)
        with self._lock:
            self._entries[packed] = entry
            self._entries.move_to_end(packed)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop_user(self, user: str) -> None:
        # A key is a JSON array whose first element is the user: a prefix, not a parse.
        prefix = orjson.dumps([user])[:-1] + b","
        with self._lock:
            for packed in [p for p in self._entries if p.startswith(prefix)]:
                del self._entries[packed]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class NotReady(RuntimeError):
    """No model is loaded and no fallback could be built (an empty store)."""


class ServingState:
    """One tenant's serving memory (see the module docstring).

    Parameters
    ----------
    workspace : the tenant's store and pseudonymizer.
    model_path : a folder written by ``RecommendationService.save`` (``tailor serve
        --save-model``); None or an unloadable one serves the popularity fallback built from
        the store, flagged in ``/v1/ready`` and the metrics.
    model_alias : instead of ``model_path``, the registry alias of the recommendation engine
        to serve (``production``): the poller follows the alias to each version promoted.
    poll_interval_s : how often the background thread looks for a new model at
        ``model_path`` (None: only on :meth:`reload`).
    tail_interval_s : with several worker processes, how often to read what the others
        stored (events, catalog changes, erasures); None in a single process, where the
        ingest writer's commit hook feeds the sessions directly.
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        model_path: str | Path | None = None,
        model_alias: str | None = None,
        poll_interval_s: float | None = 1.0,
        tail_interval_s: float | None = None,
        session_users: int = 100_000,
        session_events: int = 50,
        cache_entries: int = 20_000,
        served_log: int = 10_000,
    ) -> None:
        self.workspace = workspace
        self.model_path = Path(model_path) if model_path else None
        self.model_alias = model_alias
        self.alias_version: str | None = None
        """The registry version ``model_alias`` pointed at when last looked up."""
        self._alias_error: str | None = None
        self.poll_interval_s = poll_interval_s
        self.tail_interval_s = tail_interval_s
        self.sessions = SessionStore(max_users=session_users, max_events=session_events)
        self.cache = TopCache(cache_entries)
        self.served: deque[tuple[str, float, str | None, tuple[str, ...]]] = deque(
            maxlen=served_log
        )
        self.loaded: LoadedModel | None = None
        self.router = Router([])
        self.variants: dict[str, LoadedModel] = {}
        """The models of the running experiment's arms that are not the served one."""
        self._experiments_seen: str | None = None
        self._served_queue: list[tuple] = []
        self.answers: Counter[tuple[str, str]] = Counter()
        """Answers served per (model version, experiment arm or ''), for Prometheus."""
        self.kpis: list[dict] = []
        """The latest KPI snapshot per model version that ``tailor worker`` stored."""
        self._queue_lock = threading.Lock()
        self._rng = np.random.default_rng()
        self.last_error: str | None = None
        self.generation = 0
        self.reloads = 0
        self._change = threading.RLock()  # serializes swaps: reload, catalog, erasure
        self._erased: set[str] = set()
        self.forget_listeners: list[Callable[[list[str]], None]] = []
        """Other engines' in-memory state to forget erased users in (the audience scores)."""
        self.poll_listeners: list[Callable[[], object]] = []
        """Other engines' followers of the store, called on each poll (the audience scores)."""
        self._consent: dict[str, bool] = {}
        defaults = workspace.settings.privacy.consent_default
        self._consent_default = defaults.get("personalization", "opt-in") == "opt-out"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tail_seen: OrderedDict[str, None] = OrderedDict()
        self._tail_received: datetime | None = None
        self._tail_meta: dict[str, str | None] = {}
        self._erasures_checked: datetime | None = None
        self._seen_signature: tuple[float, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def store(self):
        return self.workspace.store

    @property
    def ready(self) -> bool:
        return self.loaded is not None

    def start(self) -> None:
        """Load the consent state and the model, then start the background threads."""
        self._load_consent()
        self._erasures_checked = datetime.now(UTC)  # the load below applies every tombstone
        if self.model_alias:
            self.follow_alias()
        self.reload()
        self.follow_experiments()
        self.refresh_kpis()
        if self.poll_interval_s:
            self._spawn("model-poller", self._poll_loop)
        if self.tail_interval_s:
            self._tail_received = datetime.now(UTC)
            self._tail_meta = {CATALOG_META: self.store.get_meta(CATALOG_META)}
            self._spawn("store-tailer", self._tail_loop)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        try:
            self.flush_served()
        except Exception:  # closing must finish; the answers' log is best effort here
            log.exception("could not write the last served answers")

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"tailor-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- models --------------------------------------------------------------------------------

    def reload(self, path: str | Path | None = None) -> LoadedModel | None:
        """Load the model at ``path`` (default: ``model_path``) and swap it in.

        A model that cannot be loaded never replaces a working one: the error is kept in
        :attr:`last_error`. With nothing working yet, the popularity fallback is built from
        the store; with an empty store the state stays not ready.
        """
        path = Path(path) if path else self.model_path
        with self._change:
            if path is not None and path == self.model_path:
                self._seen_signature = _signature(path)
            try:
                loaded = self._load(path)
            except Exception as exc:  # any failure: keep serving, say why
                reason = f"cannot load the model at {path}: {exc}" if path else str(exc)
                self.last_error = reason
                log.warning("%s", reason)
                if self.loaded is not None and not self.loaded.fallback:
                    return self.loaded
                loaded = self._fallback(reason)
                if loaded is None:
                    return self.loaded
            self.last_error = None if not loaded.fallback else loaded.reason
            self._swap(loaded)
            self.reloads += 1
            return loaded

    def _load(self, path: Path | None) -> LoadedModel:
        if path is None:
            raise ValueError(self._alias_error or "no --model given")
        signature = _signature(path)
        service = RecommendationService.load(path)
        service = self._catch_up(service)
        return LoadedModel(
            service, service.version, False, None, str(path), datetime.now(UTC), signature
        )

    def _fallback(self, reason: str) -> LoadedModel | None:
        store = self.store
        try:
            service = RecommendationService.build(
                store.read_events(purpose="personalization"),
                store.read_entities("items"),
                model=FALLBACK_MODEL,
            )
        except ValueError as exc:
            self.last_error = f"{reason}; no fallback either: {exc}"
            log.warning("%s", self.last_error)
            return None
        service.info["version"] = f"fallback-{service.version}"
        service = self._catch_up(service, items=False)
        return LoadedModel(service, service.version, True, reason, None, datetime.now(UTC))

    def _catch_up(self, service: RecommendationService, *, items: bool = True):
        """Re-apply what happened since the artifact was written: every erasure the store
        records (this process's, another worker's, the CLI's ``tailor erase``) and the
        store's catalog (flags, and items new since)."""
        tombstones = self.store.erased_subjects()
        recent = datetime.now(UTC) - ERASURE_OVERLAP
        # Those the next looks for new erasures will meet again count as applied.
        self._erased.update(user for user, erased_at in tombstones if erased_at >= recent)
        service = service.without_users([*self._erased, *(user for user, _ in tombstones)])
        if items:
            service = _apply_catalog(service, self.store.read_entities("items"))
        return service

    def _swap(self, loaded: LoadedModel) -> None:
        loaded.service.warm()
        previous = self.loaded
        self.loaded = loaded  # the one assignment readers see
        self.generation += 1
        self.cache.clear()
        window = loaded.service.info.get("data_window")
        # A new model learned the events up to the end of its data: the sessions drop them.
        # A catalog change or an erasure swaps in the same model, which learned nothing new.
        if previous is not None and window and previous.version != loaded.version:
            self.sessions.prune(int(datetime.fromisoformat(window[1]).timestamp() * 1000))

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.reload_if_changed()
                if self.tail_interval_s is None:  # the tailer looks when there is one
                    self.follow_erasures()
            except Exception:  # the poller must survive anything
                log.exception("model poller failed")
            for step in (self.flush_served, self.follow_experiments, self.refresh_kpis):
                try:
                    step()
                except Exception:
                    log.exception("%s failed", step.__name__)
            for listener in self.poll_listeners:
                try:
                    listener()
                except Exception:  # one engine's failure must not stop the others
                    log.exception("poll listener failed")

    def follow_alias(self) -> bool:
        """Point ``model_path`` at the artifact of the version ``model_alias`` names now;
        True when it moved (the next reload loads it). A missing alias leaves the model
        served so far (or the fallback) in place and says why in ``last_error``."""
        from tailor.lifecycle import registry

        try:
            version = registry.resolve(self.store, "recommend", self.model_alias)
        except ValueError as exc:
            self.last_error = self._alias_error = str(exc)
            return False
        self._alias_error = None
        if version.version == self.alias_version:
            return False
        self.alias_version = version.version
        self.model_path = Path(version.artifact)
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the artifact at ``model_path`` changed since the last attempt (a
        broken file is tried once, not every poll; fixing it changes it again), or when
        ``model_alias`` moved to another version."""
        moved = bool(self.model_alias) and self.follow_alias()
        if self.model_path is None:
            return False
        signature = _signature(self.model_path)
        if not moved and (signature is None or signature == self._seen_signature):
            return False
        before = self.loaded
        return self.reload() is not before

    # --- experiments ----------------------------------------------------------------------------

    def follow_experiments(self) -> bool:
        """Route by the store's running experiment of the engine, loading the models of its
        arms; True when the routing changed. An arm whose model cannot be loaded stops the
        routing (every subject gets the served model) and says why in ``last_error``: serving
        one model under another arm's name would corrupt the experiment's results."""
        from tailor.lifecycle import registry, rollouts

        try:
            router = rollouts.Router(rollouts.load_all(self.store))
        except ValueError as exc:  # a damaged stored spec: serve the one model, say why
            self.last_error = f"cannot read the experiments: {exc}"
            log.warning("%s", self.last_error)
            router = rollouts.Router([])
        loaded = self.loaded
        # The served model is part of what routing depends on: after a promotion the arm that
        # was loaded beside it may now be it, and the old one must be loaded beside instead.
        served = loaded.version if loaded is not None else ""
        seen = f"{router.experiment.model_dump_json()}|{served}" if router.experiment else ""
        if seen == self._experiments_seen:
            return False
        variants: dict[str, LoadedModel] = {}
        try:
            for version in router.versions:
                if loaded is not None and version == loaded.version:
                    continue
                found = self.variants.get(version)
                if found is None:
                    artifact = Path(registry.get(self.store, "recommend", version).artifact)
                    found = self._load(artifact)
                    found.service.warm()
                variants[version] = found
        except Exception as exc:  # any failure: keep serving the one model
            self.last_error = f"experiment {router.experiment.name}: cannot load an arm: {exc}"
            log.warning("%s", self.last_error)
            router, variants = rollouts.Router([]), {}
        with self._change:
            self.variants = variants
            self.router = router
            self.generation += 1
            self.cache.clear()
        self._experiments_seen = seen
        return True

    def refresh_kpis(self) -> None:
        """The newest KPI snapshot of the journal (the worker's ``kpis`` job writes it)."""
        latest = self.store.read_log("kpi", limit=1)
        self.kpis = json.loads(latest[0][1]).get("versions", []) if latest else []

    def flush_served(self) -> int:
        """Write the queued served answers to the store (the poller does, every second)."""
        with self._queue_lock:
            queued, self._served_queue = self._served_queue, []
        if not queued:
            return 0
        ids, who, at, versions, experiments, arms, propensities = zip(*queued, strict=True)
        table = pa.table(
            {
                "recommendation_id": pa.array(ids, pa.string()),
                "subject_id": pa.array(who, pa.string()),
                "served_at": pa.array(np.multiply(at, 1e6).astype(np.int64)).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "engine": pa.array(["recommend"] * len(ids), pa.string()),
                "model_version": pa.array(versions, pa.string()),
                "experiment": pa.array(experiments, pa.string()),
                "arm": pa.array(arms, pa.string()),
                "propensity": pa.array(propensities, pa.float64()),
            }
        )
        try:
            return self.store.record_served(table)
        except Exception:
            with self._queue_lock:  # kept for the next flush, in order, within a bound
                self._served_queue[:0] = queued
                dropped = len(self._served_queue) - MAX_QUEUED_SERVED
                if dropped > 0:
                    del self._served_queue[:dropped]
                    log.error("the store is failing: %d oldest served answers dropped", dropped)
            raise

    # --- requests --------------------------------------------------------------------------------

    def current(self) -> LoadedModel:
        loaded = self.loaded
        if loaded is None:
            raise NotReady(self.last_error or "no model loaded yet")
        return loaded

    def personalizes(self, user: str) -> bool:
        """Whether ``user`` (a pseudonym) may get personal answers (consent)."""
        return user not in self._erased and self._consent.get(user, self._consent_default)

    def recommend(
        self,
        user: str,
        *,
        k: int,
        context: Mapping[str, str] | None = None,
        include_categories: Sequence[str] | None = None,
        exclude_categories: Sequence[str] | None = None,
    ) -> Served:
        loaded = self.current()
        generation = self.generation
        assignment = self.router.route(user, self._rng) if self.router.experiment else None
        if assignment is not None and assignment.version != loaded.version:
            variant = self.variants.get(assignment.version)
            if variant is None:  # its model is not loaded (yet): serve, but not as that arm
                assignment = None
            else:
                loaded = variant
        personal = self.personalizes(user)
        session, version = self.sessions.get(user) if personal else ((), 0)
        context = {k_: v for k_, v in (context or {}).items() if v}
        # A user the model does not know, without a session, gets the answer of an
        # anonymous visitor in the same context: they share its cache entry.
        own = personal and (bool(session) or loaded.service.user_row(user) >= 0)
        key = (
            user if own else None,
            tuple(sorted(context.items())),
            tuple(include_categories) if include_categories is not None else None,
            tuple(exclude_categories) if exclude_categories is not None else None,
            loaded.version,
        )
        answer = self.cache.get(key, generation, version, k)
        if answer is None:
            depth = max(k, CACHE_MIN_K)
            answer = answer_of(
                loaded.service.recommend(
                    user if personal else None,
                    k=depth,
                    context=context,
                    session_events=session,
                    include_categories=include_categories,
                    exclude_categories=exclude_categories,
                )
            )
            self.cache.put(key, generation, version, depth, answer)
        item_ids, items_json = first_of(answer, k)
        served = Served(
            ANSWER_IDS.next(),
            item_ids,
            items_json,
            loaded.version,
            assignment.experiment if assignment else None,
            assignment.arm if assignment else None,
        )
        who = None if user in self._erased else user  # nothing kept of an erased user
        now = time.time()
        self.served.append((served.recommendation_id, now, who, item_ids))
        self.answers[(loaded.version, served.arm or "")] += 1
        with self._queue_lock:
            self._served_queue.append(
                (
                    served.recommendation_id,
                    who,
                    now,
                    loaded.version,
                    served.experiment,
                    served.arm,
                    assignment.propensity if assignment else 1.0,
                )
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("served %s: %s", served.recommendation_id, list(item_ids))
        return served

    def similar(self, item_id: str, k: int) -> list[RecommendedItem]:
        return self.current().service.similar_items(item_id, k=k)

    def bought_together(self, item_id: str, k: int) -> list[RecommendedItem]:
        return self.current().service.bought_together(item_id, k=k)

    # --- live updates ----------------------------------------------------------------------------

    def on_committed(self, table: pa.Table) -> None:
        """The ingest writer's hook: stored (pseudonymized) events feed the sessions and
        the consent state. Called after the commit, never before.

        It runs in the writer thread before the acknowledgements, so the rows are filtered
        with Arrow and handed to the sessions in one call; only a table with consent rows,
        whose order against the interactions matters, takes the row-by-row path.
        """
        if not table.num_rows or "subject_id" not in table.column_names:
            return
        kinds = table["event_type"]
        fed = pc.and_(pc.is_valid(table["subject_id"]), pc.is_in(kinds, value_set=_FED_TYPES))
        table = table.filter(fed)
        if not table.num_rows:
            return
        if pc.any(pc.equal(table["event_type"], "consent")).as_py():
            self._feed_rows(table)
            return
        if "item_id" in table.column_names:
            table = table.filter(pc.is_valid(table["item_id"]))
        else:
            return
        subjects = table["subject_id"].to_pylist()
        if self.tail_interval_s is not None or self._erased:
            keep = self._unseen(table, subjects)
            if not keep.all():
                table = table.filter(pa.array(keep))
                subjects = [s for s, k in zip(subjects, keep, strict=True) if k]
        if not subjects:
            return
        times = (
            pc.fill_null(epoch_ms(table["occurred_at"]), 0).to_pylist()
            if "occurred_at" in table.column_names
            else [0] * table.num_rows
        )
        self.sessions.add_many(
            subjects, table["item_id"].to_pylist(), table["event_type"].to_pylist(), times
        )

    def _unseen(self, table: pa.Table, subjects: list[str]) -> np.ndarray:
        """Which rows to feed: not of an erased subject and, when tailing, not met before
        (the writer's hook and the tailer meet the same rows: one key for both)."""
        keep = np.fromiter((s not in self._erased for s in subjects), bool, len(subjects))
        if self.tail_interval_s is None or "event_id" not in table.column_names:
            return keep
        lines = table["line"].to_pylist() if "line" in table.column_names else [0] * len(keep)
        for row, event_id in enumerate(table["event_id"].to_pylist()):
            if not keep[row] or event_id is None:
                continue
            marker = f"{event_id}/{lines[row]}"
            if marker in self._tail_seen:
                keep[row] = False
                continue
            self._tail_seen[marker] = None
        while len(self._tail_seen) > 200_000:
            self._tail_seen.popitem(last=False)
        return keep

    def _feed_rows(self, table: pa.Table) -> None:
        """Row by row, in order: consent changes and interactions interleaved."""
        columns = {
            name: table[name].to_pylist() for name in SESSION_COLUMNS if name in table.column_names
        }
        times = (
            epoch_ms(table["occurred_at"]).to_pylist()
            if "occurred_at" in table.column_names
            else [0] * table.num_rows
        )
        keep = self._unseen(table, columns["subject_id"])
        for row in np.flatnonzero(keep).tolist():
            subject = columns["subject_id"][row]
            kind = columns["event_type"][row]
            if kind == "consent" and columns.get("purpose", [None])[row] == "personalization":
                self.set_consent(subject, bool(columns["granted"][row]))
            elif kind in INTERACTION_TYPES and columns.get("item_id", [None])[row] is not None:
                self.sessions.add(subject, columns["item_id"][row], kind, times[row] or 0)

    def set_consent(self, user: str, granted: bool) -> None:
        self._consent[user] = granted
        if not granted:
            self.sessions.drop(user)
            self.cache.drop_user(user)

    def upsert_items(self, rows: pa.Table) -> int:
        """Write item rows to the store, then to the served catalog (one swap)."""
        result = self.store.upsert_entities("items", rows)
        self.apply_items(rows)
        self.store.set_meta(CATALOG_META, uuid.uuid4().hex)
        return result.upserted

    def apply_items(self, rows: pa.Table) -> None:
        with self._change:
            loaded = self.loaded
            if loaded is None:
                return
            service = loaded.service.with_items(rows)
            self.variants = {
                v: _replace(m, m.service.with_items(rows)) for v, m in self.variants.items()
            }
            self._swap(_replace(loaded, service))

    def erase_user(self, user: str) -> ErasureReport:
        """Erase ``user`` (pseudonym) from the store (with every registered hook), then
        from memory: sessions, caches, consent state and the loaded model."""
        report = erase(self.store, user)
        self.forget_users([user])
        report.hooks["serving"] = "ok"
        return report

    def forget_users(self, users: list[str]) -> None:
        """Drop ``users`` (pseudonyms) from memory: sessions, caches, consent state, the
        served log and the loaded model (one swap for all of them, which also empties the
        answer cache: no scan of it per user)."""
        for user in users:
            self._erased.add(user)
            self._consent.pop(user, None)
            self.sessions.drop(user)
        with self._change:
            loaded = self.loaded
            if loaded is not None:
                self._swap(_replace(loaded, loaded.service.without_users(users)))
            else:
                self.cache.clear()
            self.variants = {
                v: _replace(m, m.service.without_users(users)) for v, m in self.variants.items()
            }
        gone = set(users)
        for index, entry in enumerate(self.served):
            if entry[2] in gone:
                self.served[index] = (entry[0], entry[1], None, entry[3])
        for listener in self.forget_listeners:
            listener(users)

    def follow_erasures(self) -> list[str]:
        """Forget the users erased elsewhere since the last look: by another worker's
        ``DELETE /v1/users/{id}`` or by ``tailor erase`` against the same store. The store's
        tombstones are the record. Returns the pseudonyms newly forgotten."""
        checked, since = datetime.now(UTC), self._erasures_checked
        tombstones = self.store.erased_subjects(None if since is None else since - ERASURE_OVERLAP)
        fresh = list(dict.fromkeys(u for u, _ in tombstones if u not in self._erased))
        if fresh:
            self.forget_users(fresh)
        self._erasures_checked = checked
        return fresh

    def _scores_of(self, user: str) -> list[tuple[str, Any]]:
        from tailor.audience.service import SCORE_KIND

        return [(SCORE_KIND, json.loads(p)) for _, p, _ in self.store.read_scores(SCORE_KIND, user)]

    def export_user(self, user: str) -> dict[str, Any]:
        """What is held about ``user`` (pseudonym): stored events, consent records, the
        user row, and what this process holds in memory."""
        store = self.store
        events = list(store.iter_subject_events(user))
        consent = [
            {
                "purpose": r.purpose,
                "granted": r.granted,
                "occurred_at": r.occurred_at,
                "policy_version": r.policy_version,
            }
            for r in store.consent_records(user)
        ]
        users = store.read_entities("users")
        rows = users.filter(pc.equal(users["user_id"], user)).to_pylist()
        loaded = self.loaded
        in_model = loaded is not None and loaded.service.user_row(user) >= 0
        return {
            "subject": user,
            "erased": store.is_erased(user),
            "events": events,
            "consent": consent,
            "user": rows[0] if rows else None,
            "scores": {kind: payload for kind, payload in self._scores_of(user)},
            "in_memory": {
                "in_model": in_model,
                "session_events": [
                    {"item_id": item, "event_type": kind}
                    for item, kind, _ in self.sessions.events(user)
                ],
                "recommendations": [
                    {"recommendation_id": rid, "items": list(items)}
                    for rid, _, who, items in self.served
                    if who == user
                ],
            },
        }

    # --- several workers: follow the store ---------------------------------------------------

    def _tail_loop(self) -> None:
        while not self._stop.wait(self.tail_interval_s):
            try:
                self.tail_once()
            except Exception:  # a store hiccup must not end the thread
                log.exception("store tailer failed")

    def tail_once(self) -> None:
        """Read what other workers stored since the last look: events (into the sessions),
        catalog changes and erasures (:meth:`follow_erasures`).

        Rows are read by the time the store received them, with :data:`TAIL_OVERLAP` of
        slack: a group commit stamps its rows before it commits, so a row may become visible
        after a later-stamped one. Rows met twice are skipped by event id and line.
        """
        since = self._tail_received or datetime.now(UTC)
        table = self.store.read_events(
            purpose=None,
            event_types=[*INTERACTION_TYPES, "consent"],
            received_after=since - TAIL_OVERLAP,
            columns=[*SESSION_COLUMNS, "occurred_at", "received_at"],
        )
        if table.num_rows:
            self.on_committed(table)
            self._tail_received = max(since, pc.max(table["received_at"]).as_py())
        value = self.store.get_meta(CATALOG_META)
        if value != self._tail_meta.get(CATALOG_META):
            self._tail_meta[CATALOG_META] = value
            if self.loaded is not None:
                with self._change:
                    loaded = self.loaded
                    items = self.store.read_entities("items")
                    self.variants = {
                        v: _replace(m, _apply_catalog(m.service, items))
                        for v, m in self.variants.items()
                    }
                    self._swap(_replace(loaded, _apply_catalog(loaded.service, items)))
        self.follow_erasures()

    def _load_consent(self) -> None:
        """The latest personalization consent per subject, from the store's ledger."""
        table = self.store.read_events(
            purpose=None,
            event_types=["consent"],
            columns=["subject_id", "purpose", "granted"],
        )
        table = table.filter(pc.equal(table["purpose"], "personalization"))
        if not table.num_rows:
            return
        subjects = table["subject_id"].to_numpy(zero_copy_only=False)[::-1]
        granted = table["granted"].to_numpy(zero_copy_only=False)[::-1]
        # Rows come oldest first: the first of each subject in reverse order is the latest.
        unique, first = np.unique(subjects.astype(str), return_index=True)
        self._consent.update(
            zip(unique.tolist(), granted[first].astype(bool).tolist(), strict=True)
        )


MAX_QUEUED_SERVED = 500_000
"""Served answers kept while the store refuses them (a few minutes at 3,000 answers/s)."""
TAIL_OVERLAP = timedelta(seconds=1)
"""Slack for rows stamped before a commit that became visible late (group commits take
milliseconds; a row later than this reaches the sessions only through the next model). Each
look re-reads this much: at 30,000 events/s and a 2 s overlap the re-reading cost half a
core per worker."""
SESSION_COLUMNS = ("event_id", "line", "subject_id", "item_id", "event_type", "purpose", "granted")
"""The event columns the sessions and the consent state read (from the writer or the tailer)."""
_FED_TYPES = pa.array([*INTERACTION_TYPES, "consent"], pa.string())
"""Event types :meth:`ServingState.on_committed` feeds to the sessions or the consent state."""


def _replace(loaded: LoadedModel, service: RecommendationService) -> LoadedModel:
    return LoadedModel(
        service,
        loaded.version,
        loaded.fallback,
        loaded.reason,
        loaded.source,
        loaded.loaded_at,
        loaded.signature,
    )


def _apply_catalog(service: RecommendationService, items: pa.Table) -> RecommendationService:
    """The store's item rows applied to a service: new items in full, flags for all."""
    if not items.num_rows:
        return service
    codes = service.item_codes(items["item_id"].to_numpy(zero_copy_only=False))
    new = codes < 0
    if new.any():
        service = service.with_items(items.filter(pa.array(new)))
    flags = [c for c in ("item_id", "available", "active") if c in items.column_names]
    return service.with_items(items.filter(pa.array(~new)).select(flags))


def _signature(path: Path) -> tuple[float, int] | None:
    """(mtime, size) of the artifact's header (a folder's service.json, or the file)."""
    target = path / "service.json" if path.is_dir() else path
    try:
        stat = os.stat(target)
    except OSError:
        return None
    return (stat.st_mtime, stat.st_size)


@dataclass
class TenantState:
    """One tenant: its workspace, serving state and ingest writer."""

    name: str
    workspace: Workspace
    serving: ServingState
    writer: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def engine(self, name: str, missing: str) -> Any:
        """The engine service loaded as ``extras[name]``, or a 404 saying ``missing`` (how to
        load one) and why loading failed, where it did."""
        service = self.extras.get(name)
        if service is None:
            reason = self.extras.get(f"{name}_error")
            raise HTTPException(404, missing + (f" ({reason})" if reason else ""))
        return service

    def pseudonym(self, raw_user_id: str) -> str:
        """The stored pseudonym of a raw user id (the only form used past the route)."""
        return self.workspace.pseudonymizer.pseudonymize("subject", raw_user_id)

    def start(self) -> None:
        self.serving.start()
        if self.writer is not None:
            self.writer.start()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.serving.close()


def iter_tenants(tenants: Mapping[str, TenantState]) -> Iterable[TenantState]:
    return tenants.values()


@dataclass
class AppState:
    """Everything one app holds: its tenants, keys, rate limiter, limits and metrics."""

    tenants: dict[str, TenantState]
    keys: Any  # tailor.api.keys.KeyRing
    limiter: Any  # tailor.api.limits.RateLimiter
    api: Any  # tailor.config.ApiSettings
    metrics: Any  # tailor.api.metrics.ApiMetrics
    default_tenant: str = "default"
    ingest_pool: Any = None  # tailor.api.ingest_pool.IngestPool, while the app runs

    def close(self) -> None:
        if self.ingest_pool is not None:
            self.ingest_pool.close()
            self.ingest_pool = None
        for tenant in self.tenants.values():
            tenant.close()
