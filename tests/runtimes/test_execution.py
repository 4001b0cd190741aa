from __future__ import annotations

import asyncio

import pytest

from runtimes import (
    Execution,
    Registry,
    RunRequest,
    SourceFile,
    execute,
    load_runtimes,
    stage_limits,
)
from sandbox import Limits, Outcome, Sandbox

from ..utils import run_folders

REGISTRY = Registry(load_runtimes())


def run(sandbox: Sandbox, language: str, files: list[SourceFile], stdin: bytes = b"",
        args: tuple[str, ...] = (), **overrides: float) -> Execution:
    runtime = REGISTRY.find(language)
    run_limits, compile_limits = stage_limits(runtime, Limits(memory_bytes=4 << 30), overrides)
    return asyncio.run(execute(sandbox, RunRequest(runtime, tuple(files), run_limits,
                                                   compile_limits, stdin=stdin, args=args)))


@pytest.mark.gxx
def test_cpp_compiles_then_runs_with_args(sandbox: Sandbox) -> None:
    code = b'#include <cstdio>\nint main(int c, char** v){ std::printf("%d %s\\n", c, v[1]); }'
    execution = run(sandbox, "cpp", [SourceFile("main.cpp", code)], args=("x y",))
    assert execution.compile is not None and execution.compile.ok
    assert execution.run is not None and execution.run.stdout == b"2 x y\n"


@pytest.mark.gxx
def test_cpp_several_files_compile_together(sandbox: Sandbox) -> None:
    files = [
        SourceFile("main.cpp", b'#include "lib/add.h"\n#include <cstdio>\n'
                               b'int main(){ std::printf("%d\\n", add(2, 3)); }'),
        SourceFile("lib/add.h", b"int add(int a, int b);"),
        SourceFile("lib/add.cpp", b'#include "add.h"\nint add(int a, int b){ return a + b; }'),
    ]
    execution = run(sandbox, "cpp", files)
    assert execution.run is not None and execution.run.stdout == b"5\n"


@pytest.mark.gxx
def test_compile_error_is_a_result_with_the_diagnostics(sandbox: Sandbox) -> None:
    execution = run(sandbox, "cpp", [SourceFile("main.cpp", b"int main() { return x; }")])
    assert execution.run is None and not execution.ok
    assert execution.compile is not None
    assert execution.compile.outcome is Outcome.NONZERO_EXIT
    assert b"x\xe2\x80\x99 was not declared in this scope" in execution.compile.stderr
    assert run_folders(sandbox.config.work_root) == []


def test_python_memory_bomb_is_a_memory_outcome(sandbox: Sandbox) -> None:
    execution = run(sandbox, "python", [SourceFile("main.py", b"x = [0] * (1 << 33)")],
                    memory_bytes=256 << 20)
    assert execution.final.outcome is Outcome.MEMORY_LIMIT


@pytest.mark.gxx
def test_cpp_memory_bomb_is_a_memory_outcome(sandbox: Sandbox) -> None:
    code = b"#include <vector>\nint main(){ std::vector<char> v(1UL << 34); return v[7]; }"
    execution = run(sandbox, "cpp", [SourceFile("main.cpp", code)], memory_bytes=256 << 20)
    assert execution.final.outcome is Outcome.MEMORY_LIMIT
    assert execution.final.signal == 6


def test_python_multi_file_imports_sibling(sandbox: Sandbox) -> None:
    files = [SourceFile("main.py", b"import helper\nprint(helper.X)"),
             SourceFile("helper.py", b"X = 42")]
    assert run(sandbox, "python", files).final.stdout == b"42\n"
