"""The Landlock layer: which files a run may touch, TCP, signals leaving the run. The rules are
made here per run (sandbox.landlock.ruleset, for the ABI probed once); the launcher applies
them just before execve (`_apply_landlock` in launcher/confine.py)."""

from __future__ import annotations

from typing import Any

from .. import landlock
from ..config import Mode, SandboxConfig
from .base import NO_HOOKS, OFF_DETAIL, Hooks, JailLike, Layer, RunRequest, probe_run

NAME = "landlock"


class Landlock(Hooks):
    def __init__(self, abi: int) -> None:
        self.abi = abi

    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        # Read (and execute) the runtime's folders; write only the jail.
        return {"landlock": landlock.ruleset(self.abi, run.read_paths, (str(jail.path),))}


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    if config.landlock is Mode.OFF:
        return (Layer(NAME, False, OFF_DETAIL),), NO_HOOKS
    abi, why_not = landlock.probe_abi()
    if abi == 0:
        return (Layer(NAME, False, why_not),), NO_HOOKS
    problem = probe_run(config.launcher_python,
                        landlock=landlock.ruleset(abi, landlock.SYSTEM_READ_PATHS, ()))
    if problem:
        return (Layer(NAME, False, f"ABI {abi}, but a confined run failed: {problem}"),), NO_HOOKS
    what = ["files: read the runtime's folders, write only the working directory"]
    what.append("TCP bind/connect refused" if abi >= 4 else "no TCP rules (ABI < 4)")
    what.append("signals and abstract sockets scoped to the run" if abi >= 6
                else "no signal scoping (ABI < 6)")
    return (Layer(NAME, True, f"ABI {abi}: " + "; ".join(what)),), Landlock(abi)
