"""Per-run uids: each run gets a uid of its own from a configured range, so it cannot touch the
service or another run, and one kill(-1) as that uid ends everything it started."""

from __future__ import annotations

import collections
import fcntl
import os
import threading
from pathlib import Path

import psutil

from .errors import LaunchError
from .process import run_uid_command


def processes_of(uid: int) -> list[int]:
    """Pids of live processes whose real or effective uid is `uid` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            uids = proc.info["uids"]
            if uids is not None and uid in (uids.real, uids.effective, uids.saved) \
                    and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


class UidPool:
    """Hands out uids first-in first-out, so a released uid is the last to be reused; a uid is
    only handed out again once no process of it lives. The gid equals the uid.

    Each uid in use is also held by an flock in `lock_dir`, so two services on one machine
    with overlapping ranges never share a uid (one's kill(-1) would end the other's runs).
    """

    def __init__(self, first: int, count: int, python: str, lock_dir: Path) -> None:
        self._free = collections.deque(range(first, first + count))
        self._python = python
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_dir = lock_dir

    def _claim(self, uid: int) -> bool:
        fd = os.open(self._lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[uid] = fd
        return True

    def reclaim(self) -> list[int]:
        """At startup: kills what runs of a crashed predecessor left running (an escapee of a
        launcher that died with it) under uids of our range that no live service holds.
        Returns the uids it cleaned."""
        first, last = self._free[0], self._free[-1]
        found: set[int] = set()
        for proc in psutil.process_iter(["uids"]):
            try:
                uids = proc.info["uids"]
            except psutil.Error:
                continue
            if uids is not None:
                found.update(u for u in (uids.real, uids.effective) if first <= u <= last)
        cleaned = []
        for uid in sorted(found):
            with self._lock:
                if not self._claim(uid):
                    continue  # a live service's run: not ours to touch
            run_uid_command(self._python, "kill-uid", uid)
            with self._lock:
                os.close(self._held.pop(uid))
            cleaned.append(uid)
        return cleaned

    def kill_held(self) -> None:
        """At shutdown: kills every process of every uid still handed out, whatever state the
        jails holding them were left in."""
        with self._lock:
            held = list(self._held)
        for uid in held:
            run_uid_command(self._python, "kill-uid", uid)

    def acquire(self) -> int:
        with self._lock:
            for _ in range(len(self._free)):
                uid = self._free.popleft()
                if self._claim(uid):
                    return uid
                self._free.append(uid)  # another service holds it now
            raise LaunchError("no free uid for a run: raise SANDBOX_UID_COUNT")

    def release(self, uid: int, clean: bool) -> None:
        """Returns `uid` to the pool. `clean` says the launcher reaped all of the run; otherwise
        its processes are killed first, and the uid is withheld if any still survives."""
        if not clean and processes_of(uid):
            run_uid_command(self._python, "kill-uid", uid)
            if processes_of(uid):
                return  # never hand out a uid that still has processes: it would share them
        with self._lock:
            os.close(self._held.pop(uid))
            self._free.append(uid)
