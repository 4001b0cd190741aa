"""Properties of the limits with real programs: each limit decides the outcome exactly at its
edge, output is kept byte for byte up to the cap, and no file name leaves the jail."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, assume, event, given, settings
from hypothesis import strategies as st

from sandbox import Jail, Limits, Outcome, RunResult, Sandbox, UnsafeName, resolve_inside
from sandbox.names import MAX_NAME_BYTES

from ..strategies import (
    CEILINGS,
    MiB,
    colliding_file_names,
    file_names,
    limits_with,
    payloads,
)
from ..utils import IS_ROOT, TEST_PYTHON, TEST_PYTHON_ENV, warm_python

PYTHON = TEST_PYTHON
ENV = TEST_PYTHON_ENV
PATH_MAX = 4096  # bytes of a path handed to the kernel, its final NUL included


def scaled(examples: int) -> int:
    """`examples` in the default profile (40 examples a test), proportionally more in a
    profile that asks for more: every example here starts real processes, so each test sets
    its own count, and a thorough run must still scale them up."""
    return max(1, examples * settings().max_examples // 40)


def run_python(sandbox: Sandbox, code: str, limits: Limits, args: tuple[str, ...] = (),
               files: dict[str, bytes] | None = None) -> RunResult:
    async def go() -> RunResult:
        async with sandbox.jail() as jail:
            for name, content in (files or {}).items():
                jail.write_file(name, content)
            jail.write_file("main.py", code.encode())
            return await jail.run([PYTHON, "-u", "main.py", *args], ENV, limits,
                                  warm=warm_python(sandbox))
    return asyncio.run(go())


# Writes N bytes to stdout (fd 1) or stderr (fd 2) and exits 0.
FLOOD = """\
import os, sys
fd, left = int(sys.argv[1]), int(sys.argv[2])
chunk = b"x" * 65536
while left:
    left -= os.write(fd, chunk[:left])
"""

# Writes a file of N bytes the way any correct writer does: retrying partial writes, so the
# write that starts at the size limit is the one the kernel refuses with SIGXFSZ. In C, because
# the Python interpreter ignores SIGXFSZ and turns it into an OSError.
WRITER_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static char buf[65536];
    if (argc != 3) return 2;
    memset(buf, 'f', sizeof buf);
    long long left = atoll(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return 3;
    while (left > 0) {
        ssize_t n = write(fd, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
        if (n < 0) return 4;
        left -= n;
    }
    return close(fd) == 0 ? 0 : 5;
}
"""


@pytest.fixture(scope="module")
def writer() -> Iterator[bytes]:
    """The file writer's executable, compiled once. Each run gets a copy in its working
    directory, the one place a run may surely execute from whatever confines it."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc")
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder, "writer")
        subprocess.run([gcc, "-O2", "-x", "c", "-o", str(binary), "-"],
                       input=WRITER_C.encode(), check=True, capture_output=True)
        yield binary.read_bytes()


# -- one limit exceeded, at its edge ----------------------------------------------------------


@settings(max_examples=scaled(20))
@given(limits=limits_with(max_output_bytes=st.integers(1, int(CEILINGS.max_output_bytes))),
       fd=st.sampled_from([1, 2]), over=st.booleans(), k=st.integers(0, 4096) | st.integers(0, 1 << 30))
def test_output_past_the_cap_is_output_limit_and_up_to_it_ok(
        sandbox: Sandbox, limits: Limits, fd: int, over: bool, k: int) -> None:
    cap = int(limits.max_output_bytes)
    size = cap + 1 + k if over else cap - min(k, cap)
    result = run_python(sandbox, FLOOD, limits, (str(fd), str(size)))
    captured, other = (result.stdout, result.stderr) if fd == 1 else (result.stderr, result.stdout)
    truncated = result.stdout_truncated if fd == 1 else result.stderr_truncated
    if over:
        assert result.outcome is Outcome.OUTPUT_LIMIT
        assert captured == b"x" * cap and truncated
    else:
        assert (result.outcome, result.exit_code, result.signal) == (Outcome.OK, 0, None)
        assert captured == b"x" * size and not truncated
    assert other == b"" and not (result.stderr_truncated if fd == 1 else result.stdout_truncated)


@settings(max_examples=scaled(20))
@given(limits=limits_with(max_file_bytes=st.integers(1, 16 * MiB)), over=st.booleans(),
       k=st.integers(0, 4096) | st.integers(0, 1 << 30))
def test_file_past_the_size_limit_is_file_size_limit_and_up_to_it_ok(
        sandbox: Sandbox, writer: bytes, limits: Limits, over: bool, k: int) -> None:
    limit = int(limits.max_file_bytes)
    size = limit + 1 + k if over else limit - min(k, limit)

    async def go() -> tuple[RunResult, int]:
        async with sandbox.jail() as jail:
            os.chmod(jail.write_file("writer", writer), 0o700)
            result = await jail.run([str(jail.path / "writer"), "f", str(size)], ENV, limits)
            return result, (jail.path / "f").stat().st_size
    result, written = asyncio.run(go())
    if over:
        assert (result.outcome, result.exit_code, result.signal) == (
            Outcome.FILE_SIZE_LIMIT, None, signal.SIGXFSZ)
        # The kernel wrote up to the limit, then refused the next write.
        assert written == limit
    else:
        assert (result.outcome, result.exit_code, result.signal) == (Outcome.OK, 0, None)
        assert written == size
    assert result.stdout == result.stderr == b""


SPIN = "while True:\n    pass\n"


@settings(max_examples=scaled(4))
# Limits the launcher's own check decides, well below the next whole second, where the kernel's
# RLIMIT_CPU backstop fires; limits at whole seconds have a test of their own below.
@given(limits=st.floats(1.05, 1.5).flatmap(lambda cpu: limits_with(
    cpu_time_s=st.just(cpu),
    # Well above the CPU limit: a loaded machine gives the spinner less than a whole core.
    wall_timeout_s=st.floats(4 * cpu + 2, CEILINGS.wall_timeout_s))))
def test_spinning_past_the_cpu_limit_is_cpu_limit(sandbox: Sandbox, limits: Limits) -> None:
    result = run_python(sandbox, SPIN, limits)
    assert (result.outcome, result.exit_code, result.signal) == (
        Outcome.CPU_LIMIT, None, signal.SIGKILL)
    # Stopped at the limit: the launcher checks the tree's CPU time every 50 ms.
    assert limits.cpu_time_s - 0.02 <= result.cpu_time_s < limits.cpu_time_s + 0.5
    assert result.stdout == result.stderr == b""


def test_spinners_past_a_whole_second_cpu_limit_on_a_busy_machine_are_cpu_limit(
        sandbox: Sandbox) -> None:
    spinners = (os.cpu_count() or 1) + 1
    limits = Limits(cpu_time_s=1, wall_timeout_s=10 * spinners)

    async def spin() -> RunResult:
        async with sandbox.jail() as jail:
            jail.write_file("main.py", SPIN.encode())
            return await jail.run([PYTHON, "main.py"], ENV, limits)

    async def together() -> list[RunResult]:
        return list(await asyncio.gather(*(spin() for _ in range(spinners))))
    # More spinners than cores, a few rounds: when RLIMIT_CPU sat at the limit itself, the
    # kernel's tick-sampled kill came first for about one spinner in six, and rusage then read
    # 5-17% short of the limit (classified signaled). The launcher's own bound must decide.
    for _ in range(3):
        results = asyncio.run(together())
        assert [r.outcome for r in results] == [Outcome.CPU_LIMIT] * spinners, [
            (r.outcome.value, r.signal, round(r.cpu_time_s, 3)) for r in results]


@settings(max_examples=scaled(4))
@given(limits=limits_with(wall_timeout_s=st.floats(0.2, 2.0)))
def test_sleeping_past_the_wall_limit_is_wall_timeout(sandbox: Sandbox, limits: Limits) -> None:
    result = run_python(sandbox, "import time\ntime.sleep(3600)\n", limits)
    assert (result.outcome, result.exit_code, result.signal) == (
        Outcome.WALL_TIMEOUT, None, signal.SIGKILL)
    assert limits.wall_timeout_s <= result.wall_time_s < limits.wall_timeout_s + 1
    assert result.cpu_time_s < 1


# -- output round-trips -----------------------------------------------------------------------

# Copies the file `data` to fd argv[1] in writes of argv[2] bytes.
ECHO = """\
import os, sys
fd, step = int(sys.argv[1]), int(sys.argv[2])
view = memoryview(open("data", "rb").read())
while view:
    view = view[os.write(fd, view[:step]):]
"""


@st.composite
def payload_and_cap(draw: st.DrawFn) -> tuple[bytes, int]:
    """A payload and an output cap at, around or anywhere near its length."""
    data = draw(payloads)
    n = len(data)
    cap = draw(st.sampled_from([n - 1, n, n + 1]) | st.integers(1, 2 * n + 1))
    return data, max(1, cap)


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
@settings(max_examples=scaled(25))
@given(payload=payload_and_cap(), step=st.integers(1, 1 << 17))
def test_output_round_trips_byte_for_byte_up_to_the_cap(
        sandbox: Sandbox, fd: int, payload: tuple[bytes, int], step: int) -> None:
    data, cap = payload
    # Not one byte at a time through a megabyte: a thousand writes are plenty of boundaries.
    step = max(step, len(data) // 1000)
    result = run_python(sandbox, ECHO, Limits(max_output_bytes=cap), (str(fd), str(step)),
                        files={"data": data})
    captured, other = (result.stdout, result.stderr) if fd == 1 else (result.stderr, result.stdout)
    truncated = result.stdout_truncated if fd == 1 else result.stderr_truncated
    if len(data) <= cap:
        assert (result.outcome, result.exit_code) == (Outcome.OK, 0)
        assert captured == data and not truncated
    else:
        assert result.outcome is Outcome.OUTPUT_LIMIT
        assert captured == data[:cap] and truncated
    assert result.output == captured
    assert other == b"" and not (result.stderr_truncated if fd == 1 else result.stdout_truncated)


# -- file names -------------------------------------------------------------------------------

Tree = dict[str, tuple[int, int]]


def tree(root: Path, skip: Path | None = None) -> Tree:
    """Every path under `root` (but not under `skip`) with its type and size; links are listed,
    never followed."""
    found: Tree = {}
    for folder, dirs, files in os.walk(root):
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (
                stat.S_IFMT(info.st_mode), info.st_size if stat.S_ISREG(info.st_mode) else 0)
    return found


def assert_written_inside(jail: Jail, path: Path, data: bytes) -> None:
    """`path` is a regular file of the jail (no link on the way) holding `data`."""
    assert path.resolve().is_relative_to(jail.path.resolve()) and path.resolve() != jail.path
    assert path == path.resolve()  # nothing on the way is a link or a `..`
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode) and path.read_bytes() == data
    if IS_ROOT:
        assert (info.st_uid, info.st_gid) == (jail.uid, jail.uid)


def path_bytes(jail: Jail, name: str) -> int:
    """Bytes of the path the kernel would get for `name` under the jail, with its NUL."""
    return len(os.fsencode(jail.path)) + 1 + len(name.encode(errors="surrogatepass")) + 1


@settings(max_examples=scaled(300))
@given(data=st.data())
def test_a_file_name_is_written_inside_the_jail_or_refused(
        sandbox: Sandbox, data: st.DataObject) -> None:
    outside = sandbox.config.work_root.parent

    async def go() -> None:
        async with sandbox.jail() as jail:
            # Besides relative escapes, absolute names aimed right at the watched folders.
            aim = st.just("") | st.sampled_from([f"{outside}/", f"{jail.path}/../"])
            name = data.draw(st.builds(str.__add__, aim, file_names), "name")
            # Names of a path too long for the kernel have a property of their own below.
            assume(path_bytes(jail, name) <= PATH_MAX or len(name.encode(
                errors="surrogatepass")) > MAX_NAME_BYTES)
            before = tree(outside, skip=jail.path)
            content = name.encode(errors="surrogatepass")[:64]
            try:
                path = jail.write_file(name, content)
            except UnsafeName:
                event("refused")
                assert tree(jail.path) == {}
            else:
                event("written")
                assert_written_inside(jail, path, content)
                # Only the file and the folders leading to it were created.
                created = path.relative_to(jail.path)
                assert set(tree(jail.path)) == {str(created), *map(str, created.parents[:-1])}
            assert tree(outside, skip=jail.path) == before
    asyncio.run(go())


@settings(max_examples=scaled(150))
@given(names=st.lists(colliding_file_names | file_names, min_size=2, max_size=8))
def test_later_names_never_write_through_earlier_ones(sandbox: Sandbox, names: list[str]) -> None:
    # The jail's expected contents after each write: a file may not be created twice, nor be
    # used as a folder, nor replace a folder; every refusal changes nothing.
    outside = sandbox.config.work_root.parent

    async def go() -> None:
        async with sandbox.jail() as jail:
            assume(all(path_bytes(jail, name) <= PATH_MAX for name in names))
            before = tree(outside, skip=jail.path)
            model: dict[str, int] = {}
            for name in names:
                try:
                    parts = resolve_inside(jail.path, name).relative_to(jail.path).parts
                except UnsafeName:
                    event("refused")
                    with pytest.raises(UnsafeName):
                        jail.write_file(name, b"")
                    continue
                folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
                target = "/".join(parts)
                if any(model.get(f) == stat.S_IFREG for f in folders):
                    event("file used as a folder")
                    with pytest.raises(NotADirectoryError):
                        jail.write_file(name, b"")
                elif target in model:
                    event("taken")
                    with pytest.raises(FileExistsError):
                        jail.write_file(name, b"")
                else:
                    assert_written_inside(jail, jail.write_file(name, target.encode()),
                                          target.encode())
                    model.update({f: stat.S_IFDIR for f in folders})
                    model[target] = stat.S_IFREG
                assert {path: kind for path, (kind, _size) in tree(jail.path).items()} == model
            assert tree(outside, skip=jail.path) == before
    asyncio.run(go())


def long_name(n: int) -> str:
    """A relative name of exactly `n` bytes, every component within the 255-byte limit."""
    parts = []
    while n > 255:
        parts.append("a" * 254)
        n -= 255
    return "/".join([*parts, "b" * n])


@settings(max_examples=scaled(5), phases=[Phase.explicit, Phase.generate])
@given(data=st.data())
def test_a_name_too_long_for_the_kernel_is_refused_as_unsafe(
        sandbox: Sandbox, data: st.DataObject) -> None:
    async def go() -> None:
        async with sandbox.jail() as jail:
            shortest = PATH_MAX - len(os.fsencode(jail.path)) - 1  # the NUL no longer fits
            name = long_name(data.draw(st.integers(shortest, MAX_NAME_BYTES), "bytes"))
            with pytest.raises(UnsafeName):
                jail.write_file(name, b"x")
            assert tree(jail.path) == {}
    asyncio.run(go())
