"""The submissions' store in PostgreSQL, for replicas sharing one queue (psycopg 3).

The statements are the store's (adapter.judge0.store); PostgreSQL differs in its placeholders,
its identity column, and the claim's `FOR UPDATE SKIP LOCKED`: a replica claiming skips the row
another replica's claim holds at that moment instead of waiting for it, so two replicas never
take the same submission and neither waits. Imported only when a PostgreSQL URL is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from .store import SqlStore

# Held while the schema is made, so replicas starting together do not race to create it.
SCHEMA_LOCK = 0x5B0C5


class PostgresStore(SqlStore):
    SEQ_COLUMN = "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    CLAIM_LOCK = "FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        # One connection, used from the store's one thread. Autocommit: each `transaction`
        # below is exactly one BEGIN … COMMIT.
        self.connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            super().__init__()
        finally:
            self.connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            yield cursor

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def close(self) -> None:
        self.connection.close()
