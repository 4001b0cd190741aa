"""`python -m adapter grade`: a subprocess against the real service."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from client.grade import natural_key

from ..utils import REPO, Server, assert_nothing_left, free_port
from .test_check import JSON, Fake, fake_server

SUM_PY = "a, b = map(int, input().split())\nprint(a + b)\n"
SUM_CPP = ('#include <iostream>\nint main(){ long a, b; std::cin >> a >> b; '
           'std::cout << a + b << "\\n"; }\n')
ROW = re.compile(r"(\S+) +(\S+) +(\d+) +(\d+) +([\d.]+ MiB)(?:  (.*))?")


def grade(source: Path, tests: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapter", "grade", str(source),
                           "--tests", str(tests), *options], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def write_pairs(folder: Path, pairs: dict[str, tuple[str, str | None]]) -> Path:
    folder.mkdir()
    for name, (stdin, expected) in pairs.items():
        (folder / f"{name}.in").write_text(stdin)
        if expected is not None:
            (folder / f"{name}.out").write_text(expected)
    return folder


def rows(stdout: str) -> list[tuple[str, str, str | None]]:
    """(case, verdict, detail) of each table row."""
    found = []
    for line in stdout.splitlines()[1:]:
        match = ROW.fullmatch(line)
        if match:
            found.append((match.group(1), match.group(2), match.group(6)))
    return found


@pytest.fixture
def tests_dir(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "tests", {"1": ("2 3\n", "5\n"), "2": ("10 -4\n", "6"),
                                            "10": ("0 0\n", "0\n\n")})


def test_all_accepted_is_exit_0_with_a_table_and_progress(server: Server, tmp_path: Path,
                                                          tests_dir: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    done = grade(source, tests_dir, "--endpoint", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["case", "verdict", "wall", "ms", "cpu", "ms", "memory", "detail"]
    # Natural order: 10 after 2.
    assert rows(done.stdout) == [("1", "accepted", None), ("2", "accepted", None),
                                 ("10", "accepted", None)]
    assert lines[-1] == "OK: 3 accepted of 3 cases"
    assert "graded 3/3 cases" in done.stderr
    assert_nothing_left(server)


@pytest.mark.gxx
def test_failures_are_exit_1_with_their_verdicts(server: Server, tmp_path: Path,
                                                 tests_dir: Path) -> None:
    source = tmp_path / "sum.cpp"
    source.write_text(f"// {secrets.token_hex(8)}\n" + SUM_CPP.replace("a + b", "a + b + (a == 10)"))
    done = grade(source, tests_dir, "--endpoint", server.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].startswith("compile: ok in ")
    assert rows(done.stdout) == [("1", "accepted", None),
                                 ("2", "wrong_answer", "line 1 differs: expected '6', got '7'"),
                                 ("10", "accepted", None)]
    assert done.stdout.splitlines()[-1] == "FAILED: 2 accepted, 1 wrong_answer of 3 cases"


def grade_on_terminal(source: Path, tests: Path, *options: str) -> tuple[int, str, str]:
    """`grade` with its stderr a terminal (a pseudo-terminal's): exit status, stdout and what
    the terminal showed."""
    terminal, stderr = os.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "adapter", "grade", str(source),
                                    "--tests", str(tests), *options], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
        os.close(stderr)
        stdout, _ = process.communicate(timeout=300)
        shown = b""
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the program's end of the terminal is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(terminal)
    return process.returncode, stdout, shown.decode()


@pytest.mark.gxx
@pytest.mark.parametrize("chunk", ["1", "25"])
def test_a_compile_error_shows_the_compiler_and_fails_every_case(server: Server, tmp_path: Path,
                                                                 tests_dir: Path,
                                                                 chunk: str) -> None:
    source = tmp_path / "broken.cc"
    source.write_text(f"// {secrets.token_hex(8)}\nint main() {{ return undeclared; }}\n")
    done = grade(source, tests_dir, "--endpoint", server.url, "--chunk", chunk)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("compile: nonzero_exit in ")
    assert "undeclared" in done.stdout
    assert lines[-1] == "FAILED: 3 compile_error of 3 cases"
    assert done.stdout.count("FAILED") == 1
    # Nothing more is sent after the first chunk's compile failed, and the last count shows
    # once whichever chunk settled every case.
    assert done.stderr.splitlines() == ["graded 0/3 cases", "graded 3/3 cases"]


@pytest.mark.gxx
def test_on_a_terminal_the_bar_ends_once(server: Server, tmp_path: Path,
                                         tests_dir: Path) -> None:
    source = tmp_path / "broken.cc"
    source.write_text(f"// {secrets.token_hex(8)}\nint main() {{ return undeclared; }}\n")
    status, stdout, shown = grade_on_terminal(source, tests_dir, "--endpoint", server.url)
    assert status == 1
    assert stdout.splitlines()[-1] == "FAILED: 3 compile_error of 3 cases"
    assert stdout.count("FAILED") == 1
    # Redrawn in place (\r), finished with one newline (the terminal shows it as \r\n).
    assert shown == (f"\r[{'.' * 30}] 0/3 cases\r[{'#' * 30}] 3/3 cases\r\n")


def test_a_wrong_answer_shows_expected_and_got(server: Server, tmp_path: Path,
                                               tests_dir: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY.replace("a + b", "a + b - (a == 10)")
                      + f"# {secrets.token_hex(8)}\n")
    done = grade(source, tests_dir, "--endpoint", server.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert rows(done.stdout) == [("1", "accepted", None),
                                 ("2", "wrong_answer", "line 1 differs: expected '6', got '5'"),
                                 ("10", "accepted", None)]
    assert done.stdout.splitlines()[-1] == "FAILED: 2 accepted, 1 wrong_answer of 3 cases"
    assert done.stdout.count("FAILED") == 1
    assert done.stderr.splitlines() == ["graded 0/3 cases", "graded 3/3 cases"]


BATCH_REPLY = {"language": "python", "compile": None,
               "cases": [{"name": "1", "verdict": "accepted", "detail": None}],
               "summary": {"total": 1, "accepted": 1}}


@pytest.mark.parametrize(("size", "memory_bytes"), [
    ("1048576", 1048576), ("512K", 512 << 10), ("256M", 256 << 20), ("1G", 1 << 30),
    ("64m", 64 << 20),
])
def test_memory_takes_sizes(tmp_path: Path, size: str, memory_bytes: int) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    tests = write_pairs(tmp_path / "tests", {"1": ("2 3\n", "5\n")})
    fake = Fake(200, JSON, json.dumps(BATCH_REPLY).encode())
    with fake_server(fake) as url:
        done = grade(source, tests, "--endpoint", url, "--language", "python",
                     "--memory", size)
    assert done.returncode == 0, done.stderr
    [body] = [json.loads(b) for b in fake.bodies]
    assert body["limits"] == {"memory_bytes": memory_bytes}


@pytest.mark.parametrize("size", ["12X", "1.5G", "0", "", "-1", "256 MB"])
def test_a_bad_memory_size_is_a_usage_error(tmp_path: Path, size: str) -> None:
    done = grade(tmp_path / "sum.py", tmp_path / "tests", "--memory", size)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        f"sandbox-service grade: error: argument --memory: invalid size {size!r}: give bytes, "
        "or a number with K, M or G (512K, 256M, 1G)")


def test_memory_limits_every_case(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "hog.py"
    source.write_text(f"# {secrets.token_hex(8)}\nhog = bytearray(200 << 20)\nprint(len(hog))\n")
    tests = write_pairs(tmp_path / "tests", {"1": ("", f"{200 << 20}\n")})
    assert rows(grade(source, tests, "--endpoint", server.url, "--memory", "512M").stdout) == [
        ("1", "accepted", None)]
    limited = grade(source, tests, "--endpoint", server.url, "--memory", "100M")
    assert limited.returncode == 1
    assert rows(limited.stdout)[0][:2] == ("1", "memory_limit")
    assert_nothing_left(server)


def test_a_request_without_answer_names_its_url(tmp_path: Path, tests_dir: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    with fake_server(Fake(0, JSON, b"")) as url:
        done = grade(source, tests_dir, "--endpoint", url, "--language", "python")
    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        2, (f"sandbox-service grade: POST {url}/batch failed: RemoteProtocolError: Server "
           "disconnected without sending a response."))


def test_json_joins_the_chunks_into_one_reply(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "echo.py"
    source.write_text("print(input())\n")
    cases = [{"name": f"c{i}", "stdin": f"{i}\n", "expected_output": f"{i}\n"} for i in range(5)]
    cases[3]["expected_output"] = "wrong"
    tests = tmp_path / "cases.json"
    tests.write_text(json.dumps({"limits": {"cpu_time_s": 2}, "cases": cases}))
    done = grade(source, tests, "--endpoint", server.url, "--json", "--chunk", "2",
                 "--wall-timeout", "5")
    assert done.returncode == 1, done.stderr
    reply = json.loads(done.stdout)
    assert (reply["language"], reply["compile"]) == ("python", None)
    assert [(c["index"], c["name"], c["verdict"]) for c in reply["cases"]] == [
        (0, "c0", "accepted"), (1, "c1", "accepted"), (2, "c2", "accepted"),
        (3, "c3", "wrong_answer"), (4, "c4", "accepted")]
    assert reply["summary"]["total"] == 5 and reply["summary"]["accepted"] == 4
    assert done.stderr.splitlines() == ["graded 0/5 cases", "graded 2/5 cases",
                                        "graded 4/5 cases", "graded 5/5 cases"]


def test_a_case_without_expected_output_only_runs(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    tests = write_pairs(tmp_path / "tests", {"a": ("1 2\n", None)})
    done = grade(source, tests, "--endpoint", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(done.stdout) == [("a", "ran", None)]


def test_a_refused_request_is_exit_2_with_the_message(server: Server, tmp_path: Path,
                                                      tests_dir: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    done = grade(source, tests_dir, "--endpoint", server.url, "--cpu-time", "1000")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "sandbox-service grade: POST /batch answered 400: limits.cpu_time_s cannot exceed the "
        "ceiling of 60")


def test_grading_impossible_is_exit_2(server: Server, tmp_path: Path, tests_dir: Path) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    closed = f"http://127.0.0.1:{free_port()}"
    done = grade(source, tests_dir, "--endpoint", closed)
    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        2, f"sandbox-service grade: cannot reach {closed}: connection refused")
    (tmp_path / "empty").mkdir()
    done = grade(source, tmp_path / "empty", "--endpoint", closed)
    assert (done.returncode, done.stderr.strip()) == (
        2, (f"sandbox-service grade: no test cases in {tmp_path / 'empty'} (expected NAME.in "
           "and NAME.out files)"))
    # The service says which suffixes its languages take, so this one needs it to answer.
    odd = tmp_path / "sum.rb"
    odd.write_text("")
    done = grade(odd, tests_dir, "--endpoint", server.url)
    assert (done.returncode, done.stderr.strip()) == (
        2, ("sandbox-service grade: cannot tell the language of sum.rb from its suffix; give "
           "--language"))


@pytest.mark.parametrize(("status", "body", "message"), [
    # A service from before GET / named the suffixes: the table of its runtimes lacks them.
    (200, {"runtimes": [{"language": "python", "version": "3.11.2", "aliases": []}]},
     ("GET / does not say which suffixes its runtimes' sources have (a service older than "
      "this command?); give --language")),
    (200, {"message": "hello"}, "GET / answered in an unknown shape: is this the service?"),
    (503, {"message": "not ready"}, "GET / answered 503: not ready"),
])
def test_a_language_the_service_cannot_tell_is_exit_2(tmp_path: Path, tests_dir: Path,
                                                      status: int, body: object,
                                                      message: str) -> None:
    source = tmp_path / "sum.py"
    source.write_text(SUM_PY)
    fake = Fake(status, "application/json", json.dumps(body).encode())
    with fake_server(fake) as url:
        done = grade(source, tests_dir, "--endpoint", url)
    assert (done.returncode, done.stderr.strip()) == (2, f"sandbox-service grade: {message}")
    assert [(method, path) for method, path, _ in fake.seen] == [("GET", "/")]


def test_natural_order() -> None:
    assert sorted(["10", "2", "a10", "a9", "b", "1"], key=natural_key) == [
        "1", "2", "10", "a9", "a10", "b"]


def test_a_checker_from_the_command_line_or_the_tests_file(server: Server,
                                                           tmp_path: Path) -> None:
    source = tmp_path / "halves.py"
    source.write_text("a, b = map(int, input().split())\nprint(a / 3)\nprint(b / 3)\n")
    tests = write_pairs(tmp_path / "tests", {"1": ("1 2\n", "0.333333 0.666667\n")})
    strict = grade(source, tests, "--endpoint", server.url)
    assert strict.returncode == 1 and rows(strict.stdout)[0][1] == "wrong_answer"
    tolerant = grade(source, tests, "--endpoint", server.url, "--tolerance", "1e-5")
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr
    assert rows(tolerant.stdout) == [("1", "accepted", None)]
    as_file = tmp_path / "tests.json"
    as_file.write_text(json.dumps({"checker": {"type": "floats", "absolute": 1e-5},
                                   "cases": [{"stdin": "1 2\n",
                                              "expected_output": "0.333333 0.666667"}]}))
    assert grade(source, as_file, "--endpoint", server.url).returncode == 0
    tokens = grade(source, as_file, "--endpoint", server.url, "--checker", "tokens")
    assert tokens.returncode == 1
    assert rows(tokens.stdout)[0][2] == ("token 1 differs: expected '0.333333', "
                                         "got '0.3333333333333333'")
    assert_nothing_left(server)


SUM_C = ('#include <stdio.h>\nint main(void){ long a, b; scanf("%ld %ld", &a, &b); '
         'printf("%ld\\n", a + b); return 0; }\n')
SUM_JAVA = ("import java.util.*;\npublic class Sum { public static void main(String[] x) {\n"
            "  Scanner in = new Scanner(System.in);\n"
            "  System.out.println(in.nextLong() + in.nextLong()); } }\n")


@pytest.mark.parametrize(("name", "code"), [("sum.c", SUM_C), ("Sum.java", SUM_JAVA)])
def test_other_languages_by_their_suffix(server: Server, tmp_path: Path, tests_dir: Path,
                                         name: str, code: str) -> None:
    """The suffix comes from the service (GET /), not from a table of the CLI's."""
    source = tmp_path / name
    source.write_text(f"// {secrets.token_hex(8)}\n{code}")
    done = grade(source, tests_dir, "--endpoint", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(done.stdout) == [("1", "accepted", None), ("2", "accepted", None),
                                 ("10", "accepted", None)]
    assert_nothing_left(server)
