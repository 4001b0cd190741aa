from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest

from ..utils import Server, assert_nothing_left, serve


@pytest.fixture
def narrow_server() -> Iterator[Server]:
    with serve({"SANDBOX_MAX_CONCURRENT_RUNS": "1", "SANDBOX_MAX_QUEUED_RUNS": "1"}) as server:
        yield server


def test_beyond_the_waiting_line_is_503_with_retry_after(narrow_server: Server) -> None:
    sleeper = {"properties": {"code": "import time\ntime.sleep(1.5)\nprint('done')"}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(narrow_server.post, "/python/execute", sleeper)
        time.sleep(0.4)
        waiting = pool.submit(narrow_server.post, "/python/execute", sleeper)
        time.sleep(0.4)
        rejected = narrow_server.post("/python/execute", sleeper)
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "1"
        assert rejected.json()["message"] == (
            "1 runs are in progress and 1 are waiting; retry shortly")
        assert narrow_server.health().status_code == 200
        assert running.result().json()["properties"]["stdout"] == "done\n"
        assert waiting.result().json()["properties"]["stdout"] == "done\n"
    assert_nothing_left(narrow_server)


def test_session_cells_wait_in_the_same_line_and_their_rejections_count(
        narrow_server: Server) -> None:
    sleeper = {"properties": {"code": "import time\ntime.sleep(1.5)\nprint('done')"}}
    cell = {"properties": {"code": "1 + 1", "codeInputType": "inline",
                           "executionType": "synchronous"}}
    with narrow_server.client() as client:
        before = rejections_of(client)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = pool.submit(narrow_server.post, "/python/execute", sleeper)
            time.sleep(0.4)
            waiting = pool.submit(narrow_server.post, "/python/execute", sleeper)
            time.sleep(0.4)
            rejected = client.post("/code/execute?identifier=cell-in-line", json=cell)
            assert rejected.status_code == 503, rejected.text
            assert running.result().json()["properties"]["stdout"] == "done\n"
            assert waiting.result().json()["properties"]["stdout"] == "done\n"
        assert rejections_of(client) == before + 1
        # Once the line is free, the same session runs its cell.
        assert client.post("/code/execute?identifier=cell-in-line", json=cell).status_code == 200


def rejections_of(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("sandbox_rejections_total "):
            return float(line.split()[-1])
    raise AssertionError("no sandbox_rejections_total in /metrics")
