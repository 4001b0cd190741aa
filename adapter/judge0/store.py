"""Where submissions are kept: a table in a real database, and the queue is a column of it.

A submission is a row from the moment it is created to its removal by retention: `status_id`
1 (In Queue) → 2 (Processing, `replica` names who runs it) → a final status, with its
`result`. The queue is the rows in status 1 in creation order (`seq`); a replica takes the
oldest with one statement that no other replica can also win (`claim`), so a submission runs
exactly once however many replicas share the database.

Two databases speak the same schema: SQLite (the default: one file in the service's work
folder, WAL, for one service) and PostgreSQL (`SANDBOX_DATABASE_URL=postgresql://…`, for
several replicas behind one endpoint; adapter.judge0.postgres). Every method is blocking and
is called from one thread of the store's own (adapter.judge0.queue), so a store never needs
locks of its own.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IN_QUEUE, PROCESSING, INTERNAL_ERROR = 1, 2, 13


@dataclass(frozen=True)
class Stored:
    """One submission as kept: `request` is what was asked (adapter.judge0.fields encodes it),
    `result` what its run gave (None until it finished)."""

    token: str
    status_id: int
    request: dict[str, Any]
    result: dict[str, Any] | None
    created_at: float
    finished_at: float | None


COLUMNS = "token, status_id, request, result, created_at, finished_at"


class SqlStore:
    """The statements, written once; a subclass gives the connection, its placeholder style
    and the few clauses where the databases differ."""

    # The row id that orders the queue, as each database spells an auto-increment key.
    SEQ_COLUMN = "seq INTEGER PRIMARY KEY AUTOINCREMENT"
    # What makes a claim skip a row another replica is claiming at this moment.
    CLAIM_LOCK = ""
    # A statement that makes `create`'s count-then-insert wait for any other replica's: without
    # it two replicas could both count a place left and both take it. None where a transaction
    # already holds the database's one write lock from its start (SQLite's BEGIN IMMEDIATE).
    QUEUE_LOCK: str | None = None

    def __init__(self) -> None:
        self.schema()

    # ---- what a subclass provides --------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager yielding a cursor: committed on exit, rolled back on an error."""
        raise NotImplementedError

    def sql(self, statement: str) -> str:
        """The statement with `?` placeholders in the database's own style."""
        return statement

    def close(self) -> None:
        raise NotImplementedError

    # ---- the statements ------------------------------------------------------------------------

    def schema(self) -> None:
        with self.transaction() as cur:
            cur.execute(f"""CREATE TABLE IF NOT EXISTS submissions (
                {self.SEQ_COLUMN},
                token TEXT NOT NULL UNIQUE,
                status_id INTEGER NOT NULL,
                request TEXT NOT NULL,
                result TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION,
                replica TEXT,
                attempts INTEGER NOT NULL DEFAULT 0)""")
            # The queue is read oldest first, by status; retention reads finished rows by age.
            cur.execute("CREATE INDEX IF NOT EXISTS submissions_queue "
                        "ON submissions (status_id, seq)")
            cur.execute("CREATE INDEX IF NOT EXISTS submissions_finished "
                        "ON submissions (finished_at)")
            cur.execute("""CREATE TABLE IF NOT EXISTS replicas (
                id TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)""")

    def create(self, rows: Sequence[tuple[str, dict[str, Any]]], now: float,
               max_queued: int) -> bool:
        """Adds the submissions (token, request) to the queue, all or none: False, and nothing
        added, when the queue would then hold more than `max_queued`."""
        with self.transaction() as cur:
            if self.QUEUE_LOCK is not None:
                cur.execute(self.QUEUE_LOCK)
            cur.execute(self.sql("SELECT count(*) FROM submissions WHERE status_id = ?"),
                        (IN_QUEUE,))
            if cur.fetchone()[0] + len(rows) > max_queued:
                return False
            for token, request in rows:
                cur.execute(self.sql(
                    "INSERT INTO submissions (token, status_id, request, created_at) "
                    "VALUES (?, ?, ?, ?)"), (token, IN_QUEUE, json.dumps(request), now))
        return True

    def get(self, tokens: Sequence[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        with self.transaction() as cur:
            for token in dict.fromkeys(tokens):
                cur.execute(self.sql(f"SELECT {COLUMNS} FROM submissions WHERE token = ?"),
                            (token,))
                row = cur.fetchone()
                if row is not None:
                    found[token] = _stored(row)
        return found

    def claim(self, replica: str) -> Stored | None:
        """The oldest queued submission, now Processing under `replica`; None when the queue is
        empty. One statement: two replicas claiming at once never get the same row."""
        with self.transaction() as cur:
            cur.execute(self.sql(
                "UPDATE submissions SET status_id = ?, replica = ?, attempts = attempts + 1 "
                "WHERE seq = (SELECT seq FROM submissions WHERE status_id = ? "
                f"ORDER BY seq LIMIT 1 {self.CLAIM_LOCK}) AND status_id = ? "
                f"RETURNING {COLUMNS}"), (PROCESSING, replica, IN_QUEUE, IN_QUEUE))
            row = cur.fetchone()
        return None if row is None else _stored(row)

    def finish(self, token: str, replica: str, status_id: int, result: dict[str, Any],
               now: float) -> bool:
        """Records the result of a run `replica` claimed; False (nothing written) when the
        submission is no longer that replica's (recovered as lost and given to another)."""
        with self.transaction() as cur:
            cur.execute(self.sql(
                "UPDATE submissions SET status_id = ?, result = ?, finished_at = ?, "
                "replica = NULL WHERE token = ? AND status_id = ? AND replica = ?"),
                (status_id, json.dumps(result), now, token, PROCESSING, replica))
            return bool(cur.rowcount)

    def release(self, token: str, replica: str) -> None:
        """Gives a submission `replica` claimed but could not start back to the queue, as if
        never taken (the service was too busy to run it)."""
        with self.transaction() as cur:
            cur.execute(self.sql(
                "UPDATE submissions SET status_id = ?, replica = NULL, attempts = attempts - 1 "
                "WHERE token = ? AND status_id = ? AND replica = ?"),
                (IN_QUEUE, token, PROCESSING, replica))

    def heartbeat(self, replica: str, now: float) -> None:
        """Says `replica` is alive; runs it claimed stay its own while it says so."""
        with self.transaction() as cur:
            cur.execute(self.sql(
                "INSERT INTO replicas (id, seen_at) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"), (replica, now))

    def recover(self, replica: str, seen_before: float, max_attempts: int, now: float,
                result: dict[str, Any]) -> tuple[int, list[str]]:
        """Submissions Processing under a replica other than `replica` that has not been seen
        since `seen_before` (it died mid-run): queued again when they have been tried fewer than
        `max_attempts` times, else finished as Internal Error with `result` (a submission that
        takes its service down each time must not do so forever). Returns (re-queued, the
        tokens failed)."""
        with self.transaction() as cur:
            lost = ("status_id = ? AND replica IS NOT NULL AND replica <> ? AND replica NOT IN "
                    "(SELECT id FROM replicas WHERE seen_at >= ?)")
            # One statement that fails and names the rows it failed: a select, then an update
            # by token, would let two replicas recovering at once both fail (and report) the
            # same submission, the second overwriting the first's finish time.
            cur.execute(self.sql(
                "UPDATE submissions SET status_id = ?, result = ?, finished_at = ?, "
                f"replica = NULL WHERE {lost} AND attempts >= ? RETURNING token"),
                (INTERNAL_ERROR, json.dumps(result), now, PROCESSING, replica, seen_before,
                 max_attempts))
            failed = [row[0] for row in cur.fetchall()]
            cur.execute(self.sql(f"UPDATE submissions SET status_id = ?, replica = NULL "
                                 f"WHERE {lost}"),
                        (IN_QUEUE, PROCESSING, replica, seen_before))
            requeued = cur.rowcount
            cur.execute(self.sql("DELETE FROM replicas WHERE seen_at < ? AND id <> ?"),
                        (seen_before, replica))
        return requeued, failed

    def prune(self, keep: int, finished_before: float) -> int:
        """Removes finished submissions older than `finished_before`, and the oldest finished
        ones beyond the newest `keep`; queued and running ones are never removed."""
        with self.transaction() as cur:
            cur.execute(self.sql("DELETE FROM submissions WHERE finished_at IS NOT NULL "
                                 "AND finished_at < ?"), (finished_before,))
            removed = cur.rowcount
            cur.execute(self.sql(
                "DELETE FROM submissions WHERE finished_at IS NOT NULL AND seq NOT IN "
                "(SELECT seq FROM submissions WHERE finished_at IS NOT NULL "
                "ORDER BY seq DESC LIMIT ?)"), (keep,))
            return int(removed) + int(cur.rowcount)

    def counts(self) -> dict[int, int]:
        """How many submissions are in each status."""
        with self.transaction() as cur:
            cur.execute("SELECT status_id, count(*) FROM submissions GROUP BY status_id")
            return {int(status): int(count) for status, count in cur.fetchall()}


def _stored(row: Sequence[Any]) -> Stored:
    token, status_id, request, result, created_at, finished_at = row
    return Stored(token, int(status_id), json.loads(request),
                  None if result is None else json.loads(result), float(created_at),
                  None if finished_at is None else float(finished_at))


class SqliteStore(SqlStore):
    """One SQLite file, in WAL mode (readers never wait for the writer; a crash mid-write
    leaves the last committed state), private to the service (0600)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE), so a
        # count-then-insert cannot interleave with another writer's.
        # check_same_thread=False: made here, then used from the queue's one thread only.
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30,
                                          check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a crash of the service in WAL mode (only an OS crash may
        # lose the last transactions), at a fraction of FULL's fsyncs.
        self.connection.execute("PRAGMA synchronous=NORMAL")
        super().__init__()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection.cursor()
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()
