"""SIGTERM: runs in flight finish within the grace period, or are killed after it; either way
the service exits 0 and leaves no process and no file. Every log line is JSON."""

from __future__ import annotations

import concurrent.futures
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..utils import Server, leftover_processes, make_work_root, run_folders, run_server


@pytest.fixture
def work_root() -> Iterator[Path]:
    root = make_work_root()
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


def start_run(server: Server, code: str) -> concurrent.futures.Future[httpx.Response]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(server.post, "/python/execute",
                         {"properties": {"code": code, "timeoutInSeconds": 60}})
    pool.shutdown(wait=False)
    return future


def wait_for_a_run(server: Server) -> None:
    deadline = time.monotonic() + 10
    while not any(run_folders(server.work_root)):
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.02)


def stopped(server: Server, within_s: float) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(within_s)


def test_a_run_in_flight_finishes_then_the_service_exits_0(work_root: Path) -> None:
    with run_server(work_root, {"SANDBOX_SHUTDOWN_GRACE_S": "20"}) as server:
        reply = start_run(server, "import time\ntime.sleep(1.5)\nprint('finished')")
        wait_for_a_run(server)
        started = time.monotonic()
        assert stopped(server, 20) == 0
        props = reply.result(5).json()["properties"]
        assert (props["outcome"], props["stdout"]) == ("ok", "finished\n")
        assert time.monotonic() - started < 10
        assert leftover_processes(server) == []
        assert run_folders(work_root) == []


def test_past_the_grace_period_runs_are_killed_and_nothing_is_left(work_root: Path) -> None:
    with run_server(work_root, {"SANDBOX_SHUTDOWN_GRACE_S": "1"}) as server:
        reply = start_run(server, "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                                  "time.sleep(300)")
        wait_for_a_run(server)
        started = time.monotonic()
        assert stopped(server, 20) == 0
        assert time.monotonic() - started < 10
        # The client's request was cut, never left hanging.
        response = reply.result(10)
        assert (response.status_code, response.json()) == (503, {
            "message": "the service is shutting down and stopped this run; retry on another "
                       "instance"})
        assert leftover_processes(server) == []
        assert run_folders(work_root) == []


def test_every_log_line_is_json(work_root: Path) -> None:
    with run_server(work_root) as server:
        server.post("/python/execute", {"properties": {"code": "print(1)"}})
        assert stopped(server, 20) == 0
    parsed = server.log_lines()
    assert any(line.get("event") == "startup" for line in parsed)
    assert any(line.get("event") == "shutdown" for line in parsed)
    assert any(line.get("logger") == "uvicorn.error" for line in parsed)
    assert any(line.get("path") == "/python/execute" for line in parsed)
