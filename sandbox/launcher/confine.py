"""Confinement: what a run's process goes through between fork and execve, step by step.

`confine_and_exec` is the whole list, in the order that matters (the cgroup is joined and the
namespaces made while still privileged, the uid switch clears what is set after it, Landlock
needs descriptors the rlimits may forbid, seccomp comes last so nothing above needs a refused
syscall). Each step is one function; its line in the list says which attack it stops.

Each optional layer (sandbox/layers/, one module each on the service side) is one step here,
done where the layer's part of the spec is set and nothing otherwise:

    step                spec key    service side
    _join_cgroup        cgroup      sandbox/layers/cgroups.py (else the memory watchdog,
                                    supervise.py)
    _enter_mntns        binds       sandbox/layers/mntns.py
    _enter_netns        netns       sandbox/layers/netns.py
    _switch_uid         uid, gid    sandbox/layers/per_run_uid.py (the uid: sandbox/identity.py)
    _apply_landlock     landlock    sandbox/layers/landlock.py
    _load_seccomp       seccomp     sandbox/layers/seccomp.py

The tmpfs layer has no step: the service mounts it around the jail (sandbox/layers/tmpfs.py),
and supervise.py measures the disk where it is off.
"""

from __future__ import annotations

import _signal as signal
import math
import os
import resource
import struct

from . import libc as clib
from . import program

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# x86_64 syscall numbers (the seccomp filter refuses every other ABI).
SYS_SECCOMP = 317
SYS_UNSHARE = 272
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
SECCOMP_SET_MODE_FILTER = 1
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_RULE_PATH_BENEATH = 1
# The OOM killer's choice: every run process and launcher goes before anything else.
OOM_SCORE_ADJ_RUN = "1000"


def confine_and_exec(spec: dict[str, Any], prctl: Any, libc: Any, launcher_pid: int,
                     stdin_r: int, out_w: int, err_w: int, errpipe_w: int) -> None:
    """In the forked child: apply every confinement, then execve. Never returns, but in a warm
    interpreter's fork, where it raises `program.InProcess` to run the program in process."""
    try:
        # Signalling the service's process group; a controlling terminal.
        _new_session()
        # Reaching the control pipe or anything else the launcher holds.
        _keep_only_descriptors(stdin_r, out_w, err_w, errpipe_w)
        # Ignored signals surviving execve: `yes | head` never ending, oversized writes failing.
        _default_signals()
        # Other runs reading the files the program creates.
        _enter_workdir(spec["cwd"])
        # Memory and processes charged to no bound (before the uid switch: it needs root).
        _join_cgroup(spec.get("cgroup"))
        # Reaching a session's files anywhere but at their fixed path; mounts leaking to the host.
        _enter_mntns(libc, spec.get("binds"))
        # Any network at all, even through a socket seccomp let pass (needs CAP_SYS_ADMIN).
        _enter_netns(libc, spec.get("netns"))
        # Signalling, tracing or reading /proc of the service or other runs; unbounded forks.
        _switch_uid(spec.get("uid"), spec.get("gid"))
        # A program outliving its killed launcher (after the uid switch, which clears it).
        _die_with_launcher(prctl, launcher_pid)
        # The OOM killer taking the service instead of the run (after the uid switch).
        _oom_first(prctl)
        # Setuid binaries and file capabilities raising privileges again.
        prctl.set_no_new_privs(True)
        # (Not a confinement: whether a warm interpreter's fork may run the program itself,
        # read now, while /proc is in reach.)
        in_process = _runs_in_process(spec)
        # Reading, writing or executing outside the ruled paths; TCP; signals out of the run.
        _apply_landlock(libc, spec.get("landlock"))
        # Memory, stack, CPU, fork, descriptor, file-size and core-dump bombs.
        _lower_rlimits(spec)
        # Syscalls aimed at the service, the launcher or the kernel's attack surface.
        _load_seccomp(libc, spec.get("seccomp"))
        if not in_process:
            argv = spec["argv"]
            os.execve(argv[0], argv, spec["env"])
    except BaseException as exc:  # noqa: BLE001 - anything must reach the launcher, then exit
        try:
            os.write(3, f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        finally:
            os._exit(127)
    # Confined; the program runs in this process, from the launcher script's top level, once
    # every launcher frame above us is gone.
    raise program.InProcess(spec)


def _new_session() -> None:
    # Own session and process group: the program cannot signal the service's group and has no
    # controlling terminal; its group id is its pid, so the launcher can killpg it.
    os.setsid()


def _keep_only_descriptors(stdin_r: int, out_w: int, err_w: int, errpipe_w: int) -> None:
    os.dup2(stdin_r, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(errpipe_w, 3)
    os.set_inheritable(3, False)
    # Close every other inherited descriptor: the program must not reach the control pipe or
    # anything else the launcher holds.
    os.closerange(4, 1 << 20)


def _default_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: give the program
    # the default actions, so `yes | head` ends and an oversized file write kills a C program.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)


def _enter_workdir(cwd: str) -> None:
    os.chdir(cwd)
    # Files the program creates are private to its uid.
    os.umask(0o077)


def _join_cgroup(cgroup: dict[str, Any] | None) -> None:
    # The cgroups layer (sandbox/layers/cgroups.py).
    if cgroup:
        # Into the run's cgroup (as root, before the uid switch), by the program itself: all
        # it and its descendants touch from now on is charged to the run's memory and pids
        # bound, and nothing the launcher or a warm interpreter already holds is.
        for procs in cgroup["join"]:
            write_text(procs, "0")


def _enter_mntns(libc: Any, binds: list[list[str]] | None) -> None:
    # The mntns layer (sandbox/layers/mntns.py).
    if binds:
        # A mount namespace of its own, private so nothing propagates back to the host,
        # where folders of the run appear at fixed paths (a session's files at /mnt/data).
        clib.syscall(libc, "unshare(CLONE_NEWNS)", SYS_UNSHARE, clib.c_int(CLONE_NEWNS))
        _mount(libc, None, "/", MS_REC | MS_PRIVATE)
        for source, target in binds:
            _mount(libc, source, target, MS_BIND)


def _enter_netns(libc: Any, netns: bool | None) -> None:
    # The netns layer (sandbox/layers/netns.py).
    if netns:
        # A network namespace of its own, with only a loopback that is down: no route
        # anywhere even if a socket got past seccomp. Needs CAP_SYS_ADMIN, so before setuid.
        clib.syscall(libc, "unshare(CLONE_NEWNET)", SYS_UNSHARE, clib.c_int(CLONE_NEWNET))


def _switch_uid(uid: int | None, gid: int | None) -> None:
    # The per_run_uid layer (sandbox/layers/per_run_uid.py, sandbox/identity.py).
    if uid is not None and gid is not None:
        # A per-run uid: the program cannot signal, ptrace or read /proc of the service or of
        # other runs, and RLIMIT_NPROC (not enforced for root) bounds its processes. Groups
        # are emptied first, or it would keep root's supplementary groups.
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)


def _die_with_launcher(prctl: Any, launcher_pid: int) -> None:
    # Dies with the launcher, so a killed launcher cannot leave its program running. Set after
    # the uid switch, which clears it.
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != launcher_pid:
        os._exit(137)


def _oom_first(prctl: Any) -> None:
    # Dumpable, as execve would make it anyway (and a warm interpreter's fork, which does not
    # execve, must be): its own /proc files are then its uid's, not root's, so it can raise
    # its OOM score below even without privilege. Set after the uid switch, which clears it.
    # Nothing it holds is another run's; no other uid may trace it either way.
    prctl.set_dumpable(True)
    # The OOM killer takes the run first, never the service: raising one's score needs no
    # privilege.
    write_text("/proc/self/oom_score_adj", OOM_SCORE_ADJ_RUN)


def _runs_in_process(spec: dict[str, Any]) -> bool:
    if spec.get("in_process") is None:
        return False
    if not program.is_warm():
        raise OSError("an in-process run needs a warm interpreter")
    # A fork of the warm interpreter already holds more address space than a fresh one
    # (its preloaded modules). Under a memory limit too close to that, the program gets
    # a fresh interpreter after all: what one does under so small a limit is for it to
    # show. (Read now: /proc is out of reach once Landlock is on.)
    return program.fits(int(spec["limits"]["memory_bytes"]), spec["argv"], spec["in_process"],
                        bool(spec.get("address_space", True)))


def _apply_landlock(libc: Any, ruleset: dict[str, Any] | None) -> None:
    """The landlock layer (sandbox/layers/landlock.py): from here on this process and its
    descendants may use only the ruled paths (and no TCP, and may not signal outside the run,
    as the masks say). See sandbox.landlock. Before the rlimits: it needs a few descriptors, and
    RLIMIT_NOFILE may be tiny."""
    if not ruleset:
        return
    ctypes = clib.ctypes()
    abi = ruleset["abi"]
    # struct landlock_ruleset_attr grew with the ABI: give the kernel the size it knows.
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = ctypes.create_string_buffer(
        struct.pack("=QQQ", ruleset["handled_fs"], ruleset["handled_net"], ruleset["scoped"])[:size],
        size)
    ruleset_fd = clib.syscall(libc, "landlock_create_ruleset", LANDLOCK_CREATE_RULESET, attr,
                              ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for path, rights in ruleset["rules"]:
            try:
                path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # runtimes list folders that only some images have (/lib64, /usr/local)
            try:
                if not os.path.isdir(path):
                    rights &= ruleset["file_rights"]
                # struct landlock_path_beneath_attr is packed: u64 rights, s32 fd.
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, path_fd), 12)
                clib.syscall(libc, f"landlock_add_rule({path})", LANDLOCK_ADD_RULE, ruleset_fd,
                             ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0))
            finally:
                os.close(path_fd)
        clib.syscall(libc, "landlock_restrict_self", LANDLOCK_RESTRICT_SELF, ruleset_fd,
                     ctypes.c_uint32(0))
    finally:
        os.close(ruleset_fd)


def _lower_rlimits(spec: dict[str, Any]) -> None:
    limits = spec["limits"]
    cpu_s = cpu_rlimit_s(limits)
    # soft = hard everywhere, or the program raises its soft limit back.
    for resource_id, value in (
        # Each process's own CPU seconds, a backstop: the launcher bounds the whole run's
        # total precisely and, polling every 50 ms, normally stops it first.
        (resource.RLIMIT_CPU, cpu_s),
        # Address space: stops malloc, mmap (private and shared) and stack growth bombs in
        # one process. A per-process backstop to the run's memory bound, which a runtime
        # whose VM reserves far more than it uses (JVM, V8) turns off.
        (resource.RLIMIT_AS, int(limits["memory_bytes"]) if spec.get("address_space", True)
         else resource.RLIM_INFINITY),
        # Stack overflow becomes a SIGSEGV inside the limit, not a machine-wide memory grab.
        (resource.RLIMIT_STACK, int(limits["stack_bytes"])),
        # Fork and thread bombs: counted per uid, so meaningful with a per-run uid.
        (resource.RLIMIT_NPROC, int(limits["max_processes"])),
        # Descriptor exhaustion stays inside the run.
        (resource.RLIMIT_NOFILE, int(limits["max_open_files"])),
        # One huge file cannot fill the disk (per file; total size is not bounded here).
        (resource.RLIMIT_FSIZE, int(limits["max_file_bytes"])),
        # No core files: a crashing 50 MB program would otherwise leave a 50 MB core behind.
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(resource_id, (value, value))


def _load_seccomp(libc: Any, bpf: bytes | None) -> None:
    """The seccomp layer (sandbox/layers/seccomp.py): installs the run's filter (compiled by
    sandbox.syscall_filter); inherited by every descendant and impossible to remove. Last, so
    nothing above needs a syscall it refuses."""
    if not bpf:
        return
    ctypes = clib.ctypes()
    code = ctypes.create_string_buffer(bpf, len(bpf))
    # struct sock_fprog: unsigned short len (in 8-byte instructions), padding, the pointer.
    fprog = ctypes.create_string_buffer(
        struct.pack("=H6xQ", len(bpf) // 8, ctypes.addressof(code)), 16)
    clib.syscall(libc, "seccomp", SYS_SECCOMP, ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                 ctypes.c_uint(0), fprog)


def _mount(libc: Any, source: str | None, target: str, flags: int) -> None:
    ctypes = clib.ctypes()
    if libc.mount(source.encode() if source else None, target.encode(), None,
                  ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def cpu_rlimit_s(limits: dict[str, Any]) -> int:
    """RLIMIT_CPU for a run: its CPU limit rounded up, and a second more."""
    return math.ceil(float(limits["cpu_time_s"])) + 1


def write_text(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
