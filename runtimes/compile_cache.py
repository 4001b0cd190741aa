"""Compiled programs kept on disk, so that the same sources compile once.

An entry is found by a sha256 of everything that decides what the compiler makes: the runtime's
name, version and toolchain paths, the compile argv and environment templates, the main file's
name, every source file's name and content (and the request's args, when the compile argv uses
them). It holds the compile stage's `RunResult` and the files the compile produced (for C++ the
binary `main`), which are copied into the jail of every later run of the same sources.

Only successful compiles are kept: a failure can depend on the limits it ran under and on the
machine at that moment (a fork refused under load), and a stale failure would be served to every
later request, where a success is the same whenever it happens.

What keeps the cache out of the reach of programs:

- the folder is the service's own (checked), mode 0700, and every access goes through one
  descriptor of it opened with O_NOFOLLOW: a run's uid cannot list, read or write it, and a
  symlink swapped in for the folder's path after startup leads nowhere;
- where runs share the service's uid, only Landlock keeps them out, so the cache is refused
  unless it lies outside everything a run may read (`cache_exposure`);
- a jail receives a copy of an entry's bytes, never a link: a program that rewrites its own
  binary changes its jail's copy only;
- an entry is written to a temporary file and renamed into place: a crash leaves a temporary
  file (removed at the next start), never half an entry. Entries are checked when read; one that
  does not parse is removed and counts as a miss.

The folder is bounded in bytes; the least recently used entries go first (an entry's mtime is
set when it is used).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import secrets
import stat
import struct
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox import Outcome, RunResult, Sandbox

from .errors import RuntimesError
from .runtime import Runtime

MAGIC = b"sandbox-service compiled program v1\n"
LENGTH = struct.Struct(">Q")
TEMP_PREFIX = ".tmp-"
KEY_CHARS = frozenset("0123456789abcdef")
RESULT_BYTES_FIELDS = ("stdout", "stderr", "output")


class CompileCacheError(RuntimesError):
    """The cache folder cannot be used (not ours, not a folder, not creatable)."""


@dataclass(frozen=True)
class ProducedFile:
    """A file a compile left in its working directory; `name` is relative to it."""

    name: str
    content: bytes
    executable: bool


@dataclass(frozen=True)
class Compiled:
    """A compile stage's result and the files it produced, ready to be placed in other jails.

    `cached`: `result` is the stored result of an earlier compile of the same sources (its
    times and memory are that compile's); no compiler ran for this one."""

    result: RunResult
    files: tuple[ProducedFile, ...] = ()
    cached: bool = False


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    capacity_bytes: int
    hits: int
    misses: int
    stores: int
    evictions: int
    store_failures: int


def compile_key(runtime: Runtime, files: Sequence[tuple[str, bytes]], main: str,
                args: Sequence[str] = ()) -> str:
    """The sha256 (hex) naming the compile of `files` (name, content pairs) by `runtime`."""
    assert runtime.compile is not None
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            # Length-prefixed, so that no two different sequences of parts hash alike.
            digest.update(LENGTH.pack(len(data)) + data)

    add(MAGIC, runtime.name, runtime.version, main)
    add(json.dumps(sorted(runtime.executables.items())), json.dumps(runtime.compile.argv),
        json.dumps(sorted(runtime.compile.env.items())), json.dumps(runtime.compile_sources))
    if "{args...}" in runtime.compile.argv:
        add(json.dumps(list(args)))
    add(str(len(files)))
    for name, content in files:
        add(name, content)
    return digest.hexdigest()


def fits(result: RunResult, wall_timeout_s: float, cpu_time_s: float, memory_bytes: int) -> bool:
    """Whether a stored compile would have succeeded under these limits too, as far as its
    measurements tell: a request that gives its compile less time than it took gets a real
    compile under its own limits instead of the stored success."""
    return (result.wall_time_s <= wall_timeout_s and result.cpu_time_s <= cpu_time_s
            and result.memory_bytes <= memory_bytes)


def cache_exposure(folder: Path, sandbox: Sandbox, read_paths: Iterable[str]) -> str | None:
    """Why runs of `sandbox` could reach a cache in `folder`, or None when they cannot.

    With per-run uids, a folder of the service's, mode 0700, is closed to every run. Otherwise
    runs share the service's uid and only Landlock keeps them out: the folder must lie outside
    the work root and every path a run may read."""
    work_root = sandbox.config.work_root.resolve()
    real = folder.resolve()
    if real.is_relative_to(work_root):
        return f"{folder} is inside the work root {work_root}"
    if sandbox.layers.active("per_run_uid"):
        return None
    if not sandbox.layers.landlock_abi:
        return ("runs share the service's uid and Landlock is off: they could write to the "
                "cache")
    for path in read_paths:
        if real.is_relative_to(Path(path).resolve()):
            return f"{folder} is inside {path}, which runs may read"
    return None


class CompileCache:
    """Compiled programs on disk under `folder`, at most `capacity_bytes` of them."""

    def __init__(self, folder: Path, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        self.folder = folder
        self.capacity_bytes = capacity_bytes
        self._fd = _open_folder(folder)
        self._guard = threading.Lock()  # the index, between the threads that store and load
        self._sizes: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: collections.Counter[str] = collections.Counter()
        self._counts: collections.Counter[str] = collections.Counter()
        self._scan(remove_temporary=True)

    def close(self) -> None:
        with self._guard:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def stats(self) -> CacheStats:
        with self._guard:
            return CacheStats(len(self._sizes), sum(self._sizes.values()), self.capacity_bytes,
                              self._counts["hits"], self._counts["misses"],
                              self._counts["stores"], self._counts["evictions"],
                              self._counts["store_failures"])

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Held while `key` is being compiled: concurrent requests for the same sources wait
        for the first compile and then find its entry, instead of compiling it again."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key], self._locks[key]

    async def get(self, key: str, count_miss: bool = True) -> Compiled | None:
        """The stored compile of `key` (marked `cached`), or None. `count_miss`: whether an
        absent entry counts as a miss in the stats (a look before taking the key's lock does
        not: the look under the lock will)."""
        return await asyncio.to_thread(self._load, key, count_miss)

    async def put(self, key: str, compiled: Compiled) -> bool:
        """Stores a successful compile; False when it was not stored (too large for the whole
        cache, or the disk refused: the request goes on without it)."""
        if not compiled.result.ok:
            raise ValueError("only successful compiles are stored")
        return await asyncio.to_thread(self._store, key, compiled)

    # ---- on disk (in worker threads) ------------------------------------------------------

    def _load(self, key: str, count_miss: bool) -> Compiled | None:
        _check_key(key)
        # Any failure to read is a miss: the request compiles instead of failing.
        try:
            fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._fd)
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError:
            self._forget(key, count_miss)
            return None
        try:
            compiled = _decode(key, data)
        except (ValueError, KeyError, TypeError, struct.error):
            with contextlib.suppress(OSError):
                os.unlink(key, dir_fd=self._fd)
            self._forget(key, count_miss)
            return None
        # Used now: the last to be evicted.
        with contextlib.suppress(OSError):
            os.utime(key, dir_fd=self._fd)
        with self._guard:
            self._counts["hits"] += 1
            self._sizes[key] = len(data)
        return compiled

    def _forget(self, key: str, count_miss: bool) -> None:
        with self._guard:
            self._counts["misses"] += count_miss
            self._sizes.pop(key, None)

    def _store(self, key: str, compiled: Compiled) -> bool:
        _check_key(key)
        data = _encode(key, compiled)
        if len(data) > self.capacity_bytes:
            return False
        temp = TEMP_PREFIX + secrets.token_hex(8)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self._fd)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    # On disk before it has its name: after a power loss, an entry is whole
                    # or absent.
                    os.fsync(f.fileno())
                os.rename(temp, key, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=self._fd)
                raise
        except OSError:
            with self._guard:
                self._counts["store_failures"] += 1
            return False
        with self._guard:
            self._counts["stores"] += 1
            self._sizes[key] = len(data)
            over = sum(self._sizes.values()) > self.capacity_bytes
        if over:
            with contextlib.suppress(OSError):  # the next store tries again
                self._evict()
        return True

    def _evict(self) -> None:
        """Removes the least recently used entries until the folder is within its bound.
        Reads the folder itself, so entries another service stored there count too."""
        entries = self._scan(remove_temporary=False)
        total = sum(size for _mtime, size, _key in entries)
        for _mtime, size, key in sorted(entries):
            if total <= self.capacity_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(key, dir_fd=self._fd)
            total -= size
            with self._guard:
                self._sizes.pop(key, None)
                self._counts["evictions"] += 1

    def _scan(self, remove_temporary: bool) -> list[tuple[int, int, str]]:
        """(mtime, size, key) of every entry; rebuilds the index. At startup, also removes the
        temporary files of stores that a crash interrupted."""
        entries = []
        for name in os.listdir(self._fd):
            try:
                info = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if name.startswith(TEMP_PREFIX):
                if remove_temporary:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=self._fd)
                continue
            if _is_key(name) and stat.S_ISREG(info.st_mode):
                entries.append((info.st_mtime_ns, info.st_size, name))
        with self._guard:
            self._sizes = {key: size for _mtime, size, key in entries}
        return entries


def _open_folder(folder: Path) -> int:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CompileCacheError(f"cannot use {folder} for compiled programs: {exc}") from exc
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        # Someone else's folder: they could read, replace or plant entries.
        raise CompileCacheError(f"{folder} belongs to uid {info.st_uid}, not to this service "
                                f"(uid {os.geteuid()})")
    # Closed to every other uid, whatever mode it was made with: runs must not read or plant.
    os.fchmod(fd, 0o700)
    return fd


def _is_key(name: str) -> bool:
    return len(name) == 64 and set(name) <= KEY_CHARS


def _check_key(key: str) -> None:
    # Keys become file names: only a sha256 in hex can name an entry.
    if not _is_key(key):
        raise ValueError(f"not a cache key: {key!r}")


def _encode(key: str, compiled: Compiled) -> bytes:
    result = compiled.result
    fields: dict[str, Any] = asdict(result)
    fields["outcome"] = result.outcome.value
    blobs = [getattr(result, name) for name in RESULT_BYTES_FIELDS]
    for name in RESULT_BYTES_FIELDS:
        fields[name] = len(fields[name])
    files = [{"name": f.name, "size": len(f.content), "executable": f.executable}
             for f in compiled.files]
    header = json.dumps({"key": key, "result": fields, "files": files}).encode()
    return b"".join([MAGIC, LENGTH.pack(len(header)), header, *blobs,
                     *(f.content for f in compiled.files)])


def _decode(key: str, data: bytes) -> Compiled:
    if not data.startswith(MAGIC):
        raise ValueError("not an entry")
    offset = len(MAGIC)
    (header_size,) = LENGTH.unpack_from(data, offset)
    offset += LENGTH.size
    header = json.loads(data[offset:offset + header_size])
    offset += header_size
    if header["key"] != key:
        raise ValueError("an entry of another key")

    def take(size: int) -> bytes:
        nonlocal offset
        if not isinstance(size, int) or size < 0 or offset + size > len(data):
            raise ValueError("truncated entry")
        offset += size
        return data[offset - size:offset]

    fields = dict(header["result"])
    fields["outcome"] = Outcome(fields["outcome"])
    for name in RESULT_BYTES_FIELDS:
        fields[name] = take(fields[name])
    files = tuple(ProducedFile(str(f["name"]), take(f["size"]), bool(f["executable"]))
                  for f in header["files"])
    if offset != len(data):
        raise ValueError("trailing bytes")
    return Compiled(RunResult(**fields), files, cached=True)
