"""The built-in checkers, case by case at their edges, and through POST /batch."""

from __future__ import annotations

import math

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
    ("fuzzy", "checker.type must be one of exact, lines, tokens, floats, unordered"),
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
