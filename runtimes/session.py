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
import struct
import time
from dataclasses import dataclass
from typing import Any

from sandbox import Jail, Limits, Outcome, Process, RunResult, Sandbox, Stream, WarmInterpreter

from .errors import RuntimesError
from .runtime import BASE_ENV, Runtime

# The longest frame the kernel sends: a reply with its result (1 MiB of JSON at most) and its
# images (8 MiB of base64 at most); anything longer is not the kernel's.
MAX_FRAME_BYTES = 16 << 20
FRAME_HEADER = struct.Struct(">cI")
# Output a cell may write past its cap and still end normally, truncated.
FLOOD_SLACK_BYTES = 4096
FRAME_TAGS = {b"o": Stream.STDOUT, b"e": Stream.STDERR, b"r": None}


@dataclass(frozen=True)
class CellResult:
    """One cell's outcome. `reset` says why the session's state was lost, if it was.
    `images`: the PNG images (base64) the cell displayed, returned or plotted, in order;
    `result_image`: which of them is the cell's result (then `result` is ""). `exit_code`: a
    shell command's."""

    ok: bool
    stdout: bytes
    stderr: bytes
    result: Any
    wall_time_s: float
    reset: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    images: tuple[str, ...] = ()
    result_image: int | None = None
    exit_code: int | None = None


class Frames:
    """Splits the kernel's stdout into its frames (see python_kernel.py); holds at most one
    incomplete frame. `bad` once something arrived that the kernel never sends."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.bad = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if self.bad:
            return []
        self.buffer += data
        frames = []
        while len(self.buffer) >= FRAME_HEADER.size:
            tag, length = FRAME_HEADER.unpack_from(self.buffer)
            if tag not in FRAME_TAGS or length > MAX_FRAME_BYTES:
                self.bad = True
                self.buffer.clear()
                break
            end = FRAME_HEADER.size + length
            if len(self.buffer) < end:
                break
            frames.append((tag, bytes(self.buffer[FRAME_HEADER.size:end])))
            del self.buffer[:end]
        return frames


class _Cell:
    """What the kernel has said so far about the running cell."""

    def __init__(self, max_output_bytes: int) -> None:
        self.cap = max_output_bytes
        self.buffers = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
        self.reply: dict[str, Any] | None = None
        self.finished = asyncio.Event()
        self.flooded = False
        self.garbled = False

    def output(self, stream: Stream, data: bytes) -> None:
        buffer = self.buffers[stream]
        # A little past the cap is truncated; far past it, the cell is flooding.
        room = self.cap + FLOOD_SLACK_BYTES + 1 - len(buffer)
        if room > 0:
            buffer += data[:room]
        if len(buffer) > self.cap + FLOOD_SLACK_BYTES:
            self.flooded = True
            self.finished.set()

    def replied(self, payload: bytes) -> None:
        """The kernel's reply. What the kernel would never write (not a JSON object, or a
        lone surrogate that could not be sent on as UTF-8) marks the kernel as garbled, and
        the session resets."""
        try:
            reply = json.loads(payload)
            json.dumps(reply, ensure_ascii=False).encode()
        except ValueError:  # UnicodeEncodeError is one
            reply = None
        if not isinstance(reply, dict):
            self.garbled = True
        else:
            self.reply = reply
        self.finished.set()

    def broken(self) -> None:
        self.garbled = True
        self.finished.set()


def _how(ended: asyncio.Task[RunResult]) -> str:
    """How a kernel that ended ended: its outcome, or that its launcher failed."""
    if ended.cancelled() or ended.exception() is not None:
        return "its launcher failed"
    return ended.result().outcome.value


class InterpreterSession:
    """A runtime's kernel in `jail`, with its files. Cells run one at a time. `warm`: the warm
    interpreter kernels are forked from (see `session_warm_interpreter`), None to start each
    afresh."""

    def __init__(self, sandbox: Sandbox, runtime: Runtime, jail: Jail, limits: Limits,
                 files_at: str | None, warm: WarmInterpreter | None = None) -> None:
        if runtime.session is None:
            raise RuntimesError(f"the {runtime.name} runtime has no session kernel")
        self.sandbox = sandbox
        self.runtime = runtime
        self.jail = jail
        self.limits = limits
        self.files_at = files_at
        self.warm = warm
        self.process: Process | None = None
        self.ended: asyncio.Task[RunResult] | None = None
        self.cell: _Cell | None = None
        self.frames = Frames()
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
        env = {name: value.format(workdir=self.jail.path)
               for name, value in {**BASE_ENV, **stage.env}.items()}
        if self.files_at:
            env["SESSION_FILES_AT"] = self.files_at
        self.process = await self.jail.start(argv, env, self.limits, self.runtime.read_paths,
                                             also_at=self.files_at, warm=self.warm,
                                             address_space=stage.address_space)
        await self.process.write_stdin(b"")
        self.idle_bytes = 0
        self.frames = Frames()
        # Each chunk goes to the waiting cell (or is counted and dropped between cells): none
        # is kept for the kernel's whole life.
        self.ended = asyncio.create_task(self.process.wait(self._on_output, keep_output=False))

    def _on_output(self, stream: Stream, data: bytes) -> None:
        if stream is Stream.STDERR:
            # Not framed: the kernel's own last words (an interpreter that failed to start).
            self._deliver(Stream.STDERR, data)
            return
        for tag, payload in self.frames.feed(data):
            target = FRAME_TAGS[tag]
            if target is not None:
                self._deliver(target, payload)
            elif self.cell is not None:
                self.cell.replied(payload)
            else:
                self._lose("the kernel replied with no cell running")
        if self.frames.bad:
            if self.cell is not None:
                self.cell.broken()
            else:
                self._lose("the kernel's output was unreadable")

    def _deliver(self, stream: Stream, data: bytes) -> None:
        if self.cell is not None:
            self.cell.output(stream, data)
            return
        # Nobody waits for it: dropped. A kernel that keeps printing would otherwise keep the
        # service reading (and, below it, buffering) without end.
        self.idle_bytes += len(data)
        if self.idle_bytes > self.idle_cap:
            self._lose(f"the kernel printed more than {self.idle_cap} bytes between cells")

    def _lose(self, why: str) -> None:
        if self.killing is None and self.lost is None:
            self.lost = why
            self.killing = asyncio.create_task(self._kill())

    async def _kill(self) -> None:
        if self.process is not None and self.ended is not None and not self.ended.done():
            await self.process.send_signal(9)

    async def run(self, code: str, timeout_s: float, max_output_bytes: int,
                  shell: bool = False) -> CellResult:
        """Runs one cell (`shell`: one shell command, in the session's shell state); the
        session's state carries over unless the result says `reset` (a cell that ran in a
        fresh kernel because the last one was lost between cells succeeds with `reset` saying
        why)."""
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
        cell = self.cell = _Cell(max_output_bytes)
        started = time.monotonic()
        request = {"shell": code} if shell else {"code": code}
        await self.process.write_stdin(json.dumps(request).encode() + b"\n")
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
                # Killed by its memory bound (no MemoryError to report: its address space is
                # not limited), it ran out of memory all the same.
                reset = ("the kernel ran out of memory" if result.outcome is Outcome.MEMORY_LIMIT
                         else f"the kernel ended ({result.outcome.value})")
            else:
                reset = f"the cell did not finish within {timeout_s:g} s"
        if reset is not None:
            await self._stop()
            return CellResult(False, stdout, stderr, "", wall, reset,
                              truncated[Stream.STDOUT], truncated[Stream.STDERR])
        reply = cell.reply or {}
        self.idle_bytes = 0
        images = reply.get("images") or []
        result_image = reply.get("result_image")
        exit_code = reply.get("exit_code")
        if not (isinstance(images, list) and all(isinstance(i, str) for i in images)):
            images = []
        if not (isinstance(result_image, int) and 0 <= result_image < len(images)):
            result_image = None
        return CellResult(bool(reply.get("ok")), stdout, stderr, reply.get("result", ""), wall,
                          lost, truncated[Stream.STDOUT], truncated[Stream.STDERR],
                          tuple(images), result_image,
                          exit_code if isinstance(exit_code, int) else None)

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
