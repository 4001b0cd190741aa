"""The seccomp layer: a syscall filter on every run (sandbox.syscall_filter compiles it per run,
naming the run's launcher; the launcher installs it last, `_load_seccomp` in
launcher/confine.py)."""

from __future__ import annotations

from typing import Any

from ..config import Mode, SandboxConfig
from .base import NO_HOOKS, OFF_DETAIL, Hooks, JailLike, Layer, RunRequest, probe_run

NAME = "seccomp"


class Seccomp(Hooks):
    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        return {"seccomp": True}


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    if config.seccomp is Mode.OFF:
        return (Layer(NAME, False, OFF_DETAIL),), NO_HOOKS
    try:
        from ..syscall_filter import build_filter

        build_filter({1})
    except (OSError, AttributeError, RuntimeError) as exc:
        return (Layer(NAME, False, f"libseccomp is unusable: {exc}"),), NO_HOOKS
    problem = probe_run(config.launcher_python, seccomp=True)
    if problem:
        return (Layer(NAME, False, problem),), NO_HOOKS
    return (Layer(NAME, True, "x86_64 syscalls only; sockets only AF_UNIX (no network); ptrace, "
                  "io_uring, namespaces, mount, bpf, keyctl, userfaultfd, perf_event_open and "
                  "kin refused; no signal, pidfd or prlimit aimed at the service or launcher"),
            ), Seccomp()
