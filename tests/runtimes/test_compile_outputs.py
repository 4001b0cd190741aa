"""A compile stage's `outputs`: the names no source file may take."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes import (
    Registry,
    ReservedSourceName,
    RuntimeConfigError,
    check_source_names,
    load_runtime,
    load_runtimes,
)

from .test_loader import GOOD, write


def test_cpp_refuses_a_source_named_like_its_program() -> None:
    cpp = Registry(load_runtimes()).find("c++")
    assert cpp.compile is not None and cpp.compile.outputs == ("main",)
    check_source_names(cpp, ["main.cpp", "main.h", "main.d/x", "src/main"])
    for names, index in ((["main.cpp", "main"], 1), (["./main", "a.cpp"], 0),
                         (["a.cpp", "./main"], 1)):
        with pytest.raises(ReservedSourceName) as raised:
            check_source_names(cpp, names)
        assert (raised.value.index, raised.value.name, str(raised.value)) == (
            index, "main", "'main' is the name of the program the compile writes")
    # A runtime that does not compile reserves nothing.
    check_source_names(Registry(load_runtimes()).find("python"), ["main"])


def test_an_unsafe_output_name_fails_loading_naming_the_key(tmp_path: Path) -> None:
    text = GOOD.replace("[run]\n", '[compile]\nargv = ["{py}"]\noutputs = ["../x"]\n[run]\n')
    with pytest.raises(RuntimeConfigError, match=r"compile\.outputs\[0\].*'\.\.'"):
        load_runtime(write(tmp_path, text))
