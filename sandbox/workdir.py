"""Private working directories: one per jail, unguessable, removed whatever happened."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from .mounts import unmount

PREFIX = "run-"
# The warm interpreters' own folder in the work root, for the caches and settings what they
# preload writes at import (matplotlib's font list): without one, such a module falls back to
# a folder of its own in /tmp, left there whenever the interpreter is killed.
WARM_CACHES = "warm-caches"


def private_folder(folder: Path) -> Path:
    """`folder`, made if missing, the service's alone (0700): refused (OSError) when it is a
    link or another user's, which whoever could write its parent may have planted."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(f"{folder} must be a folder of the service's own user")
    os.chmod(folder, 0o700)
    return folder


def warm_caches(root: Path) -> Path:
    """The warm interpreters' folder in the work root."""
    return private_folder(root / WARM_CACHES)


def prepare_root(root: Path) -> None:
    """Creates the folder that holds every working directory, and removes what a previous
    service on it left behind (it died mid-run): its tmpfs mounts first, then the folders.

    Mode 0711: a run's uid may enter its own directory but cannot list its neighbours' names.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)
    for leftover in root.glob(PREFIX + "*"):
        unmount(leftover)
        remove_workdir(leftover)


def remove_owned(uid: int, folders: Iterable[str]) -> None:
    """Removes every entry directly in `folders` (/tmp, /dev/shm) owned by `uid`: what a run
    under that uid left where Landlock could not keep it out. Never follows links."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    remove_workdir(Path(entry.path))
                else:
                    os.unlink(entry.path)
            except OSError:
                continue


def create_workdir(root: Path, owner: tuple[int, int] | None) -> Path:
    """A fresh directory under `root`, mode 0700, owned by `owner` (uid, gid) when given."""
    path = root / (PREFIX + secrets.token_hex(16))
    os.mkdir(path, 0o700)
    if owner is not None:
        os.chown(path, *owner)
    return path


def _make_writable(function: object, path: str, _exc: object) -> None:
    # A program may leave a directory without write or search permission for its owner, which
    # stops the removal when the service is not root. Open it without following links (the run is
    # over, but a planted symlink must never redirect a chmod), grant access, then retry.
    parent = os.path.dirname(path)
    for target in (parent, path):
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            os.fchmod(fd, stat.S_IRWXU)
        finally:
            os.close(fd)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_workdir(path: Path) -> None:
    """Removes `path` and everything in it; never follows symlinks the program planted."""
    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable)
    else:
        shutil.rmtree(path, onerror=_make_writable)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
