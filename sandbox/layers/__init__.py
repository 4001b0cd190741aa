"""The confinement layers, probed once at startup: which are active here, and why not.

The always-on layers are entries only (what they do is in the launcher, for every run). Each
optional layer is one module of this package with the same hooks (see base.py): `probe` at
startup (its `GET /` entries and its hooks), `prepare` and `dispose` around a jail, `spec` for
its part of a run's RunSpec; each does nothing where its layer is off. `OPTIONAL` lists them in
the order they are probed and listed. A layer whose mode is "on" must be active, or startup
fails with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cgroup import CgroupTree
from ..config import Mode, SandboxConfig
from ..errors import SandboxError
from ..service import lower_oom_score
from . import cgroups, landlock, mntns, netns, per_run_uid, seccomp, tmpfs
from .base import Hooks, JailLike, Layer, LayerModule, RunRequest

__all__ = ["Layer", "Layers", "RunRequest", "probe_layers"]

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
    Layer("dumpable", True, "the service and launchers are not dumpable: no ptrace, no "
          "/proc/<pid>/environ or mem, even for a program of the same uid"),
)

# Deliberately not used: the program would be PID 1 of its namespace, which ignores
# SIGTERM/SIGINT without a handler, changing what signals do to it; the subreaper loop and
# kill(-1) as the per-run uid already leave no survivor.
PIDNS = Layer("pidns", False, "not used: the program would run as PID 1 and ignore default "
              "signals; the subreaper and the per-run uid already kill every process")

# The optional layers, in the order they are probed and listed in GET / (pidns, never used,
# has its place among them).
OPTIONAL: tuple[LayerModule | Layer, ...] = (
    per_run_uid, seccomp, landlock, tmpfs, netns, mntns, PIDNS, cgroups)


def _oom_score() -> Layer:
    service = lower_oom_score()
    kept = ("lowered to " + service if service.startswith("-") else
            f"left at {service} (lowering needs CAP_SYS_RESOURCE)")
    return Layer("oom_score", True, "runs and their launchers have oom_score_adj 1000, so the "
                 f"OOM killer takes them first; the service and zygotes {kept}")


@dataclass(frozen=True)
class Layers:
    """The layers found at startup (`all`, as GET / lists them), and the hooks of the optional
    ones, which the sandbox calls around each jail and run."""

    all: tuple[Layer, ...]
    hooks: tuple[Hooks, ...] = ()

    def active(self, name: str) -> bool:
        return any(layer.name == name and layer.active for layer in self.all)

    @property
    def landlock_abi(self) -> int:
        """The Landlock ABI runs are confined with; 0 when Landlock is not used."""
        return next((h.abi for h in self.hooks if isinstance(h, landlock.Landlock)), 0)

    @property
    def cgroups(self) -> CgroupTree | None:
        """Where runs' cgroups go, when that layer is active."""
        return next((h.tree for h in self.hooks if isinstance(h, cgroups.Cgroups)), None)

    def prepare(self, jail: JailLike) -> None:
        """Every layer's part of making `jail`; undoes what was done when one fails."""
        for done, hooks in enumerate(self.hooks):
            try:
                hooks.prepare(jail)
            except BaseException:
                for prepared in reversed(self.hooks[:done]):
                    prepared.dispose(jail)
                raise

    def dispose(self, jail: JailLike) -> None:
        """Undoes `prepare`, in the reverse order, once the jail's processes are dead."""
        for hooks in reversed(self.hooks):
            hooks.dispose(jail)

    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        """Every layer's RunSpec fields for one run in `jail`."""
        fields: dict[str, Any] = {}
        for hooks in self.hooks:
            fields.update(hooks.spec(jail, run))
        return fields

    def close(self) -> None:
        for hooks in self.hooks:
            hooks.close()


def probe_layers(config: SandboxConfig) -> Layers:
    """Every layer with whether it is active; fails when a required layer is missing."""
    found = list(ALWAYS)
    hooks = []
    for layer in OPTIONAL:
        if isinstance(layer, Layer):
            found.append(layer)
            continue
        entries, layer_hooks = layer.probe(config)
        if getattr(config, layer.NAME) is Mode.ON and not entries[0].active:
            raise SandboxError(f"the {entries[0].name} layer is required but unavailable: "
                               f"{entries[0].detail}")
        found += entries
        hooks.append(layer_hooks)
    return Layers((*found, _oom_score()), tuple(hooks))
