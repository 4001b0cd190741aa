"""The cgroups layer, the memory bound of a run: one cgroup per run (sandbox.cgroup) whose
memory and process bounds hold over all the run's processes together; the program joins it
between fork and execve (`_join_cgroup` in launcher/confine.py). Without it, the memory
watchdog: the launcher sums the resident pages of the run's processes (launcher/supervise.py)."""

from __future__ import annotations

from typing import Any

from ..cgroup import CgroupTree, find_tree
from ..config import Mode, SandboxConfig
from ..errors import LaunchError
from .base import OFF_DETAIL, Hooks, JailLike, Layer, RunRequest, probe_run

NAME = "cgroups"


class Cgroups(Hooks):
    """With a `tree`, a cgroup per run made in it; else the memory watchdog."""

    def __init__(self, tree: CgroupTree | None) -> None:
        self.tree = tree

    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        # The run's cgroup is the one per-run resource of a layer: RunSpec.release frees it.
        if self.tree is None:
            return {"memory_watchdog": True}
        try:
            cgroup = self.tree.create(run.limits.memory_bytes, run.limits.max_processes)
        except OSError as exc:
            raise LaunchError(f"could not make the run's cgroup: {exc}") from exc
        return {"cgroup": cgroup}

    def close(self) -> None:
        if self.tree is not None:
            self.tree.close()


def _probe(config: SandboxConfig) -> tuple[Layer, CgroupTree | None]:
    if config.cgroups is Mode.OFF:
        return Layer(NAME, False, OFF_DETAIL), None
    try:
        tree = find_tree()
    except OSError as exc:
        return Layer(NAME, False, f"no writable cgroup under the service's own: {exc}"), None
    try:
        cgroup = tree.create(16 << 20, 8)
    except OSError as exc:
        tree.close()
        return Layer(NAME, False, f"cannot make a run's cgroup under {tree.where}: {exc}"), None
    problem = probe_run(config.launcher_python, cgroup=cgroup)
    cgroup.remove()
    if problem:
        tree.close()
        return Layer(NAME, False, f"a run could not join its cgroup: {problem}"), None
    return Layer(NAME, True, f"v{tree.version}: each run's processes share one memory bound "
                 f"(resident pages, tmpfs included, no swap) and one process bound, in a "
                 f"cgroup of their own under {tree.where}"), tree


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    cgroups, tree = _probe(config)
    if cgroups.active:
        watchdog = Layer("memory_watchdog", False, "the run's cgroup bounds its memory")
    else:
        watchdog = Layer("memory_watchdog", True, "the launcher sums the private resident pages "
                         "of every process of a run every 50 ms and kills the run past its "
                         "memory limit")
    return (cgroups, watchdog), Cgroups(tree)
