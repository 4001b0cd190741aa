"""The optional layers: probed, switchable, and each one doing its job on real programs."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from sandbox import Limits, Mode, Outcome, RunResult, Sandbox, SandboxConfig, SandboxError
from sandbox.landlock import probe_abi

from ..utils import IS_ROOT, run_folders

PYTHON = "/usr/bin/python3"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
MiB = 1 << 20
HAS_LANDLOCK = probe_abi()[0] > 0


def make(work_root: Path, **config: object) -> Sandbox:
    return Sandbox(SandboxConfig(work_root=work_root, **config))  # type: ignore[arg-type]


def run(sandbox: Sandbox, code: str, limits: Limits | None = None) -> RunResult:
    async def go() -> RunResult:
        async with sandbox.jail() as jail:
            jail.write_file("main.py", code.encode())
            return await jail.run([PYTHON, "-u", "main.py"], ENV, limits or Limits())
    return asyncio.run(go())


def layer(sandbox: Sandbox, name: str) -> tuple[bool, str]:
    found = next(x for x in sandbox.layers.all if x.name == name)
    return found.active, found.detail


def test_every_optional_layer_is_listed_with_a_reason(sandbox: Sandbox) -> None:
    names = [x.name for x in sandbox.layers.all]
    for name in ("per_run_uid", "seccomp", "landlock", "tmpfs", "disk_watchdog", "netns", "pidns",
                 "cgroups"):
        assert name in names
    for found in sandbox.layers.all:
        assert found.detail, found
    # Exactly one of the two disk bounds is in force.
    assert layer(sandbox, "tmpfs")[0] != layer(sandbox, "disk_watchdog")[0]
    assert layer(sandbox, "seccomp")[0], layer(sandbox, "seccomp")[1]
    assert layer(sandbox, "landlock")[0] == HAS_LANDLOCK


@pytest.mark.parametrize("name", ["seccomp", "landlock", "tmpfs", "per_run_uid", "netns"])
def test_a_layer_turned_off_says_so(work_root: Path, name: str) -> None:
    sandbox = make(work_root, **{name: "off"})
    assert layer(sandbox, name) == (False, "turned off by configuration")


def test_a_required_layer_that_is_missing_stops_startup(work_root: Path) -> None:
    if IS_ROOT:
        # Per-run uids need root; uid 2**32-1 means "no uid" to setuid, so even root fails.
        with pytest.raises(SandboxError, match="the per_run_uid layer is required but unavail"):
            make(work_root, per_run_uid="on", uid_first=2**32 - 1)
    else:
        with pytest.raises(SandboxError, match="not root"):
            make(work_root, per_run_uid="on")


def test_a_mode_that_is_none_of_the_three_is_refused(work_root: Path) -> None:
    with pytest.raises(ValueError, match="^tmpfs must be auto, on or off$"):
        SandboxConfig(work_root=work_root, tmpfs="maybe")  # type: ignore[arg-type]
    assert SandboxConfig(work_root=work_root, tmpfs="on").tmpfs is Mode.ON  # type: ignore[arg-type]


def test_required_layers_that_exist_start(work_root: Path) -> None:
    sandbox = make(work_root, seccomp="on", landlock="on" if HAS_LANDLOCK else "auto")
    assert run(sandbox, "print('up')").stdout == b"up\n"


# -- seccomp ------------------------------------------------------------------------------------

SOCKETS = """
import socket
for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET):
    try:
        socket.socket(family, socket.SOCK_DGRAM if family != socket.AF_PACKET else socket.SOCK_RAW)
        print("open", family)
    except OSError as e:
        print(type(e).__name__, e.errno)
a, b = socket.socketpair(socket.AF_UNIX)
a.send(b"local ok"); print(b.recv(10).decode())
"""


def test_seccomp_allows_only_local_sockets(sandbox: Sandbox) -> None:
    result = run(sandbox, SOCKETS)
    assert result.stdout == b"PermissionError 1\n" * 4 + b"local ok\n", result.stderr


ATTACKS_ON_THE_LAUNCHER = """
import ctypes, os, resource, signal
parent = os.getppid()
for name, call in [
    ("kill", lambda: os.kill(parent, signal.SIGKILL)),
    ("killpg", lambda: os.killpg(parent, signal.SIGKILL)),
    ("kill -1", lambda: os.kill(-1, signal.SIGKILL)),
    ("prlimit", lambda: resource.prlimit(parent, resource.RLIMIT_NOFILE, (3, 3))),
    ("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, parent, 19)),
    ("affinity", lambda: os.sched_setaffinity(parent, {0})),
    ("pidfd", lambda: os.pidfd_open(parent)),
]:
    try:
        call()
        print(name, "went through")
    except OSError as e:
        print(name, e.errno)
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, parent, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
print("unshare", libc.unshare(0x40000000), ctypes.get_errno())  # CLONE_NEWNET
os.setpriority(os.PRIO_PROCESS, 0, 5)  # itself: allowed
print("self nice", os.getpriority(os.PRIO_PROCESS, 0))
"""


def test_seccomp_refuses_acting_on_the_launcher_and_kernel_interfaces(work_root: Path) -> None:
    # Landlock scoping would also refuse the signals: without it, seccomp alone must.
    sandbox = make(work_root, landlock="off")
    result = run(sandbox, ATTACKS_ON_THE_LAUNCHER)
    assert result.stdout.decode() == (
        "kill 1\nkillpg 1\nkill -1 1\nprlimit 1\nsetpriority 1\naffinity 1\npidfd 1\n"
        "ptrace -1 1\nunshare -1 1\nself nice 5\n"), result.stderr


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    print("connected")
except OSError as e:
    print(type(e).__name__, e.errno)
"""


def connect_to_listener(sandbox: Sandbox) -> bytes:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        async def go() -> RunResult:
            async with sandbox.jail() as jail:
                jail.write_file("main.py", CONNECT.encode())
                return await jail.run([PYTHON, "main.py", str(port)], ENV, Limits())
        return asyncio.run(go()).stdout


def test_seccomp_alone_refuses_tcp(work_root: Path) -> None:
    sandbox = make(work_root, landlock="off", netns="off")
    assert connect_to_listener(sandbox) == b"PermissionError 1\n"


@pytest.mark.skipif(not HAS_LANDLOCK, reason="the kernel has no Landlock")
def test_landlock_alone_refuses_tcp(work_root: Path) -> None:
    sandbox = make(work_root, seccomp="off", netns="off")
    assert connect_to_listener(sandbox) == b"PermissionError 13\n"


def test_the_network_namespace_alone_has_no_route(work_root: Path) -> None:
    sandbox = make(work_root, seccomp="off", landlock="off")
    if not layer(sandbox, "netns")[0]:
        pytest.skip(layer(sandbox, "netns")[1])
    assert connect_to_listener(sandbox) == b"OSError 101\n"  # ENETUNREACH


def test_without_any_network_layer_the_listener_is_reachable(work_root: Path) -> None:
    # The counter-test: proves the three above measure the layers, not the machine.
    sandbox = make(work_root, seccomp="off", landlock="off", netns="off")
    assert connect_to_listener(sandbox) == b"connected\n"


# -- Landlock -----------------------------------------------------------------------------------

FILES = """
import os
for path in ("/etc/passwd", "/proc/1/environ", "/proc/self/status", "/tmp", "/dev/shm",
             "/root"):
    try:
        open(path).read() if not os.path.isdir(path) else os.listdir(path)
        print(path, "readable")
    except OSError as e:
        print(path, e.errno)
for path in ("/tmp/left-by-a-run", "/dev/shm/left-by-a-run", "../left-by-a-run"):
    try:
        open(path, "w").write("x")
        print(path, "written")
    except OSError as e:
        print(path, e.errno)
os.mkdir("sub"); open("sub/f", "w").write("ok"); print(open("sub/f").read())
print(open("/usr/lib/os-release").read()[:5] != "", len(open("/dev/urandom", "rb").read(4)))
open("/dev/null", "w").write("gone")
"""


@pytest.mark.skipif(not HAS_LANDLOCK, reason="the kernel has no Landlock")
def test_landlock_confines_reads_and_writes(sandbox: Sandbox) -> None:
    result = run(sandbox, FILES)
    assert result.stdout.decode() == (
        "/etc/passwd 13\n/proc/1/environ 13\n/proc/self/status 13\n/tmp 13\n/dev/shm 13\n"
        "/root 13\n/tmp/left-by-a-run 13\n/dev/shm/left-by-a-run 13\n../left-by-a-run 13\n"
        "ok\nTrue 4\n"), result.stderr
    assert result.outcome is Outcome.OK


@pytest.mark.skipif(not HAS_LANDLOCK, reason="the kernel has no Landlock")
def test_landlock_scopes_signals_without_seccomp(work_root: Path) -> None:
    sandbox = make(work_root, seccomp="off")
    result = run(sandbox, "import os\ntry:\n os.kill(os.getppid(), 9)\nexcept OSError as e:\n"
                          " print(e.errno)")
    assert result.stdout == b"1\n"


# -- disk ---------------------------------------------------------------------------------------

FILL_BYTES = """
chunk = b"x" * 65536
for i in range(1000):
    with open(f"f{i}", "wb") as f:
        for _ in range(16):
            f.write(chunk)
print("never")
"""
FILL_FILES = """
for i in range(100000):
    open(f"e{i}", "w").close()
print("never")
"""


@pytest.mark.parametrize("tmpfs", ["auto", "off"])
@pytest.mark.parametrize("program", [FILL_BYTES, FILL_FILES], ids=["bytes", "files"])
def test_filling_the_working_directory_is_a_disk_limit(work_root: Path, tmpfs: str,
                                                       program: str) -> None:
    sandbox = make(work_root, tmpfs=tmpfs, disk_bytes=8 * MiB, disk_files=200)
    if tmpfs == "auto" and not layer(sandbox, "tmpfs")[0]:
        pytest.skip("no tmpfs here: " + layer(sandbox, "tmpfs")[1])
    result = run(sandbox, program, Limits(wall_timeout_s=20))
    assert result.outcome is Outcome.DISK_LIMIT, (result, result.stderr[-300:])
    assert b"never" not in result.stdout
    assert run_folders(work_root) == []


def test_a_program_below_the_disk_bound_is_fine(work_root: Path) -> None:
    sandbox = make(work_root, disk_bytes=8 * MiB, disk_files=200)
    result = run(sandbox, "open('f', 'wb').write(b'x' * (4 << 20)); print('ok')")
    assert (result.outcome, result.stdout) == (Outcome.OK, b"ok\n")


def test_the_watchdog_sees_into_folders_the_program_locked(work_root: Path) -> None:
    sandbox = make(work_root, tmpfs="off", disk_bytes=8 * MiB, disk_files=1000)
    code = ("import os, time\nos.mkdir('hide')\nfd = os.open('hide', os.O_RDONLY)\n"
            "os.chmod('hide', 0o300)\n"
            "for i in range(64):\n"
            "    f = os.open(f'f{i}', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)\n"
            "    os.write(f, b'x' * (1 << 20)); os.close(f)\n"
            "time.sleep(5); print('never')")
    result = run(sandbox, code, Limits(wall_timeout_s=20))
    assert result.outcome is Outcome.DISK_LIMIT, (result, result.stderr[-300:])


def test_limits_are_reported_in_the_probe(work_root: Path) -> None:
    sandbox = make(work_root, disk_bytes=5 * MiB, disk_files=7)
    active = "tmpfs" if layer(sandbox, "tmpfs")[0] else "disk_watchdog"
    assert f"{5 * MiB} bytes" in layer(sandbox, active)[1]
    assert "7 files" in layer(sandbox, active)[1]


@pytest.mark.root
def test_without_landlock_files_a_run_left_in_shared_folders_are_removed(work_root: Path) -> None:
    sandbox = make(work_root, landlock="off")
    code = ("import os\nfor d in ('/tmp', '/dev/shm', '/var/tmp'):\n"
            "    os.makedirs(f'{d}/left-{os.getuid()}/deep')\n"
            "    open(f'{d}/left-{os.getuid()}/deep/f', 'w').write('x')\n"
            "    open(f'{d}/file-{os.getuid()}', 'w').write('x')\n"
            "    os.symlink('/etc/passwd', f'{d}/link-{os.getuid()}')\n"
            "print(os.getuid())")
    result = run(sandbox, code)
    assert result.outcome is Outcome.OK, result.stderr
    uid = int(result.stdout)
    for folder in ("/tmp", "/dev/shm", "/var/tmp"):
        for name in (f"left-{uid}", f"file-{uid}", f"link-{uid}"):
            assert not os.path.lexists(f"{folder}/{name}")
    assert os.path.exists("/etc/passwd")


def test_a_dead_services_working_directories_are_removed_at_startup(work_root: Path) -> None:
    first = make(work_root)
    stale = work_root / "run-0123456789abcdef0123456789abcdef"
    stale.mkdir()
    if layer(first, "tmpfs")[0]:
        from sandbox.mounts import mount_tmpfs
        mount_tmpfs(stale, 1 << 20, 10, None)
    (stale / "f").write_text("x")
    make(work_root)
    assert run_folders(work_root) == []
