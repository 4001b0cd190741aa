"""Protection of the service process itself from the programs it runs."""

from __future__ import annotations

import contextlib

import prctl


def harden_service() -> None:
    """Marks the service non-dumpable: a program that shares its uid can then neither ptrace it
    nor read its /proc/<pid>/environ, mem or maps (where its secrets live)."""
    prctl.set_dumpable(False)


def lower_oom_score() -> str:
    """Asks the kernel's OOM killer to spare this process (and the zygotes it starts, which
    inherit the score): -1000 where the kernel allows (CAP_SYS_RESOURCE), else as it was.
    Returns the score it now has."""
    path = "/proc/self/oom_score_adj"
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write("-1000")
    with open(path) as f:
        return f.read().strip()
