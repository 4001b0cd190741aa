"""The seccomp filter every program runs under, compiled to BPF by libseccomp (via pyseccomp).

The filter is a deny-list on top of the rlimits, uid and Landlock layers: it closes what those
cannot (network families, kernel interfaces that bypass them, attacks on the service's own
processes when runs share its uid). It names the run's launcher, so each run has its own: built
once per set of other protected pids, with the launcher's pid written in per run (`filter_for`),
and loaded by the launcher just before `execve` (see launcher/confine.py).
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from collections.abc import Iterable

import pyseccomp as seccomp

# libseccomp adds the architecture check for us: a syscall made through another ABI (`int 0x80`
# i386, or x32 numbers) does not match the native x86_64 filter and kills the process. Without
# it a 64-bit program could call i386 `socketcall` and get an AF_INET socket past the socket rule.
BAD_ARCH_ACTION = seccomp.KILL_PROCESS
DENY = seccomp.ERRNO(errno.EPERM)

# Refused outright, each because it reaches past the other layers:
DENIED_SYSCALLS = (
    # reading or steering other processes' memory and registers
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # io_uring performs socket, open and other operations without passing through this filter
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # namespaces and mounts: a way around Landlock and the uid, and kernel attack surface
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    # kernel interfaces with a long record of exploits, of no use to a program being graded
    "keyctl", "add_key", "request_key", "bpf", "userfaultfd", "perf_event_open",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl", "acct",
    "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "iopl", "ioperm", "syslog", "vhangup",
)

# clone flags that create namespaces: refused like `unshare`.
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# Calls that act on another process when their pid argument is not 0 (0 means the caller).
# (name, index of the pid argument). A program may still apply them to itself.
SELF_ONLY = (
    ("prlimit64", 0), ("setpriority", 1), ("sched_setaffinity", 0), ("sched_setscheduler", 0),
    ("sched_setparam", 0), ("sched_setattr", 0), ("ioprio_set", 1), ("migrate_pages", 0),
    ("move_pages", 0),
)

# Calls whose first argument names a process to signal or grab; refused for protected pids.
SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")

LOW32 = 0xFFFFFFFF


def _pid_arg(index: int, pid: int) -> seccomp.Arg:
    # pid_t is 32 bits but arrives in a 64-bit register, sign- or zero-extended: compare the low
    # half only, so -1 matches however the caller's libc passed it.
    return seccomp.Arg(index, seccomp.MASKED_EQ, LOW32, pid & LOW32)


def build_filter(protected_pids: Iterable[int], last_pid: int | None = None) -> bytes:
    """The BPF program for one run. `protected_pids` (the service, the run's launcher, init) can
    be neither signalled nor opened as a pidfd, by pid or by process group; `last_pid` too,
    its rules added after all others (see `filter_for`)."""
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    rules.set_attr(seccomp.Attr.ACT_BADARCH, BAD_ARCH_ACTION)
    for name in DENIED_SYSCALLS:
        rules.add_rule(DENY, name)
    # clone3 passes its flags in memory, where seccomp cannot look: make it unavailable, and
    # libc falls back to clone, whose flags are checked below.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(DENY, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # No network at all: only local (AF_UNIX) sockets. Landlock does not govern connecting to a
    # socket file (a database's, a container runtime's), so nothing may connect anywhere, and
    # datagram sockets, which send to any socket file by address without connecting, are
    # refused. What remains is socketpair() streams and listeners: pipes within the run.
    for name in ("socket", "socketpair"):
        rules.add_rule(DENY, name, seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
        # The type argument carries SOCK_NONBLOCK/SOCK_CLOEXEC in its high bits.
        rules.add_rule(DENY, name, seccomp.Arg(1, seccomp.MASKED_EQ, 0xF, socket.SOCK_DGRAM))
    rules.add_rule(DENY, "connect")
    for name, index in SELF_ONLY:
        rules.add_rule(DENY, name, seccomp.Arg(index, seccomp.NE, 0))
    # kill(-1) reaches every process of the uid; as the service's own uid that is the service.
    rules.add_rule(DENY, "kill", _pid_arg(0, -1))
    pids = sorted(set(protected_pids) - {last_pid})
    for pid in [*pids, *([last_pid] if last_pid is not None else [])]:
        for name in SIGNALLING:
            rules.add_rule(DENY, name, _pid_arg(0, pid))
        # kill(-pgid) signals a whole process group.
        rules.add_rule(DENY, "kill", _pid_arg(0, -pid))
    return _export(rules)


# Stands for the launcher's pid in a filter built once (pids never reach 2**22).
SENTINEL_PID = 0x3A5C_E11D
INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


# A value to check a template with: next to the sentinel, it takes the same place among a
# syscall's comparisons (libseccomp orders them by value), so patched in, it must give exactly
# the filter built for it.
CHECK_PID = SENTINEL_PID + 1


@functools.lru_cache(maxsize=8)
def _template(fixed_pids: frozenset[int]) -> bytes | None:
    """The filter with SENTINEL_PID in the launcher's place, if writing a value into it gives
    exactly what libseccomp builds for that value; None otherwise (then every run builds its
    own). For a real pid the comparisons may come in another order than libseccomp's own
    (it sorts them by value): each is a separate test leading to the same denial, so the
    order changes nothing (tests/sandbox/test_syscall_filter.py evaluates both)."""
    template = build_filter(fixed_pids, SENTINEL_PID)
    if _patch(template, CHECK_PID) != build_filter(fixed_pids, CHECK_PID):
        return None
    return template


def _patch(template: bytes, pid: int) -> bytes:
    wanted = {SENTINEL_PID: pid & LOW32, -SENTINEL_PID & LOW32: -pid & LOW32}
    return b"".join(INSTRUCTION.pack(code, jt, jf, wanted.get(k, k))
                    for code, jt, jf, k in INSTRUCTION.iter_unpack(template))


def filter_for(fixed_pids: Iterable[int], launcher_pid: int) -> bytes:
    """The filter of one run: `build_filter(fixed_pids, launcher_pid)`, made by writing the
    launcher's pid into a filter built once for `fixed_pids` (building one costs ~0.6 ms of
    the service's event loop per run; this, a few microseconds)."""
    fixed = frozenset(fixed_pids)
    template = _template(fixed)
    if template is None or launcher_pid in fixed or launcher_pid in (
            SENTINEL_PID, -SENTINEL_PID & LOW32):
        return build_filter(fixed, launcher_pid)
    return _patch(template, launcher_pid)


def _export(rules: seccomp.SyscallFilter) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as sink:
            rules.export_bpf(sink)
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
