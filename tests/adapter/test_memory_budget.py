"""Admission keeps the memory limits of what runs at once inside the service's memory budget:
a run that does not fit now waits for one that does; one that never can is refused, naming the
setting."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest

from ..utils import Server, assert_nothing_left, serve

MiB = 1 << 20
# Room for one run at the runtimes' default 512 MiB, not two.
BUDGET_BYTES = 700 * MiB


@pytest.fixture(scope="module")
def budget_server() -> Iterator[Server]:
    with serve({"SANDBOX_MEMORY_BUDGET_BYTES": str(BUDGET_BYTES),
                "SANDBOX_MAX_CONCURRENT_RUNS": "4"}) as server:
        yield server


def sleeper(server: Server) -> float:
    started = time.monotonic()
    reply = server.post("/python/execute",
                        {"properties": {"code": "import time; time.sleep(1.5); print('up')"}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["properties"]["stdout"] == "up\n"
    return time.monotonic() - started


def test_runs_that_do_not_fit_together_wait_for_each_other(budget_server: Server) -> None:
    with budget_server.client() as client:
        assert client.get("/").json()["runs"]["memoryBudgetBytes"] == BUDGET_BYTES
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(sleeper, budget_server)
        time.sleep(0.5)
        second = pool.submit(sleeper, budget_server)
        time.sleep(0.3)
        with budget_server.client() as client:
            runs = client.get("/").json()["runs"]
        # Two slots are free, but the budget holds one run of 512 MiB.
        assert (runs["running"], runs["waiting"], runs["memoryReservedBytes"]) == (
            1, 1, 512 * MiB + 6 * MiB)  # its memory limit and its output's copies
        durations = first.result(), second.result()
    assert durations[1] >= 2.2  # it waited for the first to end
    with budget_server.client() as client:
        assert client.get("/").json()["runs"]["memoryReservedBytes"] == 0


def test_a_run_that_can_never_fit_is_refused_naming_the_setting(budget_server: Server) -> None:
    reply = budget_server.post("/api/v2/execute", {
        "language": "python", "version": "*", "files": [{"content": "print(1)"}],
        "run_memory_limit": 1024 * MiB})
    assert reply.status_code == 400
    held = 1024 * MiB + 6 * MiB  # its memory limit and its output's copies
    assert reply.json() == {"message": f"{held} bytes of memory (the memory limit and the "
                                       "output it may keep) cannot fit the service's memory "
                                       f"budget of {BUDGET_BYTES} bytes "
                                       "(SANDBOX_MEMORY_BUDGET_BYTES)"}
    assert budget_server.health().status_code == 200


@pytest.fixture(scope="module")
def session_budget_server() -> Iterator[Server]:
    # Room for one session (its kernel's 512 MiB and its 256 MiB of files), not two.
    with serve({"SANDBOX_MEMORY_BUDGET_BYTES": str(1000 * MiB)}) as server:
        yield server


def cell(server: Server, identifier: str) -> tuple[int, dict[str, object]]:
    reply = server.post(f"/code/execute?identifier={identifier}",
                        {"properties": {"code": "6 * 7"}})
    return reply.status_code, reply.json()


def test_a_session_holds_its_kernel_and_files_against_the_budget(
        session_budget_server: Server) -> None:
    server = session_budget_server
    status, body = cell(server, "first")
    assert (status, body["properties"]["result"]) == (200, 42)  # type: ignore[index]
    with server.client() as client:
        assert client.get("/").json()["runs"]["memoryReservedBytes"] == 768 * MiB
        refused = client.post("/code/execute?identifier=second",
                              json={"properties": {"code": "1"}})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert "memory budget cannot hold a new session" in refused.json()["message"]
    with server.client() as client:
        ended = client.delete("/session?identifier=first&api-version=2025-02-02-preview")
        assert ended.status_code == 204
        assert client.get("/").json()["runs"]["memoryReservedBytes"] == 0
    status, body = cell(server, "second")
    assert (status, body["properties"]["result"]) == (200, 42)  # type: ignore[index]
    with server.client() as client:
        client.delete("/session?identifier=second&api-version=2025-02-02-preview")
    assert_nothing_left(server)
