"""Properties of the limits through the runtimes, where a program's own report of a failed
allocation becomes memory_limit: whatever limits are drawn, a program past the memory limit gets
memory_limit, and one below every limit gets ok."""

from __future__ import annotations

import asyncio
import signal

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from runtimes import (
    Registry,
    RunRequest,
    Runtime,
    execute,
    load_runtimes,
    source_files,
    stage_limits,
)
from sandbox import Limits, Outcome, RunResult, Sandbox

from ..strategies import CEILINGS, MiB, limits_with

REGISTRY = Registry(load_runtimes())
# The interpreter itself takes ~15-30 MiB of address space: limits start well above that.
MEMORY = st.integers(64 * MiB, 1024 * MiB)


def scaled(examples: int) -> int:
    """`examples` in the default profile (40 examples a test), proportionally more in a
    profile that asks for more: every example here starts real processes, so each test sets
    its own count, and a thorough run must still scale them up."""
    return max(1, examples * settings().max_examples // 40)


def run(sandbox: Sandbox, language: str, code: str, limits: Limits,
        args: tuple[str, ...] = ()) -> RunResult:
    """The run stage of `code` under `limits`; the compile stage, if any, must succeed."""
    runtime: Runtime = REGISTRY.find(language)
    _defaults, compile_limits = stage_limits(runtime, CEILINGS)
    execution = asyncio.run(execute(sandbox, RunRequest(
        runtime, tuple(source_files(runtime, code)), limits, compile_limits, args=tuple(args))))
    assert execution.compile is None or execution.compile.ok, execution.compile
    assert execution.run is not None
    return execution.run


@settings(max_examples=scaled(15))
@given(limits=limits_with(memory_bytes=MEMORY), factor=st.floats(1.0, 4.0))
def test_python_allocating_past_the_memory_limit_is_memory_limit(
        sandbox: Sandbox, limits: Limits, factor: float) -> None:
    size = int(limits.memory_bytes * factor)
    result = run(sandbox, "python", f"block = bytearray({size})\n", limits)
    assert (result.outcome, result.exit_code, result.signal) == (Outcome.MEMORY_LIMIT, 1, None)
    assert result.stderr.endswith(b"\nMemoryError\n") and result.stdout == b""


# Allocates and touches `alloc` bytes, writes `out` bytes to stdout, `err` to stderr and a file
# of `size` bytes, each in 64 KiB pieces so that nothing else needs much memory.
UNDER_EVERY_LIMIT = """\
import os, sys
alloc, out, err, size = map(int, sys.argv[1:])
block = bytearray(alloc)
block[::4096] = b"m" * len(range(0, alloc, 4096))
chunk = b"o" * 65536

def put(fd, left):
    while left:
        left -= os.write(fd, chunk[:left])

put(1, out)
put(2, err)
fd = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
put(fd, size)
os.close(fd)
"""


@st.composite
def limits_and_use_below_them(draw: st.DrawFn) -> tuple[Limits, int, int, int, int]:
    """Limits and a use of each: a quarter of the memory at most, the output and file sizes up
    to exactly their limits (often right at them)."""
    limits = draw(limits_with(
        memory_bytes=MEMORY,
        max_output_bytes=st.integers(1, int(CEILINGS.max_output_bytes)),
        max_file_bytes=st.integers(1, 16 * MiB)))

    def below(limit: int) -> int:
        return limit - draw(st.integers(0, min(limit, 64)) | st.integers(0, limit))
    cap = int(limits.max_output_bytes)
    return (limits, below(int(limits.memory_bytes) // 4), below(cap), below(cap),
            below(int(limits.max_file_bytes)))


@settings(max_examples=scaled(15))
@given(drawn=limits_and_use_below_them())
def test_python_below_every_limit_is_ok(
        sandbox: Sandbox, drawn: tuple[Limits, int, int, int, int]) -> None:
    limits, alloc, out, err, size = drawn
    result = run(sandbox, "python", UNDER_EVERY_LIMIT, limits,
                 args=(str(alloc), str(out), str(err), str(size)))
    assert (result.outcome, result.exit_code, result.signal) == (Outcome.OK, 0, None), \
        result.stderr[-1000:]
    assert result.stdout == b"o" * out and result.stderr == b"o" * err
    assert not result.stdout_truncated and not result.stderr_truncated


@settings(max_examples=scaled(3), phases=[Phase.explicit, Phase.generate])
@given(limits=limits_with(max_file_bytes=st.integers(1, 16 * MiB)), k=st.integers(0, 4096))
def test_python_writing_past_the_file_size_limit_is_file_size_limit(
        sandbox: Sandbox, limits: Limits, k: int) -> None:
    size = int(limits.max_file_bytes) + 1 + k
    code = f"with open('f', 'wb') as f:\n    f.write(b'f' * {size})\n"
    result = run(sandbox, "python", code, limits)
    assert result.outcome is Outcome.FILE_SIZE_LIMIT, result.stderr[-300:]


# Allocates argv[1] bytes and fills them, touching every page.
CPP_ALLOCATE = """\
#include <cstdio>
#include <cstdlib>
#include <vector>
int main(int, char** argv) {
    std::vector<char> block(std::strtoull(argv[1], nullptr, 10), 1);
    std::printf("%zu\\n", block.size());
}
"""


@pytest.mark.gxx
@settings(max_examples=scaled(4))
@given(limits=limits_with(memory_bytes=MEMORY), over=st.booleans(), fraction=st.floats(0, 1))
def test_cpp_allocating_past_the_memory_limit_is_memory_limit_and_below_it_ok(
        sandbox: Sandbox, limits: Limits, over: bool, fraction: float) -> None:
    # Past the limit: 1 to 4 times it. Below: at most a quarter, the rest is the program's own.
    size = int(limits.memory_bytes * ((1 + 3 * fraction) if over else fraction / 4))
    result = run(sandbox, "cpp", CPP_ALLOCATE, limits, args=(str(size),))
    if over:
        assert (result.outcome, result.exit_code, result.signal) == (
            Outcome.MEMORY_LIMIT, None, signal.SIGABRT)
        assert b"std::bad_alloc" in result.stderr and result.stdout == b""
    else:
        assert (result.outcome, result.exit_code, result.signal) == (Outcome.OK, 0, None)
        assert result.stdout == f"{size}\n".encode()
