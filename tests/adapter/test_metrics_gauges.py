"""The gauges of `GET /metrics`, scraped from a real server and parsed by prometheus-client's
own parser: each is there, and each moves with what the service holds."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..utils import Server
from .test_operations import get_metrics

GAUGES = ("sandbox_runs_in_flight", "sandbox_runs_waiting", "sandbox_sessions_live",
          "sandbox_memory_budget_bytes", "sandbox_memory_budget_in_use_bytes",
          "sandbox_memory_budget_free_bytes", "sandbox_compile_cache_bytes",
          "sandbox_compile_cache_capacity_bytes", "sandbox_compile_cache_entries",
          "process_resident_memory_bytes", "process_open_fds", "process_max_fds")
COUNTERS = ("sandbox_compile_cache_hits", "sandbox_compile_cache_misses",
            "sandbox_compile_cache_evictions", "sandbox_compile_cache_store_failures",
            "process_cpu_seconds")
SESSIONS_API = "2025-10-02-preview"


def scrape(server: Server) -> dict[str, float]:
    """Every unlabelled sample of /metrics by name, parsed as Prometheus does."""
    return {sample.name: sample.value
            for family in text_string_to_metric_families(get_metrics(server))
            for sample in family.samples if not sample.labels}


def test_each_gauge_and_the_process_collector_are_there(server: Server) -> None:
    families = {family.name: family.type
                for family in text_string_to_metric_families(get_metrics(server))}
    assert {name: families.get(name) for name in GAUGES} == dict.fromkeys(GAUGES, "gauge")
    assert {name: families.get(name) for name in COUNTERS} == dict.fromkeys(COUNTERS,
                                                                            "counter")
    values = scrape(server)
    assert values["process_resident_memory_bytes"] > 0 and values["process_open_fds"] > 0
    assert values["sandbox_memory_budget_in_use_bytes"] \
        + values["sandbox_memory_budget_free_bytes"] == values["sandbox_memory_budget_bytes"]


def test_a_session_counts_as_live_until_it_ends(server: Server) -> None:
    identifier = f"gauge-{secrets.token_hex(4)}"
    params = {"identifier": identifier, "api-version": SESSIONS_API}
    before = scrape(server)
    with server.client() as client:
        started = client.post("/executions", params=params, json={
            "codeInputType": "inline", "executionType": "synchronous", "code": "1 + 1"})
        assert started.status_code == 200, started.text
        during = scrape(server)
        assert client.delete("/session", params=params).status_code == 204
    after = scrape(server)
    assert during["sandbox_sessions_live"] == before["sandbox_sessions_live"] + 1
    assert after["sandbox_sessions_live"] == before["sandbox_sessions_live"]
    # A session's kernel holds memory of the budget while it lives.
    assert during["sandbox_memory_budget_in_use_bytes"] > \
        before["sandbox_memory_budget_in_use_bytes"]


@pytest.mark.gxx
def test_a_compile_is_stored_and_the_same_compile_again_is_a_hit(server: Server) -> None:
    # A program no earlier run compiled: the cache folder outlives servers.
    code = (f"// {secrets.token_hex(8)}\n"
            "#include <cstdio>\nint main() { std::puts(\"hi\"); }\n")
    before = scrape(server)
    first = server.post("/cpp/execute", {"properties": {"code": code}})
    assert first.json()["properties"]["stdout"] == "hi\n", first.text
    stored = scrape(server)
    second = server.post("/cpp/execute", {"properties": {"code": code}})
    assert second.json()["properties"]["stdout"] == "hi\n", second.text
    hit = scrape(server)
    assert stored["sandbox_compile_cache_bytes"] > 0
    assert stored["sandbox_compile_cache_misses_total"] > \
        before["sandbox_compile_cache_misses_total"]
    assert hit["sandbox_compile_cache_hits_total"] == \
        stored["sandbox_compile_cache_hits_total"] + 1


def test_a_run_holds_memory_of_the_budget_while_it_runs(server: Server) -> None:
    before = scrape(server)
    replies: list[httpx.Response] = []
    runner = threading.Thread(target=lambda: replies.append(server.post(
        "/python/execute", {"properties": {"code": "import time\ntime.sleep(3)"}})))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while (during := scrape(server))["sandbox_runs_in_flight"] < 1:
            assert time.monotonic() < deadline, "the run never showed as in flight"
            time.sleep(0.05)
    finally:
        runner.join()
    after = scrape(server)
    assert replies[0].status_code == 200
    assert during["sandbox_memory_budget_in_use_bytes"] > \
        before["sandbox_memory_budget_in_use_bytes"]
    assert during["sandbox_memory_budget_in_use_bytes"] \
        + during["sandbox_memory_budget_free_bytes"] == during["sandbox_memory_budget_bytes"]
    assert after["sandbox_runs_in_flight"] == 0
    assert after["sandbox_memory_budget_in_use_bytes"] == \
        before["sandbox_memory_budget_in_use_bytes"]
