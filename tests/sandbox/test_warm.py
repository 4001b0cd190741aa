"""Warm interpreters: a program run in a fork of one cannot tell it from a fresh interpreter.

Each program of the table runs twice in real jails, once started afresh and once forked from a
warm interpreter, and everything it reports (stdout, stderr, the exit code or signal) must be
the same, its working directory's path aside. (How two pipes interleave is up to the
scheduler in either case.)"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from sandbox import Limits, Outcome, RunResult, Sandbox, SandboxConfig, WarmInterpreter
from sandbox import zygote as zygote_module

from ..utils import alive, sandbox_uids
from .test_process import assert_clean

PYTHON = next(p for p in ("/usr/local/bin/python3", "/usr/bin/python3") if os.path.exists(p))
OPTIONS = ("-B", "-u", "-s")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
       "PYTHONHASHSEED": "random", "HOME": "{workdir}", "TMPDIR": "{workdir}"}
PRELOAD = ("json", "random", "heapq", "collections")
WARM = WarmInterpreter.of([PYTHON, *OPTIONS], ENV, PRELOAD)
LIMITS = Limits(wall_timeout_s=10, cpu_time_s=10, memory_bytes=512 << 20, max_processes=64,
                max_file_bytes=1 << 20)
# Whether the program runs in a fork of a warm interpreter: its module frame has a caller there.
IN_PROCESS = "import inspect\nprint(len(inspect.stack()) > 1, 'heapq' in __import__('sys').modules)"


def run(sandbox: Sandbox, files: Mapping[str, str | bytes], warm: WarmInterpreter | None,
        stdin: bytes = b"", args: tuple[str, ...] = ("a", "b c"), main: str = "main.py",
        limits: Limits = LIMITS) -> tuple[RunResult, str]:
    async def go() -> tuple[RunResult, str]:
        async with sandbox.jail() as jail:
            for name, content in files.items():
                jail.write_file(name, content.encode() if isinstance(content, str) else content)
            env = {name: value.replace("{workdir}", str(jail.path)) for name, value in ENV.items()}
            result = await jail.run([PYTHON, *OPTIONS, main, *args], env, limits, stdin=stdin,
                                    warm=warm)
            return result, str(jail.path)
    return asyncio.run(go())


def observed(result: RunResult, workdir: str) -> dict[str, object]:
    def clean(data: bytes) -> bytes:
        return data.replace(workdir.encode(), b"WORKDIR")
    return {"outcome": result.outcome, "exit_code": result.exit_code, "signal": result.signal,
            "stdout": clean(result.stdout), "stderr": clean(result.stderr)}


def zipapp() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", "import sys\nprint('from the zip', sys.argv[1:])\n")
    return buffer.getvalue()


ZIPAPP = zipapp()

INTROSPECTION = r'''"""The docstring."""
import os, resource, signal, sys
print(__name__, __file__, repr(__doc__), __package__, __spec__, __cached__)
print(type(__loader__).__name__, __loader__.name, __loader__.path, type(__builtins__).__name__)
print(list(globals()))
print(sys.argv, sys.orig_argv, sys.executable)
print(sys.path[0], sys.path[1:] == [p for p in sys.path[1:] if not p.startswith(os.getcwd())])
print(sys.flags)
print([str(signal.getsignal(s)) for s in range(1, signal.NSIG)
       if s not in (32, 33) and s < signal.SIGRTMIN])
print(signal.pthread_sigmask(signal.SIG_BLOCK, []))
for stream in (sys.stdin, sys.stdout, sys.stderr):
    print(stream, stream.errors, stream.line_buffering, stream.write_through, stream.seekable(),
          type(stream.buffer).__name__)
print(sys.exc_info(), sys.getrecursionlimit(), sys.getswitchinterval())
print(dict(os.environ) == {k: v for k, v in os.environ.items()}, sorted(os.environ))
print(os.environ["HOME"] == os.getcwd(), os.getcwd() == os.path.dirname(__file__))
print(oct(os.umask(0o22)), os.getuid() == os.stat(".").st_uid, os.getgroups())
print([resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
       resource.RLIMIT_NPROC, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE,
       resource.RLIMIT_STACK, resource.RLIMIT_CORE)])
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print([fd for fd in range(3, 1024) if is_open(fd)])
print(type(exit).__name__, type(help).__name__, "copyright" in dir(__builtins__))
print(sys.stdin.readline().strip(), input("prompt> "))
'''

CONFINEMENT = r'''import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
# PR_GET_DUMPABLE, PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS
print([libc.prctl(option, 0, 0, 0, 0) for option in (3, 21, 39)])
for path in ("/etc/shadow", "/etc/passwd", "/root", "/proc/self/status"):
    try:
        open(path).close()
        print(path, "readable")
    except OSError as exc:
        print(path, type(exc).__name__)
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("inet allowed")
except OSError as exc:
    print("inet", type(exc).__name__)
print(os.getuid() != 0, os.getppid() != 1)
'''

PROGRAMS: dict[str, dict[str, str | bytes]] = {
    "introspection": {"main.py": INTROSPECTION},
    "confinement": {"main.py": CONFINEMENT},
    "uncaught exception with a chain": {"main.py": (
        "def inner():\n    raise KeyError('k')\n"
        "def outer():\n    try:\n        inner()\n    except KeyError as exc:\n"
        "        raise ValueError('v') from exc\n"
        "print('before', flush=True)\nouter()\n")},
    "exception during handling": {"main.py": (
        "try:\n    1/0\nexcept ZeroDivisionError:\n    [][1]\n")},
    "sys.exit with a message": {"main.py": "import sys\nsys.exit('goodbye')\n"},
    "sys.exit with a code": {"main.py": "import sys\nprint('x')\nsys.exit(3)\n"},
    "sys.exit(None)": {"main.py": "raise SystemExit(None)\n"},
    "exit code past 255": {"main.py": "raise SystemExit(300)\n"},
    "exit(True)": {"main.py": "exit(True)\n"},
    "os._exit": {"main.py": "import os\nprint('unflushed?', end='')\nos._exit(7)\n"},
    "KeyboardInterrupt": {"main.py": "print('a')\nraise KeyboardInterrupt\n"},
    "killed by its own signal": {"main.py": "import os\nos.kill(os.getpid(), 11)\n"},
    "syntax error": {"main.py": "print('never')\nprint(\n"},
    "indentation error": {"main.py": "if True:\nprint(1)\n"},
    "undecodable source": {"main.py": b"x = '\xff'\n"},
    "NUL byte in the source": {"main.py": b"print(1)\x00\nprint(2)\n"},
    "latin-1 coding cookie": {"main.py": b"# -*- coding: latin-1 -*-\nprint('\xe9')\n"},
    "BOM": {"main.py": b"\xef\xbb\xbfprint('bom')\n"},
    "no such script": {"other.py": "print(1)\n"},
    "interleaved streams": {"main.py": (
        "import sys\nfor i in range(50):\n    print(i)\n    print(-i, file=sys.stderr)\n"
        "sys.stdout.buffer.write(b'\\xff\\x00raw\\n')\n")},
    "threads and atexit at the end": {"main.py": (
        "import atexit, threading, time\natexit.register(lambda: print('atexit ran'))\n"
        "def late():\n    time.sleep(0.2)\n    print('thread done')\n"
        "threading.Thread(target=late).start()\nprint('main done')\n")},
    "finalizer at exit": {"main.py": (
        "class C:\n    def __del__(self):\n        print('del ran')\nc = C()\nprint('end')\n")},
    "warnings": {"main.py": "import warnings\nwarnings.warn('careful')\nprint('on')\n"},
    "memory error": {"main.py": "x = bytearray(2 << 30)\n"},
    "file size limit": {"main.py": "open('big', 'wb').write(b'x' * (2 << 20))\n"},
    "fork and subprocess": {"main.py": (
        "import os, subprocess, sys\npid = os.fork()\nif pid == 0:\n    print('child')\n"
        "    os._exit(0)\nos.waitpid(pid, 0)\n"
        "print(subprocess.run([sys.executable, '-c', 'print(2)'], capture_output=True,"
        " text=True).stdout, end='')\n")},
    "a sibling module named like a preloaded one": {
        "main.py": "import random, json\nprint(random.VALUE, json.dumps([1]))\n",
        "random.py": "VALUE = 'the program s own random'\n"},
    "imports of its own package": {
        "main.py": "from pkg.mod import f\nimport heapq, sys\nprint(f(), 'pkg' in sys.modules)\n",
        "pkg/__init__.py": "", "pkg/mod.py": "def f():\n    return 'f'\n"},
    "pickling a class of __main__": {"main.py": (
        "import pickle, __main__\nclass Point:\n    def __init__(self, x):\n        self.x = x\n"
        "p = pickle.loads(pickle.dumps(Point(4)))\nprint(p.x, __main__.Point is Point,"
        " __main__.__file__ == __file__)\n")},
    "a main file in a sub-folder": {"src/main.py": (
        "import sys, os\nprint(sys.argv[0], sys.path[0] == os.path.dirname(__file__))\n")},
    # What ends a program, done by the interpreter at exit, each a way to go wrong:
    "output to a file through a replaced stdout, closed at the end": {"main.py": (
        "import sys\nsys.stdout = open('out.txt', 'w')\nprint(42)\nsys.stdout.close()\n"
        "sys.stderr.write(open('out.txt').read())\n")},
    "stdout closed": {"main.py": "import sys\nprint('bye')\nsys.stdout.close()\n"},
    "stdout failing at the end": {"main.py": (
        "import sys\nsys.stdout = open('/dev/full', 'w')\nprint('lost')\n")},
    "stderr failing at the end": {"main.py": (
        "import sys\nsys.stderr = open('/dev/full', 'w')\nprint('kept')\n"
        "sys.stderr.write('lost')\n")},
    "a daemon thread still running": {"main.py": (
        "import threading\ndef spin():\n    while True:\n        pass\n"
        "threading.Thread(target=spin, daemon=True).start()\nprint('main ends')\n")},
    "a finalizer using a module global": {"main.py": (
        "import sys\nclass C:\n    def __del__(self):\n        sys.stdout.write('del ran\\n')\n"
        "c = C()\n")},
    "^C while joining threads at exit": {"main.py": (
        "import os, signal, threading, time\ndef late():\n    time.sleep(0.3)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(0.3)\n    print('thread done')\n"
        "threading.Thread(target=late).start()\nprint('main done')\n")},
    "an excepthook that raises": {"main.py": (
        "import sys\ndef hook(*args):\n    raise ValueError('in the hook')\n"
        "sys.excepthook = hook\n1 / 0\n")},
    "no excepthook": {"main.py": "import sys\nsys.excepthook = None\n1 / 0\n"},
    "an excepthook that exits": {"main.py": (
        "import sys\ndef hook(*args):\n    sys.exit(5)\nsys.excepthook = hook\n1 / 0\n")},
    "no stderr, sys.exit with a message": {"main.py": (
        "import sys\nsys.stderr = None\nsys.exit('bye')\n")},
    "os._exit replaced by the program": {"main.py": (
        "import os\nos._exit = lambda code: print('patched', code)\nraise SystemExit(3)\n")},
    "a zip archive as the script": {"main.py": ZIPAPP},
    "a custom unraisablehook at a failing flush": {"main.py": (
        "import sys\nsys.unraisablehook = lambda u: print('hook', u.exc_type.__name__,"
        " file=sys.__stderr__)\nsys.stdout = open('/dev/full', 'w')\nprint('lost')\n")},
}
MAINS = {"no such script": "main.py", "a main file in a sub-folder": "src/main.py"}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_a_program_cannot_tell_a_warm_interpreter_from_a_fresh_one(
        warm_sandbox: Sandbox, name: str) -> None:
    files = PROGRAMS[name]
    main = MAINS.get(name, "main.py")
    fresh = observed(*run(warm_sandbox, files, None, b"line one\nline two\n", main=main))
    warm_result, workdir = run(warm_sandbox, files, WARM, b"line one\nline two\n", main=main)
    assert observed(warm_result, workdir) == fresh
    assert fresh["outcome"] is not None
    assert_clean(warm_sandbox)


def test_the_table_really_runs_in_process(warm_sandbox: Sandbox) -> None:
    """The comparison above would pass vacuously if both runs were fresh."""
    fresh, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, None)
    warm, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, WARM)
    assert (fresh.stdout, warm.stdout) == (b"False False\n", b"True True\n")


def test_outcomes_of_limits_are_those_of_a_fresh_run(warm_sandbox: Sandbox) -> None:
    cases = {
        "import time\ntime.sleep(30)": (Outcome.WALL_TIMEOUT, Limits(wall_timeout_s=0.5)),
        "while True:\n    pass": (Outcome.CPU_LIMIT, Limits(cpu_time_s=0.5)),
        "print('x' * 100000)": (Outcome.OUTPUT_LIMIT, Limits(max_output_bytes=1000)),
    }
    for code, (outcome, limits) in cases.items():
        for warm in (None, WARM):
            result, _ = run(warm_sandbox, {"main.py": code}, warm, limits=limits)
            assert result.outcome == outcome, (code, warm, result)


def test_each_run_has_its_own_random_state(warm_sandbox: Sandbox) -> None:
    code = "import random\nprint(random.getrandbits(64))"
    draws = {run(warm_sandbox, {"main.py": code}, WARM)[0].stdout for _ in range(4)}
    assert len(draws) == 4


def test_no_run_holds_anything_of_another_or_of_the_service(
        warm_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's data stays in its own fork: the next run, forked from the same interpreter,
    finds none of it among its objects, nor the service's environment."""
    monkeypatch.setenv("SANDBOX_SERVICE_SECRET", "service-secret-value")
    # Strings are not tracked by the collector: look inside every container it tracks, the
    # frozen ones (the warm interpreter's own objects) included.
    scan = ("import gc, json, os, sys\ngc.unfreeze()\n"
            "def strings(o):\n    if isinstance(o, dict):\n        return [*o.keys(), *o.values()]\n"
            "    if isinstance(o, (list, tuple, set, frozenset)):\n        return list(o)\n"
            "    return []\n"
            # The markers are held reversed, so the scan does not find its own.
            "found = sum(1 for o in gc.get_objects() for v in strings(o)\n"
            "            if isinstance(v, (str, bytes)) and any(\n"
            "                m in (v if isinstance(v, str) else v.decode('latin-1'))[::-1]\n"
            "                for m in ('terces-eno-nur', 'terces-ecivres')))\n"
            "print(found, hasattr(json, 'kept'), 'SANDBOX_SERVICE_SECRET' in os.environ)")
    first = ("import json, sys\nkept = [sys.stdin.read()]\njson.kept = kept\n" + scan)
    result, _ = run(warm_sandbox, {"main.py": first}, WARM, stdin=b"run-one-secret-" * 100)
    # The scan finds what a run holds itself (so it can fail) ...
    count, kept, service = result.stdout.split()
    assert (int(count) >= 1, kept, service) == (True, b"True", b"False"), result.stderr
    # ... and nothing of the run before, nor of the service.
    result, _ = run(warm_sandbox, {"main.py": scan}, WARM)
    assert result.stdout == b"0 False False\n", result.stderr


def test_a_run_cannot_signal_its_warm_interpreter(warm_sandbox: Sandbox) -> None:
    zygote = warm_sandbox.warm_zygote(WARM)
    assert zygote is not None
    code = (f"import os\ntry:\n    os.kill({zygote.pid}, 9)\n    print('sent')\n"
            "except OSError as exc:\n    print(type(exc).__name__)")
    result, _ = run(warm_sandbox, {"main.py": code}, WARM)
    assert result.stdout == b"PermissionError\n"
    assert alive(zygote.pid) and zygote.starts == 1
    assert_clean(warm_sandbox)


def test_a_dead_warm_interpreter_is_restarted_and_runs_start_fresh_meanwhile(
        warm_sandbox: Sandbox) -> None:
    zygote = warm_sandbox.warm_zygote(WARM)
    assert zygote is not None
    os.kill(zygote.pid, signal.SIGKILL)
    while alive(zygote.pid):
        pass
    result, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, WARM)
    assert (result.outcome, result.stdout) == (Outcome.OK, b"False False\n")
    assert zygote.starts == 2 and zygote.alive
    result, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, WARM)
    assert result.stdout == b"True True\n"


def test_turned_off_every_run_starts_fresh(work_root: Path) -> None:
    uids = sandbox_uids()
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=uids.start,
                                    uid_count=len(uids), warm_interpreters=False))
    try:
        assert sandbox.warm_zygote(WARM) is None
        result, _ = run(sandbox, {"main.py": IN_PROCESS}, WARM)
        assert result.stdout == b"False False\n"
    finally:
        sandbox.close()


@pytest.mark.parametrize("argv_tail, env_change", [
    (("-E", "main.py"), {}),  # another option before the script
    (("main.py",), {"PYTHONHASHSEED": "0"}),  # another start-up environment
])
def test_runs_it_cannot_be_are_started_fresh(warm_sandbox: Sandbox, argv_tail: tuple[str, ...],
                                             env_change: dict[str, str]) -> None:
    assert WARM.script_index([PYTHON, *OPTIONS, *argv_tail], {**ENV, **env_change}) is None

    async def go() -> RunResult:
        async with warm_sandbox.jail() as jail:
            jail.write_file("main.py", IN_PROCESS.encode())
            env = {**{k: v.replace("{workdir}", str(jail.path)) for k, v in ENV.items()},
                   **env_change}
            argv = [PYTHON, *OPTIONS, *argv_tail]
            if argv_tail[0] == "-c":
                argv = [PYTHON, *OPTIONS, "-c", IN_PROCESS]
            return await jail.run(argv, env, LIMITS, warm=WARM)
    result = asyncio.run(go())
    assert result.stdout == b"False False\n"


COMMANDS = {
    "introspection": (
        "import sys\nprint(__name__, __doc__, __package__, __spec__, '__file__' in globals())\n"
        "print(__loader__, sorted(globals()))\nprint(sys.argv, sys.path[0] == '')"),
    "an uncaught exception": "def f():\n    1 / 0\nf()",
    "an exit status": "import sys\nsys.exit(5)",
    "a syntax error": "print(1",
    "a module of the working directory named like a preloaded one": (
        "import heapq\nprint(hasattr(heapq, 'heappush'), heapq.MINE)"),
}
# Files in the working directory when the command starts.
COMMAND_FILES = {"a module of the working directory named like a preloaded one": {
    "heapq.py": "MINE = 1"}}


def run_command(sandbox: Sandbox, code: str, warm: WarmInterpreter | None,
                files: Mapping[str, str] = {}) -> tuple[RunResult, str]:
    async def go() -> tuple[RunResult, str]:
        async with sandbox.jail() as jail:
            for name, content in files.items():
                jail.write_file(name, content.encode())
            env = {name: value.replace("{workdir}", str(jail.path)) for name, value in ENV.items()}
            result = await jail.run([PYTHON, *OPTIONS, "-c", code, "a", "b c"], env, LIMITS,
                                    warm=warm)
            return result, str(jail.path)
    return asyncio.run(go())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_python_c_in_a_warm_interpreter_is_python_c(warm_sandbox: Sandbox, name: str) -> None:
    """`python -c CODE` (how session kernels start) runs in process too, as it would fresh."""
    files = COMMAND_FILES.get(name, {})
    fresh = observed(*run_command(warm_sandbox, COMMANDS[name], None, files))
    assert observed(*run_command(warm_sandbox, COMMANDS[name], WARM, files)) == fresh
    assert_clean(warm_sandbox)


def test_python_c_really_runs_in_process(warm_sandbox: Sandbox) -> None:
    fresh, _ = run_command(warm_sandbox, IN_PROCESS, None)
    warm, _ = run_command(warm_sandbox, IN_PROCESS, WARM)
    assert (fresh.stdout, warm.stdout) == (b"False False\n", b"True True\n")


def test_script_index_matches_only_its_own_interpreter() -> None:
    assert WARM.script_index([PYTHON, *OPTIONS, "main.py", "x"], ENV) == 4
    # HOME and TMPDIR are read from os.environ, which each run gets whole: no difference.
    assert WARM.script_index([PYTHON, *OPTIONS, "main.py"], {**ENV, "HOME": "/else"}) == 4
    assert WARM.script_index([PYTHON, "-B", "main.py"], ENV) is None
    assert WARM.script_index([PYTHON, *OPTIONS], ENV) is None
    assert WARM.script_index([PYTHON, *OPTIONS, "main.py"], {**ENV, "LANG": "C"}) is None
    # The time module reads TZ when the interpreter starts.
    assert WARM.script_index([PYTHON, *OPTIONS, "main.py"], {**ENV, "TZ": "Asia/Tokyo"}) is None
    assert WARM.script_index([PYTHON, *OPTIONS, "-c", "pass", "x"], ENV) == 4
    assert WARM.script_index([PYTHON, *OPTIONS, "-c"], ENV) is None
    assert WARM.script_index([PYTHON, *OPTIONS, "-m", "main"], ENV) is None
    # Names a preloaded module reads on import are part of the start when the runtime says so.
    threads = WarmInterpreter.of([PYTHON, *OPTIONS], {**ENV, "OPENBLAS_NUM_THREADS": "1"},
                                 fixed=["OPENBLAS_NUM_THREADS"])
    assert ("OPENBLAS_NUM_THREADS", "1") in threads.env
    assert threads.script_index([PYTHON, *OPTIONS, "x.py"],
                                {**ENV, "OPENBLAS_NUM_THREADS": "1"}) == 4
    assert threads.script_index([PYTHON, *OPTIONS, "x.py"],
                                {**ENV, "OPENBLAS_NUM_THREADS": "8"}) is None
    with pytest.raises(ValueError):
        WarmInterpreter.of([PYTHON], ENV, ["os; import x"])


@pytest.mark.parametrize("memory_bytes", [1, 16 << 20, 40 << 20])
def test_under_a_memory_limit_near_its_size_a_program_gets_a_fresh_interpreter(
        warm_sandbox: Sandbox, memory_bytes: int) -> None:
    """A fork already holds the warm interpreter's address space; a limit with less than
    WARM_HEADROOM_BYTES beyond it gets what a fresh interpreter does under it."""
    limits = LIMITS.replace(memory_bytes=memory_bytes)
    fresh = observed(*run(warm_sandbox, {"main.py": IN_PROCESS}, None, limits=limits))
    warm = observed(*run(warm_sandbox, {"main.py": IN_PROCESS}, WARM, limits=limits))
    if memory_bytes > 1:
        assert warm == fresh
        assert warm["stdout"] == b"False False\n"
    else:
        # Not even an interpreter starts: the address-space limit (a crash or the loader's
        # exit) or the run's cgroup (the kernel's OOM kill) stops it first, whichever comes.
        for result in (warm, fresh):
            assert result["outcome"] in (Outcome.SIGNALED, Outcome.NONZERO_EXIT,
                                         Outcome.MEMORY_LIMIT)
            assert result["stdout"] == b""


def test_above_that_a_program_runs_in_process_with_the_limit_it_was_given(
        warm_sandbox: Sandbox) -> None:
    code = IN_PROCESS + "\nimport resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0])"
    result, _ = run(warm_sandbox, {"main.py": code}, WARM, limits=LIMITS.replace(
        memory_bytes=96 << 20))
    assert result.stdout == f"True True\n{96 << 20}\n".encode()


def test_an_interpreter_that_cannot_start_is_not_restarted_for_every_run(
        warm_sandbox: Sandbox) -> None:
    """-Q is no option of python3: the warm interpreter dies at once, every time. Runs get a
    fresh interpreter (which says the same about -Q), and restarts are spaced out."""
    broken = WarmInterpreter.of([PYTHON, "-Q"], ENV, PRELOAD)
    zygote = warm_sandbox.warm_zygote(broken)
    assert zygote is not None

    async def go() -> list[RunResult]:
        results = []
        for _ in range(6):
            async with warm_sandbox.jail() as jail:
                jail.write_file("main.py", b"print(1)")
                results.append(await jail.run([PYTHON, "-Q", "main.py"], ENV, LIMITS,
                                              warm=broken))
        return results
    results = asyncio.run(go())
    assert {(r.outcome, r.exit_code) for r in results} == {(Outcome.NONZERO_EXIT, 2)}
    assert all(b"-Q" in r.stderr for r in results)
    assert zygote.starts <= 3


def test_threads_get_the_stack_size_of_the_runs_own_limit(warm_sandbox: Sandbox) -> None:
    """The C library sizes thread stacks from RLIMIT_STACK at process start: a fresh run's,
    which a fork must be given too."""
    code = ("import ctypes\nlibc = ctypes.CDLL(None)\nattr = ctypes.create_string_buffer(64)\n"
            "libc.pthread_getattr_default_np(attr)\nsize = ctypes.c_size_t()\n"
            "libc.pthread_attr_getstacksize(attr, ctypes.byref(size))\nprint(size.value)\n"
            + IN_PROCESS)
    limits = LIMITS.replace(stack_bytes=64 << 20)
    fresh, _ = run(warm_sandbox, {"main.py": code}, None, limits=limits)
    warm, _ = run(warm_sandbox, {"main.py": code}, WARM, limits=limits)
    assert fresh.stdout == f"{64 << 20}\nFalse False\n".encode()
    assert warm.stdout == f"{64 << 20}\nTrue True\n".encode()


def test_no_run_may_signal_any_zygote_of_the_service(work_root: Path) -> None:
    """Seccomp alone (no per-run uid, no Landlock: runs are root here) must refuse a run's
    signals to every zygote and its process group, not only to the one that forked it. Signal
    0 only asks, so a broken filter shows without harming anything."""
    sandbox = Sandbox(SandboxConfig(work_root=work_root, per_run_uid="off", landlock="off"))
    try:
        warm_zygote = sandbox.warm_zygote(WARM)
        assert warm_zygote is not None and sandbox.zygote is not None
        targets = [warm_zygote.pid, -warm_zygote.pid, sandbox.zygote.pid, -sandbox.zygote.pid]
        code = ("import os, sys\nfor pid in map(int, sys.argv[1:]):\n    try:\n"
                "        os.kill(pid, 0)\n        print('reached', pid)\n"
                "    except OSError as exc:\n        print(type(exc).__name__)\n")
        for warm in (None, WARM):
            result, _ = run(sandbox, {"main.py": code}, warm, args=tuple(map(str, targets)))
            assert result.stdout == b"PermissionError\n" * 4, (warm, result)
        assert alive(warm_zygote.pid) and alive(sandbox.zygote.pid)
        assert (warm_zygote.starts, sandbox.zygote.starts) == (1, 1)
        assert_clean(sandbox)
    finally:
        sandbox.close()


def test_a_hung_warm_interpreter_is_replaced_and_holds_no_run_up(
        warm_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote_module, "ANSWER_TIMEOUT_S", 0.5)
    zygote = warm_sandbox.warm_zygote(WARM)
    assert zygote is not None
    stopped = zygote.pid
    os.kill(stopped, signal.SIGSTOP)
    try:
        result, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, WARM)
        assert (result.outcome, result.stdout) == (Outcome.OK, b"False False\n")
        assert not alive(stopped) and zygote.pid != stopped and zygote.alive
        result, _ = run(warm_sandbox, {"main.py": IN_PROCESS}, WARM)
        assert result.stdout == b"True True\n"
    finally:
        if alive(stopped):
            os.kill(stopped, signal.SIGKILL)


def test_a_warm_interpreter_slow_to_preload_is_waited_for_not_replaced(
        warm_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its first answer comes once it has preloaded (seconds for a session kernels' stack):
    that one may take FIRST_ANSWER_FACTOR times a fork's answer."""
    monkeypatch.setattr(zygote_module, "ANSWER_TIMEOUT_S", 0.5)
    (tmp_path / "slow_module.py").write_text("import time\ntime.sleep(1.2)\n")
    os.chmod(tmp_path, 0o755)
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    slow = WarmInterpreter.of([PYTHON, *OPTIONS], env, ("slow_module", "heapq"))
    zygote = warm_sandbox.warm_zygote(slow)
    assert zygote is not None

    async def go() -> RunResult:
        async with warm_sandbox.jail() as jail:
            jail.write_file("main.py", IN_PROCESS.encode())
            run_env = {name: value.replace("{workdir}", str(jail.path))
                       for name, value in env.items()}
            return await jail.run([PYTHON, *OPTIONS, "main.py"], run_env, LIMITS, warm=slow)
    result = asyncio.run(go())
    assert (result.outcome, result.stdout) == (Outcome.OK, b"True True\n")
    assert zygote.starts == 1
