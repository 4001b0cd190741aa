"""The submissions' queue: the store's rows in status 1, taken and run by this replica's
workers, one submission each at a time, through the service's own admission.

As many workers as the service runs programs at once take the oldest queued submission, run
it and record its result; a submission created here wakes them at once, one created by another
replica (a shared PostgreSQL) within `POLL_INTERVAL_S`. Every housekeeping interval (settings:
5 s by default) this replica says it is alive, gives back what replicas unseen for the replica
timeout (30 s) left Processing (adapter.judge0.store `recover`) and applies retention.

All database work runs on one thread of the queue's own, so the event loop never waits on a
disk or a network round trip, and a store needs no locks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ServiceBusy, ShuttingDown
from ..service import Service
from .callbacks import CallbackPolicy, send_callback
from .fields import Submission
from .judging import INTERNAL_ERROR, Judged, internal_error, judge
from .languages import Languages
from .store import SqlStore, Stored

log = logging.getLogger("adapter.judge0")
T = TypeVar("T")

POLL_INTERVAL_S = 0.5
# A submission lost this many times (its service died each time it ran it) is failed.
MAX_ATTEMPTS = 2
BUSY_BACKOFF_S = 0.5


class QueueFull(Exception):
    """More submissions than the queue may hold (Judge0's 503 `queue is full`)."""


@dataclass(frozen=True)
class Retention:
    keep: int  # finished submissions kept at most
    max_age_s: float  # and for this long at most


@dataclass(frozen=True)
class Liveness:
    interval_s: float  # how often a replica says it is alive and keeps house
    # A replica not seen for this long is taken as dead and its running submissions as lost.
    replica_timeout_s: float


class SubmissionQueue:
    def __init__(self, service: Service, store: SqlStore, languages: Languages, *,
                 max_queued: int, retention: Retention, callbacks: CallbackPolicy,
                 render_callback: Callable[[Stored], dict[str, Any]],
                 recover_at_start: bool, liveness: Liveness) -> None:
        self.service = service
        self.store = store
        self.languages = languages
        self.max_queued = max_queued
        self.retention = retention
        self.callbacks = callbacks
        self.render_callback = render_callback
        # A SQLite file belongs to one service: whatever it left Processing is lost at once,
        # without waiting for its heartbeat to age.
        self.recover_at_start = recover_at_start
        self.liveness = liveness
        self.replica = uuid.uuid4().hex
        self.workers = service.admission.max_running
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="judge0-db")
        self.wake = asyncio.Event()
        self.finished: dict[str, list[asyncio.Future[None]]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.sending: set[asyncio.Task[bool]] = set()
        self.running = 0

    async def db(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, call, *args)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.db(self.store.heartbeat, self.replica, time.time())
        await self.housekeeping(seen_before=time.time() if self.recover_at_start else None)
        self.tasks = [asyncio.create_task(self.work(), name=f"judge0-worker-{i}")
                      for i in range(self.workers)]
        self.tasks.append(asyncio.create_task(self.keep_house(), name="judge0-housekeeping"))

    async def close(self) -> None:
        """Stops the workers: a submission they were running stays Processing under this
        replica and is given back by the next service's recovery (queued again)."""
        for task in self.tasks + list(self.sending):
            task.cancel()
        await asyncio.gather(*self.tasks, *self.sending, return_exceptions=True)
        await self.db(self.store.close)
        self.thread.shutdown(wait=True)

    # ---- what the API asks -------------------------------------------------------------------

    async def submit(self, submissions: Sequence[Submission]) -> list[str]:
        """Queues the submissions, all or none; raises QueueFull."""
        tokens = [str(uuid.uuid4()) for _ in submissions]  # 122 random bits each
        rows = [(token, submission.stored()) for token, submission in zip(tokens, submissions,
                                                                            strict=True)]
        if not await self.db(self.store.create, rows, time.time(), self.max_queued):
            raise QueueFull
        self.wake.set()
        return tokens

    async def get(self, tokens: Sequence[str]) -> dict[str, Stored]:
        return await self.db(self.store.get, tokens)

    async def wait(self, token: str) -> Stored | None:
        """The submission once finished (by any replica); None when retention removed it,
        finished, before it was read (a small SANDBOX_SUBMISSIONS_KEPT under load)."""
        while True:
            stored = (await self.get([token])).get(token)
            if stored is None or stored.finished_at is not None:
                return stored
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.finished.setdefault(token, []).append(future)
            try:
                # Woken when this replica finishes it; polled in case another replica does.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), POLL_INTERVAL_S * 4)
            finally:
                waiters = self.finished.get(token, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self.finished.pop(token, None)

    async def counts(self) -> dict[int, int]:
        return await self.db(self.store.counts)

    # ---- the workers ---------------------------------------------------------------------------

    async def work(self) -> None:
        while True:
            try:
                claimed = await self.db(self.store.claim, self.replica)
            except Exception:
                log.exception("could not take a submission from the queue")
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            if claimed is None:
                self.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), POLL_INTERVAL_S)
                continue
            # Another worker may find more.
            self.wake.set()
            try:
                await self.run(claimed)
            except Exception:
                # A worker lives as long as the service: one ended here would leave it running
                # fewer submissions at once for good.
                log.exception("submission %s could not be run", claimed.token)

    async def persist(self, call: Callable[..., T], *args: Any) -> T:
        """`call` on the store, tried again until the database answers. For what only this
        replica can write of a submission it holds: no other replica takes a live one's
        submissions, so one left unwritten would stay Processing for good."""
        while True:
            try:
                return await self.db(call, *args)
            except Exception:
                log.exception("the database refused %s; trying again", call.__name__)
                await asyncio.sleep(POLL_INTERVAL_S)

    async def run(self, claimed: Stored) -> None:
        self.running += 1
        submission: Submission | None = None
        try:
            submission = Submission.from_stored(claimed.request)
            if submission.language_id not in self.languages:
                judged = Judged(INTERNAL_ERROR, internal_error(
                    f"language {submission.language_id} is no longer installed"))
            else:
                runtime = self.languages.with_options(submission.language_id,
                                                      submission.compiler_options)
                judged = await judge(self.service, runtime, submission)
        except (ServiceBusy, ShuttingDown):
            # The service's line is full of other requests: the submission goes back to the
            # queue under this replica's name, to be taken again after a pause.
            await self.persist(self.store.release, claimed.token, self.replica)
            await asyncio.sleep(BUSY_BACKOFF_S)
            return
        except Exception as exc:
            log.exception("submission %s could not be read", claimed.token)
            judged = Judged(INTERNAL_ERROR, internal_error(f"internal error: {exc}"))
        finally:
            self.running -= 1
        finished = await self.persist(self.store.finish, claimed.token, self.replica,
                                      judged.status_id, judged.result, time.time())
        for future in self.finished.pop(claimed.token, []):
            if not future.done():
                future.set_result(None)
        if finished and submission is not None and submission.callback_url and self.callbacks.enabled:
            stored = (await self.get([claimed.token])).get(claimed.token)
            if stored is not None:
                task = asyncio.create_task(send_callback(
                    submission.callback_url, self.render_callback(stored), self.callbacks))
                self.sending.add(task)
                task.add_done_callback(self.sending.discard)

    # ---- housekeeping --------------------------------------------------------------------------

    async def keep_house(self) -> None:
        while True:
            await asyncio.sleep(self.liveness.interval_s)
            try:
                await self.db(self.store.heartbeat, self.replica, time.time())
                await self.housekeeping()
            except Exception:
                log.exception("submission housekeeping failed")

    async def housekeeping(self, seen_before: float | None = None) -> None:
        now = time.time()
        requeued, failed = await self.db(
            self.store.recover, self.replica,
            now - self.liveness.replica_timeout_s if seen_before is None else seen_before,
            MAX_ATTEMPTS, now,
            internal_error("the service running this submission stopped before it finished"))
        if requeued or failed:
            log.warning("submissions lost by a stopped service: %d queued again, %d failed",
                        requeued, len(failed))
            self.wake.set()
        await self.db(self.store.prune, self.retention.keep, now - self.retention.max_age_s)
