"""Helpers shared by the tests: a real server in a subprocess, process and file checks.

A server runs in one of two modes:

- root: the service is root and gives every run a uid of its own, from a range that belongs to
  this test session alone, so concurrent sessions never mistake each other's runs for theirs;
- unprivileged: the service runs as the user `sandbox-ci` (no uid switching) and its runs share
  that uid, so any process of the user other than the service itself belongs to a run.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from adapter.judge0.api import STATE_FOLDER
from sandbox import Sandbox, WarmInterpreter
from sandbox.workdir import WARM_CACHES

IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parent.parent

ROOT_MODE = "root"
UNPRIVILEGED_MODE = "unprivileged"
SERVICE_USER = "sandbox-ci"
# Set to 1 where the unprivileged mode must run (CI): its fixture then fails instead of skipping.
REQUIRE_UNPRIVILEGED = "SANDBOX_TEST_REQUIRE_UNPRIVILEGED"

# Each test session claims a block of uids of its own (the service's default range, 60000-60999,
# stays free for a real service on the same machine) and cuts it into slices of UID_SLICE: the
# first for the `sandbox` fixture, the others for the servers it starts, in turn.
TEST_UIDS = range(61000, 200000)
UID_BLOCK_SIZE = 1000
UID_BLOCK_STARTS = range(TEST_UIDS.start, TEST_UIDS.stop - UID_BLOCK_SIZE + 1, UID_BLOCK_SIZE)
UID_SLICE = 200
UID_BLOCK_LOCKS = Path("/run/sandbox-service-tests")

# The virtual environments the unprivileged service runs from (see `provide_user_python`).
USER_VENVS = Path("/var/cache/sandbox-service-tests")
BASE_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
PROJECT_PACKAGES = ("sandbox", "runtimes", "adapter", "client")
PROJECT_FILES = ("pyproject.toml", "README.md")
BUILD_COMPLETE = ".complete"

# Folders where a run can leave files outside its working directory (world-writable).
SHARED_TMP = (Path("/tmp"), Path("/dev/shm"))
MEMORY_HIERARCHY = Path("/sys/fs/cgroup/memory")
PIDS_HIERARCHY = Path("/sys/fs/cgroup/pids")
# Top-level folders of SHARED_TMP that the tests themselves make.
HARNESS_PREFIXES = ("sandbox-test-", "pytest-of-")

# Locks held for the whole session: closing them would release them.
_held_locks: list[int] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- uid ranges --------------------------------------------------------------------------------

def try_lock(path: Path, kind: int = fcntl.LOCK_EX) -> int | None:
    """An open descriptor holding a non-blocking flock of `kind` on `path`, or None if taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@cache
def session_uid_block() -> range:
    """This session's block of uids, held by an flock until it ends so that no concurrent
    session picks it. Without root no lock is needed: no run can switch to these uids anyway."""
    count = len(UID_BLOCK_STARTS)
    order = [UID_BLOCK_STARTS[(os.getpid() + i) % count] for i in range(count)]
    if IS_ROOT:
        UID_BLOCK_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        for first in order:
            fd = try_lock(UID_BLOCK_LOCKS / f"uid-block-{first}.lock")
            if fd is not None:
                _held_locks.append(fd)
                return range(first, first + UID_BLOCK_SIZE)
    return range(order[0], order[0] + UID_BLOCK_SIZE)


def uid_slice(index: int) -> range:
    block = session_uid_block()
    first = block.start + index * UID_SLICE
    return range(first, first + UID_SLICE)


def sandbox_uids() -> range:
    """The uids of the `sandbox` fixture's runs."""
    return uid_slice(0)


_server_slices = itertools.count()


def next_server_uids() -> range:
    """A slice for the next server. Slices come round again after a few servers: by then the
    earlier server is stopped, and the services' own uid locks would keep two apart anyway."""
    return uid_slice(1 + next(_server_slices) % (UID_BLOCK_SIZE // UID_SLICE - 1))


# ---- the unprivileged user and its interpreter ---------------------------------------------------

@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: str


def find_user(name: str) -> ServiceUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def world_executable(path: str) -> bool:
    """Whether any user can execute `path`: the file and every folder above it are o+x."""
    real = Path(os.path.realpath(path))
    try:
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in (real, *real.parents))
    except OSError:
        return False


def find_base_python() -> str | None:
    """A Python 3.11+ that every user may execute, to make the user's environment from.

    The tests' own interpreter will not do: it often lives under /root (0700)."""
    for candidate in BASE_PYTHONS:
        if not world_executable(candidate):
            continue
        check = [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]
        if subprocess.run(check, capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def unprivileged_unavailable() -> str | None:
    """Why the service cannot be started as the unprivileged user here, or None."""
    if not IS_ROOT:
        return f"needs root to start the service as the user {SERVICE_USER}"
    user = find_user(SERVICE_USER)
    if user is None:
        return (f"no user {SERVICE_USER}; create it with: useradd --system --no-create-home "
                f"--shell /usr/sbin/nologin {SERVICE_USER}")
    if user.uid == 0:
        return f"the user {SERVICE_USER} is root"
    if find_base_python() is None:
        return f"no Python 3.11+ that other users may execute among {', '.join(BASE_PYTHONS)}"
    return None


def copy_project(target: Path) -> Path:
    """A snapshot of what makes the installed project, so that what is hashed is what is built
    even while the sources change."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PROJECT_PACKAGES:
        shutil.copytree(REPO / package, target / package, ignore=ignore)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, target / name)
    return target


def hash_project(source: Path, base_python: str) -> str:
    """Key of an environment: the base interpreter, pyproject.toml and every package file."""
    digest = hashlib.sha256()
    real = os.path.realpath(base_python)
    info = os.stat(real)
    digest.update(f"{real}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    files = [source / "pyproject.toml"] + sorted(
        p for package in PROJECT_PACKAGES for p in (source / package).rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run_checked(argv: Sequence[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           + (done.stdout + done.stderr)[-4000:])


def open_to_all(root: Path) -> None:
    """Lets every user read the environment whatever the umask was (never write to it)."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def build_venv(venv: Path, base_python: str, source: Path) -> None:
    """A virtual environment of `base_python` with the project installed (not editable: the
    user may be unable to read the repository) and its dependencies from the configured index.

    No pip inside it (Debian's venv needs an extra package for that): the tests' own pip
    installs into it, reusing its download and wheel caches."""
    shutil.rmtree(venv, ignore_errors=True)
    run_checked([base_python, "-m", "venv", "--without-pip", str(venv)])
    run_checked([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                 "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
                 str(source)])
    open_to_all(venv)
    (venv / BUILD_COMPLETE).write_text("complete\n")


def prune_builds(cache: Path, prefix: str, keep: Path) -> None:
    """Removes the builds `prefix-*` in `cache` of older sources that no session uses any more
    (a session holds a shared lock on each build it uses)."""
    for lock in cache.glob(f"{prefix}-*.lock"):
        build = lock.with_suffix("")
        if build == keep or lock.name == f"{prefix}-build.lock":
            continue
        fd = try_lock(lock)
        if fd is not None:
            shutil.rmtree(build, ignore_errors=True)
            lock.unlink()
            os.close(fd)


@contextmanager
def cached_build(cache: Path, prefix: str, base_python: str,
                 build: Callable[[Path, str, Path], None]) -> Iterator[tuple[Path, Path]]:
    """The current sources built by `build(target, base_python, source)` into
    `cache/prefix-HASH`, keyed by a hash of the sources and the base interpreter, and reused
    while they stay the same. Yields the build and the copy of the sources it came from (gone
    afterwards). The session holds a shared lock on the build until it ends, so a session with
    other sources never removes it from under it; everything happens under one build lock per
    prefix, so concurrent sessions build once. `build` writes `.complete` when it is done."""
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    with tempfile.TemporaryDirectory(prefix=f"sandbox-{prefix}-src-") as tmp, \
            locked(cache / f"{prefix}-build.lock"):
        source = copy_project(Path(tmp))
        target = cache / f"{prefix}-{hash_project(source, base_python)}"
        fd = try_lock(target.with_suffix(".lock"), fcntl.LOCK_SH)
        assert fd is not None, "only a pruner takes it exclusively, under the build lock we hold"
        _held_locks.append(fd)
        if not (target / BUILD_COMPLETE).exists():
            build(target, base_python, source)
        prune_builds(cache, prefix, keep=target)
        yield target, source


@contextmanager
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def provide_user_python() -> str:
    """An interpreter that the unprivileged user may execute, with the current sources installed.

    The service starts each run's launcher with its own `sys.executable`, so the whole service
    must run from such an interpreter. It is made here, on first use, rather than by
    scripts/install: the sources change between test runs without an install, only sessions that
    use this mode pay for it, and a test file run on its own still gets it. Environments are keyed
    by a hash of the sources (a re-run with the same sources reuses one in well under a second);
    each session holds a shared lock on the one it uses, so a session with other sources never
    removes it from under it. Everything happens under one build lock, so concurrent sessions
    build an environment once.
    """
    base_python = find_base_python()
    if base_python is None:
        raise RuntimeError(f"no Python 3.11+ that other users may execute among {BASE_PYTHONS}")
    with cached_build(USER_VENVS, "venv", base_python, build_venv) as (venv, _source):
        pass
    python = str(venv / "bin" / "python")
    if not world_executable(python):
        raise RuntimeError(f"{python} is not executable by other users: check its folders' modes")
    return python


# ---- servers -----------------------------------------------------------------------------------

@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    work_root: Path
    mode: str  # ROOT_MODE: each run gets a uid of `run_uids`; UNPRIVILEGED_MODE: runs share `uid`
    uid: int  # the uid the service runs as
    run_uids: range  # empty unless the mode is ROOT_MODE
    # True when nothing but the service and its runs uses `uid` (the unprivileged user), so any
    # other process of it is a run's; False when it is the tests' own uid.
    dedicated_uid: bool
    started: float  # time.time() when the service was started

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def post(self, path: str, json: object, **kwargs: object) -> httpx.Response:
        with self.client() as client:
            return client.post(path, json=json, **kwargs)  # type: ignore[arg-type]

    def health(self) -> httpx.Response:
        with self.client(timeout=5) as client:
            return client.get("/health")

    @property
    def log_path(self) -> Path:
        """Where `run_server` writes the service's stdout and stderr."""
        return self.work_root.parent / f"server-{self.url.rsplit(':', 1)[1]}.log"

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of the service's log, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def wait_for_log(self, found: Callable[[dict[str, Any]], bool],
                     timeout_s: float = 5) -> list[dict[str, Any]]:
        """The log lines `found` accepts, once there is one (an access line is written when
        the reply has been sent: it may come a moment after the reply)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [line for line in self.log_lines() if found(line)]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def user_env(user: ServiceUser, settings: Mapping[str, str]) -> dict[str, str]:
    """A small environment for the user's service: the tests' own (HOME=/root, pyenv shims)
    means nothing to the user. SANDBOX_* settings of the tests' environment still apply."""
    inherited = {k: v for k, v in os.environ.items() if k.startswith("SANDBOX_")}
    return {**inherited, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "HOME": user.home, **settings}


def failed_selftests(server: Server) -> bool:
    """Whether a runtime's self-test has failed: the service will never become healthy."""
    with server.client(timeout=5) as client:
        status = client.get("/")
    try:
        return any(r["selfTest"] is not None and not r["selfTest"]["passed"]
                   for r in status.json()["runtimes"])
    except (ValueError, LookupError, TypeError):
        return False  # no status to judge by: keep waiting for /health


def wait_until_healthy(server: Server, log: Path) -> None:
    """Waits for /health to answer 200; fails with the service's reason and log otherwise."""
    deadline = time.monotonic() + 60
    problem = "no answer"
    while True:
        if server.process.poll() is not None:
            raise RuntimeError("the server exited: " + log.read_text()[-3000:])
        try:
            health = server.health()
            if health.status_code == 200:
                return
            problem = health.text
            if failed_selftests(server):
                raise RuntimeError(f"the server's self-tests failed: {problem}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server never became healthy ({problem}): "
                               + log.read_text()[-3000:])
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve(env: Mapping[str, str] | None = None, *, user: ServiceUser | None = None,
          python: str = sys.executable, cgroup: Path | None = None,
          listen_flags: bool = False) -> Iterator[Server]:
    """`run_server` in a work root of its own (made for `user` when given), removed afterwards
    with the server's log."""
    root = make_work_root(owner=user)
    try:
        with run_server(root, env, user=user, python=python, cgroup=cgroup,
                        listen_flags=listen_flags) as server:
            yield server
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@contextmanager
def run_server(work_root: Path, env: Mapping[str, str] | None = None, *,
               user: ServiceUser | None = None, python: str = sys.executable,
               cgroup: Path | None = None, listen_flags: bool = False) -> Iterator[Server]:
    """`python -m adapter serve` on a free port, until /health answers 200; killed afterwards.

    As the tests' own user by default (root: runs get uids of a slice of this session's block);
    as `user` with its uid and gid and no supplementary groups when given, from `python`.
    `cgroup`: a v1 memory cgroup (see `memory_cgroup`) the service starts in. `listen_flags`:
    the address as `--host` and `--port` rather than HOST and PORT (which `env` may then set)."""
    port = free_port()
    listen = {"HOST": "127.0.0.1", "PORT": str(port)}
    settings = {"SANDBOX_WORK_ROOT": str(work_root), **({} if listen_flags else listen)}
    run_uids = range(0)
    if user is None:
        uid = os.geteuid()
        if IS_ROOT:
            run_uids = next_server_uids()
            settings |= {"SANDBOX_UID_FIRST": str(run_uids.start),
                         "SANDBOX_UID_COUNT": str(len(run_uids))}
        full_env = {**os.environ, **settings, **(env or {})}
        cwd = REPO
    else:
        uid = user.uid
        full_env = user_env(user, {**settings, **(env or {})})
        # "/": `-m` puts the current folder first on sys.path, and the repository may be
        # unreadable to the user; nothing can be planted in "/".
        cwd = Path("/")
    log_path = work_root.parent / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    started = time.time()
    argv = [python, "-m", "adapter", "serve"]
    if listen_flags:
        argv += ["--host", listen["HOST"], "--port", listen["PORT"]]
    if cgroup is not None:
        # The service moves itself in before it starts: everything it and its runs hold is
        # charged there.
        argv = ["/bin/sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *argv]
    process = subprocess.Popen(
        argv, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        user=None if user is None else user.uid, group=None if user is None else user.gid,
        extra_groups=None if user is None else [])
    server = Server(f"http://127.0.0.1:{port}", process, work_root,
                    mode=ROOT_MODE if uid == 0 else UNPRIVILEGED_MODE, uid=uid, run_uids=run_uids,
                    dedicated_uid=user is not None, started=started)
    try:
        wait_until_healthy(server, log_path)
        yield server
    finally:
        stop(process)
        log.close()


def own_memory_cgroup() -> Path | None:
    """This process's v1 memory cgroup folder, where root may make children; None elsewhere."""
    if not IS_ROOT:
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = MEMORY_HIERARCHY / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").exists():
                return folder
    return None


@contextmanager
def memory_cgroup(limit_bytes: int, user: ServiceUser | None = None) -> Iterator[Path]:
    """A v1 memory cgroup of `limit_bytes` (no swap either) made under this process's own and
    never elsewhere, which `user` may move itself into; removed afterwards with whatever it
    and its children hold."""
    parent = own_memory_cgroup()
    if parent is None:
        pytest.skip("needs root and a writable v1 memory cgroup")
    folder = parent / f"sandbox-test-{secrets.token_hex(4)}"
    folder.mkdir()
    try:
        (folder / "memory.limit_in_bytes").write_text(str(limit_bytes))
        with contextlib.suppress(OSError):
            (folder / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        if user is not None:
            os.chown(folder / "cgroup.procs", user.uid, user.gid)
        yield folder
    finally:
        remove_cgroup_tree(folder)


def remove_cgroup_tree(folder: Path) -> None:
    """Kills every process in the cgroups of `folder` (deepest first), then removes them."""
    for child in [p for p in folder.rglob("*") if p.is_dir()][::-1] + [folder]:
        deadline = time.monotonic() + 10
        while child.exists():
            with contextlib.suppress(OSError, ValueError):
                for pid in (child / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError, OSError):
                child.rmdir()
            if time.monotonic() > deadline:
                raise AssertionError(f"cannot remove the test's cgroup {child}")
            time.sleep(0.02)


def run_cgroups(server: Server) -> list[Path]:
    """Cgroups of runs that `server` made and has not removed yet. Folders the service removes
    while this looks are skipped (a later look tells whether they went)."""
    subtree = f"sandbox-service-{server.process.pid}-"
    found = []
    for hierarchy in (MEMORY_HIERARCHY, PIDS_HIERARCHY):
        for folder, children, _files in os.walk(hierarchy, onerror=lambda _error: None):
            if Path(folder).name.startswith(subtree):
                found += [Path(folder) / child for child in children if child.startswith("run-")]
                children.clear()
    return found


def make_work_root(owner: ServiceUser | None = None) -> Path:
    """A work root whose ancestors per-run uids can search (pytest's tmp_path is 0700).

    Its parent (0711, the tests' own) also holds the server's log. With `owner`, the work root
    itself is made for that user, who could not create it in the parent."""
    parent = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/tmp"))
    os.chmod(parent, 0o711)
    root = parent / "work"
    if owner is not None:
        root.mkdir(mode=0o711)
        os.chown(root, owner.uid, owner.gid)
    return root


# ---- leftovers ---------------------------------------------------------------------------------

def processes_of(uids: Container[int]) -> list[psutil.Process]:
    """Live processes with a real, effective or saved uid in `uids` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            ids = proc.info["uids"]
            if ids and any(u in uids for u in ids) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def run_processes(uids: range | None = None) -> list[psutil.Process]:
    """Live processes of runs with per-run uids: of `uids`, by default the `sandbox` fixture's."""
    return processes_of(sandbox_uids() if uids is None else uids)


def is_zygote(proc: psutil.Process) -> bool:
    """One of a service's pre-started launchers (the launcher zygote, warm interpreters), which
    live as long as the service: not a run's. Their forks (launchers, and a warm interpreter's
    programs) keep the command line, so one whose parent is a launcher too is a run's."""

    def is_launcher(process: psutil.Process | None) -> bool:
        if process is None:
            return False
        try:
            return any(arg.endswith("launcher/__main__.py") for arg in process.cmdline())
        except psutil.Error:
            return True  # gone: cannot be the service, which outlives its runs
    try:
        cmdline = proc.cmdline()
        parent = proc.parent()
    except psutil.Error:
        return False
    return (is_launcher(proc) and ("zygote" in cmdline or "warm" in cmdline)
            and not is_launcher(parent))


def descendants(pid: int) -> list[psutil.Process]:
    """Live descendants of `pid`, the service's zygote left out (its children count)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE and not is_zygote(p)]
    except psutil.Error:
        return []


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def is_service(proc: psutil.Process) -> bool:
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return False
    return argv[1:3] == ["-m", "adapter"] or (bool(argv) and argv[0].endswith("sandbox-service"))


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def foreign_pids(server: Server, candidates: list[psutil.Process]) -> set[int]:
    """Pids among `candidates` that belong to another service of the same uid (a concurrent
    session's): that service, its descendants, and processes working in its work root."""
    foreign: set[int] = set()
    roots: list[str] = []
    for proc in candidates:
        if proc.pid != server.process.pid and is_service(proc):
            foreign |= {proc.pid, *(p.pid for p in descendants(proc.pid))}
            try:
                roots.append(proc.environ().get("SANDBOX_WORK_ROOT", "/tmp/sandbox-service"))
            except psutil.Error:
                continue
    for proc in candidates:
        try:
            cwd = proc.cwd()
        except psutil.Error:
            continue
        if any(inside(cwd, root) for root in roots):
            foreign.add(proc.pid)
    return foreign


def user_run_processes(server: Server) -> list[psutil.Process]:
    """Processes of the unprivileged service's user other than the service itself."""
    candidates = processes_of({server.uid})
    skip = {server.process.pid} | foreign_pids(server, candidates)
    return [p for p in candidates if p.pid not in skip and not is_zygote(p)]


def leftover_processes(server: Server) -> list[psutil.Process]:
    """Processes that belong to runs of `server` (launchers still finishing included)."""
    if server.dedicated_uid:
        return user_run_processes(server)
    found = descendants(server.process.pid)
    if server.mode == ROOT_MODE:
        found += [p for p in run_processes(server.run_uids) if p not in found]
    return found


def run_folders(work_root: Path) -> list[Path]:
    """What the work root holds but the service's own folders (its store of submissions, the
    warm interpreters' caches): runs' and sessions' folders."""
    return [entry for entry in work_root.iterdir()
            if entry.name not in (STATE_FOLDER, WARM_CACHES)]


def assert_nothing_left(server: Server) -> None:
    """No process of any run survives, and no working directory (nor a mount on one) or cgroup
    of a run is left."""
    deadline = time.monotonic() + 5
    while True:
        leftovers = leftover_processes(server)
        files = run_folders(server.work_root)
        cgroups = run_cgroups(server)
        if not leftovers and not files and not cgroups:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: processes {leftovers}, files {files}, "
                                 f"cgroups {cgroups}")
        time.sleep(0.05)


def run_owners(server: Server) -> set[int]:
    return set(server.run_uids) if server.mode == ROOT_MODE else {server.uid}


def is_harness(entry: os.DirEntry[str]) -> bool:
    """A folder the tests made (work roots and logs of this and other sessions, pytest's)."""
    try:
        return entry.name.startswith(HARNESS_PREFIXES) \
            and entry.stat(follow_symlinks=False).st_uid == os.geteuid()
    except OSError:
        return False


def owned_entries(folder: Path, owners: set[int], since: float, top: bool) -> Iterator[Path]:
    """Entries under `folder` owned by `owners` and changed since `since`, descending only where
    a run could have written: folders it owns or that others may enter."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if top and is_harness(entry):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid in owners and info.st_ctime >= since:
            yield Path(entry.path)
        if stat.S_ISDIR(info.st_mode) and (info.st_uid in owners or info.st_mode & stat.S_IXOTH):
            yield from owned_entries(Path(entry.path), owners, since, top=False)


def stray_files(server: Server, places: Sequence[Path] = SHARED_TMP) -> list[Path]:
    """Files that runs of `server` may have left in the shared temporary folders: owned by a run
    uid (root mode) or by the service's uid (unprivileged mode), made after the server started.
    The server's own work root and log, and the tests' other folders, are not looked at.

    Exact when the runs have uids of their own; when the service runs as the tests' own uid,
    files of the tests themselves may show up too."""
    since = server.started - 1  # file times come from a coarse clock
    found: list[Path] = []
    for place in places:
        found += owned_entries(place, run_owners(server), since, top=True)
    return found


# ---- runtimes ----------------------------------------------------------------------------------

@cache
def _runtimes_folder(names: tuple[str, ...]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sandbox-test-runtimes-", dir="/tmp"))
    os.chmod(folder, 0o755)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in names:
        shutil.copy2(REPO / "runtimes" / name, folder / name)
        os.chmod(folder / name, 0o644)
    return folder


def only_runtimes(*names: str) -> dict[str, str]:
    """The setting that makes a server load only these built-in runtime files (with the files
    they name), for a server whose working directories are too small for a Go or Rust binary:
    its self-tests would fail, and it would never become healthy."""
    return {"SANDBOX_RUNTIMES_DIRS": str(_runtimes_folder(tuple(sorted(names))))}


PYTHON_AND_CPP = ("python.toml", "python_kernel.py", "cpp.toml")


# ---- warm and fresh Python -----------------------------------------------------------------------

# The tests' Python: the runtime's interpreter, and the options and environment sandbox tests
# run it with (`python -u main.py`).
TEST_PYTHON = "/usr/bin/python3"
TEST_PYTHON_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_WARM_PYTHON: weakref.WeakKeyDictionary[Sandbox, WarmInterpreter] = weakref.WeakKeyDictionary()


def use_warm_python(sandbox: Sandbox) -> None:
    """From now on `warm_python(sandbox)` is a warm interpreter for `python -u SCRIPT`."""
    warm = WarmInterpreter.of([TEST_PYTHON, "-u"], TEST_PYTHON_ENV, ["json", "random"])
    assert sandbox.warm_zygote(warm) is not None
    _WARM_PYTHON[sandbox] = warm


def warm_python(sandbox: Sandbox) -> WarmInterpreter | None:
    """The warm interpreter a sandbox test passes to its runs (None: runs start fresh)."""
    return _WARM_PYTHON.get(sandbox)


def suite_settings_environ() -> dict[str, str]:
    """What an in-process service of the tests reads as its environment: the suite's pass
    (scripts/test runs it with warm Python, then with SANDBOX_WARM_PYTHON=false) and nothing
    else of the tests' environment."""
    return {name: os.environ[name] for name in ("SANDBOX_WARM_PYTHON",) if name in os.environ}
