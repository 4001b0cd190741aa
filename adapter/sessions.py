"""Code-interpreter sessions by identifier: a jail with its files and a Python kernel each.

A session starts on first use (a cell or a file), lives while it is used, and is removed with
its files and processes once idle for SANDBOX_SESSION_COOLDOWN_S, on DELETE /session, or at
shutdown. Cells of one session run one at a time; sessions run in parallel. Files are regular
files directly in the session's folder, which code sees as its working directory and, where the
mntns layer is active, at /mnt/data.

(Longer than the other modules: a session's files, the checks that keep reading and listing
them safe, and the sessions' lifecycle share the Session object; the file helpers could move to
a module of their own once the files API grows.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes import CellResult, InterpreterSession, Runtime
from sandbox import Jail, Limits, UnsafeName, WarmInterpreter, resolve_inside

from .admission import Admission
from .errors import BadRequest, Conflict, NotFound, ServiceBusy
from .settings import Settings

log = logging.getLogger("adapter")

FILES_AT = "/mnt/data"
SWEEP_INTERVAL_S = 5.0
KEPT_EXECUTIONS = 100
# A kernel's whole output over its life, in cells' worth of the output cap: a backstop under
# the per-cell cap (and the cap between cells) that stops it even if those were missed.
KERNEL_OUTPUT_CELLS = 64
# What a timestamp can be rendered as (years 1 to 9999). A cell may set any mtime
# (os.utime(name, (1e15, 1e15))): one outside is shown at the nearer end.
EARLIEST_S, LATEST_S = -62135596800.0, 253402300799.0


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    modified: float

    def iso_modified(self) -> str:
        clamped = min(max(self.modified, EARLIEST_S), LATEST_S)
        moment = datetime.datetime.fromtimestamp(clamped, datetime.UTC)
        return moment.isoformat().replace("+00:00", "Z")


def file_name(raw: str, folder: Path) -> str:
    """A file name as clients send it, `x.csv` or `/mnt/data/x.csv`, checked as a plain name
    of a file in `folder`; a 400 naming it otherwise."""
    name = raw[len(FILES_AT) + 1:] if raw.startswith(FILES_AT + "/") else raw
    if not name or "/" in name or name in (".", ".."):
        raise BadRequest(f"file name {raw!r} must be a plain name (optionally under "
                         f"{FILES_AT}/)")
    try:
        resolve_inside(folder, name)
    except UnsafeName as exc:
        raise BadRequest(f"file name {raw!r}: {exc}") from None
    return name


@dataclass
class Session:
    identifier: str
    jail: Jail
    kernel: InterpreterSession
    stack: contextlib.AsyncExitStack
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    executions: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    # -- files ----------------------------------------------------------------------------------

    def file_name(self, raw: str) -> str:
        """A file name as clients send it: `x.csv` or `/mnt/data/x.csv`; plain names only."""
        return file_name(raw, self.jail.path)

    def accessible(self) -> None:
        """Gives the session's folder its owner's access back when code took it away (a cell
        may chmod its working directory to 0: a service of the kernel's uid could list, read,
        write nothing, and no later kernel could start in it). Before every files call and
        cell; a cell may do it again at any moment: what then fails is a 409 of `denied`,
        never a failure of the service."""
        info = os.stat(self.jail.path, follow_symlinks=False)
        if stat.S_IMODE(info.st_mode) & stat.S_IRWXU != stat.S_IRWXU:
            restore_access(self.jail.path, self.jail.uid)

    def files(self) -> list[FileInfo]:
        """Regular files directly in the session's folder; never follows a link code planted.
        A name that is not valid UTF-8 (a cell's open(b'\\xff', 'w')) is left out: JSON cannot
        carry it and no URL can name it back; code still sees the file, and it counts."""
        self.accessible()
        found = []
        with denied(), os.scandir(self.jail.path) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and is_utf8(entry.name):
                    found.append(FileInfo(entry.name, info.st_size, info.st_mtime))
        return sorted(found, key=lambda f: f.name)

    def info(self, name: str) -> FileInfo:
        self.accessible()
        try:
            with denied():
                found = os.stat(self.jail.path / name, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"no file {name!r} in this session") from None
        if not stat.S_ISREG(found.st_mode):
            raise NotFound(f"no file {name!r} in this session")
        return FileInfo(name, found.st_size, found.st_mtime)

    def read(self, name: str) -> bytes:
        self.accessible()
        try:
            fd = os.open(self.jail.path / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, OSError):
            raise NotFound(f"no file {name!r} in this session") from None
        # Checked on the descriptor before wrapping it: a file object refuses a folder with an
        # IsADirectoryError of its own, and a FIFO would block a read.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotFound(f"no file {name!r} in this session")
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def usage(self) -> tuple[int, int]:
        """(bytes, entries) of everything in the session's folder, sub-folders included, as its
        tmpfs counts them (folders and links take an inode too); never follows a link."""
        total_bytes = entries = 0
        folders = [str(self.jail.path)]
        while folders:
            for entry in _entries(folders.pop()):
                info = entry.stat(follow_symlinks=False)
                entries += 1
                if stat.S_ISREG(info.st_mode):
                    total_bytes += info.st_size
                elif stat.S_ISDIR(info.st_mode):
                    folders.append(entry.path)
        return total_bytes, entries

    def delete(self, name: str, missing_ok: bool = False) -> None:
        self.accessible()
        try:
            with denied():
                os.unlink(self.jail.path / name)  # unlink never follows the link itself
        except FileNotFoundError:
            if not missing_ok:
                raise NotFound(f"no file {name!r} in this session") from None
        except IsADirectoryError:
            raise NotFound(f"no file {name!r} in this session") from None

    def remember(self, execution: dict[str, Any]) -> None:
        self.executions[execution["id"]] = execution
        while len(self.executions) > KEPT_EXECUTIONS:
            self.executions.popitem(last=False)


class Sessions:
    """Every live session of the service."""

    def __init__(self, settings: Settings, sandbox: Any, runtime: Runtime,
                 admission: Admission, warm: WarmInterpreter | None = None) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.runtime = runtime
        self.warm = warm  # what kernels are forked from; None: each starts afresh
        self.admission = admission
        self.live: dict[str, Session] = {}
        self._creating = asyncio.Lock()
        self.uploads_in_flight = 0
        self.files_at: str | None = None
        # Who sees their files at /mnt/data. With a mount namespace per kernel, every session;
        # without one (a default container), /mnt/data is a symlink to one session's folder at a
        # time, which in a session pool, where a container serves one identifier, is all of
        # them. Another session's folder behind the link stays closed to a session by its uid
        # and Landlock.
        self.link_holder: str | None = None
        self.files_mode = self._set_up_files_at(sandbox)

    def _set_up_files_at(self, sandbox: Any) -> str:
        if sandbox.layers.active("mntns"):
            _make_mount_point()
            self.files_at = FILES_AT
            return f"every session's files are at {FILES_AT} (a mount namespace per kernel)"
        if os.path.isdir(FILES_AT) and not os.path.islink(FILES_AT):
            try:
                os.rmdir(FILES_AT)  # an empty mount point is ours to replace by the link
            except OSError:
                return (f"{FILES_AT} is a folder with files of the image: sessions use their "
                        "working directory")
        try:
            os.makedirs(os.path.dirname(FILES_AT), mode=0o755, exist_ok=True)
            _point_link(None)  # a link a dead predecessor left
            probe = os.path.dirname(FILES_AT) + "/.probe-" + secrets.token_hex(4)
            os.symlink("/nonexistent", probe)
            os.unlink(probe)
        except OSError as exc:
            return (f"{FILES_AT} cannot be made here ({exc.strerror}): sessions use their "
                    "working directory")
        self.files_at = FILES_AT
        return f"{FILES_AT} links to the folder of the oldest live session (one at a time)"

    def cell_output_bytes(self) -> int:
        """What a cell keeps of each stream: the runtime's run default, as for any run."""
        return self.runtime.run.limits.clamp(self.settings.ceilings()).max_output_bytes

    def kernel_limits(self) -> Limits:
        """The kernel lives across cells: its wall and CPU bounds are the session's lifetime,
        its output is cut per cell and between cells, and in all at KERNEL_OUTPUT_CELLS caps'
        worth; memory and the rest are the runtime's, as for any run."""
        lifetime = float(self.settings.session_max_lifetime_s)
        return self.runtime.run.limits.clamp(self.settings.ceilings()).replace(
            wall_timeout_s=lifetime, cpu_time_s=lifetime,
            max_output_bytes=KERNEL_OUTPUT_CELLS * self.cell_output_bytes())

    async def get(self, identifier: str) -> Session:
        """The session `identifier`, started if new."""
        async with self._creating:
            session = self.live.get(identifier)
            if session is None:
                if len(self.live) >= self.settings.max_sessions:
                    raise ServiceBusy(f"{len(self.live)} sessions are live, the most this "
                                      "service keeps; retry when one has cooled down")
                # For its whole life a session may hold its kernel's memory limit and its
                # files (on a tmpfs, memory too): both count against the memory budget.
                held = self.kernel_limits().memory_bytes + self.settings.max_disk_bytes
                self.admission.reserve(held, f"a new session ({held} bytes)")
                stack = contextlib.AsyncExitStack()
                stack.push_async_callback(self.admission.unreserve, held)
                try:
                    jail = await stack.enter_async_context(self.sandbox.jail())
                except BaseException:
                    await stack.aclose()
                    raise
                files_at = self.files_at
                if files_at is not None and self.sandbox.layers.active("mntns"):
                    # Made again if gone: /mnt/data is the machine's, and a service in the
                    # other mode (or anyone) may have removed it since startup. If it cannot
                    # be, this session has its files in its working directory only.
                    try:
                        _make_mount_point()
                    except OSError:
                        files_at = None
                elif files_at is not None:
                    if self.link_holder is None:
                        _point_link(jail.path)
                        self.link_holder = identifier
                    else:
                        files_at = None
                kernel = InterpreterSession(self.sandbox, self.runtime, jail,
                                            self.kernel_limits(), files_at, self.warm)
                stack.push_async_callback(kernel.close)
                session = Session(identifier, jail, kernel, stack)
                self.live[identifier] = session
            session.touch()
            return session

    def find(self, identifier: str) -> Session | None:
        """The live session `identifier`, or None: never starts one. Calls that only read or
        delete use it, so a client probing new identifiers allocates no jail, uid or tmpfs and
        cannot fill the `max_sessions` ceiling for everyone else."""
        session = self.live.get(identifier)
        if session is not None:
            session.touch()
        return session

    async def run(self, session: Session, code: str, timeout_s: float,
                  slot: Callable[[], contextlib.AbstractAsyncContextManager[None]],
                  shell: bool = False) -> CellResult:
        """Runs a cell once the session's earlier cells are done, then in a run slot from
        `slot`: taken the other way round, cells queued behind one session's cell would hold
        slots that other sessions' cells could use."""
        async with session.lock:
            session.touch()
            session.accessible()
            try:
                async with slot():
                    return await session.kernel.run(code, timeout_s,
                                                    self.cell_output_bytes(), shell=shell)
            finally:
                session.touch()

    @contextlib.contextmanager
    def upload_slot(self) -> Iterator[None]:
        """Held by an upload while its body streams in; past `max_uploads_in_flight` a 503:
        each holds its session's lock and a share of the disk's bandwidth while it lasts."""
        limit = self.settings.max_uploads_in_flight
        if self.uploads_in_flight >= limit:
            raise ServiceBusy(f"{self.uploads_in_flight} uploads are in flight, the most this "
                              "service takes at once; retry in a moment")
        self.uploads_in_flight += 1
        try:
            yield
        finally:
            self.uploads_in_flight -= 1

    async def end_if_unused(self, identifier: str) -> None:
        """Ends a session that a refused upload started, unless something else made use of it
        meanwhile (a kernel runs, or it holds files): a refused upload leaves no session."""
        session = self.live.get(identifier)
        if session is None or session.lock.locked() or session.kernel.process is not None:
            return
        with contextlib.suppress(OSError, Conflict):
            if session.usage() != (0, 0):
                return
        await self.end(identifier)

    async def end(self, identifier: str) -> bool:
        session = self.live.pop(identifier, None)
        if session is None:
            return False
        if self.link_holder == identifier:
            _point_link(None)
            self.link_holder = None
        async with session.lock:
            await session.stack.aclose()
        return True

    async def one_shot(self) -> Session:
        """A session for a call without identifier, to be ended right after it."""
        return await self.get("one-shot-" + secrets.token_hex(8))

    async def sweep_forever(self) -> None:
        # A cooldown shorter than the usual interval is still honoured to within half of it.
        interval = min(SWEEP_INTERVAL_S, self.settings.session_cooldown_s / 2)
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def sweep(self) -> None:
        """Ends every session idle longer than the cooldown (and not running a cell)."""
        cutoff = time.monotonic() - self.settings.session_cooldown_s
        for identifier, session in list(self.live.items()):
            if session.last_used < cutoff and not session.lock.locked():
                log.info("session_expired",
                         extra={"event": "session_expired", "identifier": identifier})
                await self.end(identifier)

    async def close(self) -> None:
        for identifier in list(self.live):
            await self.end(identifier)



def is_utf8(name: str) -> bool:
    """Whether a name os.scandir gave is valid UTF-8 (else it holds surrogate escapes)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def restore_access(folder: str | Path, owner: int | None = None) -> bool:
    """Gives the owner read, write and search on `folder` again, if it is a folder of the
    service's uid (or `owner`'s, the session's own uid); whether it did. Opened without
    following a link (O_PATH), and changed through that descriptor: a link swapped in for the
    folder cannot redirect the chmod."""
    try:
        fd = os.open(folder, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if info.st_uid not in (os.geteuid(), owner):
            return False
        # fchmod refuses an O_PATH descriptor; its /proc link names that very inode.
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def denied() -> Iterator[None]:
    """A permission error on the session's files (code took the access away again after
    `Session.accessible`) as a 409 that says so."""
    try:
        yield
    except PermissionError:
        raise Conflict("the session's files are not accessible: code in the session removed "
                       "the permissions of its folder") from None


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """The entries of `folder`; one that code made unreadable is opened up again when the
    service owns it, else it counts as empty (a tmpfs or the disk watchdog still bounds it)."""
    for attempt in range(2):
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except PermissionError:
            if attempt or not restore_access(folder):
                break
    return []


def _make_mount_point() -> None:
    """/mnt/data as a folder to bind sessions' folders on. It must be a folder: a link (left by
    a service in the other mode) would carry the bind mount to wherever it points."""
    _point_link(None)
    os.makedirs(FILES_AT, mode=0o755, exist_ok=True)


def _point_link(target: Path | None) -> None:
    """Makes /mnt/data a symlink to `target` (atomically: a new link renamed over the old), or
    removes the link. Never touches a real folder there."""
    if target is None:
        if os.path.islink(FILES_AT):
            os.unlink(FILES_AT)
        return
    temporary = f"{FILES_AT}.{secrets.token_hex(8)}"
    os.symlink(target, temporary)
    os.replace(temporary, FILES_AT)
