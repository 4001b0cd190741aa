"""The per-run seccomp filter made from a template (filter_for) does what one built for the run
does (build_filter), judged by running both BPF programs on the same syscalls."""

from __future__ import annotations

import os
import random
import struct

import pytest

from sandbox.syscall_filter import (
    INSTRUCTION,
    SENTINEL_PID,
    _template,
    build_filter,
    filter_for,
)

AUDIT_ARCH_X86_64 = 0xC000003E
# x86_64 numbers of the calls whose first argument names a process (SIGNALLING)
SIGNALLING_NUMBERS = {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                      "rt_tgsigqueueinfo": 297, "pidfd_open": 434}
U64 = (1 << 64) - 1


def evaluate(bpf: bytes, number: int, args: tuple[int, ...]) -> int:
    """The action (seccomp return value) of a classic BPF program for one syscall, for the
    instructions libseccomp emits: load word, AND, jump-if-equal, jump-if-greater-or-equal,
    return."""
    data = struct.pack("=iIQ6Q", number, AUDIT_ARCH_X86_64, 0, *(a & U64 for a in args))
    program = list(INSTRUCTION.iter_unpack(bpf))
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            accumulator = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x54:  # BPF_ALU | BPF_AND | BPF_K
            accumulator &= k
            pc += 1
        elif code == 0x15:  # BPF_JMP | BPF_JEQ | BPF_K
            pc += 1 + (jt if accumulator == k else jf)
        elif code == 0x35:  # BPF_JMP | BPF_JGE | BPF_K
            pc += 1 + (jt if accumulator >= k else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return int(k)
        else:
            raise AssertionError(f"an instruction this evaluator does not know: {code:#x}")


FIXED = frozenset({1, os.getpid(), os.getpgrp(), 31337})
RNG = random.Random(7)
LAUNCHER_PIDS = [2, 3, 7, 15, 17, 62, 200, 434, 999, 4242, 31336, 31338, 4194303,
                 *RNG.sample(range(2, 1 << 22), 40)]


def test_the_template_is_used() -> None:
    assert _template(FIXED) is not None
    assert SENTINEL_PID not in LAUNCHER_PIDS


@pytest.mark.parametrize("launcher", LAUNCHER_PIDS)
def test_a_filter_from_the_template_acts_as_one_built_for_the_run(launcher: int) -> None:
    made, built = filter_for(FIXED, launcher), build_filter(FIXED, launcher)
    targets = {launcher, -launcher, *FIXED, *(-pid for pid in FIXED), 0, -1, launcher + 1,
               launcher - 1, RNG.randrange(2, 1 << 22)}
    for name, number in SIGNALLING_NUMBERS.items():
        for target in targets:
            for value in (target, target & 0xFFFFFFFF):  # sign- or zero-extended
                args = (value, 9, 0, 0, 0, 0)
                assert evaluate(made, number, args) == evaluate(built, number, args), (
                    name, target)
    # The launcher is protected at all: kill(launcher) is refused, kill of another pid not.
    kill = SIGNALLING_NUMBERS["kill"]
    assert evaluate(made, kill, (launcher, 9, 0, 0, 0, 0)) != evaluate(
        made, kill, (123456789, 9, 0, 0, 0, 0))


@pytest.mark.parametrize("launcher", [2, 434, 31338, 4194303])
def test_every_syscall_gets_the_same_action_from_both(launcher: int) -> None:
    made, built = filter_for(FIXED, launcher), build_filter(FIXED, launcher)
    for number in range(460):
        for first in (launcher, -launcher, 0, -1, 1, RNG.randrange(1 << 32)):
            args = (first, socket_type := RNG.choice((1, 2, 5, 0x80002)), 0, 0, 0, 0)
            assert evaluate(made, number, args) == evaluate(built, number, args), (
                number, first, socket_type)
