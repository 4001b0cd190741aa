"""The fork server (zygote): a launcher that stays up and forks a ready launcher per run."""

from __future__ import annotations

import _signal as signal
import os
import struct

from . import libc as clib
from .program import InProcess
from .supervise import serve_one_run

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def serve(prctl: Any, channel_fd: int) -> None:
    """`launcher SITE_DIR zygote FD`: stays up and forks a ready launcher per run, which saves
    each run this interpreter's start. The service sends, over the socket on FD, one byte with
    the three pipe ends the launcher is to use as stdin, stdout and stderr; the zygote answers
    with the forked launcher's pid. It holds nothing but this code: no service state, no
    environment."""
    import socket

    # Every run that is confined by Landlock or seccomp needs ctypes and the C library: loaded
    # once, here.
    clib.load()
    channel = socket.socket(fileno=channel_fd)
    prctl.set_dumpable(False)
    # If the service dies, so do we, and through their pdeathsig the launchers and programs.
    prctl.set_pdeathsig(signal.SIGKILL)
    # Launchers are reaped by the kernel; each resets this right after the fork, since it
    # waits for its own children.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 16, 3)
        except InterruptedError:
            continue
        if not message or len(fds) != 3:
            return  # the service closed its end: it is going away
        try:
            pid = os.fork()
        except OSError:
            pid = -1  # answered as 0: the service starts a launcher itself for this run
        if pid == 0:
            status = 0
            try:
                channel.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                for fd in fds:
                    if fd > 2:
                        os.close(fd)
                serve_one_run(prctl)
            except InProcess:
                raise  # the program's process of a warm interpreter: it goes on to run it
            except BaseException:  # noqa: BLE001 - say why on stderr, as a started launcher does
                import traceback

                traceback.print_exc()
                status = 1
            os._exit(status)
        for fd in fds:
            os.close(fd)
        channel.sendall(struct.pack(">I", max(pid, 0)))
