"""Per-key token buckets: burst, refill, waits, independence, threads, memory."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from tailor.api.limits import RateLimiter, retry_after_header


def test_allows_burst_then_refuses_with_the_right_wait() -> None:
    limiter = RateLimiter()
    answers = [limiter.acquire("k", rate_per_s=4.0, burst=5, now=100.0) for _ in range(6)]
    assert answers[:5] == [None] * 5
    assert answers[5] == pytest.approx(0.25)
    # A refused request takes nothing: the wait shrinks with time, not with retries.
    assert limiter.acquire("k", rate_per_s=4.0, burst=5, now=100.1) == pytest.approx(0.15)
    assert limiter.acquire("k", rate_per_s=4.0, burst=5, now=100.25) is None
    assert limiter.acquire("k", rate_per_s=4.0, burst=5, now=100.25) == pytest.approx(0.25)


def test_refills_at_rate_up_to_burst() -> None:
    limiter = RateLimiter()
    for _ in range(10):
        assert limiter.acquire("k", rate_per_s=2.0, burst=10, now=0.0) is None
    # After 1.5 s at 2/s: three tokens, and no more.
    allowed = sum(limiter.acquire("k", rate_per_s=2.0, burst=10, now=1.5) is None for _ in range(5))
    assert allowed == 3
    # A long idle time fills the bucket to burst, not beyond.
    allowed = sum(
        limiter.acquire("k", rate_per_s=2.0, burst=10, now=1000.0) is None for _ in range(20)
    )
    assert allowed == 10


def test_waiting_as_told_by_retry_after_succeeds() -> None:
    limiter = RateLimiter()
    now = 0.0
    while (wait := limiter.acquire("k", rate_per_s=0.3, burst=2, now=now)) is None:
        pass
    header = retry_after_header(wait)
    assert int(header) >= wait
    assert limiter.acquire("k", rate_per_s=0.3, burst=2, now=now + int(header)) is None


def test_keys_are_independent() -> None:
    limiter = RateLimiter()
    for _ in range(3):
        assert limiter.acquire("a", rate_per_s=1.0, burst=3, now=0.0) is None
    assert limiter.acquire("a", rate_per_s=1.0, burst=3, now=0.0) is not None
    assert limiter.acquire("b", rate_per_s=1.0, burst=3, now=0.0) is None
    assert limiter.acquire("c", rate_per_s=50.0, burst=1, now=0.0) is None


def test_new_limits_apply_at_once() -> None:
    limiter = RateLimiter()
    assert limiter.acquire("k", rate_per_s=1.0, burst=100, now=0.0) is None
    # The key's burst was lowered in the keys file: its 99 tokens shrink to 2.
    answers = [limiter.acquire("k", rate_per_s=1.0, burst=2, now=0.0) for _ in range(3)]
    assert answers[:2] == [None, None] and answers[2] == pytest.approx(1.0)


def test_cost_takes_several_tokens() -> None:
    limiter = RateLimiter()
    assert limiter.acquire("k", rate_per_s=10.0, burst=10, now=0.0, cost=8) is None
    assert limiter.acquire("k", rate_per_s=10.0, burst=10, now=0.0, cost=8) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="at most burst"):
        limiter.acquire("k", rate_per_s=10.0, burst=10, now=0.0, cost=11)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (float("inf"), 1), (1.0, 0)]
)
def test_bad_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter().acquire("k", rate_per_s=rate, burst=burst, now=0.0)


def test_a_clock_going_back_adds_no_tokens() -> None:
    limiter = RateLimiter()
    assert limiter.acquire("k", rate_per_s=1.0, burst=1, now=10.0) is None
    assert limiter.acquire("k", rate_per_s=1.0, burst=1, now=5.0) is not None
    assert limiter.acquire("k", rate_per_s=1.0, burst=1, now=10.5) is not None
    assert limiter.acquire("k", rate_per_s=1.0, burst=1, now=11.0) is None


def test_threads_never_get_more_than_burst_plus_refill() -> None:
    limiter = RateLimiter()
    rate, burst = 200.0, 50
    allowed = [0] * 8
    start = threading.Barrier(len(allowed))
    began = time.monotonic()
    deadline = began + 0.5

    def hammer(i: int) -> None:
        start.wait()
        while time.monotonic() < deadline:
            if limiter.acquire("shared", rate_per_s=rate, burst=burst) is None:
                allowed[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(allowed))]
    # Switching threads every microsecond makes a missing lock show at once (it lets
    # about twice the limit through); at the default 5 ms races are rare.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    elapsed = time.monotonic() - began
    total = sum(allowed)
    assert total <= burst + rate * elapsed + 1
    # And the limiter did not refuse what it owed (the threads asked far more often).
    assert total >= burst + rate * 0.5 * 0.5


def test_idle_buckets_are_dropped_but_not_busy_ones() -> None:
    limiter = RateLimiter(sweep_interval_s=10.0)
    for i in range(1000):
        limiter.acquire(f"k{i}", rate_per_s=1.0, burst=5, now=0.0)  # full again at 1.0
    assert len(limiter) == 1000
    for _ in range(5):
        limiter.acquire("k0", rate_per_s=1.0, burst=5, now=9.0)  # empty; full again at 14.0
    limiter.acquire("busy", rate_per_s=1.0, burst=5, now=10.0)  # the sweep runs here
    assert len(limiter) == 2
    # k0 kept its bucket: one token refilled since 9.0, not a fresh bucket's five.
    assert limiter.acquire("k0", rate_per_s=1.0, burst=5, now=10.0) is None
    assert limiter.acquire("k0", rate_per_s=1.0, burst=5, now=10.0) is not None


def test_bucket_cap_evicts_the_least_recently_used() -> None:
    limiter = RateLimiter(max_buckets=3)
    for key in ("a", "b", "c"):
        limiter.acquire(key, rate_per_s=1.0, burst=1, now=0.0)
    limiter.acquire("a", rate_per_s=1.0, burst=1, now=0.0)  # a is used again: b is oldest
    limiter.acquire("d", rate_per_s=1.0, burst=1, now=0.0)
    assert len(limiter) == 3
    assert limiter.acquire("a", rate_per_s=1.0, burst=1, now=0.0) is not None  # still tracked
    assert limiter.acquire("b", rate_per_s=1.0, burst=1, now=0.0) is None  # forgotten: fresh


def test_forget_drops_a_bucket() -> None:
    limiter = RateLimiter()
    limiter.acquire("k", rate_per_s=1.0, burst=1, now=0.0)
    limiter.forget("k")
    limiter.forget("never-seen")
    assert len(limiter) == 0


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.001, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_header(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_retry_after_header_refuses_infinity() -> None:
    with pytest.raises(ValueError):
        retry_after_header(float("inf"))
