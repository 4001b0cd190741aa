"""Two real services sharing one real PostgreSQL server, as replicas behind one endpoint: a
submission made on either is read on both, runs exactly once, and survives the replica running
it being killed, and the database restarting under it."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..judge0 import (
    ACCEPTED,
    PROCESSING,
    PYTHON_ONLY,
    claims,
    kill,
    submission,
    submit,
    wait_finished,
    wait_for_status,
)
from ..postgres import PostgresServer, postgres_server
from ..utils import Server, serve

# Short enough for a test to see a dead replica's runs given back (the defaults are 5 s and
# 30 s): a replica says it is alive every half second and is dead after 3 s unseen.
HOUSEKEEPING_INTERVAL_S = 0.5
REPLICA_TIMEOUT_S = 3.0
LIVENESS = {"SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S": str(HOUSEKEEPING_INTERVAL_S),
            "SANDBOX_JUDGE0_REPLICA_TIMEOUT_S": str(REPLICA_TIMEOUT_S)}
RUNS = re.compile(r'^sandbox_runs_total\{[^}]*runtime="python"[^}]*\} (\S+)$', re.MULTILINE)


@contextlib.contextmanager
def replica(database: str) -> Iterator[Server]:
    with serve({**PYTHON_ONLY, **LIVENESS, "SANDBOX_DATABASE_URL": database}) as server:
        yield server


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture(scope="module")
def pair(database: str) -> Iterator[tuple[Server, Server]]:
    with replica(database) as first, replica(database) as second:
        yield first, second


def python_runs(server: Server) -> float:
    """How many Python programs the service has run, by its own metrics."""
    with server.client() as client:
        return sum(float(count) for count in RUNS.findall(client.get("/metrics").text))


def test_a_submission_made_on_one_replica_is_read_and_finished_on_the_other(
        pair: tuple[Server, Server]) -> None:
    first, second = pair
    token = submit(first, "print('from either')")["token"]
    assert submission(second, token)["token"] == token
    finished = wait_finished(second, token)
    assert finished["status"] == {"id": ACCEPTED, "description": "Accepted"}
    assert finished["stdout"] == "from either\n"
    assert submission(first, token) == finished


def test_submissions_spread_over_both_replicas_each_run_exactly_once(
        pair: tuple[Server, Server], database: str) -> None:
    before = [python_runs(server) for server in pair]
    tokens = {submit(pair[i % 2], f"print({i} * {i})")["token"]: i for i in range(30)}
    for token, i in tokens.items():
        finished = wait_finished(pair[(i + 1) % 2], token)
        assert finished["status"]["id"] == ACCEPTED, finished
        assert finished["stdout"] == f"{i * i}\n"
    # Each was taken from the queue once, by one replica, and run once: the services ran 30
    # programs between them, both taking part.
    assert claims(database, list(tokens)) == dict.fromkeys(tokens, (ACCEPTED, 1))
    ran = [python_runs(server) - count for server, count in zip(pair, before, strict=True)]
    assert sum(ran) == 30
    assert all(ran), ran


def test_wait_answers_with_the_finished_submission(pair: tuple[Server, Server]) -> None:
    finished = submit(pair[0], "print(sum(range(10)))", wait="true")
    assert finished["status"]["id"] == ACCEPTED, finished
    assert finished["stdout"] == "45\n"
    assert submission(pair[1], finished["token"]) == finished


def working(server: Server) -> int:
    """How many submissions the service is running now, as Judge0's /workers says."""
    with server.client() as client:
        count: int = client.get("/workers").json()[0]["working"]
    return count


def test_a_killed_replicas_submission_is_run_by_the_other(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    with replica(database) as first, replica(database) as second:
        token = submit(first, "import time; time.sleep(3); print('finished')")["token"]
        wait_for_status(first, token, [PROCESSING], timeout_s=30)
        # The replica it was made on is woken at once and nearly always takes it; whichever
        # did is the one killed mid-run.
        deadline = time.monotonic() + 10
        while not (holders := [server for server in (first, second) if working(server)]):
            assert time.monotonic() < deadline, "neither replica runs the submission"
            time.sleep(0.02)
        [doomed] = holders
        survivor = second if doomed is first else first
        kill(doomed)
        killed = time.monotonic()
        # Still the dead replica's until it has gone unseen for the timeout.
        assert submission(survivor, token)["status"]["id"] == PROCESSING
        finished = wait_finished(survivor, token, timeout_s=60)
        took = time.monotonic() - killed
    assert finished["status"]["id"] == ACCEPTED, finished
    assert finished["stdout"] == "finished\n"
    # Given back once the replica timed out, then run afresh (3 s) by the survivor.
    assert REPLICA_TIMEOUT_S < took < REPLICA_TIMEOUT_S + 4 * HOUSEKEEPING_INTERVAL_S + 15
    assert claims(database, [token]) == {token: (ACCEPTED, 2)}


def test_a_submission_outlives_the_database_restarting_under_it(
        postgres: PostgresServer) -> None:
    # A server of its own (the session's stays up for the other tests), of the same kind.
    with postgres_server() as restarting:
        database = restarting.create_database()
        with replica(database) as server:
            token = submit(server, "import time; time.sleep(2); print('kept')")["token"]
            wait_for_status(server, token, [PROCESSING], timeout_s=30)
            # The run ends while the database is gone: its result waits for it to return.
            restarting.stop()
            time.sleep(4)
            restarting.start()
            finished = answered_finished(server, token, timeout_s=30)
            assert finished["status"]["id"] == ACCEPTED, finished
            assert finished["stdout"] == "kept\n"
            # And the service goes on taking submissions on its new connection.
            again = submit(server, "print('after')", wait="true")
            assert again["stdout"] == "after\n"


def answered_finished(server: Server, token: str, timeout_s: float) -> dict[str, Any]:
    """The finished submission, polled through the answers a service gives while its database
    comes back (an error for the call that finds its old connection gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with server.client() as client:
            reply = client.get(f"/submissions/{token}")
        if reply.status_code == 200 and reply.json()["status"]["id"] > PROCESSING:
            found: dict[str, Any] = reply.json()
            return found
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.1)
