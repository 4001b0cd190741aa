"""The run's memory bound over all its processes (its cgroup, or the launcher's watchdog where
no cgroup is writable), the OOM killer's choice, and input that cannot stall or swell a run.

The programs here hold fixed, modest amounts (a few hundred MB at most), bounded by the program
itself whatever the sandbox does."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sandbox import Limits, Outcome, RunResult, Sandbox, SandboxConfig, Stream

from ..utils import IS_ROOT, TEST_PYTHON, TEST_PYTHON_ENV, sandbox_uids

MiB = 1 << 20
LIMIT = 128 * MiB
# Above the pages a run touches, its peak may show the interpreters' own (a fresh one holds
# ~10 MB) and, for the watchdog, what happens between two of its looks (50 ms).
SLACK_BYTES = 48 * MiB

# `python shape.py N EACH TOUCH TMPFS`: N children each map EACH bytes (touching every page, or
# none), and the parent writes TMPFS bytes to a file in the working directory; all of it is
# held for a second, then the parent prints "done".
SHAPE = """\
import mmap, os, sys, time
n, each, touch, tmpfs = map(int, sys.argv[1:5])
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        block = mmap.mmap(-1, each, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if touch:
            for offset in range(0, each, 4096):
                block[offset] = 1
        time.sleep(1)
        os._exit(0)
    kids.append(pid)
if tmpfs:
    with open("filler", "wb") as f:
        for _ in range(tmpfs // (1 << 20)):
            f.write(b"x" * (1 << 20))
for pid in kids:
    os.waitpid(pid, 0)
print("done")
"""


SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(30)"


def make_sandbox(work_root: Path, mode: str, **config: object) -> Sandbox:
    uids = sandbox_uids()
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=uids.start,
                                    uid_count=len(uids), cgroups="on" if mode == "cgroup"
                                    else "off", **config))  # type: ignore[arg-type]
    return sandbox


@pytest.fixture(params=["cgroup", "watchdog"])
def memory_sandbox(work_root: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox whose runs' memory is bounded by a cgroup each, or by the launcher's watchdog."""
    if request.param == "cgroup" and not IS_ROOT:
        pytest.skip("cgroups here are writable by root only")
    sandbox = make_sandbox(work_root, request.param)
    yield sandbox
    sandbox.close()


def run_shape(sandbox: Sandbox, n: int, each: int, touch: bool = True, tmpfs: int = 0,
              limit: int = LIMIT, address_space: bool = True) -> RunResult:
    async def go() -> RunResult:
        async with sandbox.jail() as jail:
            jail.write_file("shape.py", SHAPE.encode())
            process = await jail.start(
                [TEST_PYTHON, "shape.py", str(n), str(each), str(int(touch)), str(tmpfs)],
                TEST_PYTHON_ENV, Limits(memory_bytes=limit, wall_timeout_s=20, cpu_time_s=20,
                                        max_file_bytes=512 * MiB),
                address_space=address_space)
            return await process.communicate(b"")
    return asyncio.run(go())


def assert_no_run_cgroups(sandbox: Sandbox) -> None:
    tree = sandbox.layers.cgroups
    if tree is not None:
        for subtree in tree.subtrees:
            assert [p.name for p in subtree.iterdir() if p.is_dir()] == []


def test_children_together_past_the_limit_are_a_memory_limit(memory_sandbox: Sandbox) -> None:
    # Six children of 40 MB: each far inside RLIMIT_AS, 240 MB together under a 128 MiB bound.
    result = run_shape(memory_sandbox, 6, 40 * MiB)
    assert result.outcome is Outcome.MEMORY_LIMIT
    assert result.stdout == b""
    # The kernel stops the run at its limit; the watchdog, at its next look, which may come
    # after all of it was touched.
    ceiling = LIMIT if memory_sandbox.layers.cgroups is not None else 6 * 40 * MiB
    assert result.memory_bytes <= ceiling + SLACK_BYTES
    assert_no_run_cgroups(memory_sandbox)


def test_the_peak_is_the_whole_runs(memory_sandbox: Sandbox) -> None:
    # Four children of 20 MB each: the peak is theirs together, not one process's.
    result = run_shape(memory_sandbox, 4, 20 * MiB)
    assert (result.outcome, result.stdout) == (Outcome.OK, b"done\n")
    assert 4 * 20 * MiB * 0.9 <= result.memory_bytes <= 4 * 20 * MiB + SLACK_BYTES
    assert_no_run_cgroups(memory_sandbox)


def test_reserved_but_untouched_memory_does_not_count(memory_sandbox: Sandbox) -> None:
    # A VM's way: reserve four times the bound, touch none of it. Without the address-space
    # backstop that is fine; the run's resident bound still holds when the pages are touched.
    untouched = run_shape(memory_sandbox, 2, 2 * LIMIT, touch=False, address_space=False)
    assert (untouched.outcome, untouched.stdout) == (Outcome.OK, b"done\n")
    assert untouched.memory_bytes < SLACK_BYTES
    touched = run_shape(memory_sandbox, 1, 2 * LIMIT, touch=True, address_space=False)
    assert touched.outcome is Outcome.MEMORY_LIMIT


def test_with_the_backstop_one_process_cannot_reserve_past_the_limit(
        memory_sandbox: Sandbox) -> None:
    result = run_shape(memory_sandbox, 1, 2 * LIMIT, touch=False)
    # mmap fails in the child (ENOMEM from RLIMIT_AS): a traceback, and the parent goes on.
    assert result.outcome is Outcome.OK
    assert b"OSError" in result.stderr or b"MemoryError" in result.stderr


def test_tmpfs_pages_a_run_writes_count(work_root: Path) -> None:
    if not IS_ROOT:
        pytest.skip("cgroups here are writable by root only")
    sandbox = make_sandbox(work_root, "cgroup", disk_bytes=1024 * MiB)
    try:
        if not sandbox.layers.active("tmpfs"):
            pytest.skip("working directories are not tmpfs here")
        within = run_shape(sandbox, 0, 0, tmpfs=64 * MiB)
        assert (within.outcome, within.stdout) == (Outcome.OK, b"done\n")
        assert within.memory_bytes >= 64 * MiB
        past = run_shape(sandbox, 0, 0, tmpfs=256 * MiB)
        assert past.outcome is Outcome.MEMORY_LIMIT
        assert_no_run_cgroups(sandbox)
    finally:
        sandbox.close()


def test_runs_are_the_oom_killers_first_choice(memory_sandbox: Sandbox) -> None:
    async def go() -> tuple[str, RunResult]:
        seen: list[bytes] = []
        async with memory_sandbox.jail() as jail:
            process = await jail.start(
                [TEST_PYTHON, "-c", SLEEPER], TEST_PYTHON_ENV, Limits(wall_timeout_s=20))
            ended = asyncio.create_task(process.communicate(b"", lambda _s, d: seen.append(d)))
            while not seen:
                await asyncio.sleep(0.01)
            program = psutil.Process(int(seen[0]))
            scores = {"program": Path(f"/proc/{program.pid}/oom_score_adj").read_text(),
                      "launcher": Path(f"/proc/{program.ppid()}/oom_score_adj").read_text()}
            await process.send_signal(9)
            return repr(scores), await ended
    scores, result = asyncio.run(go())
    launcher = "1000\n" if IS_ROOT else Path("/proc/self/oom_score_adj").read_text()
    assert scores == repr({"program": "1000\n", "launcher": launcher})
    assert result.outcome is Outcome.SIGNALED
    assert Path("/proc/self/oom_score_adj").read_text().strip() != "1000"


def test_stdin_is_written_while_output_is_read(memory_sandbox: Sandbox) -> None:
    # A generator's shape: 2.2 MB out before it reads 4 MB in. Written first and read after,
    # the two would wait on each other past any wall clock.
    code = ("import sys\nsys.stdout.write('x' * 2_200_000)\nsys.stdout.flush()\n"
            "print(len(sys.stdin.read()))\n")

    async def go() -> RunResult:
        async with memory_sandbox.jail() as jail:
            jail.write_file("main.py", code.encode())
            return await asyncio.wait_for(jail.run(
                [TEST_PYTHON, "main.py"], TEST_PYTHON_ENV,
                Limits(wall_timeout_s=5, max_output_bytes=8 * MiB),
                stdin=b"y" * (4 * MiB)), 15)
    result = asyncio.run(go())
    assert result.outcome is Outcome.OK
    assert result.stdout == b"x" * 2_200_000 + b"4194304\n"


def test_input_a_program_never_reads_is_held_back(memory_sandbox: Sandbox) -> None:
    """The launcher stops reading its control pipe while it holds a MiB for the program, so
    the service's writes wait instead of piling up in the launcher."""
    async def go() -> tuple[int, RunResult, bool]:
        seen: list[bytes] = []
        async with memory_sandbox.jail() as jail:
            process = await jail.start(
                [TEST_PYTHON, "-c", SLEEPER], TEST_PYTHON_ENV, Limits(wall_timeout_s=3))
            feeding = asyncio.create_task(process.write_stdin(b"z" * (64 * MiB)))
            ended = asyncio.create_task(process.wait(lambda _s, d: seen.append(d)))
            await asyncio.sleep(1.5)
            launcher = psutil.Process(psutil.Process(int(seen[0])).ppid())
            rss = launcher.memory_info().rss
            result = await ended
            fed = feeding.done()
            feeding.cancel()
            return rss, result, fed
    rss, result, fed = asyncio.run(go())
    assert rss < 40 * MiB
    assert not fed  # the service's write was held back, not swallowed
    assert result.outcome is Outcome.WALL_TIMEOUT


def test_output_is_not_kept_when_the_caller_does_not_want_it(memory_sandbox: Sandbox) -> None:
    async def go() -> tuple[int, RunResult]:
        got = 0

        def count(_stream: Stream, data: bytes) -> None:
            nonlocal got
            got += len(data)
        async with memory_sandbox.jail() as jail:
            process = await jail.start([TEST_PYTHON, "-c", "print('x' * 100000)"],
                                       TEST_PYTHON_ENV, Limits())
            await process.close_stdin()
            result = await process.wait(count, keep_output=False)
            return got, result
    got, result = asyncio.run(go())
    assert got == 100001
    assert (result.outcome, result.stdout, result.output) == (Outcome.OK, b"", b"")


def test_a_cgroup_is_made_under_the_services_own(work_root: Path) -> None:
    if not IS_ROOT:
        pytest.skip("cgroups here are writable by root only")
    sandbox = make_sandbox(work_root, "cgroup")
    try:
        tree = sandbox.layers.cgroups
        assert tree is not None
        own = {line.split(":", 2)[1]: line.split(":", 2)[2]
               for line in Path("/proc/self/cgroup").read_text().splitlines()}
        for subtree in tree.subtrees:
            hierarchy = subtree.parts[4] if tree.version == 1 else ""
            assert str(subtree.parent).endswith(own[hierarchy].rstrip("/")) or \
                own[hierarchy] == "/"
            assert subtree.name.startswith(f"sandbox-service-{os.getpid()}-")
        subtrees = tree.subtrees
    finally:
        sandbox.close()
    assert not any(subtree.exists() for subtree in subtrees)


@given(n=st.integers(0, 4), each_mib=st.integers(1, 96), touch=st.booleans(),
       tmpfs_mib=st.integers(0, 96))
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_outcome_is_memory_limit_exactly_when_the_shape_needs_more(
        memory_sandbox: Sandbox, n: int, each_mib: int, touch: bool, tmpfs_mib: int) -> None:
    """For any shape of processes x bytes each x touched or not x tmpfs bytes: the run's peak
    never passes its limit by more than the slack (the kernel's bound) or what the shape holds
    (the watchdog's, which looks every 50 ms), and the outcome is memory_limit exactly when the
    shape needs more than the limit. Shapes within a quarter of the limit either way, where
    the interpreters' own pages decide, are left out."""
    cgroup = memory_sandbox.layers.cgroups is not None
    counted_tmpfs = tmpfs_mib if cgroup and memory_sandbox.layers.active("tmpfs") else 0
    if not cgroup:
        tmpfs_mib = 0  # the watchdog measures processes; a file nobody maps is the disk's
    need = (n * each_mib if touch else 0) * MiB + counted_tmpfs * MiB
    assume(abs(need - LIMIT) > LIMIT // 4)
    result = run_shape(memory_sandbox, n, each_mib * MiB, touch, tmpfs_mib * MiB,
                       address_space=False)
    assert (result.outcome is Outcome.MEMORY_LIMIT) == (need > LIMIT), result
    if result.outcome is not Outcome.MEMORY_LIMIT:
        assert (result.outcome, result.stdout) == (Outcome.OK, b"done\n")
    ceiling = LIMIT if cgroup else max(need, LIMIT)
    assert result.memory_bytes <= ceiling + SLACK_BYTES
