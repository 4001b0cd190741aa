"""The Python session kernel: runs inside the sandbox for as long as a session lives, and
executes one cell per request line, keeping its globals between cells.

Started as `python -c <this file's text>` (the service's code is not readable from a run). Each
request is one JSON line on stdin: {"code": "..."}. What the cell prints goes to stdout and
stderr as it happens; when the cell is done the kernel writes, on stdout, the marker (from the
environment, so a cell cannot guess it) followed by one JSON line {"ok", "result", "fatal"},
and on stderr the marker and a newline: everything each stream carried before its marker
belongs to that cell. A MemoryError is fatal: the kernel reports it and exits, since an
interpreter that ran out of memory may be left inconsistent.
"""

import ast
import json
import os
import sys
import traceback

MARK = os.environ.pop("SESSION_MARK").encode()
MAX_RESULT_CHARS = 1 << 20


def as_result(value: object) -> object:
    """A trailing expression's value: itself when JSON can carry it, else its repr."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        # A lone surrogate (chr(0xd800)) is valid JSON only when escaped, and the service
        # could not send it on as UTF-8: such a value is one JSON cannot carry.
        text.encode()
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        # A __repr__ may return a lone surrogate too: escaped, as repr escapes them.
        return repr(value).encode("utf-8", "backslashreplace").decode()[:MAX_RESULT_CHARS]
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]


def run_cell(code: str, namespace: dict[str, object]) -> tuple[bool, object, bool]:
    """(ok, result, fatal) of one cell; its traceback, if any, is printed to stderr."""
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            tree.body.pop()
        exec(compile(tree, "<cell>", "exec"), namespace)  # noqa: S102 - running cells is the job
        if last is None:
            return True, "", False
        return True, as_result(eval(compile(last, "<cell>", "eval"), namespace)), False
    except SystemExit as exc:
        return exc.code in (None, 0), "", False
    except MemoryError as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, tb)
        return False, "", True
    except BaseException as exc:  # noqa: BLE001 - the cell's error is the user's result
        # Without this frame: the user's cell is where the traceback starts.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, tb)
        return False, "", False


def main() -> None:
    # Where the session's files are also mounted (/mnt/data), that is the working directory,
    # as in Azure's sessions; it is the same folder as the jail.
    files_at = os.environ.pop("SESSION_FILES_AT", "")
    if files_at and os.path.isdir(files_at) and os.path.samefile(files_at, "."):
        os.chdir(files_at)
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    # Requests arrive on the original stdin; cells get /dev/null there, so input() in a cell
    # ends at once (EOFError) instead of swallowing the next request.
    requests = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for line in requests:
        code = json.loads(line)["code"]
        ok, result, fatal = run_cell(code, namespace)
        sys.stdout.flush()
        sys.stderr.flush()
        reply = json.dumps({"ok": ok, "result": result, "fatal": fatal}).encode()
        os.write(1, MARK + reply + b"\n")
        os.write(2, MARK + b"\n")
        if fatal:
            os._exit(70)


main()
