"""The per-run launcher: confines one program between fork and execve, then supervises it.

`sandbox.process` starts it as ``python -I -S -B launcher.py SITE_DIR`` with an empty environment.
It is a process of its own because confinement (uid switch, rlimits, no-new-privs) must run between
fork and execve, which is unsafe inside the threaded asyncio service (no `preexec_fn` there). It is
single-threaded and stdlib-only apart from `prctl`, which it imports from SITE_DIR.

The service and the launcher speak length-prefixed frames (`encode_frame`): on the launcher's stdin
one SPEC frame (a marshalled dict), then STDIN data, CLOSE_STDIN and SIGNAL frames; on its
stdout STDOUT and STDERR chunks in arrival order, then one RESULT frame (a marshalled dict).
The launcher's stderr carries only its own diagnostics.
"""

from __future__ import annotations

import sys

# What a fresh interpreter holds when it starts a script, before the script imports anything.
# A warm interpreter (see `_serve_warm`) gives each program these modules (plus the ones it
# preloaded) and this path (with the program's folder for the launcher's in front).
_MODULES_AT_START = frozenset(sys.modules) - {"__future__"}  # imported by the line above
_PATH_AT_START = tuple(sys.path)

# Every run pays for this process's start, so its imports are the cheapest that do the job:
# marshal instead of json (which pulls in re), _signal instead of signal (which pulls in enum),
# typing only for the type checker. The spec and result are plain dicts from a trusted peer.
import _signal as signal
import errno
import marshal
import math
import os
import resource
import select
import struct
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">cI")
# service → launcher
SPEC, STDIN, CLOSE_STDIN, SIGNAL = b"S", b"I", b"C", b"K"
# launcher → service
STDOUT, STDERR, RESULT = b"O", b"E", b"R"

# x86_64 syscall numbers (the seccomp filter refuses every other ABI).
SYS_SECCOMP = 317
SYS_UNSHARE = 272
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
SECCOMP_SET_MODE_FILTER = 1
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_RULE_PATH_BENEATH = 1

CHUNK_BYTES = 65536
CPU_CHECK_INTERVAL_S = 0.05
# While this much stdin waits for the program, the control pipe is not read: the service's
# writes then block, so stdin a program never reads cannot pile up here.
STDIN_HELD_BYTES = 1 << 20
# The OOM killer's choice: every run process and launcher goes before anything else.
OOM_SCORE_ADJ_RUN = "1000"
DRAIN_TIMEOUT_S = 1.0
# A warm interpreter's fork runs a program only under a memory limit with this much room beyond
# what the fork already holds; under a smaller one the program gets a fresh interpreter.
WARM_HEADROOM_BYTES = 32 << 20
# A working directory with less room than this left counts as full.
FULL_BELOW_BYTES = 65536


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: a kind byte, a 4-byte big-endian length, the payload."""
    return HEADER.pack(kind, len(payload)) + payload


class _FrameReader:
    """Splits bytes read from the control pipe into (kind, payload) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size:HEADER.size + length])))
            del self._buffer[:HEADER.size + length]
        return frames


def _read_spec(reader: _FrameReader) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """Blocks until the SPEC frame arrived; returns it and any frames that followed it."""
    while True:
        data = os.read(0, CHUNK_BYTES)
        if not data:
            raise SystemExit("launcher: control pipe closed before the spec arrived")
        frames = reader.feed(data)
        if frames:
            kind, payload = frames[0]
            if kind != SPEC:
                raise SystemExit(f"launcher: expected a spec frame, got {kind!r}")
            return marshal.loads(payload), frames[1:]


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_rlimit_s(limits: dict[str, Any]) -> int:
    return math.ceil(float(limits["cpu_time_s"])) + 1


_ctypes_module: Any = None


def _ctypes() -> Any:
    """ctypes, imported once, when a run first needs it. Kept here rather than looked up in
    sys.modules: a warm interpreter removes it from there (programs must not find it), and
    importing it again would cost each run ~2 ms."""
    global _ctypes_module
    if _ctypes_module is None:
        import ctypes

        _ctypes_module = ctypes
    return _ctypes_module


_libc_handle: Any = None


def _load_libc() -> Any:
    """The C library, loaded once, when a run first needs it (a zygote loads it for all its
    launchers). CDLL by soname, as find_library would fork ldconfig."""
    global _libc_handle
    if _libc_handle is None:
        ctypes = _ctypes()
        _libc_handle = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
    return _libc_handle


def ctypes_int(value: int) -> Any:
    return _ctypes().c_int(value)


def _syscall(libc: Any, what: str, number: int, *args: Any) -> int:
    ctypes = _ctypes()
    result = int(libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(libc: Any, source: str | None, target: str, flags: int) -> None:
    ctypes = _ctypes()
    if libc.mount(source.encode() if source else None, target.encode(), None,
                  ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _restrict_filesystem(libc: Any, ruleset: dict[str, Any]) -> None:
    """Landlock: from here on this process and its descendants may use only the ruled paths
    (and no TCP, and may not signal outside the run, as the masks say). See sandbox.landlock."""
    ctypes = _ctypes()
    abi = ruleset["abi"]
    # struct landlock_ruleset_attr grew with the ABI: give the kernel the size it knows.
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = ctypes.create_string_buffer(
        struct.pack("=QQQ", ruleset["handled_fs"], ruleset["handled_net"], ruleset["scoped"])[:size],
        size)
    ruleset_fd = _syscall(libc, "landlock_create_ruleset", LANDLOCK_CREATE_RULESET, attr,
                          ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for path, rights in ruleset["rules"]:
            try:
                path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # runtimes list folders that only some images have (/lib64, /usr/local)
            try:
                if not os.path.isdir(path):
                    rights &= ruleset["file_rights"]
                # struct landlock_path_beneath_attr is packed: u64 rights, s32 fd.
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, path_fd), 12)
                _syscall(libc, f"landlock_add_rule({path})", LANDLOCK_ADD_RULE, ruleset_fd,
                         ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0))
            finally:
                os.close(path_fd)
        _syscall(libc, "landlock_restrict_self", LANDLOCK_RESTRICT_SELF, ruleset_fd,
                 ctypes.c_uint32(0))
    finally:
        os.close(ruleset_fd)


def _load_seccomp(libc: Any, bpf: bytes) -> None:
    """Installs the run's seccomp filter (compiled by sandbox.syscall_filter); inherited by every
    descendant and impossible to remove."""
    ctypes = _ctypes()
    program = ctypes.create_string_buffer(bpf, len(bpf))
    # struct sock_fprog: unsigned short len (in 8-byte instructions), padding, the pointer.
    fprog = ctypes.create_string_buffer(
        struct.pack("=H6xQ", len(bpf) // 8, ctypes.addressof(program)), 16)
    _syscall(libc, "seccomp", SYS_SECCOMP, ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
             ctypes.c_uint(0), fprog)


def _confine_and_exec(spec: dict[str, Any], prctl: Any, libc: Any, launcher_pid: int,
                      stdin_r: int, out_w: int, err_w: int, errpipe_w: int) -> None:
    """In the forked child: apply every confinement, then execve. Never returns."""
    try:
        # Own session and process group: the program cannot signal the service's group and has no
        # controlling terminal; its group id is its pid, so the launcher can killpg it.
        os.setsid()
        os.dup2(stdin_r, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(errpipe_w, 3)
        os.set_inheritable(3, False)
        # Close every other inherited descriptor: the program must not reach the control pipe or
        # anything else the launcher holds.
        os.closerange(4, 1 << 20)
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: give the program
        # the default actions, so `yes | head` ends and an oversized file write kills a C program.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(spec["cwd"])
        # Files the program creates are private to its uid.
        os.umask(0o077)
        cgroup = spec.get("cgroup")
        if cgroup:
            # Into the run's cgroup (as root, before the uid switch), by the program itself: all
            # it and its descendants touch from now on is charged to the run's memory and pids
            # bound, and nothing the launcher or a warm interpreter already holds is.
            for procs in cgroup["join"]:
                _write_text(procs, "0")
        if spec.get("binds"):
            # A mount namespace of its own, private so nothing propagates back to the host,
            # where folders of the run appear at fixed paths (a session's files at /mnt/data).
            _syscall(libc, "unshare(CLONE_NEWNS)", SYS_UNSHARE, ctypes_int(CLONE_NEWNS))
            _mount(libc, None, "/", MS_REC | MS_PRIVATE)
            for source, target in spec["binds"]:
                _mount(libc, source, target, MS_BIND)
        if spec.get("netns"):
            # A network namespace of its own, with only a loopback that is down: no route
            # anywhere even if a socket got past seccomp. Needs CAP_SYS_ADMIN, so before setuid.
            _syscall(libc, "unshare(CLONE_NEWNET)", SYS_UNSHARE, ctypes_int(CLONE_NEWNET))
        uid, gid = spec.get("uid"), spec.get("gid")
        if uid is not None and gid is not None:
            # A per-run uid: the program cannot signal, ptrace or read /proc of the service or of
            # other runs, and RLIMIT_NPROC (not enforced for root) bounds its processes. Groups
            # are emptied first, or it would keep root's supplementary groups.
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        # Dies with the launcher, so a killed launcher cannot leave its program running. Set after
        # the uid switch, which clears it.
        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != launcher_pid:
            os._exit(137)
        # Dumpable, as execve would make it anyway (and a warm interpreter's fork, which does not
        # execve, must be): its own /proc files are then its uid's, not root's, so it can raise
        # its OOM score below even without privilege. Set after the uid switch, which clears it.
        # Nothing it holds is another run's; no other uid may trace it either way.
        prctl.set_dumpable(True)
        # The OOM killer takes the run first, never the service: raising one's score needs no
        # privilege.
        _write_text("/proc/self/oom_score_adj", OOM_SCORE_ADJ_RUN)
        # No setuid binary or file capability can raise the program's privileges again; also
        # what lets an unprivileged process install Landlock rules and a seccomp filter.
        prctl.set_no_new_privs(True)
        in_process = spec.get("in_process") is not None
        if in_process:
            if _WARM is None:
                raise OSError("an in-process run needs a warm interpreter")
            # A fork of the warm interpreter already holds more address space than a fresh one
            # (its preloaded modules). Under a memory limit too close to that, the program gets
            # a fresh interpreter after all: what one does under so small a limit is for it to
            # show. (Read now: /proc is out of reach once Landlock is on.)
            in_process = int(spec["limits"]["memory_bytes"]) >= (
                _address_space_bytes() + WARM_HEADROOM_BYTES) and _plain_script(
                spec["argv"][spec["in_process"]])
        if spec.get("landlock"):
            # Before the rlimits: it needs a few descriptors, and RLIMIT_NOFILE may be tiny.
            _restrict_filesystem(libc, spec["landlock"])
        limits = spec["limits"]
        cpu_s = _cpu_rlimit_s(limits)
        # soft = hard everywhere, or the program raises its soft limit back.
        for resource_id, value in (
            # Each process's own CPU seconds, a backstop: the launcher bounds the whole run's
            # total precisely and, polling every 50 ms, normally stops it first.
            (resource.RLIMIT_CPU, cpu_s),
            # Address space: stops malloc, mmap (private and shared) and stack growth bombs in
            # one process. A per-process backstop to the run's memory bound, which a runtime
            # whose VM reserves far more than it uses (JVM, V8) turns off.
            (resource.RLIMIT_AS, int(limits["memory_bytes"]) if spec.get("address_space", True)
             else resource.RLIM_INFINITY),
            # Stack overflow becomes a SIGSEGV inside the limit, not a machine-wide memory grab.
            (resource.RLIMIT_STACK, int(limits["stack_bytes"])),
            # Fork and thread bombs: counted per uid, so meaningful with a per-run uid.
            (resource.RLIMIT_NPROC, int(limits["max_processes"])),
            # Descriptor exhaustion stays inside the run.
            (resource.RLIMIT_NOFILE, int(limits["max_open_files"])),
            # One huge file cannot fill the disk (per file; total size is not bounded here).
            (resource.RLIMIT_FSIZE, int(limits["max_file_bytes"])),
            # No core files: a crashing 50 MB program would otherwise leave a 50 MB core behind.
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(resource_id, (value, value))
        if spec.get("seccomp"):
            # Last, so nothing above needs a syscall the filter refuses.
            _load_seccomp(libc, spec["seccomp"])
        if not in_process:
            argv = spec["argv"]
            os.execve(argv[0], argv, spec["env"])
    except BaseException as exc:  # noqa: BLE001 - anything must reach the launcher, then exit
        try:
            os.write(3, f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        finally:
            os._exit(127)
    # Confined; the program runs in this process, from the module's top level (see the end of
    # this file), once every launcher frame above us is gone.
    raise _InProcess(spec)


class _Supervisor:
    """Runs one confined program and watches its wall clock, CPU, output and process tree."""

    def __init__(self, spec: dict[str, Any], prctl: Any, reader: _FrameReader,
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
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
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
        libc = _load_libc() if spec.get("landlock") or spec.get("seccomp") or spec.get("netns") \
            or spec.get("binds") else None
        pid = os.fork()
        if pid == 0:
            _confine_and_exec(self.spec, self.prctl, libc, os.getppid(), stdin_r, out_w, err_w,
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
                tree = self._descendants()
                if self._tree_cpu_s(tree) > float(self.limits["cpu_time_s"]):
                    self.reason = "cpu_limit"
                    break
                if self._over_memory(tree):
                    self.reason = "memory_limit"
                    break
                next_cpu_check = now + CPU_CHECK_INTERVAL_S
            if disk and now >= next_disk_check:
                if _exceeds_disk(self.spec["cwd"], disk["bytes"], disk["files"]):
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
            if not _write_frame(kind, data, self.deadline) and self.reason is None:
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

    def _descendants(self) -> list[int]:
        """Every live descendant, found through /proc/<pid>/task/*/children."""
        found: list[int] = []
        stack = [os.getpid()]
        while stack:
            pid = stack.pop()
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        children = [int(c) for c in f.read().split()]
                except OSError:
                    continue
                found.extend(children)
                stack.extend(children)
        return found

    def _tree_cpu_s(self, tree: list[int]) -> float:
        """CPU seconds of the whole run: live descendants plus everything already reaped."""
        ticks = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                # utime, stime, cutime, cstime (fields 14-17 of proc(5))
                ticks += sum(int(v) for v in fields[11:15])
            except (OSError, IndexError, ValueError):
                continue
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ticks / self.clock_ticks + usage.ru_utime + usage.ru_stime

    def _over_memory(self, tree: list[int]) -> bool:
        """Whether the run passed its memory bound: the kernel killed inside its cgroup, or
        (without one) its processes' own pages together exceed the limit."""
        if self.cgroup is not None:
            return _oom_kills(self.cgroup) > 0
        if not self.memory_watchdog:
            return False
        total = sum(_private_bytes(pid) for pid in tree)
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
            rusage = as_uid(uid, self.spec["gid"], lambda: os.kill(-1, signal.SIGKILL))
            self.helper_cpu_s += rusage.ru_utime + rusage.ru_stime
        try:
            os.killpg(self.main_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        while True:
            for pid in self._descendants():
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
                sig == signal.SIGKILL and main_cpu_s >= 0.8 * _cpu_rlimit_s(self.limits)
            ):
                outcome = "cpu_limit"
            elif self.cgroup is not None and _oom_kills(self.cgroup) > 0:
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
            if outcome in ("signaled", "nonzero_exit") and disk and _is_full(self.spec["cwd"]):
                # The program failed on a full working directory (ENOSPC from its tmpfs).
                outcome = "disk_limit"
            elif disk and disk["watchdog"] and _exceeds_disk(self.spec["cwd"], disk["bytes"],
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


def _oom_kills(cgroup: dict[str, Any]) -> int:
    """How many processes the kernel's OOM killer ended inside the run's cgroup."""
    try:
        with open(cgroup["events"], "rb") as f:
            for line in f:
                key, _, value = line.partition(b" ")
                if key == b"oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _private_bytes(pid: int) -> int:
    """The pages only process `pid` maps (resident, its own): what a fork shares with the warm
    interpreter or the launcher copy-on-write is not counted, what it touched anew is."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return total


def _write_text(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _exceeds_disk(root: str, max_bytes: int, max_files: int) -> bool:
    """Whether the tree under `root` holds more than `max_bytes` (allocated blocks) or
    `max_files` entries. Never follows symlinks; stops as soon as it knows."""
    used_bytes, files = 0, 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except PermissionError:
            # A folder the program made unreadable to hide what it holds: as its owner (runs
            # share our uid when we are not root) give it back, then look again.
            try:
                os.chmod(folder, 0o700, follow_symlinks=False)
                entries = os.scandir(folder)
            except OSError:
                continue
        except OSError:
            continue  # removed meanwhile
        with entries:
            for entry in entries:
                files += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                used_bytes += info.st_blocks * 512
                if used_bytes > max_bytes or files > max_files:
                    return True
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return False


def _is_full(root: str) -> bool:
    """Whether the filesystem holding `root` has (almost) no room or no inodes left."""
    try:
        fs = os.statvfs(root)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < FULL_BELOW_BYTES or fs.f_favail == 0


def as_uid(uid: int, gid: int, action: Any) -> Any:
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


def _write_frame(kind: bytes, payload: bytes, deadline: float = math.inf) -> bool:
    """Writes one frame to the service; False when it took none of it before `deadline`
    (monotonic), so a service that stops reading cannot hold a run past its wall clock. A
    frame once begun is finished whatever the time: a half frame would garble the rest."""
    frame = encode_frame(kind, payload)
    data = memoryview(frame)
    while data:
        try:
            written = os.write(1, data)
        except InterruptedError:
            continue
        except BlockingIOError:
            wait_s = None
            if len(data) == len(frame) and deadline != math.inf:
                wait_s = deadline - time.monotonic()
                if wait_s <= 0:
                    return False
            select.select([], [1], [], wait_s)
            continue
        data = data[written:]
    return True


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[2] in ("probe-uid", "kill-uid"):
        # `launcher.py SITE_DIR probe-uid|kill-uid UID`: check that uid switching works, or
        # kill(-1, SIGKILL) as UID: one call reaches every process of that uid and nothing else.
        uid = int(sys.argv[3])
        action = (lambda: None) if sys.argv[2] == "probe-uid" else (
            lambda: os.kill(-1, signal.SIGKILL))
        as_uid(uid, uid, action)
        return
    sys.path.insert(0, sys.argv[1])
    import prctl  # from the service's site-packages, given on the command line

    if sys.argv[2:3] in (["zygote"], ["warm"]):
        # Before anything else (a warm interpreter's preloading takes a while): runs sharing
        # our uid must not trace or read a zygote.
        prctl.set_dumpable(False)

    if sys.argv[2:3] == ["zygote"]:
        _serve_as_zygote(prctl, int(sys.argv[3]))
        return
    if sys.argv[2:3] == ["warm"]:
        _serve_warm(prctl, int(sys.argv[4]), [name for name in sys.argv[3].split(",") if name])
        return
    _serve_one_run(prctl)


def _serve_as_zygote(prctl: Any, channel_fd: int) -> None:
    """`launcher.py SITE_DIR zygote FD`: stays up and forks a ready launcher per run, which saves
    each run this interpreter's start. The service sends, over the socket on FD, one byte with
    the three pipe ends the launcher is to use as stdin, stdout and stderr; the zygote answers
    with the forked launcher's pid. It holds nothing but this code: no service state, no
    environment."""
    import socket

    # Every run that is confined by Landlock or seccomp needs ctypes and the C library: loaded
    # once, here.
    _load_libc()
    channel = socket.socket(fileno=channel_fd)
    prctl.set_dumpable(False)
    # If the service dies, so do we, and through their pdeathsig the launchers and programs.
    prctl.set_pdeathsig(signal.SIGKILL)
    # Launchers are reaped by the kernel; each resets this right after the fork, since it
    # waits for its own children.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 16, 3)
        except InterruptedError:
            continue
        if not message or len(fds) != 3:
            return  # the service closed its end: it is going away
        try:
            pid = os.fork()
        except OSError:
            pid = -1  # answered as 0: the service starts a launcher itself for this run
        if pid == 0:
            status = 0
            try:
                channel.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
                _serve_one_run(prctl)
            except _InProcess:
                raise  # the program's process of a warm interpreter: it goes on to run it
            except BaseException:  # noqa: BLE001 - say why on stderr, as a started launcher does
                import traceback

                traceback.print_exc()
                status = 1
            os._exit(status)
        for fd in fds:
            os.close(fd)
        channel.sendall(struct.pack(">I", max(pid, 0)))


def _serve_one_run(prctl: Any) -> None:
    # If memory runs out, the kernel's OOM killer takes a run and its launcher before the
    # service and the zygotes, which keep their scores. Not dumpable (from the zygote), an
    # unprivileged launcher's /proc files are root's: it keeps the zygote's score then, and
    # its program raises its own.
    try:
        _write_text("/proc/self/oom_score_adj", OOM_SCORE_ADJ_RUN)
    except PermissionError:
        pass
    # When runs share our uid, the program must not ptrace us or read our memory through /proc.
    prctl.set_dumpable(False)
    # Orphans of the run re-parent to us, so none escapes the final kill loop.
    prctl.set_child_subreaper(True)
    # If our parent (the service, or the zygote) dies, so do we (and, through their own
    # pdeathsig, the programs).
    prctl.set_pdeathsig(signal.SIGKILL)
    reader = _FrameReader()
    spec, pending = _read_spec(reader)
    supervisor = _Supervisor(spec, prctl, reader, pending)
    try:
        result = supervisor.run()
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # the service went away; nobody to answer
            return
        raise
    _write_frame(RESULT, marshal.dumps(result))


# -- warm interpreters ------------------------------------------------------------------------

# Set in a warm interpreter: the sys.path and the modules a program starts with.
_WARM: dict[str, Any] | None = None
# The modules whose names, used by the program's own files, a fresh interpreter would import
# from those files instead (sys.path[0] comes first).
_PRELOADED: frozenset[str] = frozenset()
# In a program's process: the modules it was given (the rest are its own).
_KEEP_MODULES: frozenset[str] = frozenset()


class _InProcess(BaseException):
    """Raised in a warm interpreter's program process once it is confined: unwinds every
    launcher frame, so the program runs from this module's top level."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec


def _serve_warm(prctl: Any, channel_fd: int, preload: list[str]) -> None:
    """`launcher.py SITE_DIR warm MODULES FD`, started by the program's interpreter with the
    program's options and environment: a zygote whose launchers run a Python script in their
    program's process, forked from this interpreter with MODULES already imported, instead of
    starting an interpreter for it. It never sees any run's data: each run is a fork of the
    state it had before the first."""
    global _WARM, _PRELOADED
    # Imported now, so that no run pays for it: it confines programs and runs their script.
    ctypes = _ctypes()

    # The launcher's folder (a script's sys.path[0]) and prctl's are the launcher's alone; its
    # imports are forgotten (it keeps its references), so programs see only what they would.
    sys.path[:] = _PATH_AT_START[1:]
    _keep_only_modules(_MODULES_AT_START)
    for name in preload:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - a module this interpreter lacks is no reason to fail
            print(f"launcher: not preloading {name}: {exc}", file=sys.stderr)
    # The interpreter's script runner (what `python SCRIPT` calls) and C's fopen to feed it.
    runner = ctypes.pythonapi.PyRun_FileExFlags
    runner.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.py_object,
                       ctypes.py_object, ctypes.c_int, ctypes.c_void_p]
    runner.restype = ctypes.py_object
    fopen = _load_libc().fopen
    fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fopen.restype = ctypes.c_void_p
    _WARM = {"path": tuple(sys.path), "modules": frozenset(sys.modules), "ctypes": ctypes,
             "runner": runner, "fopen": fopen}
    # What the end of a run calls, bound now: a program may replace os._exit and the like in
    # its modules, which must not change how it ends (the interpreter calls C for these).
    import _thread
    import _weakref
    import atexit
    import gc
    import posix
    import zipimport

    _WARM.update(exit=posix._exit, kill=posix.kill, getpid=posix.getpid, write=posix.write,
                 set_signal=signal.signal, run_exitfuncs=atexit._run_exitfuncs,
                 collect=gc.collect, threads=_thread._count, weakref=_weakref.ref,
                 zipimporter=zipimport.zipimporter, zip_error=zipimport.ZipImportError)
    # Everything the interpreter holds so far is moved out of the collector's sight: a run's
    # collections then touch (and copy) only the program's own objects, not every page.
    gc.collect()
    gc.freeze()
    _PRELOADED = frozenset(name.partition(".")[0] for name in _WARM["modules"]) - frozenset(
        name.partition(".")[0] for name in _MODULES_AT_START)
    _serve_as_zygote(prctl, channel_fd)


def _become_program(spec: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    """In a warm interpreter's confined program process: makes this interpreter what
    ``python OPTIONS SCRIPT ARGS...`` would be when it starts the script. Returns the script's
    runner (the interpreter's own, as the command line uses), its path and __main__'s dict."""
    assert _WARM is not None
    import builtins

    argv = spec["argv"]
    index = spec["in_process"]
    # The launcher sees the program "start" (as at execve, the descriptor closes).
    os.close(3)
    # What a fresh interpreter installs: it ignores SIGPIPE and SIGXFSZ (so writes fail with
    # an error instead), and blocks nothing.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for name in list(os.environ):
        del os.environ[name]
    os.environ.update(spec["env"])
    script = argv[index]
    # As the interpreter computes them: __file__ is the path joined to the working directory,
    # unnormalised; sys.path[0] is the folder of the script with symlinks resolved.
    path = script if script.startswith("/") else os.path.join(os.getcwd(), script)
    folder = os.path.dirname(os.path.realpath(path))
    sys.argv = list(argv[index:])
    sys.orig_argv = list(argv)
    sys.path[:] = [folder, *_WARM["path"]]
    global _KEEP_MODULES
    keep = _WARM["modules"]
    if _PRELOADED and _shadowed(folder, _PRELOADED):
        # A file of the program's named like a preloaded module is what a fresh interpreter
        # would import: give it back the modules it starts with, and nothing preloaded.
        keep = _MODULES_AT_START
    _KEEP_MODULES = keep
    _keep_only_modules(keep)
    # The random module reseeds itself in every fork (os.register_at_fork), so no two runs
    # share the warm interpreter's random state (tests/sandbox/test_warm.py checks it).
    main = type(sys)("__main__")
    namespace = main.__dict__
    namespace["__annotations__"] = {}
    namespace["__builtins__"] = builtins
    namespace["__file__"] = path
    namespace["__cached__"] = None
    main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path)
    sys.modules["__main__"] = main
    _set_thread_stack_size(int(spec["limits"]["stack_bytes"]))
    return _WARM["runner"], path, namespace


def _set_thread_stack_size(stack_bytes: int) -> None:
    """The C library sizes new threads' stacks from RLIMIT_STACK as it was when the process
    started, which for a fork is the warm interpreter's: set it from the run's, as the C
    library computes it (at least PTHREAD_STACK_MIN, rounded up to a page)."""
    assert _WARM is not None
    ctypes, libc = _WARM["ctypes"], _load_libc()
    page = os.sysconf("SC_PAGE_SIZE")
    size = -(-max(stack_bytes, os.sysconf("SC_THREAD_STACK_MIN")) // page) * page
    attr = ctypes.create_string_buffer(64)  # pthread_attr_t: 56 bytes on x86_64
    if libc.pthread_attr_init(attr) == 0:
        if libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(size)) == 0:
            libc.pthread_setattr_default_np(attr)
        libc.pthread_attr_destroy(attr)


def _keep_only_modules(names: frozenset[str]) -> None:
    """Forgets every imported module not in `names` (whoever holds one keeps it)."""
    for name in list(sys.modules):
        if name not in names:
            del sys.modules[name]


def _plain_script(script: str) -> bool:
    """Whether the interpreter would parse `script` as source: a regular file that is not a
    zip archive (``python app.pyz`` runs the archive's __main__.py), nor a folder. Otherwise
    the program gets a fresh interpreter, which does what it does with it."""
    assert _WARM is not None
    import stat

    try:
        if not stat.S_ISREG(os.stat(script).st_mode):
            return False
        _WARM["zipimporter"](script)
    except _WARM["zip_error"]:
        return True
    except OSError:
        return False  # cannot even be opened: the interpreter says so in its words
    return False


def _shadowed(folder: str, names: frozenset[str]) -> bool:
    try:
        entries = os.listdir(folder)
    except OSError:
        return True
    return any(entry.partition(".")[0] in names for entry in entries)


def _open_script(path: str) -> Any:
    """The script as a C FILE*, which the interpreter's runner reads (the same parser, hence
    the same errors, as a script named on the command line); None, said as the interpreter
    says it, when it cannot be opened."""
    assert _WARM is not None
    handle = _WARM["fopen"](os.fsencode(path), b"rb")
    if not handle:
        err = _WARM["ctypes"].get_errno()
        sys.stderr.write(f"{sys.orig_argv[0]}: can't open file {path!r}: "
                         f"[Errno {err}] {os.strerror(err)}\n")
        return None
    return handle


def _uncaught(error: BaseException) -> int:
    """What the interpreter does with an exception that ends a script (PyErr_Print): the hook
    prints it (without this module's frames); the status is 1, or death by SIGINT for ^C."""
    traceback = _own_frames_dropped(error)
    sys.last_type, sys.last_value, sys.last_traceback = type(error), error, traceback
    missing = object()
    hook = getattr(sys, "excepthook", missing)
    if hook is missing:
        _write_stderr("sys.excepthook is missing\n")
        sys.__excepthook__(type(error), error, traceback)
    else:
        try:
            hook(type(error), error, traceback)  # type: ignore[operator]
        except SystemExit as exit:
            return _exit_status(exit)
        except BaseException as hook_error:  # noqa: BLE001 - reported as the interpreter does
            _write_stderr("Error in sys.excepthook:\n")
            sys.__excepthook__(type(hook_error), hook_error, _own_frames_dropped(hook_error))
            _write_stderr("\nOriginal exception was:\n")
            sys.__excepthook__(type(error), error, traceback)
    return -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1


def _own_frames_dropped(error: BaseException) -> Any:
    """The exception's traceback without this module's frames, set on it too (the default
    hook prints the exception's own traceback)."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_frame.f_globals is globals():
        traceback = traceback.tb_next
    error.with_traceback(traceback)
    return traceback


def _write_stderr(text: str) -> None:
    """As PySys_WriteStderr: to sys.stderr, or to descriptor 2 when the program has none."""
    stream = getattr(sys, "stderr", None)
    if stream is not None:
        try:
            stream.write(text)
            return
        except Exception:  # noqa: BLE001 - the interpreter gives up silently too
            return
    assert _WARM is not None
    _WARM["write"](2, text.encode(errors="backslashreplace"))


def _exit_status(exit: SystemExit) -> int:
    """The status of a script ended by SystemExit, as the interpreter computes it."""
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        # The interpreter takes a C long; the kernel keeps its low byte.
        return code & 0xFF if -(1 << 63) <= code < (1 << 63) else 0xFF
    try:
        _write_stderr(f"{code}\n")
    except Exception:  # noqa: BLE001, S110 - a str() that raises: the status is still 1
        pass
    return 1


def _finish(status: int) -> None:
    """Ends a program run in process as the interpreter ends a script (Py_FinalizeEx), in what
    a program can see of it: non-daemon threads are joined, atexit functions run, the standard
    streams are flushed (status 120 if that fails), and the program's own modules (its
    __main__ first of all) are dropped and collected, so finalizers run with their globals
    intact, then cleared. The interpreter's own modules are left as they are: tearing them down
    in a fork costs ~13 ms (it touches every page of the warm interpreter) and shows nothing.
    Only primitives bound in the warm interpreter are used: the program's modules may have
    been changed."""
    assert _WARM is not None
    warm = _WARM
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as exc:  # noqa: BLE001 - e.g. ^C while joining: reported, ignored
            _unraisable(exc, threading)
    warm["run_exitfuncs"]()
    if not _flush_std_files():
        status = status if status < 0 else 120
    if warm["threads"]() == 0:
        # With daemon threads still running the interpreter would stop them first; it cannot
        # be done from here, so their world is left as it is.
        _drop_program_modules()
    # As the interpreter, once modules are gone: the original streams are flushed again.
    for name in ("stdin", "stdout", "stderr"):
        setattr(sys, name, getattr(sys, f"__{name}__", None))
    if not _flush_std_files():
        status = status if status < 0 else 120
    if status < 0:
        warm["set_signal"](-status, signal.SIG_DFL)
        warm["kill"](warm["getpid"](), -status)
        status = 128 - status
    warm["exit"](status)


def _drop_program_modules() -> None:
    """As finalize_modules, for the program's modules: out of sys.modules, a collection (their
    objects' finalizers run with module globals intact), then whatever module is still alive is
    cleared, and collected again."""
    assert _WARM is not None
    weakref, collect = _WARM["weakref"], _WARM["collect"]
    alive = []
    for name in reversed(list(sys.modules)):
        if name == "__main__" or name not in _KEEP_MODULES:
            module = sys.modules.pop(name, None)
            try:
                alive.append(weakref(module))
            except TypeError:
                continue
    module = None
    collect()
    for ref in alive:
        module = ref()
        if module is not None:
            _clear_module(module)
    module = None
    collect()


def _flush_std_files() -> bool:
    """As the interpreter at exit: flushes sys.stdout and sys.stderr unless missing or closed;
    a stdout failure is reported as unraisable, a stderr one silently; False if either failed."""
    flushed = True
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is None:
            continue
        try:
            if getattr(stream, "closed", False):
                continue
        except Exception:  # noqa: BLE001, S110 - an unreadable `closed` counts as open
            pass
        try:
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - reported like the interpreter
            flushed = False
            if name == "stdout":
                _unraisable(exc, stream)
    return flushed


def _unraisable(error: BaseException, where: object) -> None:
    """As PyErr_WriteUnraisable: the program's sys.unraisablehook if it set one, else the
    default's text on sys.stderr (nothing without one)."""
    traceback = _own_frames_dropped(error)
    hook = getattr(sys, "unraisablehook", None)
    if hook is not None and hook is not sys.__unraisablehook__:
        details = type("UnraisableHookArgs", (), {
            "exc_type": type(error), "exc_value": error, "exc_traceback": traceback,
            "err_msg": None, "object": where})()
        try:
            hook(details)
        except Exception:  # noqa: BLE001, S110 - the interpreter ignores a failing hook too
            pass
        return
    stream = getattr(sys, "stderr", None)
    if stream is None:
        return
    try:
        # The default hook's own format: the type (qualified outside builtins) and ": " and
        # the message, even an empty one.
        text = f"Exception ignored in: {where!r}\n"
        if traceback is not None:
            import traceback as tracebacks

            text += "Traceback (most recent call last):\n" + "".join(
                tracebacks.format_tb(traceback))
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else (
            f"{kind.__module__}.{kind.__qualname__}")
        try:
            message = str(error)
        except Exception:  # noqa: BLE001 - as the default hook says it
            message = "<exception str() failed>"
        stream.write(f"{text}{name}: {message}\n")
        stream.flush()
    except Exception:  # noqa: BLE001, S110 - nowhere left to say it
        pass


def _clear_module(module: Any) -> None:
    """As the interpreter clears a module at exit: names with one leading underscore first,
    then every other name but __builtins__, each set to None."""
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return
    for single in (True, False):
        for key in list(namespace):
            if not isinstance(key, str) or namespace.get(key) is None:
                continue
            if single == (key.startswith("_") and not key.startswith("__")) and (
                    single or key != "__builtins__"):
                namespace[key] = None


if __name__ == "__main__":
    _ready: dict[str, Any] | None = None
    try:
        main()
    except _InProcess as confined:
        _ready = confined.spec
        del confined
    if _ready is not None:
        # Outside the except block: the program must not start with an exception "being
        # handled" (sys.exc_info, and the context of everything it raises).
        _runner, _path, _namespace = _become_program(_ready)
        del _ready
        _script = _open_script(_path)
        _status = 2
        _failure: BaseException | None = None
        if _script is not None:
            try:
                _runner(_script, os.fsencode(_path), 257, _namespace, _namespace, 1, None)
                _status = 0
            except SystemExit as _exit:
                _status = _exit_status(_exit)
                del _exit
            except BaseException as _error:  # noqa: BLE001 - as the interpreter: report, exit
                _failure = _error
                del _error
        if _failure is not None:
            # Outside the except block, as the interpreter has taken the exception out of the
            # way when its hook runs: what the hook raises has no context.
            _status = _uncaught(_failure)
            _failure = None
        # Nothing here may keep the program's __main__ alive past its end (see _finish).
        del _runner, _namespace, _script
        _finish(_status)
