"""The sandbox on its own: real launcher, real programs, every outcome."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from sandbox import Limits, Outcome, RunResult, Sandbox, SandboxConfig

from ..utils import (
    IS_ROOT,
    TEST_PYTHON,
    TEST_PYTHON_ENV,
    alive,
    run_folders,
    run_processes,
    sandbox_uids,
    warm_python,
)

PYTHON = TEST_PYTHON
ENV = TEST_PYTHON_ENV


def run(sandbox: Sandbox, code: str, limits: Limits | None = None, stdin: bytes = b"",
        argv: list[str] | None = None) -> RunResult:
    async def go() -> RunResult:
        async with sandbox.jail() as jail:
            jail.write_file("main.py", code.encode())
            return await jail.run(argv or [PYTHON, "-u", "main.py"], ENV, limits or Limits(),
                                  stdin=stdin, warm=warm_python(sandbox))
    return asyncio.run(go())


def assert_clean(sandbox: Sandbox) -> None:
    assert run_folders(sandbox.config.work_root) == []
    if IS_ROOT:
        assert run_processes() == []


def test_ok_with_stdin_and_separate_streams(sandbox: Sandbox) -> None:
    result = run(sandbox, "import sys\nprint(sys.stdin.read()[::-1])\nprint('e', file=sys.stderr)",
                 stdin=b"abc")
    assert (result.outcome, result.exit_code, result.signal) == (Outcome.OK, 0, None)
    assert (result.stdout, result.stderr, result.output) == (b"cba\n", b"e\n", b"cba\ne\n")
    assert result.wall_time_s > 0 and result.cpu_time_s > 0 and result.memory_bytes > 0
    assert_clean(sandbox)


def test_nonzero_exit(sandbox: Sandbox) -> None:
    result = run(sandbox, "raise SystemExit(3)")
    assert (result.outcome, result.exit_code) == (Outcome.NONZERO_EXIT, 3)


def test_killed_by_signal(sandbox: Sandbox) -> None:
    result = run(sandbox, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert (result.outcome, result.exit_code, result.signal) == (Outcome.SIGNALED, None, 11)


def test_wall_timeout_kills_a_sleeper(sandbox: Sandbox) -> None:
    result = run(sandbox, "import time\ntime.sleep(60)", Limits(wall_timeout_s=0.5))
    assert (result.outcome, result.signal) == (Outcome.WALL_TIMEOUT, signal.SIGKILL)
    assert 0.5 <= result.wall_time_s < 2
    assert_clean(sandbox)


def test_cpu_limit_stops_a_spin_that_catches_sigxcpu(sandbox: Sandbox) -> None:
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass"
    result = run(sandbox, code, Limits(cpu_time_s=1, wall_timeout_s=10))
    assert result.outcome is Outcome.CPU_LIMIT
    assert 0.9 <= result.cpu_time_s < 2 and result.wall_time_s < 5


def test_cpu_spread_over_children_counts_in_total(sandbox: Sandbox) -> None:
    code = "import os\nfor _ in range(3):\n    if os.fork() == 0: break\nwhile True: pass"
    result = run(sandbox, code, Limits(cpu_time_s=1, wall_timeout_s=10))
    assert result.outcome is Outcome.CPU_LIMIT
    assert result.cpu_time_s < 2
    assert_clean(sandbox)


def test_output_capped_at_exactly_the_cap(sandbox: Sandbox) -> None:
    result = run(sandbox, "import sys\nwhile True: sys.stdout.write('x' * 1000)",
                 Limits(max_output_bytes=12345))
    assert result.outcome is Outcome.OUTPUT_LIMIT
    assert result.stdout == b"x" * 12345 and result.stdout_truncated
    assert not result.stderr_truncated


def test_invalid_utf8_and_nul_bytes_kept_raw(sandbox: Sandbox) -> None:
    result = run(sandbox, "import sys\nsys.stdout.buffer.write(b'\\xff\\x00\\xfe ok')")
    assert result.stdout == b"\xff\x00\xfe ok"


def test_unread_stdin_does_not_deadlock(sandbox: Sandbox) -> None:
    result = run(sandbox, "print('done')", stdin=b"y" * (8 << 20))
    assert (result.outcome, result.stdout) == (Outcome.OK, b"done\n")


def test_stdin_that_never_ends_is_end_of_file(sandbox: Sandbox) -> None:
    result = run(sandbox, "import sys\nprint(len(sys.stdin.read()))", stdin=b"")
    assert result.stdout == b"0\n"


def test_double_forked_setsid_escapee_is_killed(sandbox: Sandbox) -> None:
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        print(os.getpid(), flush=True)\n"
            "        time.sleep(60)\n"
            "    os._exit(0)\n"
            "time.sleep(0.5)\n")
    result = run(sandbox, code)
    assert result.outcome is Outcome.OK
    escapee = int(result.stdout)
    assert not alive(escapee)
    assert_clean(sandbox)


def test_grandchild_holding_stdout_does_not_hold_the_run(sandbox: Sandbox) -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('main done')"
    started = time.monotonic()
    result = run(sandbox, code, Limits(wall_timeout_s=20))
    assert (result.outcome, result.stdout) == (Outcome.OK, b"main done\n")
    assert time.monotonic() - started < 10
    assert_clean(sandbox)


def test_environment_is_exactly_the_one_given(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "leak")
    result = run(sandbox, "import os\nprint(sorted(os.environ.items()))")
    assert result.stdout.decode() == repr(sorted(ENV.items())) + "\n"


def test_rlimits_are_hard(sandbox: Sandbox) -> None:
    code = ("import resource\n"
            "for r in ('AS', 'NOFILE', 'FSIZE', 'CORE', 'NPROC', 'STACK', 'CPU'):\n"
            "    soft, hard = resource.getrlimit(getattr(resource, 'RLIMIT_' + r))\n"
            "    print(r, soft == hard)\n"
            "try:\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (2**40, 2**40))\n"
            "except ValueError as e: print('raise refused')\n")
    result = run(sandbox, code)
    assert result.stdout.decode().split("\n") == [
        "AS True", "NOFILE True", "FSIZE True", "CORE True", "NPROC True", "STACK True",
        "CPU True", "raise refused", ""]


def test_memory_bomb_fails_inside_the_limit(sandbox: Sandbox) -> None:
    result = run(sandbox, "x = bytearray(1 << 30)", Limits(memory_bytes=256 << 20))
    assert result.outcome is Outcome.NONZERO_EXIT  # the runtimes layer names it memory_limit
    assert result.stderr.endswith(b"MemoryError\n")
    assert_clean(sandbox)


def test_file_size_limit_kills_a_writer(sandbox: Sandbox) -> None:
    result = run(sandbox, "", Limits(max_file_bytes=1 << 20),
                 argv=["/bin/dd", "if=/dev/zero", "of=big", "bs=65536", "count=100"])
    assert (result.outcome, result.signal) == (Outcome.FILE_SIZE_LIMIT, signal.SIGXFSZ)
    assert_clean(sandbox)


def test_no_core_file_is_written(sandbox: Sandbox) -> None:
    code = "import os\nos.abort()"
    result = run(sandbox, code + "\n")
    assert (result.outcome, result.signal) == (Outcome.SIGNALED, signal.SIGABRT)
    assert_clean(sandbox)


def test_working_directory_is_private(sandbox: Sandbox) -> None:
    result = run(sandbox, "import os, stat\nst = os.stat('.')\n"
                 "print(oct(stat.S_IMODE(st.st_mode)), os.getcwd().rsplit('/', 1)[1][:4])")
    assert result.stdout == b"0o700 run-\n"


@pytest.mark.root
def test_each_run_has_its_own_uid_and_no_groups(sandbox: Sandbox) -> None:
    result = run(sandbox, "import os\nprint(os.getuid(), os.getgid(), os.getgroups())")
    uid, gid, groups = result.stdout.decode().split(" ", 2)
    assert int(uid) >= 60000 and uid == gid and groups == "[]\n"


@pytest.mark.root
def test_fork_bomb_is_bounded_by_the_process_limit(sandbox: Sandbox) -> None:
    # Runs only with a per-run uid, where RLIMIT_NPROC is enforced for the bomb alone.
    code = ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n")
    result = run(sandbox, code, Limits(wall_timeout_s=2, cpu_time_s=30, max_processes=32))
    assert result.outcome is Outcome.WALL_TIMEOUT
    assert_clean(sandbox)


def test_missing_program_is_a_sandbox_error(sandbox: Sandbox) -> None:
    from sandbox import LaunchError

    with pytest.raises(LaunchError, match="could not start the program"):
        run(sandbox, "", argv=["/nonexistent/binary"])
    assert_clean(sandbox)


def test_workdir_is_removed_even_if_the_program_locked_it(sandbox: Sandbox) -> None:
    result = run(sandbox, "import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\n"
                 "os.chmod('a/b', 0)\nos.chmod('a', 0)\nos.symlink('/etc', 'link')")
    assert result.outcome is Outcome.OK
    assert_clean(sandbox)
    assert Path("/etc/passwd").exists()


def test_peak_memory_reflects_the_program(sandbox: Sandbox) -> None:
    small = run(sandbox, "pass")
    big = run(sandbox, "x = bytearray(200 << 20)\nx[::4096] = b'1' * len(x[::4096])")
    assert big.memory_bytes > small.memory_bytes + (150 << 20)


def test_writing_files_never_follows_a_planted_symlink(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.mkdir()

    async def go() -> None:
        async with sandbox.jail() as jail:
            (jail.path / "sub").symlink_to(target)
            (jail.path / "f").symlink_to(target / "f")
            with pytest.raises(NotADirectoryError):
                jail.write_file("sub/x.txt", b"x")
            with pytest.raises(FileExistsError):
                jail.write_file("f", b"x")
            jail.write_file("real/deeper/y.txt", b"y")
            assert (jail.path / "real/deeper/y.txt").read_bytes() == b"y"
    asyncio.run(go())
    assert list(target.iterdir()) == []


def test_launchers_are_forked_from_the_zygote_which_comes_back_if_killed(work_root: Path) -> None:
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=sandbox_uids().start,
                                    uid_count=len(sandbox_uids())))
    zygote = sandbox.zygote
    assert zygote is not None

    async def launcher_parent() -> tuple[int, RunResult]:
        async with sandbox.jail() as jail:
            process = await jail.start([PYTHON, "-c", "print('up')"], ENV, Limits())
            parent = psutil.Process(process._proc.pid).ppid()
            await process.close_stdin()
            return parent, await process.wait()

    parent, result = asyncio.run(launcher_parent())
    assert (parent, result.stdout) == (zygote.pid, b"up\n")
    first = zygote.pid
    os.kill(first, signal.SIGKILL)
    # The run right after falls back to a started launcher while the zygote restarts...
    parent, result = asyncio.run(launcher_parent())
    assert result.stdout == b"up\n" and parent != first
    # ...and the next ones are forked again, by the new zygote.
    parent, result = asyncio.run(launcher_parent())
    assert (parent, result.stdout) == (zygote.pid, b"up\n")
    assert zygote.starts == 2 and zygote.pid != first
    sandbox.close()
    assert not alive(zygote.pid)


def test_a_program_cannot_signal_the_zygote(work_root: Path) -> None:
    # Without Landlock's scoping (or a per-run uid): seccomp alone protects it.
    sandbox = Sandbox(SandboxConfig(work_root=work_root, landlock="off", per_run_uid="off"))
    assert sandbox.zygote is not None
    code = (f"import os\ntry:\n    os.kill({sandbox.zygote.pid}, 9)\n"
            "except OSError as e:\n    print(e.errno)")
    try:
        assert run(sandbox, code).stdout == b"1\n"
        assert alive(sandbox.zygote.pid)
    finally:
        sandbox.close()


def test_a_cancelled_fork_leaves_the_zygote_in_step(work_root: Path) -> None:
    """A request cancelled while it waits for the zygote's answer must not shift the answers
    of the later ones (each run would get the launcher of the run before it)."""
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=sandbox_uids().start,
                                    uid_count=len(sandbox_uids())))

    async def go() -> list[bytes]:
        zygote = sandbox.zygote
        assert zygote is not None
        forking = asyncio.ensure_future(zygote.fork())
        # Cancelled while its request is out and the answer not read: the channel is locked
        # only between the two.
        while not (zygote._lock is not None and zygote._lock.locked()):
            await asyncio.sleep(0)
        forking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forking

        async def one(code: str) -> bytes:
            async with sandbox.jail() as jail:
                process = await jail.start([PYTHON, "-c", code], ENV, Limits())
                await process.close_stdin()
                return (await process.wait()).stdout
        # A slow run and a quick one at once: had the answers shifted, the quick run would
        # hold the slow run's launcher and kill it on its way out.
        slow = asyncio.ensure_future(one("import time; time.sleep(0.5); print('slow')"))
        await asyncio.sleep(0.1)
        quick = await one("print('quick')")
        return [await slow, quick, await one("print('after')")]

    try:
        assert asyncio.run(go()) == [b"slow\n", b"quick\n", b"after\n"]
    finally:
        sandbox.close()
