"""What every optional layer module shares: the `GET /` entry (`Layer`), the two protocols (a
layer's module, `LayerModule`, and the hooks it gives the sandbox, `Hooks`), what a run asks of
the layers (`RunRequest`) and the probe run.

A layer module (sandbox/layers/tmpfs.py, …) defines

    NAME = "tmpfs"                              # its SandboxConfig field and GET / entry
    def probe(config) -> (entries, hooks)       # at startup: its entries, first its own, then
                                                # its fallback's if it has one; its hooks

and its hooks object (a subclass of `Hooks`; `NO_HOOKS` where it has nothing to do) does nothing
where the layer is off, or only its fallback:

    hooks.prepare(jail)      # a jail was made (its folder exists): e.g. mount the tmpfs on it
    hooks.dispose(jail)      # the jail's processes are dead: undo prepare (reverse layer order)
    hooks.spec(jail, run)    # its part of the run's RunSpec, as keyword arguments
    hooks.close()            # service shutdown, after the last jail: e.g. remove the cgroup tree

A per-run resource (the run's cgroup) is made by `spec` and freed by `RunSpec.release`, the one
path every run takes when its launcher is gone (or did not start).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import SandboxConfig
from ..limits import Limits
from ..process import RunSpec, run_blocking

PROBE_TIMEOUT_S = 30
OFF_DETAIL = "turned off by configuration"


@dataclass(frozen=True)
class Layer:
    """One line of `GET /` `layers`: a confinement layer, whether it is active, and why."""

    name: str
    active: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "active": self.active, "detail": self.detail}


class JailLike(Protocol):
    """What a layer sees of a jail (sandbox.jail.Jail): its folder and its uid."""

    @property
    def path(self) -> Path: ...

    @property
    def uid(self) -> int | None: ...


@dataclass(frozen=True)
class RunRequest:
    """What `Jail.start` was asked for that layers turn into their part of the spec."""

    limits: Limits
    read_paths: Sequence[str]
    also_at: str | None = None  # where the run also sees its folder (mntns)


class Hooks(Protocol):
    """The hooks of one optional layer, made by its module's `probe` (see the module docstring).
    A layer's hooks class subclasses this and overrides what it needs: the rest do nothing."""

    def prepare(self, jail: JailLike) -> None:
        """After the jail's folder is made, before any run in it."""
        return

    def dispose(self, jail: JailLike) -> None:
        """After the jail's last run, its processes dead; the folder is removed next."""
        return

    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        """This layer's RunSpec fields for one run. May raise LaunchError."""
        return {}

    def close(self) -> None:
        """At service shutdown, after the last jail."""
        return


class LayerModule(Protocol):
    """An optional layer's module: its name (its SandboxConfig field, the first of its GET /
    entries) and its probe, which returns its entries and its hooks."""

    NAME: str

    def probe(self, config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]: ...


class Off(Hooks):
    """The hooks of a layer that is off, or has nothing to do for jails and runs."""


NO_HOOKS = Off()


def probe_run(python: str, **spec: Any) -> str:
    """Runs /bin/true through a real launcher under the given layers (RunSpec fields: `seccomp=
    True`, `binds=(…)`); '' when it succeeded, else what went wrong. Used at startup, before the
    event loop runs."""
    true = shutil.which("true", path="/usr/bin:/bin")
    if true is None:
        return "no /bin/true to probe with"
    run = RunSpec(argv=(true,), env={}, cwd=Path("/"), limits=Limits(wall_timeout_s=10), **spec)
    try:
        result, diagnostics = run_blocking(run, python, PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return f"the probe run failed: {exc}"
    if result is None:
        return "the probe run ended without a result: " + diagnostics[-500:]
    if "error" in result:
        return str(result["error"])
    if result["outcome"] != "ok":
        return f"the probe run ended with {result['outcome']}"
    return ""
