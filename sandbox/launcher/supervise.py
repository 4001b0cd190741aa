"""Supervision: one run from its spec to its result, watching the program as it goes.

`serve_one_run` is a launcher's life: it reads the SPEC frame, forks the program (confined by
`confine.confine_and_exec`), feeds it stdin, relays its output, keeps the wall clock, the
whole tree's CPU time, memory and disk, and when the run ends kills and reaps everything it
started, then answers with one RESULT frame. (Longer than the other modules: `Supervisor` is
one poll loop over the state its handlers share; split, they would pass that state around.)
"""

from __future__ import annotations

import _signal as signal
import errno
import marshal
import math
import os
import resource
import select
import time

from . import libc as clib
from . import measure
from .confine import OOM_SCORE_ADJ_RUN, confine_and_exec, cpu_rlimit_s, write_text
from .protocol import (
    CHUNK_BYTES,
    CLOSE_STDIN,
    RESULT,
    SIGNAL,
    STDERR,
    STDIN,
    STDOUT,
    FrameReader,
    read_spec,
    write_frame,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

CPU_CHECK_INTERVAL_S = 0.05
# While this much stdin waits for the program, the control pipe is not read: the service's
# writes then block, so stdin a program never reads cannot pile up here.
STDIN_HELD_BYTES = 1 << 20
DRAIN_TIMEOUT_S = 1.0


def serve_one_run(prctl: Any) -> None:
    # If memory runs out, the kernel's OOM killer takes a run and its launcher before the
    # service and the zygotes, which keep their scores. Not dumpable (from the zygote), an
    # unprivileged launcher's /proc files are root's: it keeps the zygote's score then, and
    # its program raises its own.
    try:
        write_text("/proc/self/oom_score_adj", OOM_SCORE_ADJ_RUN)
    except PermissionError:
        pass
    # When runs share our uid, the program must not ptrace us or read our memory through /proc.
    prctl.set_dumpable(False)
    # Orphans of the run re-parent to us, so none escapes the final kill loop.
    prctl.set_child_subreaper(True)
    # If our parent (the service, or the zygote) dies, so do we (and, through their own
    # pdeathsig, the programs).
    prctl.set_pdeathsig(signal.SIGKILL)
    reader = FrameReader()
    spec, pending = read_spec(reader)
    supervisor = Supervisor(spec, prctl, reader, pending)
    try:
        result = supervisor.run()
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the service went away; nobody to answer
            return
        raise
    write_frame(RESULT, marshal.dumps(result))


class Supervisor:
    """Runs one confined program and watches its wall clock, CPU, output and process tree."""

    def __init__(self, spec: dict[str, Any], prctl: Any, reader: FrameReader,
                 pending: list[tuple[bytes, bytes]]):
        self.spec = spec
        self.prctl = prctl
        self.limits = spec["limits"]
        self.pending_frames = pending
        self.reader = reader
        self.stdin_buffer = bytearray()
        self.stdin_watched = False
        self.stdin_close_requested = False
        self.captured = {STDOUT: 0, STDERR: 0}
        self.truncated = {STDOUT: False, STDERR: False}
        self.reason: str | None = None
        self.main_pid = 0
        self.main_status: int | None = None
        self.main_rusage: Any = None
        self.helper_cpu_s = 0.0
        self.control_open = True
        self.control_watched = True
        self.deadline = math.inf
        # The run's memory bound: the kernel's, through the run's cgroup, or else ours, by
        # measuring the whole tree's own pages at every CPU check.
        self.cgroup: dict[str, Any] | None = spec.get("cgroup")
        self.memory_watchdog = bool(spec.get("memory_watchdog"))
        self.tree_peak_bytes = 0

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        stdin_r, self.stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC)
        started = time.monotonic()
        spec = self.spec
        libc = clib.load() if spec.get("landlock") or spec.get("seccomp") or spec.get("netns") \
            or spec.get("binds") else None
        pid = os.fork()
        if pid == 0:
            confine_and_exec(self.spec, self.prctl, libc, os.getppid(), stdin_r, out_w, err_w,
                             errpipe_w)
        self.main_pid = pid
        for fd in (stdin_r, out_w, err_w, errpipe_w):
            os.close(fd)
        exec_error = self._read_all(errpipe_r)
        if exec_error:
            self._kill_tree()
            return {"error": "could not start the program: " + exec_error.decode(errors="replace")}

        self.streams = {out_r: STDOUT, err_r: STDERR}
        for fd in (self.stdin_w, out_r, err_r, 0):
            os.set_blocking(fd, False)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(out_r, select.POLLIN)
        poller.register(err_r, select.POLLIN)
        poller.register(0, select.POLLIN)
        self.poller = poller
        for kind, payload in self.pending_frames:
            self._on_control(kind, payload)
        self._update_stdin_interest()

        deadline = self.deadline = started + float(self.limits["wall_timeout_s"])
        next_cpu_check = started + CPU_CHECK_INTERVAL_S
        disk = self.spec.get("disk")
        next_disk_check = started + CPU_CHECK_INTERVAL_S if disk and disk["watchdog"] else math.inf
        while self.main_status is None and self.reason is None:
            now = time.monotonic()
            if now >= deadline:
                self.reason = "wall_timeout"
                break
            if now >= next_cpu_check:
                self._reap(block=False)
                tree = measure.descendants()
                if measure.tree_cpu_s(tree) > float(self.limits["cpu_time_s"]):
                    self.reason = "cpu_limit"
                    break
                if self._over_memory(tree):
                    self.reason = "memory_limit"
                    break
                next_cpu_check = now + CPU_CHECK_INTERVAL_S
            if disk and now >= next_disk_check:
                if measure.exceeds_disk(self.spec["cwd"], disk["bytes"], disk["files"]):
                    self.reason = "disk_limit"
                    break
                # Walking a large tree costs time: never spend more than a tenth of it walking.
                spent = time.monotonic() - now
                next_disk_check = time.monotonic() + max(CPU_CHECK_INTERVAL_S, 10 * spent)
            timeout_ms = max(0, math.ceil((min(deadline, next_cpu_check) - now) * 1000))
            for fd, _events in poller.poll(timeout_ms):
                if fd == pidfd:
                    self._reap(block=False)
                elif fd in self.streams:
                    self._read_stream(fd)
                elif fd == self.stdin_w:
                    self._write_stdin()
                elif fd == 0:
                    self._read_control()
                if self.reason is not None:
                    break
        ended = time.monotonic()
        # When the main process ends, times out or floods output, everything it started goes.
        self._kill_tree()
        self._drain()
        return self._result(ended - started)

    # -- I/O ------------------------------------------------------------------------------------

    def _read_all(self, fd: int) -> bytes:
        chunks = []
        while chunk := os.read(fd, CHUNK_BYTES):
            chunks.append(chunk)
        os.close(fd)
        return b"".join(chunks)

    def _read_stream(self, fd: int) -> bool:
        """Reads one chunk; False once the stream reached end of file."""
        try:
            data = os.read(fd, CHUNK_BYTES)
        except BlockingIOError:
            return True
        if not data:
            self.poller.unregister(fd)
            del self.streams[fd]
            os.close(fd)
            return False
        kind = self.streams[fd]
        room = int(self.limits["max_output_bytes"]) - self.captured[kind]
        if len(data) > room:
            # Keep exactly the cap, then stop the run: a flood would otherwise last until timeout.
            data = data[:max(room, 0)]
            self.truncated[kind] = True
            if self.reason is None:
                self.reason = "output_limit"
        if data:
            self.captured[kind] += len(data)
            if not write_frame(kind, data, self.deadline) and self.reason is None:
                # The service did not take our output before the wall clock ran out.
                self.reason = "wall_timeout"
        return True

    def _drain(self) -> None:
        """Reads what the dead run left in its pipes (bytes past a cap are dropped)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.streams and time.monotonic() < deadline:
            for fd, _events in self.poller.poll(50):
                if fd in self.streams:
                    self._read_stream(fd)

    def _read_control(self) -> None:
        try:
            data = os.read(0, CHUNK_BYTES)
        except BlockingIOError:
            return
        if not data:
            # The service closed its end: nothing more will come; the run goes on to its limits.
            self.control_open = False
            self._watch_control(False)
            return
        for kind, payload in self.reader.feed(data):
            self._on_control(kind, payload)
        self._update_stdin_interest()

    def _on_control(self, kind: bytes, payload: bytes) -> None:
        if kind == STDIN:
            if self.stdin_w >= 0:
                self.stdin_buffer += payload
        elif kind == CLOSE_STDIN:
            self.stdin_close_requested = True
        elif kind == SIGNAL:
            try:
                os.killpg(self.main_pid, int(payload))
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    def _watch_control(self, watch: bool) -> None:
        watch = watch and self.control_open
        if watch and not self.control_watched:
            self.poller.register(0, select.POLLIN)
        elif not watch and self.control_watched:
            self.poller.unregister(0)
        self.control_watched = watch

    def _update_stdin_interest(self) -> None:
        # Backpressure: while the program holds this much unread input, the service's next
        # frames wait in the pipe (and its writes block) instead of growing our buffer.
        self._watch_control(len(self.stdin_buffer) < STDIN_HELD_BYTES)
        if self.stdin_w < 0:
            return
        if self.stdin_buffer:
            self._watch_stdin(True)
            self._write_stdin()
        elif self.stdin_close_requested:
            self._close_stdin()

    def _watch_stdin(self, watch: bool) -> None:
        """Polls the program's stdin for room only while there is something to write. One poll()
        batch may still hold a POLLOUT event for it after we stopped watching."""
        if watch and not self.stdin_watched:
            self.poller.register(self.stdin_w, select.POLLOUT)
        elif not watch and self.stdin_watched:
            self.poller.unregister(self.stdin_w)
        self.stdin_watched = watch

    def _write_stdin(self) -> None:
        """Writes what the pipe takes now; a program that never reads stdin cannot block us."""
        if self.stdin_w < 0 or not self.stdin_buffer:
            return
        try:
            written = os.write(self.stdin_w, self.stdin_buffer[:CHUNK_BYTES])
            del self.stdin_buffer[:written]
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            self.stdin_buffer.clear()
            self._close_stdin()
            self._watch_control(True)
            return
        if len(self.stdin_buffer) < STDIN_HELD_BYTES:
            self._watch_control(True)
        if not self.stdin_buffer:
            self._watch_stdin(False)
            if self.stdin_close_requested:
                self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_w >= 0:
            self._watch_stdin(False)
            os.close(self.stdin_w)
            self.stdin_w = -1
        # Input for a closed stdin is dropped as it comes: nothing holds the service back.
        self.stdin_buffer.clear()

    # -- processes ------------------------------------------------------------------------------

    def _reap(self, block: bool) -> bool:
        """Reaps every exited child; False once no child is left."""
        while True:
            try:
                pid, status, rusage = os.wait4(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.main_pid:
                self.main_status, self.main_rusage = status, rusage

    def _over_memory(self, tree: list[int]) -> bool:
        """Whether the run passed its memory bound: the kernel killed inside its cgroup, or
        (without one) its processes' own pages together exceed the limit."""
        if self.cgroup is not None:
            return measure.oom_kills(self.cgroup) > 0
        if not self.memory_watchdog:
            return False
        total = sum(measure.private_bytes(pid) for pid in tree)
        self.tree_peak_bytes = max(self.tree_peak_bytes, total)
        return total > int(self.limits["memory_bytes"])

    def _kill_tree(self) -> None:
        """Kills and reaps everything the run started, until no child of ours is left. We are a
        subreaper, so orphans of the run re-parent to us and cannot slip out of this loop."""
        uid = self.spec.get("uid")
        if uid is not None and (self.main_status is None or self._reap(block=False)):
            # One kill(-1, SIGKILL) as the run's uid reaches every process of the run at once,
            # double-forked setsid escapees included, and nothing else. Not needed (and a
            # fork saved) once the main process is reaped and the kernel says we have no
            # child left (ECHILD): every process of the run descends from us (orphans
            # re-parent to us, the subreaper), so without a child there is no one left.
            rusage = fork_as_uid(uid, self.spec["gid"], lambda: os.kill(-1, signal.SIGKILL))
            self.helper_cpu_s += rusage.ru_utime + rusage.ru_stime
        try:
            os.killpg(self.main_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        while True:
            for pid in measure.descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if not self._reap(block=False):
                return
            time.sleep(0.001)

    # -- the result -----------------------------------------------------------------------------

    def _result(self, wall_s: float) -> dict[str, Any]:
        if self.main_status is None:  # _kill_tree reaps the main process in every case
            raise SystemExit("launcher: the main process was not reaped")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = max(0.0, usage.ru_utime + usage.ru_stime - self.helper_cpu_s)
        main_cpu_s = self.main_rusage.ru_utime + self.main_rusage.ru_stime
        status = self.main_status
        exit_code = os.waitstatus_to_exitcode(status)
        code = exit_code if exit_code >= 0 else None
        sig = -exit_code if exit_code < 0 else None
        outcome = self.reason
        if outcome is None:
            # The kernel kills at RLIMIT_CPU, measured by its tick sampling: rusage may read a
            # little less (1.76 s was seen for a 2 s limit with four threads).
            if sig == signal.SIGXCPU or (
                sig == signal.SIGKILL and main_cpu_s >= 0.8 * cpu_rlimit_s(self.limits)
            ):
                outcome = "cpu_limit"
            elif self.cgroup is not None and measure.oom_kills(self.cgroup) > 0:
                # The kernel killed a process of the run at the run's memory bound: the run
                # failed for memory, however the main process ended after that.
                outcome = "memory_limit"
            elif sig == signal.SIGXFSZ:
                outcome = "file_size_limit"
            elif sig is not None:
                outcome = "signaled"
            elif code != 0:
                outcome = "nonzero_exit"
            else:
                outcome = "ok"
            disk = self.spec.get("disk")
            if outcome in ("signaled", "nonzero_exit") and disk and measure.is_full(self.spec["cwd"]):
                # The program failed on a full working directory (ENOSPC from its tmpfs).
                outcome = "disk_limit"
            elif disk and disk["watchdog"] and measure.exceeds_disk(self.spec["cwd"], disk["bytes"],
                                                             disk["files"]):
                # It passed the bound between two looks of the watchdog and ended before the
                # next: over the bound is over the bound, however fast it was.
                outcome = "disk_limit"
        return {
            "outcome": outcome,
            "exit_code": code,
            "signal": sig,
            "wall_time_s": wall_s,
            "cpu_time_s": cpu_s,
            "memory_bytes": self._peak_bytes(),
            "stdout_truncated": self.truncated[STDOUT],
            "stderr_truncated": self.truncated[STDERR],
        }

    def _peak_bytes(self) -> int:
        """The run's peak resident memory: its cgroup's, else the most its tree was seen to
        hold together, else (a run too short to be seen) the main process's own peak."""
        if self.cgroup is not None:
            try:
                with open(self.cgroup["peak"], "rb") as f:
                    return int(f.read())
            except (OSError, ValueError):
                pass
        return self.tree_peak_bytes or self.main_rusage.ru_maxrss * 1024


def fork_as_uid(uid: int, gid: int, action: Any) -> Any:
    """Runs `action` in a forked helper switched to uid/gid; returns the helper's rusage.
    Raises OSError when the helper failed."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            action()
        except BaseException:  # noqa: BLE001
            os._exit(1)
        os._exit(0)
    _pid, status, rusage = os.wait4(helper, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"could not act as uid {uid}")
    return rusage
