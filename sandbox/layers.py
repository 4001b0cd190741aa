"""The confinement layers, probed once at startup: which are active here, and why not.

Each optional layer has a mode: "auto" uses it when the machine allows it, "on" requires it
(startup fails with the reason when it is missing), "off" never uses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import landlock
from .cgroup import CgroupTree, RunCgroup, find_tree
from .config import Mode, SandboxConfig
from .errors import SandboxError
from .limits import Limits
from .mounts import probe_tmpfs
from .process import RunSpec, run_blocking, run_uid_command
from .service import lower_oom_score

PROBE_TIMEOUT_S = 30


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
    Layer("dumpable", True, "the service and launchers are not dumpable: no ptrace, no "
          "/proc/<pid>/environ or mem, even for a program of the same uid"),
)


def _probe_uid_switch(config: SandboxConfig) -> Layer:
    name = "per_run_uid"
    if config.per_run_uid is Mode.OFF:
        return Layer(name, False, "turned off by configuration")
    if os.geteuid() != 0:
        return Layer(name, False, "the service is not root: runs share its uid")
    uid = config.uid_first
    if not run_uid_command(config.launcher_python, "probe-uid", uid):
        return Layer(name, False, f"switching to uid {uid} failed")
    last = config.uid_first + config.uid_count - 1
    return Layer(name, True, f"each request runs as its own uid from {config.uid_first}-{last}")


def probe_run(python: str, *, ruleset: landlock.Ruleset | None = None,
              seccomp: bool = False, netns: bool = False,
              binds: tuple[tuple[str, str], ...] = (), cgroup: RunCgroup | None = None) -> str:
    """Runs /bin/true through a real launcher under the given layers; '' when it succeeded,
    else what went wrong. Used at startup, before the event loop runs."""
    true = shutil.which("true", path="/usr/bin:/bin")
    if true is None:
        return "no /bin/true to probe with"
    spec = RunSpec(argv=(true,), env={}, cwd=Path("/"), limits=Limits(wall_timeout_s=10),
                   landlock=ruleset, seccomp=seccomp, netns=netns, binds=binds, cgroup=cgroup)
    try:
        result, diagnostics = run_blocking(spec, python, PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return f"the probe run failed: {exc}"
    if result is None:
        return "the probe run ended without a result: " + diagnostics[-500:]
    if "error" in result:
        return str(result["error"])
    if result["outcome"] != "ok":
        return f"the probe run ended with {result['outcome']}"
    return ""


def _probe_seccomp(config: SandboxConfig) -> Layer:
    name = "seccomp"
    if config.seccomp is Mode.OFF:
        return Layer(name, False, "turned off by configuration")
    try:
        from .syscall_filter import build_filter

        build_filter({1})
    except (OSError, AttributeError, RuntimeError) as exc:
        return Layer(name, False, f"libseccomp is unusable: {exc}")
    problem = probe_run(config.launcher_python, seccomp=True)
    if problem:
        return Layer(name, False, problem)
    return Layer(name, True, "x86_64 syscalls only; sockets only AF_UNIX (no network); ptrace, "
                 "io_uring, namespaces, mount, bpf, keyctl, userfaultfd, perf_event_open and "
                 "kin refused; no signal, pidfd or prlimit aimed at the service or launcher")


def _probe_landlock(config: SandboxConfig) -> tuple[Layer, int]:
    name = "landlock"
    if config.landlock is Mode.OFF:
        return Layer(name, False, "turned off by configuration"), 0
    abi, why_not = landlock.probe_abi()
    if abi == 0:
        return Layer(name, False, why_not), 0
    problem = probe_run(config.launcher_python,
                        ruleset=landlock.ruleset(abi, landlock.SYSTEM_READ_PATHS, ()))
    if problem:
        return Layer(name, False, f"ABI {abi}, but a confined run failed: {problem}"), 0
    what = ["files: read the runtime's folders, write only the working directory"]
    what.append("TCP bind/connect refused" if abi >= 4 else "no TCP rules (ABI < 4)")
    what.append("signals and abstract sockets scoped to the run" if abi >= 6
                else "no signal scoping (ABI < 6)")
    return Layer(name, True, f"ABI {abi}: " + "; ".join(what)), abi


def _probe_tmpfs(config: SandboxConfig) -> Layer:
    name = "tmpfs"
    if config.tmpfs is Mode.OFF:
        return Layer(name, False, "turned off by configuration")
    problem = probe_tmpfs(config.work_root)
    if problem:
        return Layer(name, False, problem + " (needs CAP_SYS_ADMIN)")
    return Layer(name, True, f"each working directory is a tmpfs of {config.disk_bytes} bytes "
                 f"and {config.disk_files} files")


def _probe_netns(config: SandboxConfig) -> Layer:
    name = "netns"
    if config.netns is Mode.OFF:
        return Layer(name, False, "turned off by configuration")
    problem = probe_run(config.launcher_python, netns=True)
    if problem:
        return Layer(name, False, "unshare(CLONE_NEWNET) is refused here (it needs "
                     f"CAP_SYS_ADMIN, and Docker's default seccomp profile refuses it): {problem}")
    return Layer(name, True, "each run has a network namespace of its own with no interface up")


def _probe_mntns(config: SandboxConfig) -> Layer:
    name = "mntns"
    if config.mntns is Mode.OFF:
        return Layer(name, False, "turned off by configuration")
    root = str(config.work_root)
    problem = probe_run(config.launcher_python, binds=((root, root),))
    if problem:
        return Layer(name, False, "a private mount namespace is refused here (it needs "
                     f"CAP_SYS_ADMIN and a seccomp profile that allows unshare): {problem}")
    return Layer(name, True, "runs that ask for it see their folder at a fixed path (a session's "
                 "files at /mnt/data) in a mount namespace of their own")


def _pid_namespace() -> Layer:
    # Deliberately not used: the program would be PID 1 of its namespace, which ignores
    # SIGTERM/SIGINT without a handler, changing what signals do to it; the subreaper loop and
    # kill(-1) as the per-run uid already leave no survivor.
    return Layer("pidns", False, "not used: the program would run as PID 1 and ignore default "
                 "signals; the subreaper and the per-run uid already kill every process")


def _probe_cgroups(config: SandboxConfig) -> tuple[Layer, CgroupTree | None]:
    name = "cgroups"
    if config.cgroups is Mode.OFF:
        return Layer(name, False, "turned off by configuration"), None
    try:
        tree = find_tree()
    except OSError as exc:
        return Layer(name, False, f"no writable cgroup under the service's own: {exc}"), None
    try:
        cgroup = tree.create(16 << 20, 8)
    except OSError as exc:
        tree.close()
        return Layer(name, False, f"cannot make a run's cgroup under {tree.where}: {exc}"), None
    problem = probe_run(config.launcher_python, cgroup=cgroup)
    cgroup.remove()
    if problem:
        tree.close()
        return Layer(name, False, f"a run could not join its cgroup: {problem}"), None
    return Layer(name, True, f"v{tree.version}: each run's processes share one memory bound "
                 f"(resident pages, tmpfs included, no swap) and one process bound, in a "
                 f"cgroup of their own under {tree.where}"), tree


def _memory_watchdog(cgroups: Layer) -> Layer:
    if cgroups.active:
        return Layer("memory_watchdog", False, "the run's cgroup bounds its memory")
    return Layer("memory_watchdog", True, "the launcher sums the private resident pages of "
                 "every process of a run every 50 ms and kills the run past its memory limit")


def _oom_score() -> Layer:
    service = lower_oom_score()
    kept = ("lowered to " + service if service.startswith("-") else
            f"left at {service} (lowering needs CAP_SYS_RESOURCE)")
    return Layer("oom_score", True, "runs and their launchers have oom_score_adj 1000, so the "
                 f"OOM killer takes them first; the service and zygotes {kept}")


@dataclass(frozen=True)
class Layers:
    """The layers found at startup, and what runs need to apply them."""

    all: tuple[Layer, ...]
    landlock_abi: int  # 0 when Landlock is not used
    cgroups: CgroupTree | None = None  # where runs' cgroups go, when the layer is active

    def active(self, name: str) -> bool:
        return any(layer.name == name and layer.active for layer in self.all)


def _require(mode: Mode, layer: Layer) -> Layer:
    if mode is Mode.ON and not layer.active:
        raise SandboxError(f"the {layer.name} layer is required but unavailable: {layer.detail}")
    return layer


def probe_layers(config: SandboxConfig) -> Layers:
    """Every layer with whether it is active; fails when a required layer is missing."""
    uid_layer = _require(config.per_run_uid, _probe_uid_switch(config))
    seccomp_layer = _require(config.seccomp, _probe_seccomp(config))
    landlock_layer, abi = _probe_landlock(config)
    _require(config.landlock, landlock_layer)
    tmpfs_layer = _require(config.tmpfs, _probe_tmpfs(config))
    netns_layer = _require(config.netns, _probe_netns(config))
    cgroups_layer, tree = _probe_cgroups(config)
    _require(config.cgroups, cgroups_layer)
    mntns_layer = _require(config.mntns, _probe_mntns(config))
    watchdog = Layer("disk_watchdog", not tmpfs_layer.active,
                     "the tmpfs bounds the disk" if tmpfs_layer.active else
                     f"the launcher kills a run whose working directory exceeds "
                     f"{config.disk_bytes} bytes or {config.disk_files} files")
    return Layers((*ALWAYS, uid_layer, seccomp_layer, landlock_layer, tmpfs_layer, watchdog,
                   netns_layer, mntns_layer, _pid_namespace(), cgroups_layer,
                   _memory_watchdog(cgroups_layer), _oom_score()), abi, tree)
