"""A stateful session: one long-lived kernel process in one jail, running cell after cell.

The jail (and the files in it) lives as long as the session; the kernel is started on the first
cell and again after a reset. A cell that times out, floods its output or kills the kernel
(memory) resets the session's state: the kernel is killed, the next cell starts a fresh one, the
files stay. Output is kept only while a cell waits for it and only up to the cell's cap; a
kernel that prints more than that between cells (a thread the cell left running) is killed
there and then, and the next cell says the state was reset. See python_kernel.py for the
kernel's side of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sandbox import Jail, Limits, Process, RunResult, Sandbox, Stream

from .errors import RuntimesError
from .execution import BASE_ENV
from .runtime import Runtime

MARK_BYTES = 16


@dataclass(frozen=True)
class CellResult:
    """One cell's outcome. `reset` says why the session's state was lost, if it was."""

    ok: bool
    stdout: bytes
    stderr: bytes
    result: Any
    wall_time_s: float
    reset: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class _Cell:
    """What the kernel has said so far about the running cell."""

    def __init__(self, mark: bytes, max_output_bytes: int) -> None:
        self.mark = mark
        self.cap = max_output_bytes
        self.buffers = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
        self.done = {Stream.STDOUT: False, Stream.STDERR: False}
        self.reply: dict[str, Any] | None = None
        self.finished = asyncio.Event()
        self.flooded = False
        self.garbled = False

    def feed(self, stream: Stream, data: bytes) -> None:
        if self.done[stream]:
            return  # a child the cell left behind, writing after the cell ended
        buffer = self.buffers[stream]
        buffer += data
        at = buffer.find(self.mark)
        if at >= 0:
            end = buffer.find(b"\n", at)
            if end < 0:
                return  # the rest of the marker's line is still coming
            if stream is Stream.STDOUT:
                self.reply = self._reply(bytes(buffer[at + len(self.mark):end]))
            del buffer[at:]
            self.done[stream] = True
            if all(self.done.values()):
                self.finished.set()
        elif len(buffer) > self.cap + len(self.mark) + 4096:
            self.flooded = True
            self.finished.set()

    def _reply(self, line: bytes) -> dict[str, Any] | None:
        """The kernel's reply after the marker. Only the kernel knows the marker, but where
        nothing keeps a cell from reading its own /proc/self/environ a cell could forge one:
        what the kernel would never write (not JSON, or a lone surrogate that could not be sent
        on as UTF-8) marks the kernel as garbled, and the session resets."""
        try:
            reply = json.loads(line)
            json.dumps(reply, ensure_ascii=False).encode()
        except ValueError:  # UnicodeEncodeError is one
            reply = None
        if not isinstance(reply, dict):
            self.garbled = True
            return None
        return reply


def _how(ended: asyncio.Task[RunResult]) -> str:
    """How a kernel that ended ended: its outcome, or that its launcher failed."""
    if ended.cancelled() or ended.exception() is not None:
        return "its launcher failed"
    return ended.result().outcome.value


class InterpreterSession:
    """A runtime's kernel in `jail`, with its files. Cells run one at a time."""

    def __init__(self, sandbox: Sandbox, runtime: Runtime, jail: Jail, limits: Limits,
                 files_at: str | None) -> None:
        if runtime.session is None:
            raise RuntimesError(f"the {runtime.name} runtime has no session kernel")
        self.sandbox = sandbox
        self.runtime = runtime
        self.jail = jail
        self.limits = limits
        self.files_at = files_at
        self.process: Process | None = None
        self.ended: asyncio.Task[RunResult] | None = None
        self.cell: _Cell | None = None
        self.mark = b""
        # Output between cells: counted, never kept, and past `idle_cap` the kernel is killed.
        self.idle_bytes = 0
        self.idle_cap = 0
        self.killing: asyncio.Task[None] | None = None
        # Why the kernel was lost between cells, for the next cell to say.
        self.lost: str | None = None

    async def _start(self) -> None:
        stage = self.runtime.session
        assert stage is not None
        values = {**self.runtime.executables, "workdir": str(self.jail.path),
                  "kernel": stage.kernel}
        argv = [arg.format(**values) for arg in stage.argv]
        # Control characters a program rarely prints, and no NUL: it travels in the environment.
        self.mark = b"\x1e" + secrets.token_hex(MARK_BYTES).encode() + b"\x1f"
        env = {name: value.format(workdir=self.jail.path)
               for name, value in {**BASE_ENV, **stage.env}.items()}
        env["SESSION_MARK"] = self.mark.decode()
        if self.files_at:
            env["SESSION_FILES_AT"] = self.files_at
        self.process = await self.jail.start(argv, env, self.limits, self.runtime.read_paths,
                                             also_at=self.files_at)
        await self.process.write_stdin(b"")
        self.idle_bytes = 0
        # Each chunk goes to the waiting cell (or is counted and dropped between cells): none
        # is kept for the kernel's whole life.
        self.ended = asyncio.create_task(self.process.wait(self._on_output, keep_output=False))

    def _on_output(self, stream: Stream, data: bytes) -> None:
        if self.cell is not None:
            self.cell.feed(stream, data)
            return
        # Nobody waits for it: dropped. A kernel that keeps printing would otherwise keep the
        # service reading (and, below it, buffering) without end.
        self.idle_bytes += len(data)
        if self.idle_bytes > self.idle_cap and self.killing is None and self.lost is None:
            self.lost = f"the kernel printed more than {self.idle_cap} bytes between cells"
            self.killing = asyncio.create_task(self._kill())

    async def _kill(self) -> None:
        if self.process is not None and self.ended is not None and not self.ended.done():
            await self.process.send_signal(9)

    async def run(self, code: str, timeout_s: float, max_output_bytes: int) -> CellResult:
        """Runs one cell; the session's state carries over unless the result says `reset` (a
        cell that ran in a fresh kernel because the last one was lost between cells succeeds
        with `reset` saying why)."""
        lost = None
        if self.process is not None and self.ended is not None and (
                self.ended.done() or self.killing is not None):
            # Lost between cells: killed for its output, or it ended by itself.
            lost = self.lost
            if lost is None and self.ended.done():
                lost = f"the kernel ended between cells ({_how(self.ended)})"
            await self._stop()
        if self.process is None or self.ended is None:
            await self._start()
        assert self.process is not None and self.ended is not None
        self.idle_cap = max_output_bytes
        cell = self.cell = _Cell(self.mark, max_output_bytes)
        started = time.monotonic()
        await self.process.write_stdin(json.dumps({"code": code}).encode() + b"\n")
        finished = asyncio.create_task(cell.finished.wait())
        try:
            await asyncio.wait({finished, self.ended}, timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
        wall = time.monotonic() - started
        self.cell = None
        stdout, stderr = (bytes(cell.buffers[s][:max_output_bytes]) for s in Stream)
        truncated = {s: len(cell.buffers[s]) > max_output_bytes for s in Stream}
        reset = None
        if cell.flooded:
            reset = f"the cell printed more than {max_output_bytes} bytes"
        elif cell.garbled:
            reset = "the kernel's reply was unreadable"
        elif cell.finished.is_set() and cell.reply is not None and cell.reply.get("fatal"):
            reset = "the kernel ran out of memory"
        elif not cell.finished.is_set():
            if self.ended.done():
                result = self.ended.result()
                reset = f"the kernel ended ({result.outcome.value})"
            else:
                reset = f"the cell did not finish within {timeout_s:g} s"
        if reset is not None:
            await self._stop()
            return CellResult(False, stdout, stderr, "", wall, reset,
                              truncated[Stream.STDOUT], truncated[Stream.STDERR])
        reply = cell.reply or {}
        self.idle_bytes = 0
        return CellResult(bool(reply.get("ok")), stdout, stderr, reply.get("result", ""), wall,
                          lost, truncated[Stream.STDOUT], truncated[Stream.STDERR])

    async def _stop(self) -> None:
        """Kills the kernel and everything it started; the jail and its files stay."""
        if self.killing is not None:
            with contextlib.suppress(Exception):
                await self.killing
        if self.process is not None and self.ended is not None:
            if not self.ended.done():
                await self.process.send_signal(9)
            with contextlib.suppress(Exception):
                await self.ended
        self.process = self.ended = self.killing = None
        self.lost = None

    async def close(self) -> None:
        await self._stop()
        # A kernel may have lost its launcher (killed with everything it ran, or not): the uid
        # is released only after a search for processes left under it.
        self.jail.clean = False
