"""The netns layer: each run in a network namespace of its own with no interface up. The
launcher makes it (`_enter_netns` in launcher/confine.py); it needs CAP_SYS_ADMIN."""

from __future__ import annotations

from typing import Any

from ..config import Mode, SandboxConfig
from .base import NO_HOOKS, OFF_DETAIL, Hooks, JailLike, Layer, RunRequest, probe_run

NAME = "netns"


class Netns(Hooks):
    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        return {"netns": True}


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    if config.netns is Mode.OFF:
        return (Layer(NAME, False, OFF_DETAIL),), NO_HOOKS
    problem = probe_run(config.launcher_python, netns=True)
    if problem:
        return (Layer(NAME, False, "unshare(CLONE_NEWNET) is refused here (it needs "
                      "CAP_SYS_ADMIN, and Docker's default seccomp profile refuses it): "
                      f"{problem}"),), NO_HOOKS
    return (Layer(NAME, True, "each run has a network namespace of its own with no interface "
                  "up"),), Netns()
