"""Serving the app under uvicorn so that no client can wedge the service by what it holds open.

uvicorn's h11 protocol times out only idle keep-alive connections: a client that sends half a
request head, or half a body, holds its descriptor for ever, and enough of them exhaust
RLIMIT_NOFILE, after which accept() fails and asyncio logs a traceback for each attempt. Here:

- a request head must be complete within `http_head_timeout_s` of the connection being ready
  for one (the first byte included), and a body may pause at most `http_body_idle_timeout_s`;
  either way the connection is closed;
- at most `max_connections` connections are open at once: one past it gets a 503 and is closed
  before anything of it is read;
- the soft RLIMIT_NOFILE is raised to the hard limit, and the connection bound lowered to what
  that leaves beside the descriptors runs and sessions need;
- accept errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) are logged at most once a second, with a count
  of those left out, instead of a traceback each.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings

log = logging.getLogger("adapter.server")

# Descriptors kept out of the connection bound for the service's own use: pipes and pidfds of
# runs, session kernels, zygotes, the compile cache, logs.
RESERVED_FDS = 1024
# What asyncio reports when accept() fails for want of a resource; the listener is retried a
# second later (asyncio's ACCEPT_RETRY_DELAY), so the service comes back once descriptors free.
ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                 b"retry-after: 1\r\nconnection: close\r\ncontent-length: 20\r\n\r\n"
                 b"too many connections")
LOG_INTERVAL_S = 1.0
# Shorter than asyncio's retry delay (1 s), so that each retry really tries.
ACCEPT_QUIET_S = 0.5


class RateLimitedLog:
    """Logs an event at most once per `interval_s`; occurrences in between are counted and the
    count goes out with the next line (`"suppressed": 41`)."""

    def __init__(self, event: str, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.event = event
        self.interval_s = interval_s
        self.clock = clock
        self.last = -float("inf")
        self.suppressed = 0

    def note(self, level: int = logging.WARNING, **fields: object) -> None:
        now = self.clock()
        if now - self.last < self.interval_s:
            self.suppressed += 1
            return
        self.last = now
        log.log(level, self.event,
                extra={"event": self.event, **fields, "suppressed": self.suppressed})
        self.suppressed = 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request heads, an idle bound for bodies and
    a bound on open connections. `guarded_protocol` makes a subclass with the figures set."""

    head_timeout_s = 10.0
    body_idle_timeout_s = 30.0
    max_connections = 4096
    timeouts = RateLimitedLog("http_timeout")
    rejections = RateLimitedLog("http_too_many_connections")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self._upgraded = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Refused at once: its descriptor is free again before a client can pile up more.
            self.rejections.note(connections=len(self.connections) - 1,
                                 max_connections=self.max_connections)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The WebSocket protocol takes the transport over and keeps it alive with its pings;
        # the request's h11 state stays as it was (a body pending), so nothing may be armed.
        self._upgraded = True
        self._cancel_timers()
        super().handle_websocket_upgrade(event)

    def _watch(self) -> None:
        """Arms the timer that the request's state calls for: a head deadline while waiting
        for a request (not moved by data, so a byte at a time cannot hold it open), a body idle
        timer while its body arrives, none while the app answers."""
        if self._upgraded or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self._cancel_body_timer()
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)
        elif state is h11.SEND_BODY:
            self._cancel_head_timer()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_idle_timeout_s,
                                                        self._body_expired)
        else:
            self._cancel_timers()

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.timeouts.note(level=logging.INFO, part="head", timeout_s=self.head_timeout_s)
            self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_data
        # Not the client's pause: reading is paused while the app has not taken what came, and
        # a client that sent `Expect: 100-continue` waits until the app asks for the body.
        waiting_for_us = self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue)
        if waiting_for_us or idle < self.body_idle_timeout_s:
            delay = self.body_idle_timeout_s - idle if not waiting_for_us else \
                self.body_idle_timeout_s
            self._body_timer = self.loop.call_later(max(delay, 0.01), self._body_expired)
            return
        self.timeouts.note(level=logging.INFO, part="body", timeout_s=self.body_idle_timeout_s)
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def guarded_protocol(head_timeout_s: float, body_idle_timeout_s: float,
                     max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn is given as `http=`: it builds instances itself, so the
    figures travel as class attributes."""
    return type("ServiceH11Protocol", (GuardedH11Protocol,), {
        "head_timeout_s": head_timeout_s, "body_idle_timeout_s": body_idle_timeout_s,
        "max_connections": max_connections,
        "timeouts": RateLimitedLog("http_timeout"),
        "rejections": RateLimitedLog("http_too_many_connections"),
    })


def raise_open_files_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit (which needs no privilege) and returns
    the soft limit now in force. Runs get their own, lower limit from the launcher."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # a container may forbid it; the bound below adapts to the old limit
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_bound(max_connections: int, open_files: int) -> int:
    """`max_connections`, lowered so that connections leave descriptors to the service:
    `RESERVED_FDS` of them, or half the limit where it is small."""
    if open_files == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, max(open_files - RESERVED_FDS, open_files // 2)))


class Listener(socket.socket):
    """A listening socket whose accept() fails at most once per retry of asyncio's.

    On EMFILE asyncio (3.11) pauses the listener and schedules a retry a second later, but
    goes on calling accept() up to `backlog` times in the same wake-up, scheduling one more
    retry for each failure: thousands of timers, each of which logs a traceback at shutdown.
    After one failure, the rest of that batch reads here as "nothing waiting"."""

    quiet_until = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self.quiet_until:
            raise BlockingIOError(errno.EAGAIN, "accept paused after running out of resources")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in ACCEPT_ERRNOS:
                self.quiet_until = time.monotonic() + ACCEPT_QUIET_S
            raise


def listen(config: uvicorn.Config) -> Listener:
    """uvicorn's bound socket, as a `Listener` that runs do not inherit."""
    bound = config.bind_socket()
    listener = Listener(bound.family, bound.type, bound.proto, fileno=bound.detach())
    listener.set_inheritable(False)
    return listener


class GuardedServer(uvicorn.Server):
    """uvicorn's server with accept errors logged at a bounded rate."""

    accept_errors = RateLimitedLog("accept_failed")

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self._on_loop_exception)
        await super().startup(sockets)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop,
                           context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # asyncio retries a failed accept() up to `backlog` times per wake-up and reports each
        # with a traceback: tens of MB a second while descriptors are exhausted.
        if "socket" in context and isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS:
            self.accept_errors.note(error=str(exc))
            return
        loop.default_exception_handler(context)


def serve(app: ASGIApp, settings: Settings) -> bool:
    """Serves `app` until stopped; False if the server never started."""
    open_files = raise_open_files_limit()
    bound = connection_bound(settings.max_connections, open_files)
    log.info("http", extra={"event": "http", "open_files_limit": open_files,
                            "max_connections": bound,
                            "http_head_timeout_s": settings.http_head_timeout_s,
                            "http_body_idle_timeout_s": settings.http_body_idle_timeout_s})
    protocol = guarded_protocol(settings.http_head_timeout_s, settings.http_body_idle_timeout_s,
                                bound)
    # log_config=None: uvicorn's own lines go through the root handler, as JSON like ours.
    # limit_concurrency stays off: it answers 503 only once a request head has arrived, which
    # is what the connection bound above does sooner.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, http=protocol,
                            access_log=False, log_config=None, log_level=settings.log_level,
                            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s))
    server = GuardedServer(config)
    server.run(sockets=[listen(config)])
    return server.started
