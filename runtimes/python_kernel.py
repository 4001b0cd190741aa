"""The Python session kernel: IPython's InteractiveShell, inside the sandbox for as long as a
session lives, running one cell (or one shell command) per request and keeping its state.

Started as `python -c <this file's text>` (the service's code is not readable from a run). Each
request is one JSON line on stdin: {"code": "..."} for a cell, {"shell": "..."} for a shell
command. Everything the kernel sends goes to the service as frames on the original stdout: a
tag byte (`o` stdout, `e` stderr, `r` the reply), a 4-byte big-endian length, the payload.
What the cell, its threads and the processes it starts write to fds 1 and 2 lands in pipes the
kernel reads and frames as `o` and `e`; the reply (JSON: ok, result, images, fatal, exit_code)
is written only once both pipes are empty, so everything before it belongs to the cell.

A cell cannot end its own cell early or pass its output off as another stream by printing
anything: what it writes is framed by the kernel. Only a cell that writes raw bytes to the
kernel's own descriptor could, and then only garbles its own session, which the service resets.

A MemoryError is fatal: the kernel reports it and exits, since an interpreter that ran out of
memory may be left inconsistent.

Longer than 400 lines because it is one file on purpose: it is passed whole as `-c` text (the
service's own files are not readable from a run), so it cannot import a sibling module.
"""

import ast
import base64
import fcntl
import io
import json
import os
import re
import select
import struct
import sys
import termios
import threading
import time
import traceback
import warnings
from typing import Any

MAX_RESULT_CHARS = 1 << 20
CELL = "<cell>"  # the file name of every cell, in tracebacks
NO_FOLDER = "/nonexistent"  # IPython's own folder: none, never made
# codeop's flags for interactive input (CPython's values; typeshed does not name them).
PYCF_DONT_IMPLY_DEDENT = 0x200
PYCF_ALLOW_INCOMPLETE_INPUT = 0x4000
# Images one reply carries at most: their base64 text in all, and how many.
MAX_IMAGE_BYTES = 8 << 20
MAX_IMAGES = 16
NO_NETWORK = ("pip install is not available: this session has no network access. The "
              "installed packages are listed by %pip list.")
REPLY_WAIT_S = 0.5
PIP_INSTALL = re.compile(r"^\s*(?:\S*/)?(?:pip3?|python3?\s+-m\s+pip)\s+install\b")

CHANNEL = os.dup(1)  # the service's stdout: frames only, from here on
os.set_inheritable(CHANNEL, False)
channel_lock = threading.Lock()


def send(tag: bytes, payload: bytes) -> None:
    """One frame; the caller holds `channel_lock`."""
    data = tag + struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(CHANNEL, data):]


def pending(fd: int) -> int:
    """Bytes waiting in pipe `fd`."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return count


def capture(fd: int, tag: bytes) -> int:
    """Makes `fd` (1 or 2) a pipe whose every byte is framed as `tag`, and returns its read
    end. Reads happen under the lock, so a pipe found empty under it has nothing in flight."""
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    os.set_inheritable(read_end, False)

    def forward() -> None:
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        while True:
            poller.poll()
            with channel_lock:
                data = os.read(read_end, 65536)
                if data:
                    send(tag, data)

    threading.Thread(target=forward, daemon=True).start()
    return read_end


def reply(pipes: tuple[int, ...], message: dict[str, Any]) -> None:
    """Sends the reply once everything the cell wrote to fds 1 and 2 so far is framed; a
    process the cell left writing without pause gets REPLY_WAIT_S, and what it writes after
    the reply is output between cells."""
    sys.stdout.flush()
    sys.stderr.flush()
    deadline = time.monotonic() + REPLY_WAIT_S
    while True:
        with channel_lock:
            if not any(pending(fd) for fd in pipes) or time.monotonic() > deadline:
                send(b"r", json.dumps(message).encode())
                return
        time.sleep(0.001)


def as_result(value: object) -> object:
    """A trailing expression's value: itself when JSON can carry it, else its repr. A numpy
    scalar (what `array.sum()` returns) is the Python number it holds."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # type: ignore[attr-defined]
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        # A lone surrogate (chr(0xd800)) is valid JSON only when escaped, and the service
        # could not send it on as UTF-8: such a value is one JSON cannot carry.
        text.encode()
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        # A __repr__ may return a lone surrogate too: escaped, as repr escapes them.
        return repr(value).encode("utf-8", "backslashreplace").decode()[:MAX_RESULT_CHARS]
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]


class Images:
    """The PNG images of one cell: displayed, returned or left open as matplotlib figures."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.size = 0

    def add(self, png: str | bytes) -> int | None:
        """Adds a PNG (bytes or base64 text); its index, or None when over the bounds."""
        text = png if isinstance(png, str) else base64.b64encode(png).decode()
        if len(self.found) >= MAX_IMAGES or self.size + len(text) > MAX_IMAGE_BYTES:
            print(f"an image was left out: a cell returns at most {MAX_IMAGES} images and "
                  f"{MAX_IMAGE_BYTES} bytes of them", file=sys.stderr)
            return None
        self.found.append(text)
        self.size += len(text)
        return len(self.found) - 1

    def add_figure(self, figure: Any) -> int | None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        return self.add(buffer.getvalue())

    def add_open_figures(self, skip: object = None) -> None:
        """Every figure still open (a cell that plotted, or called plt.show(), which does
        nothing under Agg), then closes them, as a notebook's inline backend does."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            if figure is not skip:
                self.add_figure(figure)
        pyplot.close("all")


def is_figure(value: object) -> bool:
    figure = sys.modules.get("matplotlib.figure")
    return figure is not None and isinstance(value, figure.Figure)


def make_shell() -> Any:
    from IPython.core import interactiveshell
    from IPython.core.compilerop import CachingCompiler
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.profiledir import ProfileDir
    from traitlets.config import Config

    class ResultHook(DisplayHook):
        """The last expression's value becomes the reply's result, never printed."""

        png: str | bytes | None = None

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: dict[str, Any], md_dict: object = None) -> None:
            self.png = format_dict.get("image/png")

        def finish_displayhook(self) -> None:
            pass

    class Publisher(DisplayPublisher):
        """display(): a PNG becomes one of the cell's images, anything else its text."""

        images: Images | None = None

        def publish(self, data: dict[str, Any], metadata: object = None, source: object = None, *,
                    transient: object = None, update: bool = False, **kwargs: object) -> None:
            if "image/png" in data and self.images is not None:
                self.images.add(data["image/png"])
            elif "text/plain" in data:
                print(data["text/plain"])

    class Compiler(CachingCompiler):
        """Every cell is "<cell>", kept out of linecache: a traceback reads as a plain
        Python one, with no source lines echoed back. A cell is a whole module, compiled
        as Python compiles a file (codeop's interactive flags would call an unclosed bracket
        "incomplete input")."""

        def __init__(self) -> None:
            super().__init__()
            self.flags &= ~(PYCF_DONT_IMPLY_DEDENT | PYCF_ALLOW_INCOMPLETE_INPUT)

        def cache(self, transformed_code: str, number: int = 0,
                  raw_code: str | None = None) -> str:
            return CELL

    class Shell(InteractiveShell):
        """Tracebacks as Python prints them, on stderr (where every runtime's errors are),
        from the cell's first frame: none of IPython's own."""

        def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> None:
            etype, value, tb = exc_tuple or sys.exc_info()
            if etype is SystemExit:
                return  # sys.exit() ends the cell, silently, as it ends a script
            while tb is not None and tb.tb_frame.f_code.co_filename != CELL:
                tb = tb.tb_next
            traceback.print_exception(etype, value, tb, file=sys.stderr)

        def _ipython_dir_changed(self, change: Any) -> None:
            pass  # (IPython's observer would make the folder)

        def showsyntaxerror(self, *args: Any, **kwargs: Any) -> None:
            etype, value, _tb = sys.exc_info()
            traceback.print_exception(etype, value, None, file=sys.stderr)

    # IPython's advice after sys.exit() in a cell is for a terminal's user.
    warnings.filterwarnings("ignore", message="To exit: use 'exit', 'quit', or Ctrl-D")
    class NoProfile(ProfileDir):
        """No profile folder: IPython would make ~/.ipython among the session's files."""

        def _location_changed(self, change: Any) -> None:
            pass

        def check_dirs(self) -> None:
            pass

    class NoStore(dict):  # type: ignore[type-arg]
        """%store's database, kept in memory rather than in a folder beside the files."""

        def __init__(self, root: object) -> None:
            super().__init__()

    interactiveshell.PickleShareDB = NoStore
    config = Config()
    # No history database and no output cache: nothing written beside the session's files,
    # and no result kept alive after its cell.
    config.HistoryManager.enabled = False
    shell = Shell.instance(config=config, cache_size=0, colors="NoColor",
                           displayhook_class=ResultHook, display_pub_class=Publisher,
                           compiler_class=Compiler, profile_dir=NoProfile(),
                           ipython_dir=NO_FOLDER)
    # Shell escapes run through /bin/sh as ordinary children (no pty), inside the same
    # confinement as the kernel; `pip install` is answered before any attempt to reach out.
    raw_system = shell.system_raw

    def system(cmd: str) -> None:
        if PIP_INSTALL.match(cmd):
            print(NO_NETWORK, file=sys.stderr)
            shell.user_ns["_exit_code"] = 1
            return
        raw_system(cmd)

    shell.system = system
    shell.register_magic_function(pip_magic, "line", "pip")
    return shell


def pip_magic(line: str) -> None:
    """%pip list (from the installed distributions; there is no pip here) and a clear no for
    %pip install."""
    from IPython.core.error import UsageError

    words = line.split()
    if words[:1] == ["install"]:
        raise UsageError(NO_NETWORK)
    if words[:1] in (["list"], ["freeze"]):
        import importlib.metadata

        found = sorted({(d.metadata["Name"] or "?", d.version)
                        for d in importlib.metadata.distributions()}, key=lambda d: d[0].lower())
        for name, version in found:
            print(f"{name}=={version}" if words[0] == "freeze" else f"{name:<32} {version}")
        return
    raise UsageError("only %pip list and %pip freeze work here; " + NO_NETWORK)


def ends_in_expression(shell: Any, code: str) -> bool:
    """Whether the cell, as IPython runs it (magics and `!` escapes are calls), ends in an
    expression."""
    try:
        tree = ast.parse(shell.transform_cell(code))
    except (SyntaxError, ValueError):
        return False
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr)


def run_cell(shell: Any, code: str) -> dict[str, Any]:
    images = Images()
    shell.display_pub.images = images
    shell.displayhook.png = None
    fatal = False
    try:
        outcome = shell.run_cell(code, store_history=True)
    except MemoryError:
        traceback.print_exc()
        return {"ok": False, "result": "", "images": [], "fatal": True}
    error = outcome.error_before_exec or outcome.error_in_exec
    if isinstance(error, MemoryError):
        fatal = True
    ok = error is None or (isinstance(error, SystemExit) and error.code in (None, 0))
    value = outcome.result
    # A cell that ends in an expression has a result, null when that is None; one that ends in
    # a statement has "" (IPython shows neither).
    result: object = None if ok and ends_in_expression(shell, code) else ""
    result_image = None
    if value is not None and is_figure(value):
        result_image = images.add_figure(value)
    elif value is not None and shell.displayhook.png is not None:
        result_image = images.add(shell.displayhook.png)
    elif value is not None:
        result = as_result(value)
    images.add_open_figures(skip=value)
    if value is None and images.found:
        # A cell that only plotted (plt.show(), or a figure left open): its last image.
        result_image = len(images.found) - 1
    if result_image is not None:
        result = ""
    return {"ok": ok, "result": result, "result_image": result_image, "images": images.found,
            "fatal": fatal}


class ShellState:
    """What earlier shell commands of the session left: their working directory and
    environment, restored for the next one (each command runs in a bash of its own, whose exit
    trap hands them back on a pipe of its own)."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.env = dict(os.environ)

    def run(self, command: str) -> dict[str, Any]:
        import subprocess

        read_end, write_end = os.pipe()
        save = (f'__sandbox_status=$?; {{ pwd; printf "\\0"; env -0; }} >&{write_end}; '
                "exit $__sandbox_status")
        script = f"trap '{save}' EXIT\n{command}\n"
        try:
            process = subprocess.Popen(["/bin/bash", "-c", script], cwd=self.cwd, env=self.env,
                                       stdin=subprocess.DEVNULL, pass_fds=(write_end,))
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            print(f"the shell could not start: {exc}", file=sys.stderr)
            return {"ok": False, "result": "", "exit_code": 127, "fatal": False}
        os.close(write_end)
        with os.fdopen(read_end, "rb") as state:
            saved = state.read(1 << 20)
        code = process.wait()
        cwd, _, env = saved.partition(b"\0")
        if cwd.strip():
            self.cwd = os.fsdecode(cwd.strip())
            self.env = {}
            for item in env.split(b"\0"):
                name, equals, value = item.partition(b"=")
                if equals and name:
                    self.env[os.fsdecode(name)] = os.fsdecode(value)
        return {"ok": code == 0, "result": "", "exit_code": code, "fatal": False}


def private_caches() -> str | None:
    """Where matplotlib and fontconfig keep their caches in a kernel started afresh: a folder
    of the kernel's own, removed after every cell (`drop_caches`), so that none of theirs
    (.cache, .config) shows among the session's files. A kernel forked from the warm
    interpreter has matplotlib set up already, with its caches outside the session: None."""
    if "matplotlib" in sys.modules:
        return None
    folder = os.path.abspath(f".kernel-caches-{os.getpid()}")
    os.environ["MPLCONFIGDIR"] = folder
    os.environ["XDG_CACHE_HOME"] = folder
    return folder


def drop_caches(folder: str | None) -> None:
    if folder is not None and os.path.isdir(folder):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    # Where the session's files are also mounted (/mnt/data), that is the working directory,
    # as in Azure's sessions; it is the same folder as the jail.
    files_at = os.environ.pop("SESSION_FILES_AT", "")
    if files_at and os.path.isdir(files_at) and os.path.samefile(files_at, "."):
        os.chdir(files_at)
    caches = private_caches()
    # Requests arrive on the original stdin; cells get /dev/null there, so input() in a cell
    # ends at once (EOFError) instead of swallowing the next request.
    requests = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # sys.stdout and sys.stderr keep writing to fds 1 and 2, now the kernel's pipes.
    pipes = (capture(1, b"o"), capture(2, b"e"))
    shell = None
    state = None
    for line in requests:
        request = json.loads(line)
        if "shell" in request:
            state = state or ShellState()
            message = state.run(request["shell"])
        else:
            try:
                shell = shell or make_shell()
            except Exception:  # noqa: BLE001 - said to the cell; the kernel cannot go on
                traceback.print_exc()
                reply(pipes, {"ok": False, "result": "", "fatal": True})
                os._exit(71)
            message = run_cell(shell, request["code"])
        drop_caches(caches)
        reply(pipes, message)
        if message["fatal"]:
            os._exit(70)


main()
