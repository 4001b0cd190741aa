"""How a program's output is compared with the expected output: the built-in checkers.

    exact      the bytes, all of them
    lines      line by line, trailing whitespace of each line and trailing blank lines aside
               (Judge0's rule; the default)
    tokens     the whitespace-separated words, however they are spaced or broken into lines
    floats     tokens, where two numbers match within an absolute or a relative tolerance
               (`absolute`, `relative`; 1e-6 each by default), as testlib's doubleCompare
    unordered  the lines (as `lines` reads them) as a multiset: any order

A wrong answer's detail names where the outputs part and shows both sides there, each cut to
SHOWN_CHARS.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

KINDS = ("exact", "lines", "tokens", "floats", "unordered")
DEFAULT_TOLERANCE = 1e-6
SHOWN_CHARS = 64


@dataclass(frozen=True)
class Verdict:
    name: str  # accepted or wrong_answer here; see adapter.batch for the others
    detail: str | None = None


@dataclass(frozen=True)
class Checker:
    kind: str = "lines"  # one of KINDS
    absolute: float = DEFAULT_TOLERANCE  # floats only
    relative: float = DEFAULT_TOLERANCE

    def compare(self, actual: bytes, expected: bytes) -> Verdict:
        return COMPARERS[self.kind](self, actual, expected)


def shown(data: bytes) -> str:
    """One side of a difference, readable and bounded: its repr, cut to SHOWN_CHARS."""
    text = repr(data.decode(errors="replace"))
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def significant_lines(output: bytes) -> list[bytes]:
    """The lines that are compared: trailing whitespace of each line and trailing blank lines
    removed (so `\\r\\n` endings and a missing last newline do not matter)."""
    lines = [line.rstrip() for line in output.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _sequences(got: Sequence[bytes], wanted: Sequence[bytes], unit: str,
               same: Callable[[bytes, bytes], bool]) -> Verdict:
    """`accepted`, or where two sequences of lines or tokens part."""
    for index, (a, b) in enumerate(zip(got, wanted, strict=False)):
        if not same(a, b):
            return Verdict("wrong_answer", f"{unit} {index + 1} differs: expected {shown(b)}, "
                                           f"got {shown(a)}")
    if len(got) < len(wanted):
        return Verdict("wrong_answer", f"output ends before {unit} {len(got) + 1} "
                                       f"(expected {shown(wanted[len(got)])})")
    if len(got) > len(wanted):
        return Verdict("wrong_answer", f"output goes on past the expected {len(wanted)} "
                                       f"{unit}s (next: {shown(got[len(wanted)])})")
    return Verdict("accepted")


def _exact(checker: Checker, actual: bytes, expected: bytes) -> Verdict:
    if actual == expected:
        return Verdict("accepted")
    at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
              min(len(actual), len(expected)))
    return Verdict("wrong_answer", f"byte {at + 1} differs: expected "
                                   f"{shown(expected[at:at + 16])}, got {shown(actual[at:at + 16])}")


def _lines(checker: Checker, actual: bytes, expected: bytes) -> Verdict:
    return _sequences(significant_lines(actual), significant_lines(expected), "line",
                      bytes.__eq__)


def _tokens(checker: Checker, actual: bytes, expected: bytes) -> Verdict:
    return _sequences(actual.split(), expected.split(), "token", bytes.__eq__)


def _number(token: bytes) -> float | None:
    """A token as a number, or None when it is a word: Python's float() syntax, which takes
    `nan`, `inf`, `-0` and exponents, but not `0x…` or `1_000`."""
    if b"_" in token:
        return None
    try:
        return float(token)
    except ValueError:
        return None


def _floats(checker: Checker, actual: bytes, expected: bytes) -> Verdict:
    def same(got: bytes, wanted: bytes) -> bool:
        a, b = _number(got), _number(wanted)
        if a is None or b is None:
            return got == wanted  # a word must be the word
        if math.isnan(b):
            return math.isnan(a)
        if math.isinf(b):
            return a == b  # the same infinity
        if math.isnan(a) or math.isinf(a):
            return False
        # -0 equals 0; within either tolerance.
        return abs(a - b) <= checker.absolute or abs(a - b) <= checker.relative * abs(b)

    return _sequences(actual.split(), expected.split(), "token", same)


def _unordered(checker: Checker, actual: bytes, expected: bytes) -> Verdict:
    got = collections.Counter(significant_lines(actual))
    wanted = collections.Counter(significant_lines(expected))
    if got == wanted:
        return Verdict("accepted")
    missing = sorted((wanted - got).elements())
    extra = sorted((got - wanted).elements())
    if missing:
        return Verdict("wrong_answer", f"{len(missing)} expected line(s) missing, the first "
                                       f"{shown(missing[0])}")
    return Verdict("wrong_answer", f"{len(extra)} line(s) not expected, the first "
                                   f"{shown(extra[0])}")


COMPARERS: dict[str, Callable[[Checker, bytes, bytes], Verdict]] = {
    "exact": _exact, "lines": _lines, "tokens": _tokens, "floats": _floats,
    "unordered": _unordered}
