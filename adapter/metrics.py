"""`GET /metrics`: what the service did, in the Prometheus text format (prometheus-client).

Each app has a registry of its own, so several apps in one process (tests) do not collide.
Labels are bounded: runtime names, outcomes, HTTP methods, route templates and status codes.
What the service holds now (runs, sessions, the memory budget, the compile cache) is read when
scraped (`StateCollector`), so no code path has to remember to update a gauge; the process
collector adds the process's memory, CPU time and descriptors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from runtimes import CacheStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Runs take from milliseconds (a print) to the wall ceiling (a minute).
RUN_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# HTTP accepts any token as a method: each new one a client sends would make a new series, so
# methods outside the standard ones (RFC 9110 and PATCH) share one label value.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "other"


@dataclass(frozen=True)
class Readings:
    """Where the gauges read the service's state at scrape time."""

    running: Callable[[], int]
    waiting: Callable[[], int]
    live_sessions: Callable[[], int]
    memory_budget_bytes: Callable[[], int]
    memory_reserved_bytes: Callable[[], int]  # by runs, sessions and uploads admitted now
    compile_cache: Callable[[], CacheStats | None]  # None: no compile cache


class StateCollector(Collector):
    """The gauges (and the compile cache's counters, which it keeps itself), read from
    `readings` on each scrape."""

    def __init__(self, readings: Readings) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        r = self.readings
        yield gauge("sandbox_runs_in_flight", "Executions running now", r.running())
        yield gauge("sandbox_runs_waiting", "Executions waiting for a slot", r.waiting())
        yield gauge("sandbox_sessions_live", "Code-interpreter sessions alive now",
                    r.live_sessions())
        budget, reserved = r.memory_budget_bytes(), r.memory_reserved_bytes()
        yield gauge("sandbox_memory_budget_bytes",
                    "Memory the limits of runs, sessions and uploads admitted at once may add "
                    "up to", budget)
        yield gauge("sandbox_memory_budget_in_use_bytes",
                    "Memory of the budget held by runs, sessions and uploads admitted now",
                    reserved)
        yield gauge("sandbox_memory_budget_free_bytes", "Memory of the budget not held now",
                    budget - reserved)
        stats = r.compile_cache()
        if stats is None:
            return
        yield gauge("sandbox_compile_cache_bytes", "Bytes of compiled programs in the cache",
                    stats.bytes)
        yield gauge("sandbox_compile_cache_capacity_bytes",
                    "Bytes the compile cache may hold before evicting", stats.capacity_bytes)
        yield gauge("sandbox_compile_cache_entries", "Compiled programs in the cache",
                    stats.entries)
        for name, value, text in (
                ("hits", stats.hits, "Compiles answered from the cache"),
                ("misses", stats.misses, "Compiles the cache did not hold"),
                ("evictions", stats.evictions, "Entries evicted to stay within capacity"),
                ("store_failures", stats.store_failures, "Compiles that could not be stored")):
            yield CounterMetricFamily(f"sandbox_compile_cache_{name}", text, value=value)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    def __init__(self, readings: Readings) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("sandbox_runs", "Finished executions by runtime and outcome",
                            ["runtime", "outcome"], registry=self.registry)
        self.run_seconds = Histogram(
            "sandbox_run_duration_seconds",
            "Wall time of an execution (compile and run), from its slot to its result",
            ["runtime"], buckets=RUN_BUCKETS_S, registry=self.registry)
        self.request_seconds = Histogram(
            "sandbox_request_duration_seconds", "HTTP requests by route template and status",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS_S, registry=self.registry)
        self.rejections = Counter(
            "sandbox_rejections", "Executions turned away because the waiting line was full",
            registry=self.registry)
        self.registry.register(StateCollector(readings))
        # What the default registry has and a registry of one's own lacks: the process's
        # resident memory, CPU seconds and open descriptors (from /proc), the interpreter, GC.
        ProcessCollector(registry=self.registry)
        self.registry.register(PLATFORM_COLLECTOR)
        self.registry.register(GC_COLLECTOR)

    def observe_run(self, runtime: str, outcome: str, seconds: float) -> None:
        self.runs.labels(runtime, outcome).inc()
        self.run_seconds.labels(runtime).observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        label = method if method in KNOWN_METHODS else OTHER_METHOD
        self.request_seconds.labels(label, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
