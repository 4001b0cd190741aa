"""The warm program: what a warm interpreter's confined fork does to run a script itself.

Instead of execve, the fork becomes what ``python OPTIONS SCRIPT ARGS...`` is at the script's
first line (`become_program`), the launcher script runs the script at its top level with the
interpreter's own runner, and the end is the interpreter's (`uncaught`, `exit_status`,
`finish`). Only the program's process runs this, once confinement is complete; `warm` sets up
the state it needs.
"""

from __future__ import annotations

import _signal as signal
import os
import sys

from . import libc as clib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# A warm interpreter's fork runs a program only under a memory limit with this much room beyond
# what the fork already holds; under a smaller one the program gets a fresh interpreter.
WARM_HEADROOM_BYTES = 32 << 20

# Set in a warm interpreter (`warm_up`): what programs start with (the sys.path and modules,
# the modules of a fresh interpreter, the preloaded ones) and primitives bound before any run.
_WARM: dict[str, Any] | None = None
# In a program's process: the modules it was given (the rest are its own).
_KEEP_MODULES: frozenset[str] = frozenset()
# In a program's process: the globals of the launcher's modules, whose frames are not the
# program's.
_OWN_GLOBALS: tuple[dict[str, Any], ...] = ()


class InProcess(BaseException):
    """Raised in a warm interpreter's program process once it is confined: unwinds every
    launcher frame, so the program runs from the launcher script's top level."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec


def warm_up(state: dict[str, Any]) -> None:
    """Makes this interpreter a warm one: its forks may run programs in process."""
    global _WARM
    _WARM = state


def is_warm() -> bool:
    return _WARM is not None


def fits(memory_bytes: int, argv: list[str], index: int, address_space: bool = True) -> bool:
    """Whether a fork of this warm interpreter runs the script at `argv[index]` (or the code
    after `-c` there) itself under `memory_bytes`. The fork's address space is the warm
    interpreter's, which counts against RLIMIT_AS; without that limit only its private pages
    count (its cgroup is not charged for pages it shares with the warm interpreter), and a
    fresh fork has next to none."""
    if address_space and memory_bytes < _address_space_bytes() + WARM_HEADROOM_BYTES:
        return False
    if not address_space and memory_bytes < WARM_HEADROOM_BYTES:
        return False
    return argv[index] == "-c" or _plain_script(argv[index])


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def become_program(spec: dict[str, Any], launcher_globals: dict[str, Any]
                   ) -> tuple[Any, str, dict[str, Any]]:
    """In a warm interpreter's confined program process: makes this interpreter what
    ``python OPTIONS SCRIPT ARGS...`` (or ``python OPTIONS -c CODE ARGS...``) would be when it
    starts the script. Returns the script's runner (the interpreter's own, as the command line
    uses), its path (or the code) and __main__'s dict.
    `launcher_globals`: the launcher script's, whose frames tracebacks leave out."""
    assert _WARM is not None
    import builtins

    global _OWN_GLOBALS
    _OWN_GLOBALS = (globals(), launcher_globals)

    argv = spec["argv"]
    index = spec["in_process"]
    command = argv[index] == "-c"
    # The launcher sees the program "start" (as at execve, the descriptor closes).
    os.close(3)
    # What a fresh interpreter installs: it ignores SIGPIPE and SIGXFSZ (so writes fail with
    # an error instead), and blocks nothing.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for name in list(os.environ):
        del os.environ[name]
    os.environ.update(spec["env"])
    script = argv[index]
    # As the interpreter computes them: __file__ is the path joined to the working directory,
    # unnormalised; sys.path[0] is the folder of the script with symlinks resolved. For -c
    # there is no file: sys.argv[0] is "-c" and sys.path[0] "", the working directory.
    path = script if script.startswith("/") else os.path.join(os.getcwd(), script)
    folder = os.getcwd() if command else os.path.dirname(os.path.realpath(path))
    sys.argv = ["-c", *argv[index + 2:]] if command else list(argv[index:])
    sys.orig_argv = list(argv)
    sys.path[:] = ["" if command else folder, *_WARM["path"]]
    global _KEEP_MODULES
    keep = _WARM["modules"]
    preloaded = _WARM["preloaded"]
    if preloaded and _shadowed(folder, preloaded):
        # A file of the program's named like a preloaded module is what a fresh interpreter
        # would import: give it back the modules it starts with, and nothing preloaded.
        keep = _WARM["at_start"]
    _KEEP_MODULES = keep
    keep_only_modules(keep)
    # The random module reseeds itself in every fork (os.register_at_fork), so no two runs
    # share the warm interpreter's random state (tests/sandbox/test_warm.py checks it).
    main = type(sys)("__main__")
    namespace = main.__dict__
    namespace["__annotations__"] = {}
    namespace["__builtins__"] = builtins
    if command:
        main.__loader__ = sys.modules["_frozen_importlib"].BuiltinImporter
    else:
        namespace["__file__"] = path
        namespace["__cached__"] = None
        main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader(
            "__main__", path)
    sys.modules["__main__"] = main
    _set_thread_stack_size(int(spec["limits"]["stack_bytes"]))
    if command:
        return _WARM["run_string"], argv[index + 1], namespace
    return _WARM["runner"], path, namespace


def is_command(spec: dict[str, Any]) -> bool:
    """Whether the in-process program is `-c CODE` rather than a script."""
    return bool(spec["argv"][spec["in_process"]] == "-c")


def _set_thread_stack_size(stack_bytes: int) -> None:
    """The C library sizes new threads' stacks from RLIMIT_STACK as it was when the process
    started, which for a fork is the warm interpreter's: set it from the run's, as the C
    library computes it (at least PTHREAD_STACK_MIN, rounded up to a page)."""
    assert _WARM is not None
    ctypes, libc = _WARM["ctypes"], clib.load()
    page = os.sysconf("SC_PAGE_SIZE")
    size = -(-max(stack_bytes, os.sysconf("SC_THREAD_STACK_MIN")) // page) * page
    attr = ctypes.create_string_buffer(64)  # pthread_attr_t: 56 bytes on x86_64
    if libc.pthread_attr_init(attr) == 0:
        if libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(size)) == 0:
            libc.pthread_setattr_default_np(attr)
        libc.pthread_attr_destroy(attr)


def keep_only_modules(names: frozenset[str]) -> None:
    """Forgets every imported module not in `names` (whoever holds one keeps it)."""
    for name in list(sys.modules):
        if name not in names:
            del sys.modules[name]


def _plain_script(script: str) -> bool:
    """Whether the interpreter would parse `script` as source: a regular file that is not a
    zip archive (``python app.pyz`` runs the archive's __main__.py), nor a folder. Otherwise
    the program gets a fresh interpreter, which does what it does with it."""
    assert _WARM is not None
    import stat

    try:
        if not stat.S_ISREG(os.stat(script).st_mode):
            return False
        _WARM["zipimporter"](script)
    except _WARM["zip_error"]:
        return True
    except OSError:
        return False  # cannot even be opened: the interpreter says so in its words
    return False


def _shadowed(folder: str, names: frozenset[str]) -> bool:
    try:
        entries = os.listdir(folder)
    except OSError:
        return True
    return any(entry.partition(".")[0] in names for entry in entries)


def open_script(path: str) -> Any:
    """The script as a C FILE*, which the interpreter's runner reads (the same parser, hence
    the same errors, as a script named on the command line); None, said as the interpreter
    says it, when it cannot be opened."""
    assert _WARM is not None
    handle = _WARM["fopen"](os.fsencode(path), b"rb")
    if not handle:
        err = _WARM["ctypes"].get_errno()
        sys.stderr.write(f"{sys.orig_argv[0]}: can't open file {path!r}: "
                         f"[Errno {err}] {os.strerror(err)}\n")
        return None
    return handle


def uncaught(error: BaseException) -> int:
    """What the interpreter does with an exception that ends a script (PyErr_Print): the hook
    prints it (without the launcher's frames); the status is 1, or death by SIGINT for ^C."""
    traceback = _own_frames_dropped(error)
    sys.last_type, sys.last_value, sys.last_traceback = type(error), error, traceback
    missing = object()
    hook = getattr(sys, "excepthook", missing)
    if hook is missing:
        _write_stderr("sys.excepthook is missing\n")
        sys.__excepthook__(type(error), error, traceback)
    else:
        try:
            hook(type(error), error, traceback)  # type: ignore[operator]
        except SystemExit as exit:
            return exit_status(exit)
        except BaseException as hook_error:  # noqa: BLE001 - reported as the interpreter does
            _write_stderr("Error in sys.excepthook:\n")
            sys.__excepthook__(type(hook_error), hook_error, _own_frames_dropped(hook_error))
            _write_stderr("\nOriginal exception was:\n")
            sys.__excepthook__(type(error), error, traceback)
    return -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1


def _own_frames_dropped(error: BaseException) -> Any:
    """The exception's traceback without the launcher's frames, set on it too (the default
    hook prints the exception's own traceback)."""
    traceback = error.__traceback__
    while traceback is not None and any(traceback.tb_frame.f_globals is own
                                        for own in _OWN_GLOBALS):
        traceback = traceback.tb_next
    error.with_traceback(traceback)
    return traceback


def _write_stderr(text: str) -> None:
    """As PySys_WriteStderr: to sys.stderr, or to descriptor 2 when the program has none."""
    stream = getattr(sys, "stderr", None)
    if stream is not None:
        try:
            stream.write(text)
            return
        except Exception:  # noqa: BLE001 - the interpreter gives up silently too
            return
    assert _WARM is not None
    _WARM["write"](2, text.encode(errors="backslashreplace"))


def exit_status(exit: SystemExit) -> int:
    """The status of a script ended by SystemExit, as the interpreter computes it."""
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        # The interpreter takes a C long; the kernel keeps its low byte.
        return code & 0xFF if -(1 << 63) <= code < (1 << 63) else 0xFF
    try:
        _write_stderr(f"{code}\n")
    except Exception:  # noqa: BLE001, S110 - a str() that raises: the status is still 1
        pass
    return 1


def finish(status: int) -> None:
    """Ends a program run in process as the interpreter ends a script (Py_FinalizeEx), in what
    a program can see of it: non-daemon threads are joined, atexit functions run, the standard
    streams are flushed (status 120 if that fails), and the program's own modules (its
    __main__ first of all) are dropped and collected, so finalizers run with their globals
    intact, then cleared. The interpreter's own modules are left as they are: tearing them down
    in a fork costs ~13 ms (it touches every page of the warm interpreter) and shows nothing.
    Only primitives bound in the warm interpreter are used: the program's modules may have
    been changed."""
    assert _WARM is not None
    warm = _WARM
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as exc:  # noqa: BLE001 - e.g. ^C while joining: reported, ignored
            _unraisable(exc, threading)
    warm["run_exitfuncs"]()
    if not _flush_std_files():
        status = status if status < 0 else 120
    if warm["threads"]() == 0:
        # With daemon threads still running the interpreter would stop them first; it cannot
        # be done from here, so their world is left as it is.
        _drop_program_modules()
    # As the interpreter, once modules are gone: the original streams are flushed again.
    for name in ("stdin", "stdout", "stderr"):
        setattr(sys, name, getattr(sys, f"__{name}__", None))
    if not _flush_std_files():
        status = status if status < 0 else 120
    if status < 0:
        warm["set_signal"](-status, signal.SIG_DFL)
        warm["kill"](warm["getpid"](), -status)
        status = 128 - status
    warm["exit"](status)


def _drop_program_modules() -> None:
    """As finalize_modules, for the program's modules: out of sys.modules, a collection (their
    objects' finalizers run with module globals intact), then whatever module is still alive is
    cleared, and collected again."""
    assert _WARM is not None
    weakref, collect = _WARM["weakref"], _WARM["collect"]
    alive = []
    for name in reversed(list(sys.modules)):
        if name == "__main__" or name not in _KEEP_MODULES:
            module = sys.modules.pop(name, None)
            try:
                alive.append(weakref(module))
            except TypeError:
                continue
    module = None
    collect()
    for ref in alive:
        module = ref()
        if module is not None:
            _clear_module(module)
    module = None
    collect()


def _flush_std_files() -> bool:
    """As the interpreter at exit: flushes sys.stdout and sys.stderr unless missing or closed;
    a stdout failure is reported as unraisable, a stderr one silently; False if either failed."""
    flushed = True
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is None:
            continue
        try:
            if getattr(stream, "closed", False):
                continue
        except Exception:  # noqa: BLE001, S110 - an unreadable `closed` counts as open
            pass
        try:
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - reported like the interpreter
            flushed = False
            if name == "stdout":
                _unraisable(exc, stream)
    return flushed


def _unraisable(error: BaseException, where: object) -> None:
    """As PyErr_WriteUnraisable: the program's sys.unraisablehook if it set one, else the
    default's text on sys.stderr (nothing without one)."""
    traceback = _own_frames_dropped(error)
    hook = getattr(sys, "unraisablehook", None)
    if hook is not None and hook is not sys.__unraisablehook__:
        details = type("UnraisableHookArgs", (), {
            "exc_type": type(error), "exc_value": error, "exc_traceback": traceback,
            "err_msg": None, "object": where})()
        try:
            hook(details)
        except Exception:  # noqa: BLE001, S110 - the interpreter ignores a failing hook too
            pass
        return
    stream = getattr(sys, "stderr", None)
    if stream is None:
        return
    try:
        # The default hook's own format: the type (qualified outside builtins) and ": " and
        # the message, even an empty one.
        text = f"Exception ignored in: {where!r}\n"
        if traceback is not None:
            import traceback as tracebacks

            text += "Traceback (most recent call last):\n" + "".join(
                tracebacks.format_tb(traceback))
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else (
            f"{kind.__module__}.{kind.__qualname__}")
        try:
            message = str(error)
        except Exception:  # noqa: BLE001 - as the default hook says it
            message = "<exception str() failed>"
        stream.write(f"{text}{name}: {message}\n")
        stream.flush()
    except Exception:  # noqa: BLE001, S110 - nowhere left to say it
        pass


def _clear_module(module: Any) -> None:
    """As the interpreter clears a module at exit: names with one leading underscore first,
    then every other name but __builtins__, each set to None."""
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return
    for single in (True, False):
        for key in list(namespace):
            if not isinstance(key, str) or namespace.get(key) is None:
                continue
            if single == (key.startswith("_") and not key.startswith("__")) and (
                    single or key != "__builtins__"):
                namespace[key] = None
