"""The warm interpreter: a fork server whose launchers run a Python script in process."""

from __future__ import annotations

import _signal as signal
import sys

from . import forkserver, program
from . import libc as clib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def serve(prctl: Any, channel_fd: int, preload: list[str], modules_at_start: frozenset[str],
          path_at_start: tuple[str, ...]) -> None:
    """`launcher SITE_DIR warm MODULES FD`, started by the program's interpreter with the
    program's options and environment: a zygote whose launchers run a Python script in their
    program's process, forked from this interpreter with MODULES already imported, instead of
    starting an interpreter for it. It never sees any run's data: each run is a fork of the
    state it had before the first. `modules_at_start`, `path_at_start`: what this interpreter
    held when it started the launcher script, before the script imported anything."""
    # Imported now, so that no run pays for it: it confines programs and runs their script.
    ctypes = clib.ctypes()

    # The launcher's folder (a script's sys.path[0]) and prctl's are the launcher's alone; its
    # imports are forgotten (it keeps its references), so programs see only what they would.
    sys.path[:] = path_at_start[1:]
    program.keep_only_modules(modules_at_start)
    for name in preload:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - a module this interpreter lacks is no reason to fail
            print(f"launcher: not preloading {name}: {exc}", file=sys.stderr)
    # The interpreter's script runner (what `python SCRIPT` calls) and C's fopen to feed it.
    runner = ctypes.pythonapi.PyRun_FileExFlags
    runner.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.py_object,
                       ctypes.py_object, ctypes.c_int, ctypes.c_void_p]
    runner.restype = ctypes.py_object
    # What `python -c` calls: the code as a module's, named "<string>" in tracebacks.
    run_string = ctypes.pythonapi.PyRun_StringFlags
    run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object,
                           ctypes.c_void_p]
    run_string.restype = ctypes.py_object
    fopen = clib.load().fopen
    fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fopen.restype = ctypes.c_void_p
    state: dict[str, Any] = {"path": tuple(sys.path), "modules": frozenset(sys.modules),
                             "ctypes": ctypes, "runner": runner, "run_string": run_string,
                             "fopen": fopen}
    # What the end of a run calls, bound now: a program may replace os._exit and the like in
    # its modules, which must not change how it ends (the interpreter calls C for these).
    import _thread
    import _weakref
    import atexit
    import gc
    import posix
    import zipimport

    state.update(exit=posix._exit, kill=posix.kill, getpid=posix.getpid, write=posix.write,
                 set_signal=signal.signal, run_exitfuncs=atexit._run_exitfuncs,
                 collect=gc.collect, threads=_thread._count, weakref=_weakref.ref,
                 zipimporter=zipimport.zipimporter, zip_error=zipimport.ZipImportError)
    # Everything the interpreter holds so far is moved out of the collector's sight: a run's
    # collections then touch (and copy) only the program's own objects, not every page.
    gc.collect()
    gc.freeze()
    # The modules whose names, used by the program's own files, a fresh interpreter would
    # import from those files instead (sys.path[0] comes first).
    state["preloaded"] = frozenset(name.partition(".")[0] for name in state["modules"]) - (
        frozenset(name.partition(".")[0] for name in modules_at_start))
    state["at_start"] = modules_at_start
    program.warm_up(state)
    forkserver.serve(prctl, channel_fd)
