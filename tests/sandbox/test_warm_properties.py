"""Hypothesis at the edges of a warm interpreter: for any program built from output, input,
arguments and a way to end, a fork of the warm interpreter reports exactly what a fresh
interpreter does."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sandbox import Sandbox

from .test_warm import WARM, observed, run

# Ways a program writes: raw bytes (any value, invalid UTF-8, NUL) or text through print.
writes = st.lists(st.one_of(
    st.tuples(st.just("buffer"), st.sampled_from(["stdout", "stderr"]), st.binary(max_size=40)),
    st.tuples(st.just("print"), st.sampled_from(["stdout", "stderr"]),
              st.text(max_size=20)),
), max_size=5)
# Ways a program ends.
endings = st.one_of(
    st.just(("fall off the end", None)),
    st.tuples(st.just("sys.exit"), st.none() | st.integers(-300, 300) | st.text(max_size=12)),
    st.tuples(st.just("os._exit"), st.integers(0, 255)),
    st.tuples(st.just("raise"), st.tuples(
        st.sampled_from(["ValueError", "KeyError", "RuntimeError", "KeyboardInterrupt",
                         "MemoryError", "RecursionError", "UnicodeError"]),
        st.text(max_size=12))),
    st.tuples(st.just("syntax error"), st.sampled_from(["(", "def f(:", "\tx = 1\n  y", "1 +"])),
)


def program(steps: list[tuple[str, str, Any]], ending: tuple[str, Any]) -> str:
    lines = ["import os, sys", "data = sys.stdin.read()", "print(len(data), sys.argv[1:])"]
    for how, stream, value in steps:
        if how == "buffer":
            lines.append(f"sys.{stream}.buffer.write({value!r}); sys.{stream}.flush()")
        else:
            lines.append(f"print({value!r}, file=sys.{stream})")
    kind, value = ending
    if kind == "sys.exit":
        lines.append(f"sys.exit({value!r})")
    elif kind == "os._exit":
        lines.append(f"os._exit({value!r})")
    elif kind == "raise":
        name, message = value
        lines.append(f"raise {name}({message!r})")
    elif kind == "syntax error":
        lines.append(value)
    return "\n".join(lines) + "\n"


@given(steps=writes, ending=endings, stdin=st.binary(max_size=50),
       args=st.lists(st.text(st.characters(blacklist_categories=["Cs"],
                                           blacklist_characters="\0"), max_size=8),
                     max_size=3))
def test_any_program_ends_the_same_warm_or_fresh(
        warm_sandbox: Sandbox, steps: list[tuple[str, str, Any]], ending: tuple[str, Any],
        stdin: bytes, args: list[str]) -> None:
    files = {"main.py": program(steps, ending)}
    fresh = observed(*run(warm_sandbox, files, None, stdin, tuple(args)))
    warm = observed(*run(warm_sandbox, files, WARM, stdin, tuple(args)))
    assert warm == fresh, files["main.py"]
