"""Erasure (right to be forgotten) and retention, with hooks that reach beyond the log.

``erase`` deletes the subject's events and entity rows and records a tombstone (only the
keyed pseudonym and a time, no personal data) so a re-import of old files cannot bring the
subject back. Later parts of tailor (features, models, caches) register a hook here; every
hook runs on every erasure, and re-running an erasure re-runs the hooks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tailor.store.base import ErasureCounts, Store

log = logging.getLogger(__name__)

ErasureHook = Callable[[str, Store], None]
"""Called with the subject's pseudonym and the store after the core deletion committed."""

_HOOKS: dict[str, ErasureHook] = {}


def register_erasure_hook(name: str, hook: ErasureHook) -> None:
    """Run ``hook`` on every erasure (registering a name again replaces the hook)."""
    _HOOKS[name] = hook


def unregister_erasure_hook(name: str) -> None:
    _HOOKS.pop(name, None)


def erasure_hooks() -> list[str]:
    return sorted(_HOOKS)


@dataclass
class ErasureReport:
    subject: str
    counts: ErasureCounts
    hooks: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(status == "ok" for status in self.hooks.values())


def erase(store: Store, pseudonym: str, *, now: datetime | None = None) -> ErasureReport:
    """Erase a subject (given by pseudonym) from the store, then run every hook."""
    counts = store.erase_subject(pseudonym, erased_at=now or datetime.now(UTC))
    report = ErasureReport(pseudonym, counts)
    for name in erasure_hooks():
        try:
            _HOOKS[name](pseudonym, store)
            report.hooks[name] = "ok"
        except Exception as exc:  # one failing hook must not stop the others
            log.error("erasure hook %s failed for a subject: %s", name, exc)
            report.hooks[name] = f"failed: {exc}"
    return report


_DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``'36h'``, ``'90d'`` or ``'52w'`` as a timedelta (ValueError for anything else)."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration: use a positive number with h, d or w (e.g. 365d)"
        )
    amount, unit = int(match.group(1)), match.group(2)
    return {
        "h": timedelta(hours=amount),
        "d": timedelta(days=amount),
        "w": timedelta(weeks=amount),
    }[unit]


def purge(store: Store, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete events older than ``older_than`` (consent records stay as proof)."""
    return store.purge_events((now or datetime.now(UTC)) - older_than)
