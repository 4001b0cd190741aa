"""The confinement layers, probed once at startup: which are active here, and why not."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SandboxError
from .identity import as_uid

if TYPE_CHECKING:
    from .jail import SandboxConfig


@dataclass(frozen=True)
class Layer:
    name: str
    active: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "active": self.active, "detail": self.detail}


ALWAYS = (
    Layer("rlimits", True, "address space, stack, CPU, processes, open files, file size, core=0; "
          "soft = hard"),
    Layer("no_new_privs", True, "setuid binaries and file capabilities cannot raise privileges"),
    Layer("session", True, "each program runs in its own session and process group"),
    Layer("environment", True, "programs get an allow-listed environment, nothing of the service's"),
    Layer("process_tree", True, "a subreaper launcher kills and reaps every descendant of a run"),
    Layer("wall_clock", True, "wall-clock, whole-run CPU time and output caps enforced by the "
          "launcher"),
    Layer("workdir", True, "a fresh private working directory (0700, unguessable name) per "
          "request, removed afterwards"),
)


def _probe_uid_switch(config: SandboxConfig) -> Layer:
    name = "per_run_uid"
    if config.per_run_uid == "off":
        return Layer(name, False, "turned off by configuration")
    if os.geteuid() != 0:
        return Layer(name, False, "the service is not root: runs share its uid")
    uid = config.uid_first
    if not as_uid(config.launcher_python, "probe-uid", uid):
        return Layer(name, False, f"switching to uid {uid} failed")
    last = config.uid_first + config.uid_count - 1
    return Layer(name, True, f"each request runs as its own uid from {config.uid_first}-{last}")


def probe_layers(config: SandboxConfig) -> tuple[Layer, ...]:
    """Every layer with whether it is active; fails when a required layer is missing."""
    uid_layer = _probe_uid_switch(config)
    if config.per_run_uid == "on" and not uid_layer.active:
        raise SandboxError(f"per-run uids are required but unavailable: {uid_layer.detail}")
    return (*ALWAYS, uid_layer)
