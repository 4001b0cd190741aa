"""The run as the kernel shows it: its processes, their CPU time, memory and disk, read from
/proc, the run's cgroup and its working directory."""

from __future__ import annotations

import os
import resource

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# A working directory with less room than this left counts as full.
FULL_BELOW_BYTES = 65536
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def descendants() -> list[int]:
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

def tree_cpu_s(tree: list[int]) -> float:
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
    return ticks / CLOCK_TICKS + usage.ru_utime + usage.ru_stime


def oom_kills(cgroup: dict[str, Any]) -> int:
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


def private_bytes(pid: int) -> int:
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


def exceeds_disk(root: str, max_bytes: int, max_files: int) -> bool:
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


def is_full(root: str) -> bool:
    """Whether the filesystem holding `root` has (almost) no room or no inodes left."""
    try:
        fs = os.statvfs(root)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < FULL_BELOW_BYTES or fs.f_favail == 0
