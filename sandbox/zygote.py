"""A pre-started launcher that forks a ready launcher per run (see launcher/forkserver.py).

Starting a launcher interpreter costs every run ~20 ms; forking one that is already up costs
~1 ms. The forked launcher is the zygote's child, not ours: we talk to it through pipes we
created, watch it through a pidfd, and never wait for it (the zygote's kernel reaps it).
If the zygote dies it is started again, and runs meanwhile get a freshly started launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger("sandbox")
# A zygote that died is started again at most this often.
RESTART_INTERVAL_S = 1.0
# A zygote that has not answered a fork by then is taken for hung.
ANSWER_TIMEOUT_S = 5.0
# Its first answer comes only once it has imported what it preloads (a session kernels' warm
# interpreter: IPython, numpy, pandas, matplotlib, ~1.5 s, several times that under load): that
# one may take this many times longer.
FIRST_ANSWER_FACTOR = 6


class ForkedLauncher:
    """A launcher forked by the zygote, with the interface of asyncio.subprocess.Process that
    `process.Process` uses: stdin, stdout, stderr streams, kill(), wait(), returncode."""

    def __init__(self, pid: int, pidfd: int, stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._pidfd = pidfd

    def kill(self) -> None:
        # Through the pidfd: the pid may already belong to someone else once it was reaped.
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> int:
        """Until the launcher has exited (the pidfd turns readable); its status is the
        zygote's to reap, so the code is reported as 0."""
        if self.returncode is None:
            loop = asyncio.get_running_loop()
            exited = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(None)
            loop.add_reader(self._pidfd, on_exit)
            try:
                await exited
            finally:
                loop.remove_reader(self._pidfd)
                os.close(self._pidfd)
                with contextlib.suppress(Exception):
                    self.stdin.close()
            self.returncode = 0
        return self.returncode


async def _streams(stdin_w: int, stdout_r: int, stderr_r: int
                   ) -> tuple[asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamReader]:
    loop = asyncio.get_running_loop()
    readers = []
    for fd in (stdout_r, stderr_r):
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),  # type: ignore[misc]
                                     os.fdopen(fd, "rb", 0))
        readers.append(reader)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(stdin_w, "wb", 0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return writer, readers[0], readers[1]


class Zygote:
    """A zygote process (started as `argv` + the channel's descriptor, with `env`) and the
    channel to it."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 name: str = "launcher zygote") -> None:
        self._argv = list(argv)
        self._env = dict(env or {})
        self.name = name
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self.pid = 0
        self.starts = 0
        self._started_at = -math.inf
        self._answered = False

    def start(self) -> None:
        self._started_at = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The channel keeps its number in the child (pass_fds), which is told it. Its
            # standard streams are pipes, as a program's are (a warm interpreter's programs
            # inherit the objects Python made for them); what it says goes to our log.
            self._process = subprocess.Popen(
                [*self._argv, str(theirs.fileno())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env,
                start_new_session=True, close_fds=True, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        threading.Thread(target=self._log_output, args=(self._process,), daemon=True,
                         name=f"{self.name} output").start()
        ours.setblocking(False)
        self._channel = ours
        self.pid = self._process.pid
        self.starts += 1
        self._answered = False

    def _log_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.warning("%s %d: %s", self.name, process.pid,
                        line.decode(errors="backslashreplace").rstrip())
        process.stdout.close()

    def resident_bytes(self) -> int | None:
        """The zygote's resident memory now (its forks share these pages until they write to
        them), or None when it is not running."""
        if not self.alive:
            return None
        try:
            with open(f"/proc/{self.pid}/smaps_rollup", "rb") as rollup:
                for line in rollup:
                    if line.startswith(b"Rss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process = None

    async def fork(self) -> ForkedLauncher | None:
        """A ready launcher, or None when the zygote is not there (it is restarted)."""
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        theirs = (stdin_r, stdout_w, stderr_w)
        ours = (stdin_w, stdout_r, stderr_r)
        # The exchange runs to its end even if this task is cancelled: a request whose answer
        # went unread would leave every later answer one behind (each run would get, and in the
        # end kill, the launcher of the run before it).
        exchange = asyncio.ensure_future(self._exchange(theirs))
        try:
            pid = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            # The launcher forked for us gets no spec: closing our ends makes it exit.
            def close_ours(_done: object) -> None:
                for fd in ours:
                    os.close(fd)
            exchange.add_done_callback(close_ours)
            raise
        if pid is None:
            for fd in ours:
                os.close(fd)
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            for fd in ours:
                os.close(fd)
            return None
        stdin, stdout, stderr = await _streams(*ours)
        return ForkedLauncher(pid, pidfd, stdin, stdout, stderr)

    def _channel_lock(self) -> asyncio.Lock:
        """One request and its answer at a time on the channel. A lock belongs to one event
        loop; a sandbox may outlive a loop (asyncio.run after asyncio.run), so one per loop."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _exchange(self, theirs: tuple[int, int, int]) -> int | None:
        try:
            async with self._channel_lock():
                return await self._request(theirs)
        finally:
            for fd in theirs:
                os.close(fd)

    async def _request(self, fds: tuple[int, int, int]) -> int | None:
        if self._channel is None or self._process is None or self._process.poll() is not None:
            self._restart()
            return None
        timeout = ANSWER_TIMEOUT_S * (1 if self._answered else FIRST_ANSWER_FACTOR)
        try:
            socket.send_fds(self._channel, [b"F"], list(fds))
            answer = await asyncio.wait_for(self._answer(), timeout)
            self._answered = True
        except (OSError, ConnectionError, TimeoutError) as exc:
            # A stopped or hung zygote must not hold runs up: it is replaced (a late answer
            # goes to the closed channel), and this run starts its launcher itself.
            log.warning("the %s failed (%s); restarting it", self.name,
                        exc if not isinstance(exc, TimeoutError)
                        else f"no answer within {timeout:g} s")
            with contextlib.suppress(Exception):
                self.close()
            self._restart()
            return None
        pid: int = struct.unpack(">I", answer)[0]
        return pid or None  # 0: the zygote could not fork

    async def _answer(self) -> bytes:
        assert self._channel is not None
        loop = asyncio.get_running_loop()
        answer = b""
        while len(answer) < 4:
            chunk = await loop.sock_recv(self._channel, 4 - len(answer))
            if not chunk:
                raise ConnectionError("the zygote closed its channel")
            answer += chunk
        return answer

    def _restart(self) -> None:
        if self.starts >= 2 and time.monotonic() - self._started_at < RESTART_INTERVAL_S:
            # A restarted one that died at once again (a broken interpreter, a bad preload) is
            # not started for every run: runs start fresh meanwhile.
            return
        with contextlib.suppress(Exception):
            self.close()
        try:
            self.start()
        except OSError as exc:
            log.error("the %s could not be started: %s", self.name, exc)

