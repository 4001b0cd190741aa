"""The submissions' store, against a real SQLite file and a real PostgreSQL server: the same
statements must mean the same in both, claims included when several connections race."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from adapter.judge0.api import open_store
from adapter.judge0.store import IN_QUEUE, INTERNAL_ERROR, PROCESSING, SqlStore

from ..judge0 import claims
from ..postgres import PostgresServer

OpenStore = Callable[[], SqlStore]
ACCEPTED = 3
LOST = {"message": "lost"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'submissions.sqlite3'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database()


@pytest.fixture
def connect(database: str, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on the test's database, each with a connection of its own (as replicas
    have); all are closed at the end."""
    opened: list[SqlStore] = []

    def open_one() -> SqlStore:
        store, _sqlite = open_store(database, tmp_path)
        opened.append(store)
        return store
    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(connect: OpenStore) -> SqlStore:
    return connect()


def queue(store: SqlStore, count: int, now: float = 1000.0) -> list[str]:
    tokens = [f"t{now:.0f}-{i:04d}" for i in range(count)]
    assert store.create([(token, {"n": i}) for i, token in enumerate(tokens)], now, 10**6)
    return tokens


def attempts(database: str, token: str) -> int:
    """What only the database knows: how many times a submission was claimed."""
    return claims(database, [token])[token][1]


def test_a_created_submission_reads_back_as_it_was_given(store: SqlStore) -> None:
    request = {"source_code": "print('é')", "stdin": "1\n2", "nested": {"a": [1, None]}}
    assert store.create([("one", request)], 1234.5, 10)
    found = store.get(["one", "missing", "one"])
    assert list(found) == ["one"]
    stored = found["one"]
    assert (stored.token, stored.status_id, stored.request, stored.result) == (
        "one", IN_QUEUE, request, None)
    assert (stored.created_at, stored.finished_at) == (1234.5, None)


def test_the_queue_is_taken_oldest_first(store: SqlStore) -> None:
    first = queue(store, 3, now=1000.0)
    second = queue(store, 2, now=900.0)  # created later, though its clock says earlier
    claimed = [store.claim("r1") for _ in range(6)]
    assert [c.token if c else None for c in claimed] == [*first, *second, None]
    assert all(c.status_id == PROCESSING for c in claimed if c)
    assert store.counts() == {PROCESSING: 5}


def test_create_adds_all_or_none_past_the_queue_limit(store: SqlStore) -> None:
    assert store.create([("a", {}), ("b", {})], 1.0, 3)
    assert not store.create([("c", {}), ("d", {})], 2.0, 3)
    assert store.get(["c", "d"]) == {}
    assert store.create([("c", {})], 3.0, 3)
    # Only waiting submissions count: one taken frees a place.
    assert store.claim("r1") is not None
    assert store.create([("d", {})], 4.0, 3)
    assert store.counts() == {IN_QUEUE: 3, PROCESSING: 1}


def test_racing_claims_take_every_submission_exactly_once(connect: OpenStore,
                                                          database: str) -> None:
    tokens = set(queue(connect(), 200))
    stores = [connect() for _ in range(4)]
    taken: list[list[str]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claim_all(index: int) -> None:
        start.wait()
        while (claimed := stores[index].claim(f"replica-{index}")) is not None:
            taken[index].append(claimed.token)
    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    everything = [token for tokens_of_one in taken for token in tokens_of_one]
    assert sorted(everything) == sorted(tokens)
    # Several connections won some (the race was real), and no row was claimed twice.
    assert sum(1 for share in taken if share) >= 2, [len(share) for share in taken]
    assert {attempts(database, token) for token in sorted(tokens)[:20]} == {1}
    assert stores[0].counts() == {PROCESSING: 200}


def test_racing_creates_never_pass_the_queue_limit(connect: OpenStore) -> None:
    stores = [connect() for _ in range(4)]
    start = threading.Barrier(len(stores))
    accepted = [0] * len(stores)

    def create_until_refused(index: int) -> None:
        start.wait()
        for number in itertools.count():
            if not stores[index].create([(f"r{index}-{number}", {})], 1.0, 50):
                return
            accepted[index] += 1
    threads = [threading.Thread(target=create_until_refused, args=(i,))
               for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(accepted) == 50
    assert stores[0].counts() == {IN_QUEUE: 50}


def test_finish_is_refused_to_a_replica_that_no_longer_holds_the_submission(
        store: SqlStore) -> None:
    [token] = queue(store, 1)
    assert store.claim("r1") is not None
    assert not store.finish(token, "r2", ACCEPTED, {"stdout": "x"}, 5.0)
    assert store.get([token])[token].status_id == PROCESSING
    assert store.finish(token, "r1", ACCEPTED, {"stdout": "ok"}, 5.0)
    stored = store.get([token])[token]
    assert (stored.status_id, stored.result, stored.finished_at) == (
        ACCEPTED, {"stdout": "ok"}, 5.0)
    # Finished once: a second result, even from its replica, is not written.
    assert not store.finish(token, "r1", INTERNAL_ERROR, {"stdout": "again"}, 6.0)
    assert store.get([token])[token].result == {"stdout": "ok"}


def test_release_gives_a_claim_back_as_if_never_taken(store: SqlStore, database: str) -> None:
    first, second = queue(store, 2)
    claimed = store.claim("r1")
    assert claimed is not None and claimed.token == first
    store.release(first, "r2")  # not r2's: nothing changes
    assert store.get([first])[first].status_id == PROCESSING
    store.release(first, "r1")
    assert store.get([first])[first].status_id == IN_QUEUE
    assert attempts(database, first) == 0
    # Back at its place in the queue, ahead of the later one.
    again, later = store.claim("r1"), store.claim("r1")
    assert again is not None and again.token == first
    assert later is not None and later.token == second
    assert attempts(database, first) == 1


def test_recover_requeues_a_dead_replicas_runs_then_fails_them(store: SqlStore,
                                                              database: str) -> None:
    token, other = queue(store, 2)
    store.heartbeat("dead", 100.0)
    store.heartbeat("alive", 100.0)
    assert store.claim("dead") is not None
    assert store.claim("alive") is not None
    store.heartbeat("alive", 200.0)
    store.heartbeat("me", 200.0)
    # Seen since 150: "alive" keeps its run; "dead" is not, and loses it.
    assert store.recover("me", 150.0, 2, 210.0, LOST) == (1, [])
    assert store.get([token])[token].status_id == IN_QUEUE
    assert store.get([other])[other].status_id == PROCESSING
    # Taken again and lost again: the second loss is its last.
    store.heartbeat("dead-too", 300.0)
    claimed = store.claim("dead-too")
    assert claimed is not None and claimed.token == token
    assert attempts(database, token) == 2
    store.heartbeat("alive", 400.0)
    assert store.recover("me", 400.0, 2, 410.0, LOST) == (0, [token])
    stored = store.get([token])[token]
    assert (stored.status_id, stored.result, stored.finished_at) == (INTERNAL_ERROR, LOST, 410.0)
    # The finished submission is not its replica's to finish any more.
    assert not store.finish(token, "dead-too", ACCEPTED, {}, 420.0)
    # A replica never recovers its own runs, however old its heartbeat.
    assert store.get([other])[other].status_id == PROCESSING
    assert store.recover("alive", 10**9, 2, 500.0, LOST) == (0, [])


def test_recover_of_a_replica_never_seen(store: SqlStore) -> None:
    [token] = queue(store, 1)
    assert store.claim("ghost") is not None  # no heartbeat ever
    assert store.recover("me", 0.0, 2, 10.0, LOST) == (1, [])
    assert store.get([token])[token].status_id == IN_QUEUE


def test_prune_removes_old_and_surplus_finished_submissions_only(store: SqlStore) -> None:
    tokens = queue(store, 8)
    for index, token in enumerate(tokens[:6]):
        claimed = store.claim("r1")
        assert claimed is not None and claimed.token == token
        assert store.finish(token, "r1", ACCEPTED, {}, 100.0 + index)
    assert store.claim("r1") is not None  # tokens[6] runs, tokens[7] waits
    # By age: finished before 102 (the first two).
    assert store.prune(100, 102.0) == 2
    assert sorted(store.get(tokens)) == sorted(tokens[2:])
    # By count: the newest two finished are kept.
    assert store.prune(2, 0.0) == 2
    assert sorted(store.get(tokens)) == sorted(tokens[4:])
    # Whatever the bounds, running and waiting submissions stay.
    assert store.prune(1, 10**9) == 2
    assert store.counts() == {IN_QUEUE: 1, PROCESSING: 1}
    assert store.prune(1, 10**9) == 0


def test_opening_the_same_database_twice_keeps_its_rows(connect: OpenStore) -> None:
    first = connect()
    queue(first, 3)
    second = connect()
    assert second.counts() == {IN_QUEUE: 3}
    claimed = second.claim("r2")
    assert claimed is not None
    assert first.get([claimed.token])[claimed.token].status_id == PROCESSING


def test_stores_opening_together_make_the_schema_once(connect: OpenStore) -> None:
    errors: list[BaseException] = []
    stores: list[SqlStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            opened = connect()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            return
        with lock:
            stores.append(opened)
    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(stores) == 4
    queue(stores[0], 1)
    assert stores[3].counts() == {IN_QUEUE: 1}


def test_a_dropped_connection_is_made_again_by_the_next_call(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    store, _sqlite = open_store(database, Path("/nonexistent"))
    try:
        queue(store, 1)
        # What a database restart or failover does to every replica's connection.
        with psycopg.connect(database, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(psycopg.OperationalError):
            store.counts()
        assert store.counts() == {IN_QUEUE: 1}
        assert store.claim("r1") is not None
    finally:
        store.close()
