"""Sized tmpfs working directories: the kernel bounds a run's disk use, bytes and files.

Mounting needs CAP_SYS_ADMIN (root on a machine, a privileged container, or `docker run
--cap-add SYS_ADMIN`); where it is missing the launcher's disk watchdog bounds the working
directory instead.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MS_NOSUID = 0x2
MS_NODEV = 0x4
MNT_DETACH = 0x2

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def mount_tmpfs(path: Path, size_bytes: int, files: int, owner: tuple[int, int] | None) -> None:
    """Mounts a fresh tmpfs of `size_bytes` and at most `files` inodes on `path`, mode 0700.
    No setuid bits or device nodes inside count for anything (nosuid, nodev)."""
    uid, gid = owner if owner is not None else (os.getuid(), os.getgid())
    # The kernel rounds size up to whole pages; nr_inodes counts the root folder too.
    options = f"size={size_bytes},nr_inodes={files + 1},mode=0700,uid={uid},gid={gid}"
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV,
                   options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting a tmpfs on {path}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    """Detaches the tmpfs on `path`; its files vanish with it. Nothing happens when none is
    mounted there (without CAP_SYS_ADMIN, umount2 would refuse even to say so)."""
    if not os.path.ismount(path):
        return
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"unmounting {path}: {os.strerror(err)}")


def probe_tmpfs(root: Path) -> str:
    """'' when a tmpfs can be mounted under `root`, else why not."""
    probe = root / ".probe-tmpfs"
    probe.mkdir(exist_ok=True)
    try:
        mount_tmpfs(probe, 1 << 20, 16, None)
        unmount(probe)
    except OSError as exc:
        return f"a tmpfs cannot be mounted ({exc.strerror})"
    finally:
        probe.rmdir()
    return ""
