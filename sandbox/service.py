"""Protection of the service process itself from the programs it runs."""

from __future__ import annotations

import prctl


def harden_service() -> None:
    """Marks the service non-dumpable: a program that shares its uid can then neither ptrace it
    nor read its /proc/<pid>/environ, mem or maps (where its secrets live)."""
    prctl.set_dumpable(False)
