"""The submissions' store in PostgreSQL, for replicas sharing one queue (psycopg 3).

The statements are the store's (adapter.judge0.store); PostgreSQL differs in its placeholders,
its identity column, the claim's `FOR UPDATE SKIP LOCKED` (a replica claiming skips the row
another replica's claim holds at that moment instead of waiting for it, so two replicas never
take the same submission and neither waits) and a lock that makes creates count the queue one
at a time. Imported only when a PostgreSQL URL is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from .store import SqlStore

# Held while the schema is made, so replicas starting together do not race to create it.
SCHEMA_LOCK = 0x5B0C5
# Held by each create until it commits (see QUEUE_LOCK).
QUEUE_LOCK_KEY = 0x5B0C6


class PostgresStore(SqlStore):
    SEQ_COLUMN = "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    CLAIM_LOCK = "FOR UPDATE SKIP LOCKED"
    # READ COMMITTED lets two replicas' creates count the same free places; this lock, held to
    # the end of the transaction, makes them count one after the other. Claims do not take it:
    # a claim only ever frees a place.
    QUEUE_LOCK = f"SELECT pg_advisory_xact_lock({QUEUE_LOCK_KEY})"

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection = self.connect()
        self.connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            super().__init__()
        finally:
            self.connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def connect(self) -> psycopg.Connection[Any]:
        # One connection, used from the store's one thread. Autocommit: each `transaction`
        # below is exactly one BEGIN … COMMIT.
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        # A connection the server dropped (a restart, a failover, an idle timeout) stays
        # closed: the call that met the loss failed, and the next connects afresh instead of
        # failing for as long as the service lives. Not retried here: a commit whose answer
        # was lost may have happened.
        if self.connection.closed:
            self.connection = self.connect()
        with self.connection.transaction(), self.connection.cursor() as cursor:
            yield cursor

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def close(self) -> None:
        self.connection.close()
