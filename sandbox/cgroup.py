"""Control groups for runs: one memory and process bound over every process of a run.

RLIMIT_AS bounds each process alone; 58 children of 30 MB each stay inside it and still take
the machine's memory together. A cgroup per run charges every page any process of the run
touches (tmpfs pages it writes included) to one counter the kernel enforces: past the limit it
reclaims, then kills inside the run, never outside it.

The service's cgroups live in a subtree made under the service's own cgroup (read from
/proc/self/cgroup; never anywhere else), one folder per run, made before the launcher starts
and removed after the run. The program joins its run's cgroup itself, between fork and
execve, so neither the launcher's pages nor those a warm interpreter shares copy-on-write are
charged to it: the run's peak is its own.

    v2 (Docker, session pools): one folder with memory.max, memory.swap.max = 0, pids.max,
        memory.oom.group = 1; read memory.peak and memory.events (oom_kill); cgroup.kill.
    v1 (a memory and a pids hierarchy): a folder in each, memory.limit_in_bytes (and memsw),
        pids.max; read memory.max_usage_in_bytes and memory.oom_control (oom_kill).

The launcher reads the peak and the OOM-kill count (`RunCgroup.spec` names the files), so
`memory_limit` comes from the kernel's own count, not from what a program printed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUBTREE_PREFIX = "sandbox-service-"
# rmdir of a cgroup whose last process was just killed can fail for a moment (EBUSY).
REMOVE_ATTEMPTS = 50
REMOVE_PAUSE_S = 0.002


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _own_paths(cgroup_text: str) -> dict[str, str]:
    """The service's own cgroup per hierarchy from /proc/self/cgroup: {"memory": "/a/b",
    "pids": "/", "": "/c"} ("" is the v2 hierarchy)."""
    paths = {}
    for line in cgroup_text.splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _mounts(mountinfo_text: str) -> dict[str, Path]:
    """Mount points of cgroup hierarchies: {"memory": Path, "pids": Path, "": v2 Path}."""
    found: dict[str, Path] = {}
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], after[2] if len(after) > 2 else ""
        mount_point = Path(fields[4])
        if fstype == "cgroup2":
            found.setdefault("", mount_point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids"):
                    found.setdefault(option, mount_point)
    return found


def _hierarchies(cgroup_text: str | None, mountinfo_text: str | None
                 ) -> tuple[dict[str, str], dict[str, Path]]:
    """This process's own cgroup and the mount point of each hierarchy (see `_own_paths`,
    `_mounts`), from the texts given or else /proc/self/cgroup and /proc/self/mountinfo."""
    if cgroup_text is None:
        cgroup_text = _read(Path("/proc/self/cgroup"))
    if mountinfo_text is None:
        mountinfo_text = _read(Path("/proc/self/mountinfo"))
    return _own_paths(cgroup_text), _mounts(mountinfo_text)


@dataclass(frozen=True)
class RunCgroup:
    """One run's cgroup: its folders (v1: memory then pids; v2: one)."""

    version: int
    folders: tuple[Path, ...]

    def spec(self) -> dict[str, object]:
        """What the launcher needs: the files the program writes "0" into to join, where the
        peak and the OOM-kill count are read."""
        memory = self.folders[0]
        return {
            "join": [str(folder / "cgroup.procs") for folder in self.folders],
            "peak": str(memory / ("memory.peak" if self.version == 2
                                  else "memory.max_usage_in_bytes")),
            "events": str(memory / ("memory.events" if self.version == 2
                                    else "memory.oom_control")),
        }

    def remove(self, patient: bool = True) -> bool:
        """Removes it; False when it could not be. An empty cgroup (every run whose launcher
        finished) goes at once. `patient`: what is left in it (a run whose launcher was lost)
        is killed first and removal retried for a while, sleeping: not on an event loop."""
        if self.try_remove():
            return True
        if not patient:
            return False
        kill = self.folders[0] / "cgroup.kill"
        if self.version == 2 and kill.exists():  # since Linux 5.14
            with contextlib.suppress(OSError):
                _write(kill, "1")
        removed = True
        for folder in self.folders:
            removed = _remove_folder(folder, self.version) and removed
        return removed

    def try_remove(self) -> bool:
        """One rmdir of each folder; True when none is left."""
        left = False
        for folder in self.folders:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left = True
        return not left


def _kill_members(folder: Path) -> None:
    try:
        pids = [int(pid) for pid in _read(folder / "cgroup.procs").split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        # Only processes the kernel placed in a cgroup we made for a run: a run's own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _remove_folder(folder: Path, version: int) -> bool:
    for _attempt in range(REMOVE_ATTEMPTS):
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return False
        if version == 1:
            _kill_members(folder)
        time.sleep(REMOVE_PAUSE_S)
    return False


@dataclass(frozen=True)
class CgroupTree:
    """The service's subtree of cgroups, where each run gets one of its own."""

    version: int
    subtrees: tuple[Path, ...]  # v1: memory then pids; v2: one

    @property
    def where(self) -> str:
        return ", ".join(str(path) for path in self.subtrees)

    def create(self, memory_bytes: int, max_processes: int) -> RunCgroup:
        """A new cgroup for one run, its limits set. Raises OSError."""
        name = "run-" + secrets.token_hex(8)
        folders = tuple(subtree / name for subtree in self.subtrees)
        made: list[Path] = []
        try:
            for folder in folders:
                folder.mkdir(mode=0o700)
                made.append(folder)
            if self.version == 2:
                folder = folders[0]
                _write(folder / "memory.max", str(memory_bytes))
                # A run's memory is resident memory: swapping it out would let it hold more.
                with contextlib.suppress(FileNotFoundError):
                    _write(folder / "memory.swap.max", "0")
                # An OOM kill ends the whole run at once, as the limit means the run.
                with contextlib.suppress(FileNotFoundError):
                    _write(folder / "memory.oom.group", "1")
                # Fork and thread bombs stop here even as root, where RLIMIT_NPROC does not.
                _write(folder / "pids.max", str(max_processes))
            else:
                memory, pids = folders
                _write(memory / "memory.limit_in_bytes", str(memory_bytes))
                # Memory plus swap: the same bound, so swapping cannot stretch it (the file is
                # missing where swap is not accounted).
                with contextlib.suppress(OSError):
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                _write(pids / "pids.max", str(max_processes))
        except OSError:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return RunCgroup(self.version, folders)

    def close(self) -> None:
        """At shutdown: removes every run's cgroup left, then the subtree."""
        for subtree in self.subtrees:
            _remove_tree(subtree, self.version)


def _remove_tree(subtree: Path, version: int) -> None:
    with contextlib.suppress(OSError):
        for child in subtree.iterdir():
            if child.is_dir():
                RunCgroup(version, (child,)).remove()
    _remove_folder(subtree, version)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reclaim(parents: Iterable[Path], version: int) -> None:
    """Removes subtrees of services that died without removing theirs."""
    for parent in parents:
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                pid = child.name.removeprefix(SUBTREE_PREFIX).partition("-")[0]
                if child.name.startswith(SUBTREE_PREFIX) and pid.isdigit() \
                        and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                    _remove_tree(child, version)


def _subtree_name() -> str:
    # The pid, so a successor can tell a dead service's subtree; a random part, so two
    # sandboxes of one process (tools, tests) never share one.
    return f"{SUBTREE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def _make_subtree(parent: Path, name: str) -> Path:
    subtree = parent / name
    subtree.mkdir(mode=0o700)
    return subtree


def _enable_controllers(folder: Path) -> None:
    """Makes memory and pids available to the children of v2 `folder`. A cgroup with processes
    of its own cannot hand controllers down (no internal processes): its processes move to a
    leaf child first, under the same cgroup."""
    try:
        _write(folder / "cgroup.subtree_control", "+memory +pids")
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    leaf = folder / "service"
    leaf.mkdir(exist_ok=True)
    for pid in _read(folder / "cgroup.procs").split():
        with contextlib.suppress(ProcessLookupError):
            _write(leaf / "cgroup.procs", pid)
    _write(folder / "cgroup.subtree_control", "+memory +pids")


def find_tree(cgroup_text: str | None = None, mountinfo_text: str | None = None) -> CgroupTree:
    """The service's subtree, made under its own cgroup: v2 where its cgroup there has memory
    and pids, else v1 where both hierarchies are mounted. Raises OSError saying why not.
    The texts default to this process's /proc/self/cgroup and /proc/self/mountinfo."""
    own, mounts = _hierarchies(cgroup_text, mountinfo_text)
    why = []
    if "" in mounts and "" in own:
        folder = mounts[""] / own[""].lstrip("/")
        try:
            controllers = _read(folder / "cgroup.controllers").split()
        except OSError as exc:
            controllers = []
            why.append(f"v2 at {folder}: {exc.strerror}")
        if {"memory", "pids"} <= set(controllers):
            _reclaim([folder], 2)
            _enable_controllers(folder)
            subtree = _make_subtree(folder, _subtree_name())
            _write(subtree / "cgroup.subtree_control", "+memory +pids")
            return CgroupTree(2, (subtree,))
        if controllers or not why:
            why.append(f"v2 at {folder} has no memory and pids controllers")
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        parents = [mounts[name] / own[name].lstrip("/") for name in ("memory", "pids")]
        _reclaim(parents, 1)
        made = []
        name = _subtree_name()
        try:
            for parent in parents:
                made.append(_make_subtree(parent, name))
        except OSError as exc:
            for subtree in made:
                with contextlib.suppress(OSError):
                    subtree.rmdir()
            raise OSError(exc.errno, f"cannot make a cgroup under {parent}: "
                                     f"{exc.strerror}") from exc
        return CgroupTree(1, (made[0], made[1]))
    why.append("no v1 memory and pids hierarchies")
    raise OSError(errno.ENOENT, "; ".join(why))


def own_memory_limit_bytes(cgroup_text: str | None = None,
                           mountinfo_text: str | None = None) -> int | None:
    """The memory limit this process lives under: the smallest of its cgroup's and its
    ancestors' (v2 memory.max, v1 memory.limit_in_bytes), or None when none is set or
    readable (the limit of a container, which the service shares with its runs)."""
    own, mounts = _hierarchies(cgroup_text, mountinfo_text)
    limits = []
    for hierarchy, file in (("", "memory.max"), ("memory", "memory.limit_in_bytes")):
        if hierarchy not in own or hierarchy not in mounts:
            continue
        root = mounts[hierarchy]
        folder = root / own[hierarchy].lstrip("/")
        while True:
            with contextlib.suppress(OSError, ValueError):
                value = _read(folder / file).strip()
                # v1 writes "no limit" as a page-rounded 2**63 - 1.
                if value != "max" and int(value) < 1 << 62:
                    limits.append(int(value))
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return min(limits) if limits else None
