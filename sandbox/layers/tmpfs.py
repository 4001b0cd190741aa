"""The tmpfs layer: each jail's folder is a tmpfs of its own, sized to the disk bound, so the
kernel bounds the disk a run fills. Without it (it needs CAP_SYS_ADMIN) the launcher's disk
watchdog bounds the folder instead. Nothing on the launcher's confinement list: the service
mounts it around the jail; the launcher only measures (watchdog) or recognises a full one
(launcher/supervise.py)."""

from __future__ import annotations

from typing import Any

from ..config import Mode, SandboxConfig
from ..mounts import mount_tmpfs, probe_tmpfs, unmount
from ..process import DiskBound
from .base import OFF_DETAIL, Hooks, JailLike, Layer, RunRequest

NAME = "tmpfs"


class Tmpfs(Hooks):
    """With `mounted`, a tmpfs per jail; else the disk watchdog."""

    def __init__(self, mounted: bool, disk_bytes: int, disk_files: int) -> None:
        self.mounted = mounted
        self.disk_bytes = disk_bytes
        self.disk_files = disk_files

    def prepare(self, jail: JailLike) -> None:
        if self.mounted:
            owner = (jail.uid, jail.uid) if jail.uid is not None else None
            mount_tmpfs(jail.path, self.disk_bytes, self.disk_files, owner)

    def dispose(self, jail: JailLike) -> None:
        # The run is over and its processes are dead: detaching the tmpfs drops every file at
        # once; then the (empty) mount point goes.
        if self.mounted:
            unmount(jail.path)

    def spec(self, jail: JailLike, run: RunRequest) -> dict[str, Any]:
        return {"disk": DiskBound(self.disk_bytes, self.disk_files, watchdog=not self.mounted)}


def _probe(config: SandboxConfig) -> Layer:
    if config.tmpfs is Mode.OFF:
        return Layer(NAME, False, OFF_DETAIL)
    problem = probe_tmpfs(config.work_root)
    if problem:
        return Layer(NAME, False, problem + " (needs CAP_SYS_ADMIN)")
    return Layer(NAME, True, f"each working directory is a tmpfs of {config.disk_bytes} bytes "
                 f"and {config.disk_files} files")


def probe(config: SandboxConfig) -> tuple[tuple[Layer, ...], Hooks]:
    tmpfs = _probe(config)
    watchdog = Layer("disk_watchdog", not tmpfs.active,
                     "the tmpfs bounds the disk" if tmpfs.active else
                     f"the launcher kills a run whose working directory exceeds "
                     f"{config.disk_bytes} bytes or {config.disk_files} files")
    return (tmpfs, watchdog), Tmpfs(tmpfs.active, config.disk_bytes, config.disk_files)
