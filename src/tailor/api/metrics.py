"""Prometheus metrics of one app: a registry of its own (tests build many apps).

Requests are counted by route template (``/v1/users/{user_id}/recommendations``, never the
raw path, which would hold user ids), method and status; latency is a histogram per route.
Model version, fallback flag, session and cache sizes are read from the serving state at
scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from tailor.api.state import TenantState

API_PREFIX = "/v1"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """The app's metrics. ``tenants`` is called at scrape time."""

    def __init__(self, tenants: Callable[[], Mapping[str, TenantState]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tailor_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tailor_http_request_duration_seconds",
            "Time from request to the end of the answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "tailor_events",
            "Events received by outcome: accepted (stored), duplicate, rejected.",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_ServingCollector(tenants))
        # Route templates, methods and statuses are few (never raw paths): this stays small.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request (the labelled series are looked up once per route,
        method and status: ``labels()`` takes a lock and builds a key on every call)."""
        series = self._series.get((route, method, status))
        if series is None:
            series = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._series[(route, method, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count_events(self, tenant: str, accepted: int, duplicates: int, rejected: int) -> None:
        for outcome, n in (
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ):
            if n:
                self.events.labels(tenant, outcome).inc(n)


KPI_NAMES = ("ctr", "conversion", "revenue_per_session", "coverage", "impressions")


class _ServingCollector(Collector):
    def __init__(self, tenants: Callable[[], Mapping[str, TenantState]]) -> None:
        self._tenants = tenants

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        info = GaugeMetricFamily(
            "tailor_model_info", "The served model (value 1).", labels=["tenant", "version"]
        )
        fallback = GaugeMetricFamily(
            "tailor_model_fallback",
            "1 while the popularity fallback is served (no loadable model), else 0.",
            labels=["tenant"],
        )
        ready = GaugeMetricFamily("tailor_ready", "1 when answering.", labels=["tenant"])
        sessions = GaugeMetricFamily(
            "tailor_session_users", "Users with live session state.", labels=["tenant"]
        )
        cache = GaugeMetricFamily(
            "tailor_recommendation_cache_entries", "Cached answers.", labels=["tenant"]
        )
        cache_hits = CounterMetricFamily(
            "tailor_recommendation_cache_hits", "Answers served from the cache.", labels=["tenant"]
        )
        reloads = CounterMetricFamily(
            "tailor_model_loads", "Models loaded (start and hot reloads).", labels=["tenant"]
        )
        # Group commit: events per commit = accepted events / commits; time per commit =
        # commit seconds / commits (a slow disk or database shows here first).
        commits = CounterMetricFamily(
            "tailor_ingest_commits", "Store transactions of the ingest writer.", labels=["tenant"]
        )
        commit_failures = CounterMetricFamily(
            "tailor_ingest_commit_failures",
            "Ingest transactions that failed (their requests were answered 503).",
            labels=["tenant"],
        )
        commit_seconds = CounterMetricFamily(
            "tailor_ingest_commit_seconds",
            "Seconds spent in ingest transactions, failed ones included.",
            labels=["tenant"],
        )
        answers = CounterMetricFamily(
            "tailor_recommendation_answers",
            "Recommendation answers served, per model version and experiment arm.",
            labels=["tenant", "version", "arm"],
        )
        kpi = GaugeMetricFamily(
            "tailor_kpi",
            "Business KPIs per model version over the worker's KPI window (ctr, conversion, "
            "revenue_per_session, coverage, impressions), from its latest snapshot.",
            labels=["tenant", "engine", "version", "kpi"],
        )
        for name, tenant in self._tenants().items():
            serving = tenant.serving
            for (version, arm), count in list(serving.answers.items()):
                answers.add_metric([name, version, arm], count)
            for row in serving.kpis:
                for key in KPI_NAMES:
                    if isinstance(row.get(key), int | float):
                        kpi.add_metric([name, row["engine"], row["model_version"], key], row[key])
            loaded = serving.loaded
            if loaded is not None:
                info.add_metric([name, loaded.version], 1)
            fallback.add_metric([name], 1 if loaded is None or loaded.fallback else 0)
            ready.add_metric([name], 1 if loaded is not None else 0)
            sessions.add_metric([name], len(serving.sessions))
            cache.add_metric([name], len(serving.cache))
            cache_hits.add_metric([name], serving.cache.hits)
            reloads.add_metric([name], serving.reloads)
            writer = tenant.writer
            if writer is not None:
                commits.add_metric([name], writer.commits)
                commit_failures.add_metric([name], writer.commit_failures)
                commit_seconds.add_metric([name], writer.commit_seconds_total)
        yield from (info, fallback, ready, sessions, cache, cache_hits, reloads, answers, kpi)
        yield from (commits, commit_failures, commit_seconds)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it (pure ASGI:
    no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            # A route included with a prefix keeps its own path; the prefix is the API's.
            if scope["path"].startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX):
                template = API_PREFIX + template
            self.metrics.observe(template, scope["method"], status, time.perf_counter() - start)
