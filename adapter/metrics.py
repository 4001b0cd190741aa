"""`GET /metrics`: what the service did, in the Prometheus text format (prometheus-client).

Each app has a registry of its own, so several apps in one process (tests) do not collide.
Labels are bounded: runtime names, outcomes, HTTP methods, route templates and status codes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Runs take from milliseconds (a print) to the wall ceiling (a minute).
RUN_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# HTTP accepts any token as a method: each new one a client sends would make a new series, so
# methods outside the standard ones (RFC 9110 and PATCH) share one label value.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "other"


class Metrics:
    def __init__(self, running: Callable[[], int], waiting: Callable[[], int]) -> None:
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
        in_flight = Gauge("sandbox_runs_in_flight", "Executions running now",
                          registry=self.registry)
        in_flight.set_function(running)
        queued = Gauge("sandbox_runs_waiting", "Executions waiting for a slot",
                       registry=self.registry)
        queued.set_function(waiting)

    def observe_run(self, runtime: str, outcome: str, seconds: float) -> None:
        self.runs.labels(runtime, outcome).inc()
        self.run_seconds.labels(runtime).observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        label = method if method in KNOWN_METHODS else OTHER_METHOD
        self.request_seconds.labels(label, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
