"""Clients that open connections and never finish a request cannot wedge the service.

Each test holds many real TCP connections to a real service: heads or bodies sent halfway, more
connections than the bound, descriptors exhausted. The service must close them after its
timeouts, keep `/health` answering and a real run working, and keep its log small.
"""

from __future__ import annotations

import logging
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Self

import httpx
import psutil
import pytest

from adapter import Settings, SettingsError
from adapter.server import RESERVED_FDS, RateLimitedLog, connection_bound

from ..utils import Server, assert_nothing_left, serve
from .test_piston_socket import conversation, init

TIMEOUT_S = 3.0
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow"
HALF_BODY = (b"POST /python/execute HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
             b'{"properti')  # 10 of the 1000 bytes
HEALTH_LATENCY_S = 2.0
# Every line the service writes for these tests: startup lines, rate-limited warnings.
MAX_LOG_LINES = 200


@pytest.fixture(scope="module")
def guarded() -> Iterator[Server]:
    with serve({"SANDBOX_HTTP_HEAD_TIMEOUT_S": str(TIMEOUT_S),
                "SANDBOX_HTTP_BODY_IDLE_TIMEOUT_S": str(TIMEOUT_S)}) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def open_files_for_the_tests() -> Iterator[None]:
    """Thousands of sockets in this process need a soft NOFILE above the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) is too low for 2,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def log_lines(server: Server) -> list[str]:
    path = server.work_root.parent / f"server-{server.url.rsplit(':', 1)[1]}.log"
    return path.read_text(errors="replace").splitlines()


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@contextmanager
def connections(server: Server, count: int, payload: bytes) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent `payload` and then nothing; closed on the way out."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(address(server), timeout=10)
            sock.sendall(payload)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def closed_by_server(socks: list[socket.socket], within_s: float) -> tuple[int, list[bytes]]:
    """How many of `socks` the server closed within `within_s` seconds, and what it sent to
    any of them before closing."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = 0
    replies: dict[int, bytes] = {}
    deadline = time.monotonic() + within_s
    while by_fd and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            try:
                data = by_fd[fd].recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                replies[fd] = replies.get(fd, b"") + data
                continue
            poller.unregister(fd)
            del by_fd[fd]
            closed += 1
    return closed, list(replies.values())


class HealthWatch:
    """Asks `/health` every 0.2 s in a thread and keeps each answer's latency (inf: none)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with httpx.Client(base_url=self.server.url, timeout=HEALTH_LATENCY_S * 2) as c:
                    self.statuses.append(c.get("/health").status_code)
                self.latencies.append(time.monotonic() - started)
            except httpx.TransportError:
                self.latencies.append(float("inf"))
            self._stop.wait(0.2)


def run_print(server: Server) -> None:
    reply = server.post("/python/execute", {"properties": {"code": "print(1)"}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["properties"]["stdout"] == "1\n"


def test_two_thousand_half_sent_heads_are_closed_and_health_answers(guarded: Server) -> None:
    log_before = len(log_lines(guarded))
    with HealthWatch(guarded) as health, connections(guarded, 2000, HALF_HEAD) as socks:
        opened = time.monotonic()
        # Held, not refused: none closed well before the timeout, and the service still runs
        # programs meanwhile.
        early, _ = closed_by_server(socks, within_s=TIMEOUT_S / 3)
        assert early == 0
        run_print(guarded)
        closed, replies = closed_by_server(socks, within_s=TIMEOUT_S + 5)
        elapsed = time.monotonic() - opened
        assert closed == 2000, f"{2000 - closed} connections still open after {elapsed:.1f} s"
        assert replies == []
        time.sleep(0.5)  # a few more looks at /health after the closing
    assert len(health.latencies) >= 10
    assert max(health.latencies) < HEALTH_LATENCY_S, health.latencies
    assert set(health.statuses) == {200}
    run_print(guarded)
    new_lines = log_lines(guarded)[log_before:]
    assert len(new_lines) < MAX_LOG_LINES
    assert not [line for line in new_lines if "Traceback" in line]
    timeouts = [line for line in new_lines if '"http_timeout"' in line]
    assert timeouts and len(timeouts) <= TIMEOUT_S + 8
    assert_nothing_left(guarded)


def test_half_sent_bodies_are_closed_after_the_idle_timeout(guarded: Server) -> None:
    log_before = len(log_lines(guarded))
    with connections(guarded, 50, HALF_BODY) as socks:
        early, _ = closed_by_server(socks, within_s=TIMEOUT_S / 3)
        assert early == 0
        closed, _ = closed_by_server(socks, within_s=TIMEOUT_S + 5)
        assert closed == 50
    run_print(guarded)
    new_lines = log_lines(guarded)[log_before:]
    assert len(new_lines) < MAX_LOG_LINES
    assert not [line for line in new_lines if "Traceback" in line]


def test_a_body_that_keeps_arriving_slowly_is_not_cut(guarded: Server) -> None:
    """The body bound is on pauses, not on the whole body: a slow but steady client is
    answered."""
    body = b'{"properties":{"code":"print(2)"}}'
    head = (b"POST /python/execute HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(address(guarded), timeout=30) as sock:
        sock.sendall(head)
        pieces = [body[i:i + 8] for i in range(0, len(body), 8)]
        for piece in pieces:  # 5 pieces over ~1.6 timeouts, each pause well inside one
            time.sleep(TIMEOUT_S / 3)
            sock.sendall(piece)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b'"stdout":"2\\n"' in reply


def test_a_websocket_outlives_the_http_timeouts(guarded: Server) -> None:
    """Once upgraded, a connection belongs to the WebSocket protocol: the HTTP timers of its
    upgrade request must not cut a job that runs longer than them."""
    code = f"import time\ntime.sleep({TIMEOUT_S * 2})\nprint('still here')\n"
    with conversation(guarded) as talk:
        talk.send(init("python", code))
        messages = talk.rest(timeout=TIMEOUT_S * 2 + 10)
    assert talk.close == (4999, "Job Completed")
    # Unbuffered, print writes the text and its newline apart: they may arrive as two chunks.
    stdout = "".join(m["data"] for m in messages
                     if m["type"] == "data" and m["stream"] == "stdout")
    assert stdout == "still here\n"


def test_connections_past_the_bound_get_503_and_are_closed() -> None:
    with serve({"SANDBOX_MAX_CONNECTIONS": "100"}) as server:
        with connections(server, 160, HALF_HEAD) as socks:
            closed, replies = closed_by_server(socks, within_s=2)
            assert closed == 60
            assert len(replies) == 60
            assert all(r.startswith(b"HTTP/1.1 503 ") for r in replies)
            # The bound holds for everyone, so /health waits for the others to go.
        assert server.health().status_code == 200
        lines = log_lines(server)
        assert len(lines) < MAX_LOG_LINES
        refused = [line for line in lines if '"http_too_many_connections"' in line]
        assert 1 <= len(refused) <= 3


def test_accept_errors_are_logged_at_a_bounded_rate() -> None:
    """With its descriptors exhausted (its soft NOFILE lowered from outside), the service
    logs accept failures about once a second, not a traceback each, serves again once the
    head timeout has freed them, and still stops promptly."""
    with serve({"SANDBOX_HTTP_HEAD_TIMEOUT_S": str(TIMEOUT_S)}) as server:
        pid = server.process.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        log_before = len(log_lines(server))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (psutil.Process(pid).num_fds() + 100, hard))
        try:
            with connections(server, 600, HALF_HEAD) as socks:
                exhausted = time.monotonic()
                closed, _ = closed_by_server(socks, within_s=2 * TIMEOUT_S + 2)
                assert closed > 150, closed  # a second batch: accepting came back
                seconds = time.monotonic() - exhausted
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert server.health().status_code == 200
        run_print(server)
        started = time.monotonic()
        server.process.terminate()
        assert server.process.wait(10) == 0
        assert time.monotonic() - started < 5
        new_lines = log_lines(server)[log_before:]
    failures = [line for line in new_lines if '"accept_failed"' in line]
    assert failures, new_lines[-20:]
    assert len(failures) <= seconds + 3
    assert len(new_lines) < MAX_LOG_LINES
    assert not [line for line in new_lines if "Traceback" in line]


def test_the_soft_open_files_limit_is_raised_to_the_hard_one_at_startup() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what the service inherits
        try:
            server = stack.enter_context(serve())
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE) == (hard, hard)
        http = next(line for line in server.log_lines() if line.get("event") == "http")
        assert http["open_files_limit"] == hard
        assert http["max_connections"] == connection_bound(4096, hard)


@pytest.mark.parametrize(("max_connections", "open_files", "bound"), [
    (4096, 20000, 4096),
    (4096, 4096, 4096 - RESERVED_FDS),
    (4096, 1024, 512),  # a small limit: half of it
    (100, 1024, 100),
    (4096, 1, 1),
])
def test_the_connection_bound_leaves_descriptors_to_the_service(
        max_connections: int, open_files: int, bound: int) -> None:
    assert connection_bound(max_connections, open_files) == bound


@pytest.mark.parametrize(("name", "value"), [
    ("SANDBOX_HTTP_HEAD_TIMEOUT_S", "0"), ("SANDBOX_HTTP_BODY_IDLE_TIMEOUT_S", "-1"),
    ("SANDBOX_MAX_CONNECTIONS", "0"), ("SANDBOX_MAX_SOCKET_STDIN_BYTES", "0"),
])
def test_http_settings_must_be_positive(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} must be positive"):
        Settings.from_environ({name: value})


FIELDS = ("event", "error", "suppressed")


def test_rate_limited_log_writes_one_line_a_second_with_the_count_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog("accept_failed", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="adapter.server"):
        for _ in range(100):  # 32 events a second (a step exact in binary) for ~3 s
            limited.note(error="EMFILE")
            now[0] += 1 / 32
    # The fields are the record's own (`extra=`), not JSON inside its message.
    lines = [(record.getMessage(), *(getattr(record, name) for name in FIELDS))
             for record in caplog.records]
    assert lines == [("accept_failed", "accept_failed", "EMFILE", count)
                     for count in (0, 31, 31, 31)]
