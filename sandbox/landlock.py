"""Landlock: which files a program may touch, which TCP ports it may use, whom it may signal.

The service probes the kernel's ABI once and turns a run's paths into rules with access masks
for that ABI (`Ruleset`); the launcher applies them in the child just before `execve`, with three
raw syscalls (see launcher/confine.py). Rules apply to resolved paths, so a symlink cannot lead
out.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from dataclasses import dataclass

SYS_LANDLOCK_CREATE_RULESET = 444  # x86_64; the launcher uses 445 (add_rule), 446 (restrict_self)
CREATE_RULESET_VERSION = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link and rename across folders
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

# What a run may read and execute unless told otherwise: the base system's programs and libraries.
SYSTEM_READ_PATHS = ("/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache")

# Rights that make sense on a file (the kernel refuses folder rights in a rule on a file).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ_RIGHTS = EXECUTE | READ_FILE | READ_DIR
DEVICE_RIGHTS = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV
# Device nodes every program may use: /dev/null to write into, the others to read from.
DEVICES = {"/dev/null": DEVICE_RIGHTS, "/dev/zero": READ_FILE, "/dev/urandom": READ_FILE,
           "/dev/random": READ_FILE, "/dev/full": DEVICE_RIGHTS}


def probe_abi() -> tuple[int, str]:
    """The kernel's Landlock ABI version (0 when unavailable) and why it is unavailable."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(CREATE_RULESET_VERSION))
    if version >= 1:
        return int(version), ""
    err = ctypes.get_errno()
    reasons = {38: "the kernel has no Landlock (ENOSYS)",
               95: "Landlock is disabled at boot (EOPNOTSUPP)",
               1: "a seccomp policy around the service refuses Landlock (EPERM)"}
    return 0, reasons.get(err, f"landlock_create_ruleset failed with errno {err}")


def handled_fs(abi: int) -> int:
    """Every filesystem right this ABI knows: all are refused unless a rule grants them."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Ruleset:
    """What one run may do, as masks for one ABI; `rules` pairs a path with its rights."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    rules: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, object]:
        return {"abi": self.abi, "handled_fs": self.handled_fs, "handled_net": self.handled_net,
                "scoped": self.scoped, "file_rights": FILE_RIGHTS,
                "rules": [list(rule) for rule in self.rules]}


def ruleset(abi: int, read_paths: Iterable[str], read_write_paths: Iterable[str]) -> Ruleset:
    """Read and execute `read_paths`; everything in `read_write_paths`; the usual devices.
    TCP bind and connect are refused with no exception (ABI 4), as are signals and abstract
    Unix sockets reaching outside the run (ABI 6)."""
    everything = handled_fs(abi)
    rules = [(path, READ_RIGHTS & everything) for path in read_paths]
    rules += [(path, rights & everything) for path, rights in DEVICES.items()]
    rules += [(path, everything) for path in read_write_paths]
    return Ruleset(
        abi=abi,
        handled_fs=everything,
        handled_net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0,
        rules=tuple(rules),
    )
