"""The lifecycle's record in the store (``lifecycle_log``): what the worker and the servers
noticed, for the dashboard and for people.

Kinds and their payloads (JSON objects; ``at`` is added on reading):

* ``alert``: ``{"source", "severity", "message", "details"}`` (:mod:`tailor.lifecycle.alerts`);
* ``kpi``: ``{"window_hours", "versions": [per-version KPIs]}``
  (:func:`tailor.lifecycle.attribution.version_kpis`);
* ``drift``: ``{"features": {name: {"psi", "ks_p_value", "js", "wasserstein", "drifted"}}}``;
* ``job``: ``{"job", "status", "message", "seconds"}``, one per finished worker job;
* ``decision``: ``{"engine", "version", "promoted", "reason", "metrics"}``, one per retraining.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from tailor.store.base import Store

KINDS = ("alert", "kpi", "drift", "job", "decision")


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: such figures are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write(store: Store, kind: str, payload: dict[str, Any], at: datetime | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown journal kind {kind!r}; expected one of {', '.join(KINDS)}")
    text = json.dumps(_clean(payload), default=str, allow_nan=False)
    store.add_log(kind, at or datetime.now(UTC), text)


def read(
    store: Store, kind: str, *, since: datetime | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The newest ``limit`` entries of ``kind``, oldest first, each with its ``at``."""
    if kind not in KINDS:
        raise ValueError(f"unknown journal kind {kind!r}; expected one of {', '.join(KINDS)}")
    return [
        {"at": at, **json.loads(payload)}
        for at, payload in store.read_log(kind, since=since, limit=limit)
    ]
