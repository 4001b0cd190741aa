"""The per-run launcher: confines one program between fork and execve, then supervises it.

`sandbox.process` starts it as ``python -I -S -B sandbox/launcher/__main__.py SITE_DIR [MODE …]``
with an empty environment. It is a process of its own because confinement (uid switch, rlimits,
no-new-privs) must run between fork and execve, which is unsafe inside the threaded asyncio
service (no `preexec_fn` there). It is single-threaded and stdlib-only apart from `prctl`, which
it imports from SITE_DIR. Its modules, one role each:

    protocol    the frames it speaks with the service (imported by the service too)
    confine     the steps between fork and execve, in order, each with the attack it stops
    supervise   one run: spec in, program forked and watched, everything killed, result out
    forkserver  the zygote mode: stays up and forks a ready launcher per run
    warm        the warm-interpreter mode: a zygote whose launchers run a script in process
    program     what such a launcher's program process does to become the script
    libc        ctypes and the C library, for the syscalls Python does not wrap
"""

from __future__ import annotations

import sys

# What a fresh interpreter holds when it starts a script, before the script imports anything.
# A warm interpreter (see warm.py) gives each program these modules (plus the ones it
# preloaded) and this path (with the program's folder for the launcher's in front).
_MODULES_AT_START = frozenset(sys.modules) - {"__future__"}  # imported by the line above
_PATH_AT_START = tuple(sys.path)

# The launcher's modules are the package sandbox.launcher, imported without sandbox's own
# __init__, which would load the whole service into every run's launcher: the parent package
# is given as a bare module that only says where its folder is. (A warm interpreter forgets
# both, with every other module the launcher imported.)
_sandbox = type(sys)("sandbox")
_sandbox.__path__ = [__file__.rpartition("/")[0].rpartition("/")[0]]
sys.modules["sandbox"] = _sandbox
del _sandbox

# Every run pays for this process's start, so its imports are the cheapest that do the job:
# _signal instead of signal (which pulls in enum), typing only for the type checker.
import _signal as signal
import os

from sandbox.launcher import forkserver, program, supervise, warm

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[2] in ("probe-uid", "kill-uid"):
        # `launcher SITE_DIR probe-uid|kill-uid UID`: check that uid switching works, or
        # kill(-1, SIGKILL) as UID: one call reaches every process of that uid and nothing else.
        uid = int(sys.argv[3])
        action = (lambda: None) if sys.argv[2] == "probe-uid" else (
            lambda: os.kill(-1, signal.SIGKILL))
        supervise.fork_as_uid(uid, uid, action)
        return
    sys.path.insert(0, sys.argv[1])
    import prctl  # from the service's site-packages, given on the command line

    if sys.argv[2:3] in (["zygote"], ["warm"]):
        # Before anything else (a warm interpreter's preloading takes a while): runs sharing
        # our uid must not trace or read a zygote.
        prctl.set_dumpable(False)

    if sys.argv[2:3] == ["zygote"]:
        forkserver.serve(prctl, int(sys.argv[3]))
        return
    if sys.argv[2:3] == ["warm"]:
        warm.serve(prctl, int(sys.argv[4]), [name for name in sys.argv[3].split(",") if name],
                   _MODULES_AT_START, _PATH_AT_START)
        return
    supervise.serve_one_run(prctl)


if __name__ == "__main__":
    # A warm interpreter's program process comes back here, confined, and runs the script at
    # this module's top level, as a fresh interpreter runs it at the top of the stack.
    _ready: dict[str, Any] | None = None
    try:
        main()
    except program.InProcess as confined:
        _ready = confined.spec
        del confined
    if _ready is not None:
        # Outside the except block: the program must not start with an exception "being
        # handled" (sys.exc_info, and the context of everything it raises).
        _command = program.is_command(_ready)
        _runner, _path, _namespace = program.become_program(_ready, globals())
        del _ready
        # `-c CODE`: _path is the code, run as `python -c` runs it (257: Py_file_input).
        _script = os.fsencode(_path) if _command else program.open_script(_path)
        _status = 2
        _failure: BaseException | None = None
        if _script is not None:
            try:
                if _command:
                    _runner(_script, 257, _namespace, _namespace, None)
                else:
                    _runner(_script, os.fsencode(_path), 257, _namespace, _namespace, 1, None)
                _status = 0
            except SystemExit as _exit:
                _status = program.exit_status(_exit)
                del _exit
            except BaseException as _error:  # noqa: BLE001 - as the interpreter: report, exit
                _failure = _error
                del _error
        if _failure is not None:
            # Outside the except block, as the interpreter has taken the exception out of the
            # way when its hook runs: what the hook raises has no context.
            _status = program.uncaught(_failure)
            _failure = None
        # Nothing here may keep the program's __main__ alive past its end (see program.finish).
        del _runner, _namespace, _script, _path
        program.finish(_status)
