"""The built-in checkers, case by case at their edges, and through POST /batch."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.checkers import SHOWN_CHARS, Checker

from ..utils import Server
from .test_batch import ECHO, batch

# checker, actual, expected, verdict, detail (None: accepted)
CASES: list[tuple[Checker, bytes, bytes, str | None]] = [
    (Checker("exact"), b"1 2\n", b"1 2\n", None),
    (Checker("exact"), b"1 2\n", b"1 2", "byte 4 differs: expected '', got '\\n'"),
    (Checker("exact"), b"1 2\r\n", b"1 2\n", "byte 4 differs: expected '\\n', got '\\r\\n'"),
    (Checker("exact"), b"", b"", None),
    (Checker("lines"), b"a\r\nb  \n\n", b"a\nb", None),
    (Checker("lines"), b"a\nc\n", b"a\nb\n", "line 2 differs: expected 'b', got 'c'"),
    (Checker("tokens"), b" 1\n  2\t3 \r\n", b"1 2 3", None),
    (Checker("tokens"), b"1 2", b"1 2 3", "output ends before token 3 (expected '3')"),
    (Checker("tokens"), b"", b"", None),
    (Checker("tokens"), b"1 2 4", b"1 2 3", "token 3 differs: expected '3', got '4'"),
    (Checker("floats"), b"0.1000001 2e3", b"0.1 2000", None),
    (Checker("floats"), b"0.11", b"0.1", "token 1 differs: expected '0.1', got '0.11'"),
    (Checker("floats"), b"-0", b"0", None),
    (Checker("floats"), b"-0.0 0.0", b"0 -0", None),
    (Checker("floats"), b"nan NaN", b"nan nan", None),
    (Checker("floats"), b"1", b"nan", "token 1 differs: expected 'nan', got '1'"),
    (Checker("floats"), b"nan", b"1", "token 1 differs: expected '1', got 'nan'"),
    (Checker("floats"), b"inf -inf", b"inf -inf", None),
    (Checker("floats"), b"-inf", b"inf", "token 1 differs: expected 'inf', got '-inf'"),
    (Checker("floats"), b"1e308", b"inf", "token 1 differs: expected 'inf', got '1e308'"),
    (Checker("floats"), b"yes 1.0", b"yes 1", None),
    (Checker("floats"), b"Yes 1", b"yes 1", "token 1 differs: expected 'yes', got 'Yes'"),
    (Checker("floats"), b"1_000", b"1000", "token 1 differs: expected '1000', got '1_000'"),
    (Checker("floats", absolute=0.5, relative=0), b"10.4", b"10", None),
    (Checker("floats", absolute=0, relative=0.01), b"1000.5 ", b"1000", None),
    (Checker("floats", absolute=0, relative=0.01), b"1011", b"1000",
     "token 1 differs: expected '1000', got '1011'"),
    (Checker("unordered"), b"b\na\nb\n", b"a\nb\nb", None),
    (Checker("unordered"), b"a\nb\n", b"a\nb\nb", "1 expected line(s) missing, the first 'b'"),
    (Checker("unordered"), b"a\nb\nc\n", b"a\nb", "1 line(s) not expected, the first 'c'"),
    (Checker("unordered"), b"", b"\n\n", None),
]


@pytest.mark.parametrize(("checker", "actual", "expected", "detail"), CASES)
def test_each_checker_at_its_edges(checker: Checker, actual: bytes, expected: bytes,
                                   detail: str | None) -> None:
    verdict = checker.compare(actual, expected)
    assert (verdict.name, verdict.detail) == (
        ("accepted", None) if detail is None else ("wrong_answer", detail))


def test_a_long_difference_is_shown_cut() -> None:
    verdict = Checker("lines").compare(b"x" * 10_000, b"y" * 10_000)
    assert verdict.detail is not None and len(verdict.detail) < 3 * SHOWN_CHARS
    assert verdict.detail.startswith("line 1 differs: expected 'yyy")


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20))
def test_floats_accepts_any_list_printed_as_python_prints_it(values: list[float]) -> None:
    printed = " ".join(repr(v) for v in values).encode()
    again = "\n".join(f"{v:.17g}" for v in values).encode()
    assert Checker("floats").compare(again, printed).name == "accepted"
    if values and math.isfinite(values[0]):
        moved = " ".join([repr(values[0] + 1 + abs(values[0])), *map(repr, values[1:])])
        assert Checker("floats").compare(moved.encode(), printed).name == "wrong_answer"


def test_batch_takes_a_checker(server: Server) -> None:
    def verdicts(checker: object, cases: list[tuple[str, str]]) -> list[str]:
        reply = batch(server, {"language": "python", "files": [{"content": ECHO}],
                               "checker": checker, "cases": [
                                   {"stdin": got, "expected_output": wanted}
                                   for got, wanted in cases]})
        return [case["verdict"] for case in reply["cases"]]

    assert verdicts("tokens", [("1\n2", "1 2"), ("1 3", "1 2")]) == ["accepted", "wrong_answer"]
    assert verdicts({"type": "floats", "absolute": 0.01}, [("3.141", "3.14159")]) == [
        "accepted"]
    assert verdicts("unordered", [("b\na", "a\nb")]) == ["accepted"]
    assert verdicts("exact", [("1\n", "1")]) == ["wrong_answer"]


@pytest.mark.parametrize(("checker", "message"), [
    ("fuzzy", "checker.type must be one of exact, lines, tokens, floats, unordered, program"),
    ({"type": "tokens", "absolute": 1}, "checker.absolute applies to the floats checker only"),
    ({"type": "floats", "relative": -1}, "checker.relative must be a number of at least 0"),
    ({"type": "floats", "margin": 1},
     "checker.margin is not a known field (known: type, absolute, relative)"),
    (3, "checker must be an object"),
])
def test_a_bad_checker_is_a_400_naming_it(server: Server, checker: object, message: str) -> None:
    with server.client() as client:
        response = client.post("/batch", json={
            "language": "python", "files": [{"content": ECHO}], "checker": checker,
            "cases": [{"stdin": "1", "expected_output": "1"}]})
    assert (response.status_code, response.json()["message"]) == (400, message)


# ---- checker programs ------------------------------------------------------------------------

# testlib's convention: argv input, output, answer; exit 0 accepted, 1 wrong answer, 2
# presentation error, 3 checker failure; the message on stderr.
PARITY_CHECKER = """import sys
given, output, answer = (open(name).read() for name in sys.argv[1:4])
if output.strip() == "crash":
    raise SystemExit(7)
if output != output.strip() + "\\n":
    print("the answer must be one line", file=sys.stderr)
    sys.exit(2)
if int(output) % 2 != int(answer) % 2:
    print(f"parity differs: {output.strip()} for {answer.strip()}", file=sys.stderr)
    sys.exit(1)
"""


def checked(server: Server, checker: dict[str, object],
            cases: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    reply = batch(server, {"language": "python", "files": [{"content": ECHO}],
                           "checker": checker, "cases": [
                               {"stdin": got, "expected_output": wanted}
                               for got, wanted in cases]})
    return [(case["verdict"], case["detail"]) for case in reply["cases"]]


def test_a_checker_program_judges_by_its_exit_code(server: Server) -> None:
    checker = {"type": "program", "language": "python",
               "files": [{"name": "check.py", "content": PARITY_CHECKER}]}
    assert checked(server, checker, [("4\n", "2"), ("3\n", "2"), ("4 \n\n", "2"),
                                     ("crash\n", "1")]) == [
        ("accepted", None),
        ("wrong_answer", "parity differs: 3 for 2"),
        ("presentation_error", "the answer must be one line"),
        ("checker_error", ("the checker exited with 7 (0 accepted, 1 wrong answer, 2 "
                           "presentation error, 3 checker failure)"))]


@pytest.mark.gxx
def test_a_compiled_checker_compiles_once(server: Server) -> None:
    source = ("#include <fstream>\n#include <cstdio>\nint main(int, char** argv){\n"
              "  std::ifstream out(argv[2]), ans(argv[3]); long a, b; out >> a; ans >> b;\n"
              "  if (a < b) { std::fprintf(stderr, \"%ld is below %ld\", a, b); return 1; }\n"
              "  return 0; }\n")
    checker = {"type": "program", "language": "c++",
               "files": [{"name": "check.cpp", "content": source}]}
    assert checked(server, checker, [("5", "3"), ("2", "3")]) == [
        ("accepted", None), ("wrong_answer", "2 is below 3")]
    broken = {**checker, "files": [{"name": "check.cpp", "content": "int main( {"}]}
    [(verdict, detail)] = checked(server, broken, [("5", "3")])
    assert verdict == "checker_error" and detail is not None
    assert detail.startswith("the checker did not compile: ")


def test_a_hostile_checker_sees_only_its_own_case(server: Server) -> None:
    """A checker is a program like any other: it sees its own case's three files, nothing of
    any other case, and cannot write outside its folder."""
    snoop = ("import os, sys\n"
             "found = sorted(os.listdir('.'))\n"
             "try:\n    open('/tmp/planted-by-checker', 'w')\n    wrote = 'wrote'\n"
             "except OSError:\n    wrote = 'refused'\n"
             "print(found, wrote, open(sys.argv[3]).read().strip(), file=sys.stderr)\n"
             "sys.exit(1)\n")
    checker = {"type": "program", "language": "python",
               "files": [{"name": "snoop.py", "content": snoop}]}
    details = [detail for _verdict, detail in
               checked(server, checker, [("a", "first secret"), ("b", "second secret")])]
    assert details == [
        "['expected.txt', 'input.txt', 'output.txt', 'snoop.py'] refused first secret",
        "['expected.txt', 'input.txt', 'output.txt', 'snoop.py'] refused second secret"]
    assert not os.path.exists("/tmp/planted-by-checker")


@pytest.mark.parametrize(("checker", "message"), [
    ({"type": "program", "language": "cobol", "files": [{"content": "x"}]}, None),
    ({"type": "program", "language": "python"}, "checker.files must be a non-empty array"),
    ({"type": "program", "language": "python",
      "files": [{"name": "expected.txt", "content": "x"}]},
     ("checker.files[0].name 'expected.txt' is the name of a file the checker is given "
      "(input.txt, output.txt, expected.txt)")),
    ({"type": "program", "language": "python", "files": [{"content": "x"}],
      "limits": {"wall_timeout_s": 10 ** 9}}, "checker.limits.wall_timeout_s cannot exceed"),
])
def test_a_bad_checker_program_is_refused_naming_it(server: Server, checker: object,
                                                    message: str | None) -> None:
    with server.client() as client:
        response = client.post("/batch", json={
            "language": "python", "files": [{"content": ECHO}], "checker": checker,
            "cases": [{"stdin": "1", "expected_output": "1"}]})
    if message is None:  # an unknown language, as everywhere: 404 with the known ones
        assert response.status_code == 404 and "cobol" in response.json()["message"]
        return
    assert response.status_code == 400 and response.json()["message"].startswith(message)
