"""How the sandbox is set up on this machine: `SandboxConfig`, and `Mode`, the mode of each
optional confinement layer.

    SandboxConfig(work_root=Path("/var/lib/sandbox"), seccomp=Mode.ON, tmpfs=Mode.OFF)
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sys
from dataclasses import dataclass
from pathlib import Path


class Mode(enum.StrEnum):
    """Whether an optional layer is used: AUTO when the machine allows it, ON required (startup
    fails with the reason when it is missing), OFF never."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


def parse_mode(value: object, name: str) -> Mode:
    """`value` ("auto", "on" or "off", or a Mode) as a Mode; else ValueError naming `name`:

    >>> parse_mode("maybe", "SANDBOX_TMPFS")  # ValueError("SANDBOX_TMPFS must be auto, on or off")
    """
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return Mode(value)
    raise ValueError(f"{name} must be auto, on or off")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox is set up on this machine. Every field whose default is a `Mode` is the
    mode of the optional layer of that name (sandbox/layers/); strings are accepted for them."""

    work_root: Path
    per_run_uid: Mode = Mode.AUTO
    uid_first: int = 60000
    uid_count: int = 1000
    uid_lock_dir: Path = Path("/run/sandbox-service")
    launcher_python: str = sys.executable
    seccomp: Mode = Mode.AUTO
    landlock: Mode = Mode.AUTO
    tmpfs: Mode = Mode.AUTO
    netns: Mode = Mode.AUTO
    mntns: Mode = Mode.AUTO
    # A cgroup per run under the service's own: the memory and process bound of the whole run.
    # Without one, the launcher measures the run's memory itself.
    cgroups: Mode = Mode.AUTO
    # Fork launchers from a pre-started one (a zygote) instead of starting each: ~20 ms less
    # per run. Off: every run starts its launcher's interpreter.
    fork_launchers: bool = True
    # Run Python scripts in forks of warm interpreters (sandbox.warm) where a caller asks for
    # one: ~10 ms less per run, more with preloaded modules. Off: every run is started fresh.
    warm_interpreters: bool = True
    # The bound on one jail's working directory (the disk it may fill), whichever layer keeps it.
    disk_bytes: int = 256 * 1024 * 1024
    disk_files: int = 10000

    def __post_init__(self) -> None:
        for name in layer_modes(type(self)):
            object.__setattr__(self, name, parse_mode(getattr(self, name), name))


def layer_modes(cls: type) -> tuple[str, ...]:
    """The fields of dataclass `cls` that are layer modes (their default is a Mode), in order:
    how `SandboxConfig` and the service's settings find them without listing them again."""
    return tuple(field.name for field in dataclasses.fields(cls)
                 if isinstance(field.default, Mode))
