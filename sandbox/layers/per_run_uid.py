"""The per_run_uid layer: each jail runs as a uid of its own (sandbox.identity), which the
launcher switches to (`_switch_uid` in launcher/confine.py). Only the probe is here: the uid is
the jail's identity rather than a layer around it. `Sandbox.jail` takes it from the pool before
the folder it owns exists, and gives it back (killing whatever of the run still lives) before
any layer's `dispose`, which counts on the run's processes being dead."""

from __future__ import annotations

import os

from ..config import Mode, SandboxConfig
from ..process import run_uid_command
from .base import NO_HOOKS, OFF_DETAIL, Hooks, Layer

NAME = "per_run_uid"


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    return (_probe(config),), NO_HOOKS


def _probe(config: SandboxConfig) -> Layer:
    if config.per_run_uid is Mode.OFF:
        return Layer(NAME, False, OFF_DETAIL)
    if os.geteuid() != 0:
        return Layer(NAME, False, "the service is not root: runs share its uid")
    uid = config.uid_first
    if not run_uid_command(config.launcher_python, "probe-uid", uid):
        return Layer(NAME, False, f"switching to uid {uid} failed")
    last = config.uid_first + config.uid_count - 1
    return Layer(NAME, True, f"each request runs as its own uid from {config.uid_first}-{last}")
