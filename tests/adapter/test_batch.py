"""`POST /batch` through real HTTP, a real uvicorn and real programs: every verdict in C++ and
Python, the comparison's whitespace rules, compile errors, the bounds, and that nothing is left;
then the settings of batches and of the compile cache the service sets up."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapter import Settings, SettingsError
from adapter.service import open_compile_cache
from runtimes import Registry, load_runtimes
from sandbox import Sandbox

from ..conftest import SERVER_OUTPUT_CAP
from ..utils import Server, assert_nothing_left
from .test_errors import UNKNOWN_COBOL
from .test_operations import get_metrics, sample

CPP_MODES = r"""
#include <csignal>
#include <iostream>
#include <string>
#include <vector>
int main() {
  std::string mode;
  std::cin >> mode;
  if (mode == "sum") { long a, b; std::cin >> a >> b; std::cout << a + b << "\n"; }
  else if (mode == "loop") { volatile unsigned long x = 0; for (;;) x = x + 1; }
  else if (mode == "alloc") { std::vector<char> v(1UL << 32); v[1] = 1; return v[1]; }
  else if (mode == "segv") { std::raise(SIGSEGV); }
  else if (mode == "exit") { return 3; }
  else if (mode == "flood") { for (;;) std::cout << "flood flood flood\n"; }
}
"""
PYTHON_MODES = """\
import os, signal, sys
mode, *rest = sys.stdin.read().split()
if mode == "sum":
    print(int(rest[0]) + int(rest[1]))
elif mode == "loop":
    while True:
        pass
elif mode == "alloc":
    x = bytearray(1 << 31)
elif mode == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "exit":
    sys.exit(3)
elif mode == "flood":
    while True:
        print("flood " * 10)
"""
REGISTRY = Registry(load_runtimes())
ECHO = "import sys\nsys.stdout.write(sys.stdin.read())"
# stdin, expected_output, limits; then the verdict and its detail.
MODE_CASES: list[tuple[str, str | None, dict[str, float], str, str | None]] = [
    ("sum 2 3", "5\n", {}, "accepted", None),
    ("sum 2 3", "6\n", {}, "wrong_answer", "line 1 differs: expected '6', got '5'"),
    ("sum 2 3", "5   \n\n\n", {}, "accepted", None),
    ("loop", "", {"cpu_time_s": 1}, "time_limit", "CPU time"),
    ("alloc", "", {"memory_bytes": 256 << 20}, "memory_limit", None),
    ("segv", "", {}, "runtime_error", "SIGSEGV"),
    ("exit", "", {}, "runtime_error", "exit code 3"),
    ("flood", "", {}, "output_limit", "stdout over the cap"),
    ("sum 1 1", None, {}, "ran", None),
]


def batch(server: Server, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    with server.client(timeout=300) as client:
        response = client.post("/batch", json=body)
    assert response.status_code == status, response.text
    reply: dict[str, Any] = response.json()
    assert server.health().text == "ok"
    assert_nothing_left(server)
    return reply


def unique(code: str, comment: str) -> str:
    """The program with a comment of its own, so that no earlier compile answers for it."""
    return f"{comment} {secrets.token_hex(8)}\n{code}"


def mode_cases() -> list[dict[str, Any]]:
    cases = []
    for i, (stdin, expected, limits, _verdict, _detail) in enumerate(MODE_CASES):
        case: dict[str, Any] = {"name": f"case-{i}", "stdin": stdin, "limits": limits}
        if expected is not None:
            case["expected_output"] = expected
        cases.append(case)
    return cases


def check_verdicts(reply: dict[str, Any]) -> None:
    got = [(c["index"], c["name"], c["verdict"], c["detail"]) for c in reply["cases"]]
    assert got == [(i, f"case-{i}", verdict, detail)
                   for i, (_s, _e, _l, verdict, detail) in enumerate(MODE_CASES)]
    summary = reply["summary"]
    assert summary == {"total": 9, "accepted": 2, "wrong_answer": 1, "time_limit": 1,
                       "memory_limit": 1, "output_limit": 1, "runtime_error": 2,
                       "compile_error": 0, "ran": 1, "presentation_error": 0,
                       "checker_error": 0}
    by_verdict = {c["detail"] or c["verdict"]: c for c in reply["cases"]}
    assert by_verdict["accepted"]["stdout"] == "5\n"
    assert by_verdict["ran"]["stdout"] == "2\n" and by_verdict["ran"]["exit_code"] == 0
    assert by_verdict["SIGSEGV"]["signal"] == "SIGSEGV"
    assert by_verdict["exit code 3"]["exit_code"] == 3
    flood = by_verdict["stdout over the cap"]
    assert flood["stdout_truncated"] and flood["stdout_bytes"] == SERVER_OUTPUT_CAP
    assert by_verdict["CPU time"]["outcome"] == "cpu_limit"
    assert by_verdict["memory_limit"]["outcome"] == "memory_limit"


@pytest.mark.gxx
def test_cpp_every_verdict_with_one_compile(server: Server) -> None:
    code = unique(CPP_MODES, "//")
    body = {"language": "c++", "files": [{"name": "main.cpp", "content": code}],
            "limits": {"wall_timeout_s": 5, "cpu_time_s": 2}, "cases": mode_cases()}
    reply = batch(server, body)
    assert (reply["language"], reply["compile"]["outcome"]) == ("c++", "ok")
    assert reply["compile"]["cached"] is False
    check_verdicts(reply)
    # The same sources again: the stored compile, and the same verdicts.
    again = batch(server, body)
    assert again["compile"]["cached"] is True
    assert again["compile"]["wall_time_ms"] == reply["compile"]["wall_time_ms"]
    check_verdicts(again)


def test_python_every_verdict_and_each_case_counts_as_a_run(server: Server) -> None:
    before = get_metrics(server)
    reply = batch(server, {"language": "py", "files": [{"content": PYTHON_MODES}],
                           "limits": {"wall_timeout_s": 5, "cpu_time_s": 2},
                           "cases": mode_cases()})
    after = get_metrics(server)
    assert (reply["language"], reply["compile"]) == ("python", None)
    check_verdicts(reply)

    def grew(outcome: str) -> float:
        return (sample(after, "sandbox_runs_total", runtime="python", outcome=outcome)
                - sample(before, "sandbox_runs_total", runtime="python", outcome=outcome))

    assert grew("ok") == 4 and grew("signaled") == 1 and grew("nonzero_exit") == 1
    assert grew("cpu_limit") == 1 and grew("memory_limit") == 1 and grew("output_limit") == 1


# actual stdout, expected_output, verdict, detail
WHITESPACE = [
    ("1 2\n3\n", "1 2\n3\n", "accepted", None),
    ("1 2  \n3\t\n", "1 2\n3\n", "accepted", None),
    ("1 2\n3\n", "1 2   \n3 \n", "accepted", None),
    ("1 2\r\n3\r\n", "1 2\n3\n", "accepted", None),
    ("1 2\n3", "1 2\n3\n\n\n", "accepted", None),
    ("1 2\n3\n\n \n\n", "1 2\n3", "accepted", None),
    ("", "", "accepted", None),
    ("\n\n", "", "accepted", None),
    (" 1 2\n3\n", "1 2\n3\n", "wrong_answer", "line 1 differs: expected '1 2', got ' 1 2'"),
    ("1  2\n3\n", "1 2\n3\n", "wrong_answer", "line 1 differs: expected '1 2', got '1  2'"),
    ("1 2\n\n3\n", "1 2\n3\n", "wrong_answer", "line 2 differs: expected '3', got ''"),
    ("1 2\n", "1 2\n3\n", "wrong_answer", "output ends before line 2 (expected '3')"),
    ("1 2\n3\n4\n", "1 2\n3\n", "wrong_answer",
     "output goes on past the expected 2 lines (next: '4')"),
    ("", "0\n", "wrong_answer", "output ends before line 1 (expected '0')"),
]


def test_trailing_whitespace_and_blank_lines_do_not_count(server: Server) -> None:
    reply = batch(server, {"language": "python", "files": [{"content": ECHO}], "cases": [
        {"stdin": actual, "expected_output": expected} for actual, expected, _v, _d in WHITESPACE
    ]})
    assert [(c["verdict"], c["detail"]) for c in reply["cases"]] == [
        (verdict, detail) for _a, _e, verdict, detail in WHITESPACE]


@pytest.mark.gxx
def test_a_compile_error_is_every_cases_verdict(server: Server) -> None:
    code = unique("int main() { return undeclared; }", "//")
    reply = batch(server, {"language": "cpp", "files": [{"content": code}],
                           "cases": [{"stdin": "", "expected_output": "1"}, {"name": "b"}, {}]})
    compiled = reply["compile"]
    assert (compiled["outcome"], compiled["exit_code"], compiled["cached"]) == (
        "nonzero_exit", 1, False)
    assert "undeclared" in compiled["stderr"]
    assert reply["cases"] == [
        {"index": 0, "name": None, "verdict": "compile_error", "detail": None},
        {"index": 1, "name": "b", "verdict": "compile_error", "detail": None},
        {"index": 2, "name": None, "verdict": "compile_error", "detail": None}]
    assert reply["summary"]["compile_error"] == 3 and reply["summary"]["total"] == 3


@pytest.mark.gxx
def test_several_files_and_args(server: Server) -> None:
    files = [{"name": "main.cpp", "content": unique(
                 '#include "lib/twice.h"\n#include <cstdio>\n#include <cstdlib>\n'
                 'int main(int c, char** v){ std::printf("%d\\n", twice(std::atoi(v[1]))); }',
                 "//")},
             {"name": "lib/twice.h", "content": "int twice(int);"},
             {"name": "lib/twice.cpp", "content": "int twice(int x) { return 2 * x; }"}]
    reply = batch(server, {"language": "g++", "files": files, "cases": [
        {"args": ["21"], "expected_output": "42"}, {"args": ["5"], "expected_output": "10\n"}]})
    assert [c["verdict"] for c in reply["cases"]] == ["accepted", "accepted"]


def test_more_cases_than_the_waiting_line_take_their_turns(server: Server) -> None:
    cases = [{"stdin": str(i), "expected_output": str(i)} for i in range(100)]
    reply = batch(server, {"language": "python", "files": [{"content": ECHO}], "cases": cases})
    assert reply["summary"]["accepted"] == 100
    assert [c["index"] for c in reply["cases"]] == list(range(100))


def test_more_cases_than_allowed_is_a_400(server: Server) -> None:
    reply = batch(server, {"language": "python", "files": [{"content": "print(1)"}],
                           "cases": [{}] * 1001}, status=400)
    assert reply == {"message": "cases has 1001 entries; a request may have at most 1000 "
                                "(SANDBOX_MAX_BATCH_CASES)"}


def test_output_excerpts_are_bounded_and_counted(server: Server) -> None:
    code = "print('x' * 3000, end='')\nimport sys\nprint('e' * 3000, end='', file=sys.stderr)"
    reply = batch(server, {"language": "python", "files": [{"content": code}], "cases": [{}]})
    case = reply["cases"][0]
    assert (case["verdict"], case["stdout_bytes"], case["stderr_bytes"]) == ("ran", 3000, 3000)
    assert case["stdout"] == "x" * 3000


BAD_REQUESTS = [
    ([], 400, "the request body must be an object"),
    ({"files": [], "cases": []}, 400, "language must be a string"),
    ({"language": "cobol", "files": [{"content": ""}], "cases": [{}]}, 404,
     UNKNOWN_COBOL),
    ({"language": "python", "files": [], "cases": [{}]}, 400, "files must be a non-empty array"),
    ({"language": "python", "files": [{"content": 1}], "cases": [{}]}, 400,
     "files[0].content must be a string"),
    ({"language": "python", "files": [{"content": ""}, {"content": ""}], "cases": [{}]}, 400,
     "files[1].name is required (only the first file may go unnamed)"),
    ({"language": "python", "files": [{"name": "../x.py", "content": ""}], "cases": [{}]}, 400,
     "files[0].name: file name '../x.py' must not contain '..'"),
    ({"language": "python", "files": [{"name": "-c", "content": ""}], "cases": [{}]}, 400,
     "files[0].name must not start with '-'"),
    ({"language": "python", "files": [{"name": "a.py", "content": ""},
                                      {"name": "a.py/b.py", "content": ""}], "cases": [{}]},
     400, "files[1].name 'a.py/b.py' clashes with files[0].name"),
    ({"language": "python", "files": [{"content": ""}], "cases": []}, 400,
     "cases must be a non-empty array"),
    ({"language": "python", "files": [{"content": ""}], "cases": [{"expected": "1"}]}, 400,
     ("cases[0].expected is not a known field (known: name, stdin, expected_output, args, "
     "limits)")),
    ({"language": "python", "files": [{"content": ""}], "cases": [{}], "version": "3"}, 400,
     "version is not a known field (known: language, files, limits, cases, checker)"),
    ({"language": "python", "files": [{"content": ""}], "cases": [{}, {"stdin": 5}]}, 400,
     "cases[1].stdin must be a string"),
    ({"language": "python", "files": [{"content": ""}], "cases": [{"expected_output": 5}]},
     400, "cases[0].expected_output must be a string"),
    ({"language": "python", "files": [{"content": ""}], "cases": [{"args": [1]}]}, 400,
     "cases[0].args[0] must be a string"),
    ({"language": "python", "files": [{"content": ""}], "cases": [{"name": 1}]}, 400,
     "cases[0].name must be a string"),
    ({"language": "python", "files": [{"content": ""}],
      "cases": [{"limits": {"wall_timeout_s": 61}}]}, 400,
     "cases[0].limits.wall_timeout_s cannot exceed the ceiling of 60"),
    ({"language": "python", "files": [{"content": ""}], "limits": {"cpu_time_s": 0},
      "cases": [{}]}, 400, "limits.cpu_time_s must be a positive number"),
    ({"language": "python", "files": [{"content": ""}], "limits": {"stack_bytes": 1},
      "cases": [{}]}, 400,
     ("limits.stack_bytes is not a known field (known: wall_timeout_s, cpu_time_s, "
     "memory_bytes, max_output_bytes)")),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_name_the_field(app_client: TestClient, body: Any, status: int,
                                     message: str) -> None:
    response = app_client.post("/batch", json=body)
    assert (response.status_code, response.json()["message"]) == (status, message)


# ---- the settings of batches and of the compile cache -------------------------------------------

@pytest.mark.parametrize(("environ", "message"), [
    ({"SANDBOX_MAX_BATCH_CASES": "0"}, "SANDBOX_MAX_BATCH_CASES must be positive"),
    ({"SANDBOX_COMPILE_CACHE_BYTES": "-1"},
     "SANDBOX_COMPILE_CACHE_BYTES must not be negative (0 disables the cache)"),
    ({"SANDBOX_COMPILE_CACHE_DIR": "cache"}, "SANDBOX_COMPILE_CACHE_DIR must be an absolute path"),
])
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(environ)
    assert str(raised.value) == message


def test_the_compile_cache_is_off_at_zero_bytes(sandbox: Sandbox) -> None:
    settings = Settings.from_environ({"SANDBOX_COMPILE_CACHE_BYTES": "0"})
    assert open_compile_cache(settings, sandbox, REGISTRY) == (
        None, "off: SANDBOX_COMPILE_CACHE_BYTES is 0")


def test_a_configured_cache_folder_runs_could_reach_stops_startup(sandbox: Sandbox) -> None:
    inside = sandbox.config.work_root / "compiled"
    settings = Settings.from_environ({"SANDBOX_COMPILE_CACHE_DIR": str(inside)})
    with pytest.raises(SettingsError, match="runs could reach it: .* is inside the work root"):
        open_compile_cache(settings, sandbox, REGISTRY)


@pytest.mark.root
def test_a_configured_cache_folder_of_another_user_stops_startup(sandbox: Sandbox,
                                                                  tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    settings = Settings.from_environ({"SANDBOX_COMPILE_CACHE_DIR": str(folder)})
    with pytest.raises(SettingsError, match="belongs to uid 65534"):
        open_compile_cache(settings, sandbox, REGISTRY)


def test_a_configured_cache_folder_is_used(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = Settings.from_environ({"SANDBOX_COMPILE_CACHE_DIR": str(tmp_path / "compiled"),
                                      "SANDBOX_COMPILE_CACHE_BYTES": "1000000"})
    cache, detail = open_compile_cache(settings, sandbox, REGISTRY)
    if cache is None:  # runs share the service's uid without Landlock here
        assert "Landlock is off" in detail
        return
    assert detail == f"in {tmp_path / 'compiled'}, at most 1000000 bytes"
    assert cache.capacity_bytes == 1000000
    cache.close()
