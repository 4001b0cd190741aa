"""The mntns layer: a run that asks for it (`Jail.start(also_at=…)`) sees its folder at a fixed
path too, bind-mounted in a private mount namespace the launcher makes (`_enter_mntns` in
launcher/confine.py)."""

from __future__ import annotations

from typing import Any

from ..config import Mode, SandboxConfig
from .base import NO_HOOKS, OFF_DETAIL, Hooks, JailLike, Layer, RunRequest, probe_run

NAME = "mntns"


class Mntns(Hooks):
    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        return {"binds": ((str(jail.path), run.also_at),)} if run.also_at else {}


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    if config.mntns is Mode.OFF:
        return (Layer(NAME, False, OFF_DETAIL),), NO_HOOKS
    root = str(config.work_root)
    problem = probe_run(config.launcher_python, binds=((root, root),))
    if problem:
        return (Layer(NAME, False, "a private mount namespace is refused here (it needs "
                      "CAP_SYS_ADMIN and a seccomp profile that allows unshare): "
                      f"{problem}"),), NO_HOOKS
    return (Layer(NAME, True, "runs that ask for it see their folder at a fixed path (a "
                  "session's files at /mnt/data) in a mount namespace of their own"),), Mntns()
