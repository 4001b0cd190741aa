"""Jails: a private working directory and identity in which one request's programs run.

    sandbox = Sandbox(SandboxConfig(work_root=Path("/var/lib/sandbox")))
    async with sandbox.jail() as jail:
        jail.write_file("main.py", b"print(1)")
        result = await jail.run(["/usr/bin/python3", "main.py"], env, limits)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from . import landlock
from .config import SandboxConfig
from .errors import LaunchError, SandboxError
from .identity import UidPool
from .layers import Layers, RunRequest, probe_layers
from .limits import Limits
from .names import resolve_inside
from .process import OutputCallback, Process, RunSpec, launcher_zygote, start, warm_zygote
from .result import RunResult
from .warm import WarmInterpreter
from .workdir import (
    create_workdir,
    prepare_root,
    remove_owned,
    remove_workdir,
    warm_caches,
)
from .zygote import Zygote

# World-writable folders a run may write to when Landlock does not confine it.
SHARED_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")


class Jail:
    """One request's working directory and uid. Made by `Sandbox.jail`."""

    def __init__(self, path: Path, uid: int | None, sandbox: Sandbox) -> None:
        self.path = path
        self.uid = uid
        self._sandbox = sandbox
        self.clean = True  # False once a launcher was lost: its processes may have survived

    def write_file(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        """Creates file `name` (sub-folders allowed) inside the working directory, owned by the
        jail's uid, with permission bits `mode` (0o700 for a program to execute); see
        `create_file`."""
        with self.create_file(name, mode) as f:
            f.write(data)
        return resolve_inside(self.path, name)

    def create_file(self, name: str, mode: int = 0o600) -> BinaryIO:
        """Creates file `name` as `write_file` does and returns it open for writing, for data
        that arrives in pieces (an upload streamed as it comes); the caller closes it.

        Walks down one folder at a time through descriptors opened with O_NOFOLLOW, so even a
        symlink a program planted in the jail cannot redirect the write; an existing file is
        never overwritten (O_EXCL)."""
        # Owner bits only: a set-id or group/other bit on a file the service creates could let
        # another uid execute or read it with the run's identity.
        if mode & ~0o700:
            raise ValueError(f"mode {mode:#o} has bits other than the owner's")
        path = resolve_inside(self.path, name)
        *folders, leaf = path.relative_to(self.path).parts
        dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for folder in folders:
                try:
                    os.mkdir(folder, 0o700, dir_fd=dir_fd)
                    created = True
                except FileExistsError:
                    created = False
                next_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = next_fd
                if created:
                    self._give(dir_fd)
            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode,
                         dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        f = os.fdopen(fd, "wb")
        try:
            self._give(f.fileno())
            os.fchmod(f.fileno(), mode)  # whatever the service's umask is
        except BaseException:
            f.close()
            raise
        return f

    def _give(self, fd: int) -> None:
        # Only what the service itself just created is chowned (through its descriptor), never
        # anything a program left.
        if self.uid is not None:
            os.fchown(fd, self.uid, self.uid)

    async def start(self, argv: Sequence[str], env: Mapping[str, str], limits: Limits,
                    read_paths: Sequence[str] = landlock.SYSTEM_READ_PATHS,
                    also_at: str | None = None, warm: WarmInterpreter | None = None,
                    address_space: bool = True) -> Process:
        """Starts a program in the jail; feed it and `wait` for it. Under Landlock it may read
        and execute only `read_paths` (and a few devices), and write only in the jail.
        `also_at`: an existing folder where the program also sees the jail (a bind mount in a
        mount namespace of its own); ignored unless the mntns layer is active. `warm`: a warm
        interpreter to run it, if argv and env are a script for it and the sandbox has it.
        `address_space=False`: no RLIMIT_AS (a VM that reserves far more than it touches); the
        run's memory bound over all its processes still holds."""
        sandbox = self._sandbox
        in_process = warm.script_index(argv, env) if warm is not None else None
        # The layers' parts last: one may be a resource of the run (its cgroup), which
        # spec.release() frees.
        spec = RunSpec(
            argv=tuple(argv), env=dict(env), cwd=self.path, limits=limits, uid=self.uid,
            gid=self.uid, in_process=in_process, address_space=address_space,
            **sandbox.layers.spec(self, RunRequest(limits, read_paths, also_at)),
        )
        zygote = sandbox.warm_zygote(warm) if spec.in_process is not None else None
        try:
            return await start(spec, sandbox.config.launcher_python, sandbox.zygote, zygote,
                               sandbox.zygote_pids())
        except BaseException:
            await spec.release()
            raise

    async def run(self, argv: Sequence[str], env: Mapping[str, str], limits: Limits,
                  stdin: bytes = b"", on_output: OutputCallback | None = None,
                  read_paths: Sequence[str] = landlock.SYSTEM_READ_PATHS,
                  warm: WarmInterpreter | None = None) -> RunResult:
        """Runs a program in the jail to its end with `stdin` as its whole input."""
        process = await self.start(argv, env, limits, read_paths, warm=warm)
        try:
            return await process.communicate(stdin, on_output)
        except BaseException:
            self.clean = False
            raise


def _check_searchable(root: Path) -> None:
    """Runs under their own uid must be able to walk down to their working directory."""
    for folder in (root.resolve(), *root.resolve().parents):
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            raise SandboxError(
                f"the work root {root} is unusable with per-run uids: {folder} is not searchable "
                "by other users (chmod o+x it, or choose another work root)")


class Sandbox:
    """The sandbox of one service: its configuration, uid pool and confinement layers."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        prepare_root(config.work_root)
        self.layers: Layers = probe_layers(config)
        self._uids = None
        if self.layers.active("per_run_uid"):
            _check_searchable(config.work_root)
            self._uids = UidPool(config.uid_first, config.uid_count, config.launcher_python,
                                 config.uid_lock_dir)
            self._uids.reclaim()
        self.zygote: Zygote | None = None
        if config.fork_launchers:
            self.zygote = launcher_zygote(config.launcher_python)
            self.zygote.start()
            # A sandbox dropped without close() (tests, tools) does not leave its zygote.
            weakref.finalize(self, self.zygote.close)
        self._warm: dict[WarmInterpreter, Zygote] = {}

    def warm_zygote(self, warm: WarmInterpreter | None) -> Zygote | None:
        """The zygote of warm interpreter `warm`, started on first use (a caller that wants it
        ready starts it early with this); None when warm interpreters are off."""
        if warm is None or not self.config.warm_interpreters:
            return None
        zygote = self._warm.get(warm)
        if zygote is None:
            # If it fails to start, runs start fresh, and each later run tries it again.
            try:
                zygote = warm_zygote(warm, warm_caches(self.config.work_root))
            except OSError:
                zygote = warm_zygote(warm)
            with contextlib.suppress(OSError):
                zygote.start()
            weakref.finalize(self, zygote.close)
            self._warm[warm] = zygote
        return zygote

    def has_warm_zygote(self, warm: WarmInterpreter) -> bool:
        """Whether the zygote of `warm` was started (by a run, or early on purpose)."""
        return warm in self._warm

    def zygote_pids(self) -> set[int]:
        """The pids of every zygote (launcher and warm interpreters): no run may signal one, nor
        its process group, which holds the launchers it forked."""
        zygotes = [self.zygote, *self._warm.values()]
        return {zygote.pid for zygote in zygotes if zygote is not None and zygote.pid}

    def close(self) -> None:
        """At shutdown, after the last jail: stops the zygotes and removes whatever is still in
        the work root (a jail whose disposal was cut short), tmpfs mounts first."""
        if self.zygote is not None:
            self.zygote.close()
        for zygote in self._warm.values():
            zygote.close()
        if self._uids is not None:
            # Jails cut short by the shutdown may still be disposing: their runs' processes
            # (escapees of a launcher killed mid-run) go now, not whenever that finishes.
            self._uids.kill_held()
        self.layers.close()
        prepare_root(self.config.work_root)

    @contextlib.asynccontextmanager
    async def jail(self) -> AsyncIterator[Jail]:
        """A fresh jail, removed with every file and process of it when the block ends."""
        uid = self._uids.acquire() if self._uids is not None else None
        owner = (uid, uid) if uid is not None else None
        path = None
        try:
            path = create_workdir(self.config.work_root, owner)
            jail = Jail(path, uid, self)
            self.layers.prepare(jail)
        except OSError as exc:
            if path is not None:
                remove_workdir(path)
            if self._uids is not None and uid is not None:
                self._uids.release(uid, clean=True)
            raise LaunchError(f"could not create a working directory: {exc}") from exc
        try:
            yield jail
        finally:
            # Off the event loop: removal of a large tree, or killing a lost run's processes,
            # must not stall other requests.
            await asyncio.shield(asyncio.to_thread(self._dispose, jail))

    def _dispose(self, jail: Jail) -> None:
        try:
            if self._uids is not None and jail.uid is not None:
                if not self.layers.landlock_abi:
                    # Without Landlock a run can write to the shared scratch folders; the uid
                    # is ours alone, so whatever it owns there is the run's to remove.
                    remove_owned(jail.uid, SHARED_SCRATCH)
                self._uids.release(jail.uid, clean=jail.clean)
        finally:
            # The run is over and its processes are dead: the layers undo what they did to the
            # jail (the tmpfs is detached), then the folder goes.
            self.layers.dispose(jail)
            remove_workdir(jail.path)
