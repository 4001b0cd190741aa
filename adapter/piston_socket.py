"""Piston's interactive WebSocket, `GET /api/v2/connect`.

The client sends `{"type":"init", …execute fields…}`, then `{"type":"data","stream":"stdin",
"data":"…"}` and `{"type":"signal","signal":"SIGINT"}`; the service sends `runtime`, `stage`,
`data` and `exit` messages and closes with 4999 when the job is done. Errors are an `error`
message and close code 4002; 4000 init twice, 4001 no init within 1 s, 4003 not yet
initialized, 4004 data for another stream than stdin, 4005 an unknown signal.

Two things Piston lacks: `{"type":"data","stream":"stdin","eof":true}` (with or without
`data`) ends the program's input, and signals reach the program (its whole process group).
Stdin sent before the run stage starts waits for it; signals before it are dropped. While
more than `STDIN_INBOX_BYTES` of stdin wait for the launcher to take them, no further message
is read from the client (TCP pushes back on it); a socket's stdin in all is bounded by
SANDBOX_MAX_SOCKET_STDIN_BYTES, past which the client gets an error and 4002.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import signal
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from runtimes import RunRequest, StageEvents
from sandbox import Process, RunResult, Stream

from .errors import ServiceError
from .piston import parse_job, render_stage
from .service import Service

log = logging.getLogger("adapter")

INIT_TIMEOUT_S = 1.0
# Stdin queued toward the run and not yet taken by the launcher, past which the client's next
# message waits: a program that never reads must not make the service hold what is sent.
STDIN_INBOX_BYTES = 1 << 20
JOB_COMPLETED = (4999, "Job Completed")
ALREADY_INITIALIZED = (4000, "Already Initialized")
INIT_TIMEOUT = (4001, "Initialization Timeout")
NOTIFIED_ERROR = (4002, "Notified Error")
NOT_INITIALIZED = (4003, "Not yet initialized")
STDIN_ONLY = (4004, "Can only write to stdin")
INVALID_SIGNAL = (4005, "Invalid signal")
SIGNALS = {s.name: int(s) for s in signal.Signals}


class _Closing(Exception):
    """Ends the conversation with a close code (after an optional error message)."""

    def __init__(self, close: tuple[int, str], error: str | None = None) -> None:
        super().__init__(close[1])
        self.close = close
        self.error = error


class _SocketEvents(StageEvents):
    """Turns stage events into messages, and the client's stdin and signals into actions."""

    def __init__(self, outbox: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.outbox = outbox
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        # Bytes of stdin in `inbox` or being written; `room` is set while they are few enough.
        self.pending_stdin = 0
        self.room = asyncio.Event()
        self.room.set()
        self.process: Process | None = None
        # Chunks may split a UTF-8 sequence: decode each stream incrementally.
        self.decoders: dict[Stream, codecs.IncrementalDecoder] = {}

    def started(self, stage: str) -> None:
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in Stream}
        self.outbox.put_nowait({"type": "stage", "stage": stage})

    def output(self, stage: str, stream: Stream, data: bytes) -> None:
        decoded = self.decoders[stream].decode(data)
        if decoded:
            self.outbox.put_nowait({"type": "data", "stream": stream.value, "data": decoded})

    def finished(self, stage: str, result: RunResult) -> None:
        for stream, decoder in self.decoders.items():
            if rest := decoder.decode(b"", final=True):
                self.outbox.put_nowait({"type": "data", "stream": stream.value, "data": rest})
        rendered = render_stage(result)
        self.outbox.put_nowait({"type": "exit", "stage": stage, "code": rendered["code"],
                                "signal": rendered["signal"], "status": rendered["status"],
                                "message": rendered["message"]})

    def queue_stdin(self, data: bytes) -> None:
        self.inbox.put_nowait(("stdin", data))
        self.pending_stdin += len(data)
        if self.pending_stdin > STDIN_INBOX_BYTES:
            self.room.clear()

    async def attach(self, process: Process) -> None:
        self.process = process
        while True:
            kind, value = await self.inbox.get()
            if kind == "stdin":
                # Returns once the launcher's pipe has taken it (write, then drain).
                await process.write_stdin(value)
                self.pending_stdin -= len(value)
                if self.pending_stdin <= STDIN_INBOX_BYTES:
                    self.room.set()
            elif kind == "eof":
                await process.close_stdin()
            elif kind == "signal":
                await process.send_signal(value)


class PistonSocket:
    """One client's conversation: at most one job, then the socket closes."""

    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.ws = websocket
        self.service = service
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.events = _SocketEvents(self.outbox)
        self.job_task: asyncio.Task[None] | None = None
        self.stdin_bytes = 0  # all the stdin this client sent

    async def serve(self) -> None:
        await self.ws.accept()
        sender = asyncio.create_task(self._send_all())
        close = JOB_COMPLETED
        try:
            close = await self._converse()
        except _Closing as closing:
            if closing.error is not None:
                await self.outbox.put({"type": "error", "message": closing.error})
            close = closing.close
        except WebSocketDisconnect:
            close = (1000, "")
        except ServiceError as exc:  # e.g. too many runs waiting
            await self.outbox.put({"type": "error", "message": exc.message})
            close = NOTIFIED_ERROR
        except Exception as exc:
            log.exception("the WebSocket job failed")
            await self.outbox.put({"type": "error", "message": f"internal error: {exc}"})
            close = NOTIFIED_ERROR
        finally:
            await self._stop_job()
            await self.outbox.put(None)
            with contextlib.suppress(Exception):
                await sender
            with contextlib.suppress(Exception):
                await self.ws.close(*close)

    async def _converse(self) -> tuple[int, str]:
        deadline = time.monotonic() + INIT_TIMEOUT_S
        receiver: asyncio.Task[str] | None = None
        while True:
            if receiver is None:
                await self._wait_for_room()
                receiver = asyncio.create_task(self._receive())
            waiting: set[asyncio.Future[Any]] = {receiver}
            if self.job_task is not None:
                waiting.add(self.job_task)
            timeout = None if self.job_task is not None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                receiver.cancel()
                raise _Closing(INIT_TIMEOUT)
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if self.job_task is not None and self.job_task in done:
                receiver.cancel()
                self.job_task.result()  # a failure of the service surfaces here
                return JOB_COMPLETED
            if receiver in done:
                raw = receiver.result()
                receiver = None
                await self._on_message(raw)

    async def _wait_for_room(self) -> None:
        """Backpressure: while the run has not taken enough of the stdin already queued, the
        next message is not read (unless the job ends meanwhile)."""
        if self.events.room.is_set() or self.job_task is None:
            return
        room = asyncio.ensure_future(self.events.room.wait())
        try:
            await asyncio.wait({room, self.job_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()

    def _queue_stdin(self, data: bytes) -> None:
        self.stdin_bytes += len(data)
        bound = self.service.settings.max_socket_stdin_bytes
        if self.stdin_bytes > bound:
            raise _Closing(NOTIFIED_ERROR, f"stdin exceeds {bound} bytes, the bound of one "
                                           "connection (SANDBOX_MAX_SOCKET_STDIN_BYTES)")
        self.events.queue_stdin(data)

    async def _receive(self) -> str:
        """The next message as text. A binary frame is read as UTF-8 too, as Piston's server
        parses either kind as JSON."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"").decode("utf-8", errors="replace")

    async def _on_message(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError as exc:
            raise _Closing(NOTIFIED_ERROR, f"the message is not valid JSON: {exc}") from None
        if not isinstance(message, dict):
            raise _Closing(NOTIFIED_ERROR, "a message must be a JSON object")
        kind = message.get("type")
        if kind == "init":
            if self.job_task is not None:
                raise _Closing(ALREADY_INITIALIZED)
            try:
                job = parse_job(message, self.service.runtimes.registry,
                                self.service.settings.ceilings())
            except ServiceError as exc:
                raise _Closing(NOTIFIED_ERROR, exc.message) from None
            await self.outbox.put({"type": "runtime", "language": job.runtime.name,
                                   "version": job.runtime.version})
            # Unlike execute, stdin arrives as the client types it: no newline is added.
            initial = message.get("stdin")
            if isinstance(initial, str) and initial:
                self._queue_stdin(initial.encode())
            self.job_task = asyncio.create_task(self._run(job))
        elif kind == "data":
            if self.job_task is None:
                raise _Closing(NOT_INITIALIZED)
            if message.get("stream") != "stdin":
                raise _Closing(STDIN_ONLY)
            data = message.get("data")
            if data is not None and not isinstance(data, str):
                raise _Closing(NOTIFIED_ERROR, "data must be a string")
            if data:
                self._queue_stdin(data.encode(errors="replace"))
            if message.get("eof") is True:
                self.events.inbox.put_nowait(("eof", None))
        elif kind == "signal":
            if self.job_task is None:
                raise _Closing(NOT_INITIALIZED)
            name = message.get("signal")
            number = SIGNALS.get(name) if isinstance(name, str) else None
            if number is None:
                raise _Closing(INVALID_SIGNAL)
            if self.events.process is not None:
                self.events.inbox.put_nowait(("signal", number))
        # Other types are ignored, as Piston ignores them.

    async def _run(self, job: RunRequest) -> None:
        # Its stdin comes over the socket, through `events`, not from the request.
        await self.service.execute(job, self.events)

    async def _stop_job(self) -> None:
        """The conversation ended: a job still running is killed, then waited for."""
        if self.job_task is None:
            return
        if not self.job_task.done():
            process = self.events.process
            if process is not None:
                await process.send_signal(signal.SIGKILL)
            else:
                self.job_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.job_task

    async def _send_all(self) -> None:
        while (message := await self.outbox.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(message, separators=(",", ":")))
            except (WebSocketDisconnect, RuntimeError):
                log.info("a WebSocket client left before its messages were sent")
                return
