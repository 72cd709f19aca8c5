"""Per-key rate limits: one token bucket per API key, in memory.

Each key's bucket holds up to ``burst`` tokens and refills at ``rate_per_s`` tokens a second;
a request takes one. An empty bucket answers with the seconds until a token is back, which the
HTTP layer sends as ``429`` with ``Retry-After: retry_after_header(wait)``.

The buckets live in one process: with several server workers, each enforces the limit on
its own share of the requests (a key gets up to ``workers x rate``). Hand-written because it
is twenty lines of arithmetic and a lock, and a dependency would bring its own storage model.

Examples
--------
>>> limiter = RateLimiter()
>>> [limiter.acquire("k1", rate_per_s=2.0, burst=2, now=0.0) for _ in range(3)]
[None, None, 0.5]
>>> limiter.acquire("k1", rate_per_s=2.0, burst=2, now=0.5) is None
True
>>> retry_after_header(0.2)
'1'
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float  # time.monotonic() of the last refill

    def full_at(self, rate_per_s: float, burst: int) -> float:
        return self.updated + (burst - self.tokens) / rate_per_s


class RateLimiter:
    """Thread-safe token buckets, one per key id, with bounded memory.

    Parameters
    ----------
    max_buckets : int
        Most buckets kept. Past it, the least recently used bucket is dropped, which hands
        that key a full bucket again; with one bucket per API key this never happens.
    sweep_interval_s : float
        How often, at most, buckets that have refilled are dropped. A full bucket is the
        same as no bucket, so sweeping changes no answer; it only frees memory.

    Notes
    -----
    A bucket starts full. The answer for a key uses the ``rate_per_s`` and ``burst`` passed
    with the request, so a key whose limits change in the keys file gets the new limits at
    once (its tokens are capped at the new burst).
    """

    def __init__(self, *, max_buckets: int = 100_000, sweep_interval_s: float = 60.0) -> None:
        if max_buckets <= 0:
            raise ValueError(f"max_buckets must be > 0, got {max_buckets}")
        self.max_buckets = max_buckets
        self.sweep_interval_s = sweep_interval_s
        # key_id -> (bucket, rate, burst); least recently used first.
        self._buckets: OrderedDict[str, tuple[_Bucket, float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._swept_at = -math.inf

    def acquire(
        self,
        key_id: str,
        rate_per_s: float,
        burst: int,
        now: float | None = None,
        *,
        cost: float = 1.0,
    ) -> float | None:
        """Take ``cost`` tokens from the key's bucket.

        Parameters
        ----------
        key_id : str
            The bucket's key (an API key id).
        rate_per_s : float
            Refill rate, tokens per second, > 0.
        burst : int
            Bucket size, > 0.
        now : float, optional
            A ``time.monotonic()`` reading; tests pass their own clock.
        cost : float
            Tokens the request takes, ``0 < cost <= burst``.

        Returns
        -------
        float or None
            None if the request may go ahead; otherwise the seconds until it would be
            allowed, had no other request taken tokens meanwhile. A refused request takes
            nothing.
        """
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a finite number > 0, got {rate_per_s!r}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        if not 0 < cost <= burst:
            # More than a full bucket could never be granted: fail instead of a wait forever.
            raise ValueError(f"cost must be > 0 and at most burst ({burst}), got {cost!r}")
        if now is None:
            now = time.monotonic()
        with self._lock:
            if now - self._swept_at >= self.sweep_interval_s:
                self._sweep(now)
            entry = self._buckets.get(key_id)
            if entry is None:
                bucket = _Bucket(tokens=float(burst), updated=now)
                if len(self._buckets) >= self.max_buckets:
                    self._buckets.popitem(last=False)
            else:
                bucket = entry[0]
                self._buckets.move_to_end(key_id)
                # max(): a clock read before another thread's later reading adds nothing.
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate_per_s)
                bucket.updated = max(bucket.updated, now)
            self._buckets[key_id] = (bucket, rate_per_s, burst)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return None
            return (cost - bucket.tokens) / rate_per_s

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        full = [
            key_id
            for key_id, (bucket, rate, burst) in self._buckets.items()
            if bucket.full_at(rate, burst) <= now
        ]
        for key_id in full:
            del self._buckets[key_id]

    def forget(self, key_id: str) -> None:
        """Drop a key's bucket (e.g. when the key is revoked)."""
        with self._lock:
            self._buckets.pop(key_id, None)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1.

    Rounding up means a client that waits as told finds a token (HTTP allows only whole
    seconds; ``Retry-After: 0`` would invite an immediate retry storm).
    """
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, got {seconds!r}")
    return str(max(1, math.ceil(seconds)))
