"""Helpers of the Judge0 tests: submissions sent to a real service over HTTP, waited for, and
what only the database knows about them."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from .utils import Server, only_runtimes

PYTHON = 71  # Judge0's id of Python 3
IN_QUEUE, PROCESSING, ACCEPTED = 1, 2, 3
# A service with Python alone starts in a second or two.
PYTHON_ONLY = only_runtimes("python.toml", "python_kernel.py")


def submit(server: Server, code: str, **query: str) -> dict[str, Any]:
    """POST /submissions of a Python program; the reply's body (201 asserted)."""
    with server.client() as client:
        reply = client.post("/submissions", params=query,
                            json={"source_code": code, "language_id": PYTHON})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def submission(server: Server, token: str) -> dict[str, Any]:
    with server.client() as client:
        reply = client.get(f"/submissions/{token}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_for_status(server: Server, token: str, done: Sequence[int],
                    timeout_s: float) -> dict[str, Any]:
    """The submission as `server` answers it once its status is one of `done`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = submission(server, token)
        if found["status"]["id"] in done:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def wait_finished(server: Server, token: str, timeout_s: float = 60) -> dict[str, Any]:
    return wait_for_status(server, token, [status for status in range(3, 15)], timeout_s)


def kill(server: Server) -> None:
    """Ends the service at once, as a crash or an evicted pod does: no shutdown of its own."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


def claims(database: str, tokens: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(status_id, attempts) of each submission, read from the database itself: `attempts` is
    how many times a replica took it from the queue."""
    statement = ("SELECT token, status_id, attempts FROM submissions WHERE token IN "
                 f"({', '.join('?' * len(tokens))})")
    rows: list[Any]
    if database.startswith("sqlite:///"):
        path = Path(database[len("sqlite://"):])
        with contextlib.closing(sqlite3.connect(path)) as connection:
            rows = connection.execute(statement, tuple(tokens)).fetchall()
    else:
        with psycopg.connect(database) as connection:
            rows = connection.execute(statement.replace("?", "%s"), tuple(tokens)).fetchall()
    return {token: (int(status), int(attempts)) for token, status, attempts in rows}
