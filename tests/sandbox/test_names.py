from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import UnsafeName, resolve_inside

ROOT = Path("/w/run-x")


@pytest.mark.parametrize(("name", "expected"), [
    ("main.py", "/w/run-x/main.py"),
    ("src/./util.h", "/w/run-x/src/util.h"),
    ("a//b", "/w/run-x/a/b"),
])
def test_safe_names(name: str, expected: str) -> None:
    assert resolve_inside(ROOT, name) == Path(expected)


@pytest.mark.parametrize(("name", "message"), [
    ("", "non-empty"),
    ("a\0b", "NUL"),
    ("/etc/passwd", "must be relative"),
    ("../x", "'..'"),
    ("a/../../x", "'..'"),
    (".", "names no file"),
    ("x" * 256, "at most 255 bytes"),
    ("a/" * 2100, "at most 4096 bytes"),
    ("\udc80.py", "valid Unicode"),
])
def test_unsafe_names(name: str, message: str) -> None:
    with pytest.raises(UnsafeName, match=message):
        resolve_inside(ROOT, name)


@given(st.text(st.sampled_from("ab./\0\\~ ") | st.characters(), max_size=60))
def test_no_name_resolves_outside(name: str) -> None:
    try:
        path = resolve_inside(ROOT, name)
    except UnsafeName:
        return
    assert ROOT in path.parents
    assert ".." not in path.parts
