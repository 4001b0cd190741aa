"""The service's side of the launcher: its command line, its start or fork through a zygote,
and the frame protocol's client that feeds a run and collects its result.

Everything that starts a launcher goes through here: a run (`start`), a startup probe
(`run_blocking`), a uid command (`run_uid_command`), the launcher zygote (`launcher_zygote`)
and warm interpreters (`warm_zygote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import marshal
import os
import subprocess
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prctl

from .cgroup import RunCgroup
from .errors import LaunchError
from .landlock import Ruleset
from .launcher import protocol
from .limits import Limits
from .result import Outcome, RunResult
from .syscall_filter import filter_for
from .warm import WarmInterpreter
from .zygote import Zygote

# Run as a script by path, not as a module: ``python -m`` would import runpy at every start.
LAUNCHER_PATH = str(Path(protocol.__file__).resolve().with_name("__main__.py"))
# The launcher runs with -I -S (no site, no environment) for a fast start; prctl is the one
# module it needs from site-packages, so it is told where that is.
PRCTL_DIR = str(Path(prctl.__file__).resolve().parent)
STDIN_FRAME_BYTES = 1 << 16
# Time the launcher gets beyond the wall limit to kill, reap and drain before we give up on it.
BACKSTOP_GRACE_S = 10.0
# A uid command (probe-uid, kill-uid) that has not finished by then has failed.
UID_COMMAND_TIMEOUT_S = 10


def launcher_command(python: str, *mode: str, site_dir: str = PRCTL_DIR) -> list[str]:
    """The launcher's command line, run by the interpreter `python`:

        [python, "-I", "-S", "-B", LAUNCHER_PATH, site_dir, *mode]   # mode: (), ("zygote",), …

    -I -S: no environment, no site, for a fast start; -B: no bytecode written into the
    service's installation."""
    return [python, "-I", "-S", "-B", LAUNCHER_PATH, site_dir, *mode]


def launcher_zygote(python: str) -> Zygote:
    """The zygote that forks a ready launcher per run (not started yet)."""
    return Zygote(launcher_command(python, "zygote"))


def warm_zygote(warm: WarmInterpreter, caches: Path | None = None) -> Zygote:
    """The zygote of warm interpreter `warm` (not started yet): the launcher run by the
    program's own interpreter, options and startup environment; `caches`: where what it
    preloads keeps its caches and settings (XDG's folders). A fork's program gets its own
    environment in full, so none of this reaches it."""
    env = dict(warm.env)
    if caches is not None:
        env |= {"XDG_CACHE_HOME": str(caches), "XDG_CONFIG_HOME": str(caches)}
    return Zygote([*warm.interpreter, LAUNCHER_PATH, PRCTL_DIR, "warm", ",".join(warm.preload)],
                  env, name="warm interpreter")


def run_uid_command(python: str, command: str, uid: int) -> bool:
    """Runs the launcher's `probe-uid` or `kill-uid` command for `uid`; True if it succeeded.
    The launcher runs as root and switches in a forked helper, so the uid needs no access to the
    interpreter's installation."""
    try:
        subprocess.run(launcher_command(python, command, str(uid), site_dir="-"), env={},
                       check=True, timeout=UID_COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


class Stream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


OutputCallback = Callable[[Stream, bytes], None]


@dataclass(frozen=True)
class DiskBound:
    """How much the working directory may hold; `watchdog`: the launcher enforces it by
    measuring (otherwise a sized tmpfs does, and the launcher only recognises a full one)."""

    bytes: int
    files: int
    watchdog: bool

    def as_dict(self) -> dict[str, object]:
        return {"bytes": self.bytes, "files": self.files, "watchdog": self.watchdog}


@dataclass(frozen=True)
class RunSpec:
    """One program to run: absolute argv, the complete environment, its working directory."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    limits: Limits
    uid: int | None = None
    gid: int | None = None
    landlock: Ruleset | None = None
    seccomp: bool = False
    disk: DiskBound | None = None
    netns: bool = False
    # (source, target): folders bind-mounted in a private mount namespace before the program
    binds: tuple[tuple[str, str], ...] = ()
    # Where the script is in argv when a warm interpreter is to run it in its own fork
    # (sandbox.warm); None: the program is started with execve.
    in_process: int | None = None
    # The run's memory bound over all its processes: its cgroup, or else the launcher's
    # measuring of the tree (`memory_watchdog`).
    cgroup: RunCgroup | None = None
    memory_watchdog: bool = False
    # RLIMIT_AS at limits.memory_bytes for each process, a backstop to the run's bound; off for
    # runtimes whose VM reserves much more address space than it uses.
    address_space: bool = True

    async def release(self) -> None:
        """Frees what layers made for this run alone (its cgroup), once its launcher is gone
        or did not start: the one way out of every run."""
        if self.cgroup is not None:
            await dispose_cgroup(self.cgroup)

    def encode(self, launcher_pid: int, zygotes: Collection[int] = ()) -> bytes:
        """The spec as the launcher `launcher_pid` reads it; `zygotes`: the pids of the
        service's zygotes (whose process groups hold their forked launchers)."""
        bpf = None
        if self.seccomp:
            # The filter names the processes a run must never signal: init, the service (by pid
            # and process group), every zygote and the run's own launcher.
            bpf = filter_for({1, os.getpid(), os.getpgrp(), *(pid for pid in zygotes if pid)},
                             launcher_pid)
        return marshal.dumps({
            "argv": list(self.argv), "env": dict(self.env), "cwd": str(self.cwd),
            "limits": self.limits.as_dict(), "uid": self.uid, "gid": self.gid,
            "landlock": self.landlock.as_dict() if self.landlock is not None else None,
            "seccomp": bpf, "disk": self.disk.as_dict() if self.disk is not None else None,
            "netns": self.netns, "binds": [list(bind) for bind in self.binds],
            "in_process": self.in_process,
            "cgroup": self.cgroup.spec() if self.cgroup is not None else None,
            "memory_watchdog": self.memory_watchdog, "address_space": self.address_space,
        })


class Process:
    """A program running under its launcher. Made by `start`; finish with `wait`."""

    def __init__(self, proc: asyncio.subprocess.Process, spec: RunSpec) -> None:
        self._proc = proc
        self._spec = spec
        self._stderr_task = asyncio.create_task(self._read_diagnostics())

    async def _send(self, kind: bytes, payload: bytes = b"") -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        # A launcher that already finished no longer reads; `wait` reports its result anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(protocol.encode_frame(kind, payload))
            await stdin.drain()

    async def write_stdin(self, data: bytes) -> None:
        for offset in range(0, len(data), STDIN_FRAME_BYTES):
            await self._send(protocol.STDIN, data[offset:offset + STDIN_FRAME_BYTES])

    async def close_stdin(self) -> None:
        """End of input: the program's next read of stdin returns end-of-file."""
        await self._send(protocol.CLOSE_STDIN)

    async def send_signal(self, signum: int) -> None:
        """Delivers a signal to the program's process group."""
        await self._send(protocol.SIGNAL, str(int(signum)).encode())

    async def communicate(self, stdin: bytes, on_output: OutputCallback | None = None
                          ) -> RunResult:
        """Feeds `stdin` whole, then end-of-file, while collecting output: a program that
        prints before it reads cannot stall its feeding (nor the feeding its wall clock)."""
        async def feed() -> None:
            await self.write_stdin(stdin)
            await self.close_stdin()

        feeding = asyncio.create_task(feed())
        try:
            return await self.wait(on_output)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding

    async def _read_diagnostics(self) -> bytes:
        assert self._proc.stderr is not None
        return await self._proc.stderr.read()

    async def wait(self, on_output: OutputCallback | None = None,
                   keep_output: bool = True) -> RunResult:
        """Collects output until the run ends; calls `on_output` with each chunk as it arrives.
        `keep_output=False`: the result's streams are empty (`on_output` had them), so a
        long-lived program's output is not held for its whole life."""
        backstop = float(self._spec.limits.wall_timeout_s) + BACKSTOP_GRACE_S
        try:
            return await asyncio.wait_for(self._collect(on_output, keep_output), backstop)
        except TimeoutError:
            self._proc.kill()
            raise LaunchError(f"the launcher did not finish within {backstop:.0f} s") from None
        finally:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            await self._proc.wait()
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
            # The launcher is gone and with it the run; a process it lost is killed with the
            # cgroup (or, if that fails, the jail's uid clean-up finds it).
            await self._spec.release()

    async def _collect(self, on_output: OutputCallback | None, keep: bool) -> RunResult:
        reader = self._proc.stdout
        assert reader is not None
        chunks: dict[bytes, list[bytes]] = {protocol.STDOUT: [], protocol.STDERR: []}
        interleaved: list[bytes] = []
        while True:
            try:
                kind, length = protocol.HEADER.unpack(await reader.readexactly(protocol.HEADER.size))
                payload = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                diagnostics = (await self._stderr_task).decode(errors="replace").strip()
                raise LaunchError(
                    "the launcher ended without a result: " + (
                        diagnostics[-2000:] or "it was killed before it could say why (a "
                        "launcher dies with the zygote that forked it)")
                ) from None
            if kind == protocol.RESULT:
                break
            if keep:
                chunks[kind].append(payload)
                interleaved.append(payload)
            if on_output is not None:
                on_output(Stream.STDOUT if kind == protocol.STDOUT else Stream.STDERR, payload)
        fields = marshal.loads(payload)
        if "error" in fields:
            raise LaunchError(fields["error"])
        return RunResult(
            outcome=Outcome(fields["outcome"]),
            exit_code=fields["exit_code"],
            signal=fields["signal"],
            stdout=b"".join(chunks[protocol.STDOUT]),
            stderr=b"".join(chunks[protocol.STDERR]),
            output=b"".join(interleaved),
            stdout_truncated=fields["stdout_truncated"],
            stderr_truncated=fields["stderr_truncated"],
            wall_time_s=fields["wall_time_s"],
            cpu_time_s=fields["cpu_time_s"],
            memory_bytes=fields["memory_bytes"],
        )


async def dispose_cgroup(cgroup: RunCgroup) -> None:
    """Removes a run's cgroup: at once when it is empty (the usual end of a run), else in a
    thread, which kills what is left and waits for it."""
    if not cgroup.remove(patient=False):
        await asyncio.to_thread(cgroup.remove)


async def start(spec: RunSpec, python: str, zygote: Zygote | None = None,
                warm: Zygote | None = None, zygotes: Collection[int] = ()) -> Process:
    """Starts the launcher for `spec` (forked by `zygote` when there is one and it answers,
    else started with the interpreter `python`); the program starts at once. A spec to run in
    process is forked from the warm interpreter `warm`, or if that does not answer, started
    the ordinary way. `zygotes`: the pids of every zygote of the service, which the program
    may not signal."""
    for arg in spec.argv:
        if "\0" in arg:
            raise LaunchError("an argument contains a NUL character")
    forked = None
    if spec.in_process is not None:
        forked = await warm.fork() if warm is not None else None
        if forked is None:
            spec = dataclasses.replace(spec, in_process=None)
    if forked is None and zygote is not None:
        forked = await zygote.fork()
    if forked is not None:
        process = Process(forked, spec)  # type: ignore[arg-type]
        await process._send(protocol.SPEC, spec.encode(forked.pid, zygotes))
        return process
    try:
        proc = await asyncio.create_subprocess_exec(
            *launcher_command(python),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Nothing of the service's environment reaches the launcher, hence none the program.
            env={},
            # Out of the service's process group: a signal to the service's group spares runs,
            # and runs cannot be reached through it.
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise LaunchError(f"could not start the launcher: {exc}") from exc
    process = Process(proc, spec)
    await process._send(protocol.SPEC, spec.encode(proc.pid, zygotes))
    return process


async def run(spec: RunSpec, python: str, stdin: bytes = b"") -> RunResult:
    """Runs one program to its end with `stdin` as its whole input."""
    return await (await start(spec, python)).communicate(stdin)


def run_blocking(spec: RunSpec, python: str, timeout_s: float
                 ) -> tuple[dict[str, Any] | None, str]:
    """Runs `spec` with no input through a started launcher, without an event loop (startup
    probes, before the loop runs): the RESULT frame's fields, or None when the launcher ended
    without one, and its diagnostics. Raises OSError, ValueError or TimeoutExpired."""
    proc = subprocess.Popen(launcher_command(python), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={},
                            start_new_session=True)
    out, err = proc.communicate(
        protocol.encode_frame(protocol.SPEC, spec.encode(proc.pid))
        + protocol.encode_frame(protocol.CLOSE_STDIN), timeout=timeout_s)
    frames = protocol.FrameReader().feed(out)
    if not frames or frames[-1][0] != protocol.RESULT:
        return None, err.decode(errors="replace")
    fields: dict[str, Any] = marshal.loads(frames[-1][1])
    return fields, err.decode(errors="replace")
