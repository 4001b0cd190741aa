"""Code-interpreter sessions through real HTTP: a real uvicorn, real kernels in real jails.

Both Azure families (`/code/execute` and `/files…` of api-version 2024-02-02-preview; the newer
`/executions`, `/files/{name}…` and `DELETE /session`), every client quirk of the reference, the
lifecycle (resets, cooldown, ceilings) and the isolation of sessions. Each test ends the
sessions it started, so the session-wide server is left with no process and no folder.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import SERVER_ENV, SERVER_OUTPUT_CAP
from ..utils import (
    PYTHON_AND_CPP,
    UNPRIVILEGED_MODE,
    Server,
    alive,
    assert_nothing_left,
    make_work_root,
    only_runtimes,
    run_folders,
    run_server,
    serve,
)

LEGACY = "2024-02-02-preview"
NEWER = "2024-10-02-preview"
FILES_AT = "/mnt/data"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
RESET_LINE = ("\nThe session state was reset: {}. Variables and imports are gone; files are "
              "kept.\n")
# Characters Azure allows in identifiers that need care in a query string.
AWKWARD = "|-&^%$#(){}[];<>"

# The small server's ceilings (see `small_server`).
MAX_SESSIONS = 2
DISK_BYTES = 256 * 1024  # also the size of each session's tmpfs: 64 pages
DISK_FILES = 8
UPLOAD_BYTES = 200_000
# The brief server's ceiling of wall time (see `brief_server`): above the C++ self-test's compile.
CEILING_S = 3


def new_identifier(prefix: str = "s") -> str:
    """A fresh identifier with characters that must survive percent-encoding."""
    return f"{prefix}-{secrets.token_hex(4)}{AWKWARD}"


class Session:
    """One identifier's session, as a client of either family sees it."""

    def __init__(self, server: Server, identifier: str) -> None:
        self.server = server
        self.identifier = identifier

    def params(self, api_version: str | None = LEGACY) -> dict[str, str]:
        params = {"identifier": self.identifier}
        if api_version is not None:
            params["api-version"] = api_version
        return params

    def request(self, method: str, path: str, api_version: str | None = LEGACY,
                **kwargs: Any) -> httpx.Response:
        # A client per request: tests send from several threads at once.
        with self.server.client() as client:
            return client.request(method, path, params=self.params(api_version), **kwargs)

    def execute_response(self, code: str, **properties: Any) -> httpx.Response:
        return self.request("POST", "/code/execute", json={"properties": {
            "codeInputType": "inline", "executionType": "synchronous", "code": code,
            **properties}})

    def execute(self, code: str, **properties: Any) -> dict[str, Any]:
        """POST /code/execute; the reply's `properties` after checking the envelope."""
        response = self.execute_response(code, **properties)
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["$id", "properties"] and body["$id"] == "1"
        props: dict[str, Any] = body["properties"]
        assert list(props) == [
            "$id", "status", "stdout", "stderr", "result", "executionResult",
            "executionTimeInMilliseconds", "stdoutTruncated", "stderrTruncated",
            "sessionReset", "sessionResetReason"]
        assert props["$id"] == "2" and props["result"] == props["executionResult"]
        assert isinstance(props["executionTimeInMilliseconds"], int)
        return props

    def result(self, code: str) -> Any:
        """The value of a cell that must succeed."""
        props = self.execute(code)
        assert props["status"] == "Success", props
        return props["result"]

    def execution_response(self, code: str, **fields: Any) -> httpx.Response:
        return self.request("POST", "/executions", NEWER, json={
            "codeInputType": "Inline", "executionType": "Synchronous", "code": code, **fields})

    def upload(self, name: str, data: bytes, newer: bool = False) -> httpx.Response:
        """POST /files/upload (legacy) or POST /files (newer): one multipart part `file`."""
        files = {"file": (name, data, "application/octet-stream")}
        if newer:
            return self.request("POST", "/files", NEWER, files=files)
        return self.request("POST", "/files/upload", files=files)

    def listing(self, newer: bool = False) -> dict[str, Any]:
        response = self.request("GET", "/files", NEWER if newer else LEGACY)
        assert response.status_code == 200, response.text
        listed: dict[str, Any] = response.json()
        return listed

    def names(self) -> list[str]:
        return [entry["properties"]["filename"] for entry in self.listing()["value"]]

    def content(self, name: str, newer: bool = False) -> httpx.Response:
        """The file's bytes, its name percent-encoded in the path as clients send it."""
        quoted = urllib.parse.quote(name, safe="")
        if newer:
            return self.request("GET", f"/files/{quoted}/content", NEWER)
        return self.request("GET", f"/files/content/{quoted}")

    def end(self) -> None:
        response = self.request("DELETE", "/session", "2025-10-02-preview")
        assert (response.status_code, response.content) == (204, b""), response.text


@contextmanager
def sessions_of(server: Server) -> Iterator[Callable[..., Session]]:
    """A maker of sessions on `server`; all of them are ended afterwards, and then nothing of
    any session may be left on it."""
    opened: list[Session] = []

    def make(identifier: str | None = None) -> Session:
        session = Session(server, identifier or new_identifier())
        opened.append(session)
        return session

    try:
        yield make
    finally:
        for session in opened:
            session.end()
    assert_nothing_left(server)


@pytest.fixture
def new_session(server: Server) -> Iterator[Callable[..., Session]]:
    with sessions_of(server) as make:
        yield make


@pytest.fixture
def session(new_session: Callable[..., Session]) -> Session:
    return new_session()


def layer_active(server: Server, name: str) -> bool:
    with server.client() as client:
        layers = client.get("/").json()["layers"]
    return bool(next(layer["active"] for layer in layers if layer["name"] == name))


def raw_request(server: Server, method: str, target: str, body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """A request whose target goes on the wire exactly as written, as clients that do not
    percent-encode send it (httpx would encode or normalise it)."""
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def legacy_entry(entry: dict[str, Any], name: str, size: int) -> None:
    """One entry of a legacy file list, checked field for field."""
    assert list(entry) == ["$id", "properties"]
    props = entry["properties"]
    assert list(props) == ["$id", "filename", "size", "lastModifiedTime"]
    assert (props["filename"], props["size"]) == (name, size)
    assert ISO_UTC.fullmatch(props["lastModifiedTime"]), props


def newer_file(found: dict[str, Any], name: str, size: int) -> None:
    """A newer-family file object, checked field for field."""
    assert found == {"name": name, "type": "File", "contentType": "application/octet-stream",
                     "sizeInBytes": size, "lastModifiedAt": found["lastModifiedAt"]}
    assert ISO_UTC.fullmatch(found["lastModifiedAt"]), found


def session_folders(server: Server) -> list[Path]:
    return run_folders(server.work_root)


# ---- cells -------------------------------------------------------------------------------------

def test_globals_persist_between_cells_of_one_identifier(session: Session) -> None:
    first = session.execute("x = 20")
    assert first == {
        "$id": "2", "status": "Success", "stdout": "", "stderr": "", "result": "",
        "executionResult": "", "executionTimeInMilliseconds": first["executionTimeInMilliseconds"],
        "stdoutTruncated": False, "stderrTruncated": False, "sessionReset": False,
        "sessionResetReason": None}
    second = session.execute("x + 1")
    assert (second["status"], second["result"], second["executionResult"]) == ("Success", 21, 21)
    # Functions, imports and classes live on too.
    session.execute("import math\ndef area(r):\n    return math.pi * r * r")
    assert session.result("round(area(x), 3)") == 1256.637


TRAILING_VALUES: list[tuple[str, Any]] = [
    ("6 * 7", 42),
    ("2 ** 70", 2 ** 70),
    ("1 / 4", 0.25),
    ("'forty' + 'two'", "fortytwo"),
    ("'é ✓'", "é ✓"),
    ("{'a': [1, 2.5, None], 'b': True}", {"a": [1, 2.5, None], "b": True}),
    ("[1, 'x', [None]]", [1, "x", [None]]),
    ("(1, 2)", [1, 2]),
    ("{1: 'a'}", {"1": "a"}),
    ("None", None),
    ("True", True),
    # Not JSON: the repr.
    ("float('nan')", "nan"),
    ("float('inf')", "inf"),
    ("-float('inf')", "-inf"),
    ("[1.5, float('nan')]", "[1.5, nan]"),
    ("{(1, 2): 'a'}", "{(1, 2): 'a'}"),
    ("b'\\x00\\xff'", "b'\\x00\\xff'"),
    ("{1, 2}", "{1, 2}"),
    ("object", "<class 'object'>"),
    ("class Point:\n    def __repr__(self):\n        return 'Point(1, 2)'\nPoint()", "Point(1, 2)"),
    # A lone surrogate cannot travel as UTF-8: its repr escapes it.
    ("chr(0xd800)", "'\\ud800'"),
    ("class Odd:\n    def __repr__(self):\n        return chr(0xdc80)\nOdd()", "\\udc80"),
    # No trailing expression: "".
    ("y = 5", ""),
    ("import math", ""),
    ("def f():\n    return 1", ""),
    ("for i in range(3):\n    i", ""),
    ("# only a comment", ""),
    ("", ""),
]


def test_a_trailing_expression_is_the_result_as_json_or_repr(session: Session) -> None:
    for code, expected in TRAILING_VALUES:
        props = session.execute(code)
        assert (props["status"], props["result"], props["stdout"], props["stderr"]) == (
            "Success", expected, "", ""), code


def test_print_goes_to_stdout_and_the_result_still_counts(session: Session) -> None:
    props = session.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n'value'")
    assert (props["status"], props["stdout"], props["stderr"], props["result"]) == (
        "Success", "out\n", "err\n", "value")
    # print() itself is the trailing expression: its value is None, so null.
    props = session.execute("print('hi')")
    assert (props["stdout"], props["result"]) == ("hi\n", None)
    # Output without a newline, and bytes that are not UTF-8.
    props = session.execute("import os\nos.write(1, b'raw \\xff')\nsys.stdout.write('tail')\n''")
    assert (props["stdout"], props["result"]) == ("raw \ufffdtail", "")


def test_input_reads_an_empty_stdin_instead_of_waiting(session: Session) -> None:
    session.execute("x = 1")
    props = session.execute("input()")
    assert props["status"] == "Failure" and props["sessionReset"] is False
    assert props["stderr"].endswith("EOFError: EOF when reading a line\n")
    assert props["executionTimeInMilliseconds"] < 5000
    assert session.result("x") == 1


def test_an_exception_fails_the_cell_with_its_traceback_and_keeps_state(session: Session
                                                                         ) -> None:
    session.execute("x = 1")
    props = session.execute("x = 2\ndef f():\n    return 1 / 0\nf()")
    assert (props["status"], props["stdout"], props["result"], props["sessionReset"]) == (
        "Failure", "", "", False)
    assert props["stderr"] == (
        'Traceback (most recent call last):\n'
        '  File "<cell>", line 4, in <module>\n'
        '  File "<cell>", line 3, in f\n'
        'ZeroDivisionError: division by zero\n')
    # What ran before the exception stays.
    assert session.result("x") == 2

    props = session.execute("x = (")
    assert props["status"] == "Failure"
    assert 'File "<cell>", line 1' in props["stderr"]
    assert props["stderr"].endswith("SyntaxError: '(' was never closed\n")

    props = session.execute("import sys\nsys.exit(3)")
    assert (props["status"], props["stderr"]) == ("Failure", "")
    props = session.execute("sys.exit()")
    assert (props["status"], props["stderr"]) == ("Success", "")
    # Neither a syntax error nor sys.exit ends the kernel.
    assert session.result("x") == 2


def test_a_timeout_kills_the_kernel_and_resets_state_but_keeps_files(session: Session) -> None:
    assert session.upload("kept.txt", b"still here").status_code == 200
    pid = session.result("import os\nx = 1\nos.getpid()")
    started = time.monotonic()
    props = session.execute("import time\ntime.sleep(30)", timeoutInSeconds=1)
    elapsed = time.monotonic() - started
    reason = "the cell did not finish within 1 s"
    assert props == {
        "$id": "2", "status": "Failure", "stdout": "", "stderr": RESET_LINE.format(reason),
        "result": "", "executionResult": "",
        "executionTimeInMilliseconds": props["executionTimeInMilliseconds"],
        "stdoutTruncated": False, "stderrTruncated": False, "sessionReset": True,
        "sessionResetReason": reason}
    assert 1000 <= props["executionTimeInMilliseconds"] < 3000 and elapsed < 5
    assert not alive(pid)
    # The next cell starts a fresh kernel: no variables, the same files.
    fresh = session.result("import os\n(os.getpid(), 'x' in globals(), open('kept.txt').read())")
    assert fresh[0] != pid and fresh[1:] == [False, "still here"]
    assert session.names() == ["kept.txt"]

    # The newer family says so too.
    response = session.execution_response("y = 1\nwhile True:\n    pass", timeoutInSeconds=0.5)
    execution = response.json()
    assert (execution["status"], execution["sessionReset"]) == ("Failed", True)
    assert execution["result"]["stderr"] == RESET_LINE.format(
        "the cell did not finish within 0.5 s")
    assert session.result("'y' in globals()") is False


def test_timeout_in_seconds_is_lowered_to_the_ceiling_and_checked(session: Session) -> None:
    # Clients send fixed values such as 100 or more: lowered to the ceiling, not refused.
    assert session.execute("1", timeoutInSeconds=100_000)["status"] == "Success"
    for wrong in (0, -1, "10", True):
        response = session.execute_response("1", timeoutInSeconds=wrong)
        assert (response.status_code, response.json()) == (
            400, {"message": "properties.timeoutInSeconds must be a positive number"}), wrong
        response = session.execution_response("1", timeoutInSeconds=wrong)
        assert (response.status_code, response.json()) == (400, {"error": {
            "code": "BadRequest", "message": "timeoutInSeconds must be a positive number"}})


def test_a_memory_bomb_kills_the_kernel_and_resets_state(session: Session) -> None:
    """Growing past the bound, the kernel is killed by it (the kernel's address space is not
    limited: the scientific stack reserves more than it uses); asking for more than the machine
    could ever give, the allocation fails at once and the kernel reports its MemoryError."""
    assert session.upload("kept.txt", b"kept").status_code == 200
    reason = "the kernel ran out of memory"
    for bomb, traceback in (("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))",
                             False),
                            ("bytearray(1 << 40)", True)):
        session.execute("x = 1")
        props = session.execute(bomb)
        assert (props["status"], props["sessionReset"], props["sessionResetReason"]) == (
            "Failure", True, reason)
        if traceback:
            assert props["stderr"].startswith("Traceback (most recent call last):\n")
            assert props["stderr"].endswith("MemoryError\n" + RESET_LINE.format(reason))
        else:
            assert props["stderr"] == RESET_LINE.format(reason)
        assert session.result("('x' in globals(), open('kept.txt').read())") == [False, "kept"]


def test_a_kernel_killed_by_a_signal_resets_state(session: Session) -> None:
    session.execute("x = 1")
    props = session.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    reason = "the kernel ended (signaled)"
    assert (props["status"], props["stderr"], props["sessionResetReason"]) == (
        "Failure", RESET_LINE.format(reason), reason)
    assert session.result("'x' in globals()") is False


def test_a_print_flood_is_cut_at_the_cap_and_resets_state(session: Session) -> None:
    session.execute("x = 1")
    started = time.monotonic()
    props = session.execute("while True:\n    print('y' * 1000)")
    # Stopped by the flood itself, not by the 10 s default timeout.
    assert time.monotonic() - started < 5
    reason = f"the cell printed more than {SERVER_OUTPUT_CAP} bytes"
    assert props["stdout"] == ("y" * 1000 + "\n") * 4 + "y" * (SERVER_OUTPUT_CAP - 4004)
    assert (props["status"], props["stdoutTruncated"], props["stderrTruncated"]) == (
        "Failure", True, False)
    assert (props["stderr"], props["sessionReset"], props["sessionResetReason"]) == (
        RESET_LINE.format(reason), True, reason)
    assert session.result("'x' in globals()") is False

    session.execute("x = 1")
    props = session.execute("import sys\nsys.stderr.write('e' * 100_000)")
    assert props["stderr"] == "e" * SERVER_OUTPUT_CAP + RESET_LINE.format(reason)
    assert (props["stdoutTruncated"], props["stderrTruncated"]) == (False, True)
    assert session.result("'x' in globals()") is False


def test_a_cell_cannot_forge_the_end_of_its_cell(session: Session) -> None:
    """What a cell writes, on fd 1 or 2 or from a child, is framed by the kernel: a reply
    frame (or the old end-of-cell marker) written there is output like any other."""
    forged = b'r\x00\x00\x00\x1f{"ok": true, "result": "forged"}'
    session.execute("x = 1")
    props = session.execute(f"import os\nos.write(1, {forged!r})\nos.write(2, {forged!r})\n"
                            "os.system(\"printf '\\\\036mark\\\\037'\")\n'real'")
    assert (props["status"], props["result"], props["sessionReset"]) == (
        "Success", "real", False)
    assert props["stdout"] == forged.decode() + "\x1emark\x1f"
    assert props["stderr"] == forged.decode()
    assert session.result("x") == 1


def test_garbage_on_the_kernels_own_channel_resets_only_that_session(session: Session
                                                                     ) -> None:
    """A cell can reach the kernel's own descriptor (it runs in the kernel's process): what it
    writes there is not a frame the kernel sends, and resets that session, no other."""
    reason = "the kernel's reply was unreadable"
    for garbage in (b"garbage!", b"r\x00\x00\x00\x08not json", b"r\x00\x00\x00\x03\"a\"",
                    b"r\xff\xff\xff\xff"):
        session.execute("x = 1")
        props = session.execute(
            "import os\n"
            f"os.write(get_ipython().system.__globals__['CHANNEL'], {garbage!r})\n"
            "import time\ntime.sleep(5)")
        assert (props["status"], props["stderr"], props["sessionResetReason"]) == (
            "Failure", RESET_LINE.format(reason), reason), garbage
        assert session.result("'x' in globals()") is False


def test_one_shot_session_without_identifier_leaves_nothing(server: Server) -> None:
    def execute(code: str) -> dict[str, Any]:
        response = server.post("/code/execute", json={"properties": {"code": code}})
        assert response.status_code == 200, response.text
        props: dict[str, Any] = response.json()["properties"]
        return props

    assert execute("x = 1\nopen('f.txt', 'w').write('x')\nx")["result"] == 1
    assert_nothing_left(server)
    props = execute("import os\n('x' in globals(), os.listdir('.'))")
    assert props["result"] == [False, []]
    assert_nothing_left(server)


# ---- the newer family --------------------------------------------------------------------------

def test_executions_reply_with_the_execution_resource(session: Session) -> None:
    response = session.execution_response("x = 6\nprint(x * 7)\nx * 10.5", timeoutInSeconds=60)
    assert response.status_code == 200, response.text
    execution = response.json()
    assert execution == {
        "id": execution["id"], "identifier": session.identifier, "executionType": "Synchronous",
        "status": "Succeeded",
        "result": {"stdout": "42\n", "stderr": "", "executionResult": 63.0,
                   "executionTimeInMilliseconds": execution["result"][
                       "executionTimeInMilliseconds"]},
        "startedAt": execution["startedAt"], "sessionReset": False}
    assert re.fullmatch(r"[0-9a-f]{32}", execution["id"])
    assert ISO_UTC.fullmatch(execution["startedAt"])
    assert isinstance(execution["result"]["executionTimeInMilliseconds"], int)
    fetched = session.request("GET", f"/executions/{execution['id']}", NEWER)
    assert (fetched.status_code, fetched.json()) == (200, execution)

    failed = session.execution_response("x / 0").json()
    assert (failed["status"], failed["result"]["executionResult"], failed["result"]["stdout"]) == (
        "Failed", "", "")
    assert failed["result"]["stderr"].endswith("ZeroDivisionError: division by zero\n")
    assert failed["id"] != execution["id"]
    statement = session.execution_response("y = 1").json()
    assert (statement["status"], statement["result"]["executionResult"]) == ("Succeeded", "")

    # One session for both families.
    assert session.result("x + y") == 7


def test_executions_errors_are_wrapped(session: Session) -> None:
    # An unknown identifier answers as its empty session would.
    response = session.request("GET", "/executions/nope", NEWER)
    assert (response.status_code, response.json()) == (404, {"error": {
        "code": "NotFound", "message": "no execution 'nope' in this session"}})
    session.execute("1")
    response = session.request("GET", "/executions/nope", NEWER)
    assert (response.status_code, response.json()) == (404, {"error": {
        "code": "NotFound", "message": "no execution 'nope' in this session"}})
    response = session.request("POST", "/executions", NEWER, json={"timeoutInSeconds": 5})
    assert (response.status_code, response.json()) == (400, {"error": {
        "code": "BadRequest", "message": "code must be a string"}})
    with session.server.client() as client:
        response = client.post("/executions", params={"api-version": NEWER},
                               json={"code": "1"})
    assert (response.status_code, response.json()) == (400, {"error": {
        "code": "BadRequest", "message": "identifier is required (a query parameter)"}})


def test_delete_session_ends_its_kernel_and_files(session: Session) -> None:
    assert session.upload("f.txt", b"x").status_code == 200
    pid = session.result("import os\nx = 1\nos.getpid()")
    execution = session.execution_response("1").json()
    assert alive(pid) and len(session_folders(session.server)) == 1
    session.end()
    assert not alive(pid)
    assert session_folders(session.server) == []
    assert_nothing_left(session.server)
    # Ending it again, or one that never was, is no error.
    session.end()
    response = session.request("GET", f"/executions/{execution['id']}", NEWER)
    assert response.status_code == 404
    # The identifier starts afresh.
    assert session.result("'x' in globals()") is False
    assert session.names() == []


# ---- files -------------------------------------------------------------------------------------

def test_legacy_files_round_trip_and_code_sees_them(session: Session) -> None:
    data = b"a,b\n1,2\n"
    # LangChain and LlamaIndex name the part /mnt/data/<name>.
    response = session.upload(f"{FILES_AT}/data.csv", data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["$id", "value"] and body["$id"] == "1"
    assert [(e["$id"], e["properties"]["$id"]) for e in body["value"]] == [("2", "3")]
    legacy_entry(body["value"][0], "data.csv", len(data))
    assert session.listing() == body
    assert session.content("data.csv").content == data
    assert session.content(f"{FILES_AT}/data.csv").content == data

    mounted = layer_active(session.server, "mntns")
    result = session.result(
        "import os\n"
        "with open('data.csv') as f:\n    relative = f.read()\n"
        f"at_files = open('{FILES_AT}/data.csv').read() if os.path.exists('{FILES_AT}/data.csv')"
        " else None\n"
        "with open('made.txt', 'w') as f:\n    f.write('made by code')\n"
        "(os.getcwd(), relative, at_files)")
    cwd, relative, at_files = result
    assert relative == "a,b\n1,2\n"
    if mounted:
        # As in Azure: the files are in /mnt/data, the working directory.
        assert (cwd, at_files) == (FILES_AT, "a,b\n1,2\n")
    else:
        assert Path(cwd).parent == session.server.work_root and at_files is None

    listing = session.listing()
    assert [(e["$id"], e["properties"]["$id"]) for e in listing["value"]] == [
        ("2", "3"), ("4", "5")]
    legacy_entry(listing["value"][0], "data.csv", len(data))
    legacy_entry(listing["value"][1], "made.txt", len("made by code"))
    assert session.content("made.txt").content == b"made by code"
    missing = session.content("nope.txt")
    assert (missing.status_code, missing.json()) == (
        404, {"message": "no file 'nope.txt' in this session"})


def test_newer_files_round_trip(session: Session) -> None:
    response = session.upload("report.txt", b"hello", newer=True)
    assert response.status_code == 200, response.text
    stored = response.json()
    newer_file(stored, "report.txt", 5)
    assert session.listing(newer=True) == {"value": [stored], "nextLink": None}
    info = session.request("GET", "/files/report.txt", NEWER)
    assert (info.status_code, info.json()) == (200, stored)
    content = session.content("report.txt", newer=True)
    assert (content.status_code, content.content) == (200, b"hello")
    assert session.result("open('report.txt').read()") == "hello"

    deleted = session.request("DELETE", "/files/report.txt", NEWER)
    assert (deleted.status_code, deleted.content) == (204, b"")
    gone = {"error": {"code": "NotFound", "message": "no file 'report.txt' in this session"}}
    for method, path in (("GET", "/files/report.txt"), ("GET", "/files/report.txt/content"),
                         ("DELETE", "/files/report.txt")):
        response = session.request(method, path, NEWER)
        assert (response.status_code, response.json()) == (404, gone), (method, path)
    assert session.listing(newer=True) == {"value": [], "nextLink": None}
    assert session.result("import os\nos.path.exists('report.txt')") is False


def test_binary_files_are_byte_exact(session: Session) -> None:
    payload = bytes(range(256)) * 64 + b"\r\n--boundary\r\n\r\n" + os.urandom(100_000)
    digest = hashlib.sha256(payload).hexdigest()
    assert session.upload("blob.bin", payload).status_code == 200
    assert session.upload("blob2.bin", payload, newer=True).status_code == 200
    assert session.content("blob.bin").content == payload
    assert session.content("blob2.bin", newer=True).content == payload
    assert session.result(
        "import hashlib\n[hashlib.sha256(open(n, 'rb').read()).hexdigest()"
        " for n in ('blob.bin', 'blob2.bin')]") == [digest, digest]
    session.execute("open('out.bin', 'wb').write(bytes(range(255, -1, -1)) * 3)")
    assert session.content("out.bin").content == bytes(range(255, -1, -1)) * 3
    assert session.content("out.bin", newer=True).content == bytes(range(255, -1, -1)) * 3


def test_an_upload_replaces_a_file_of_the_same_name(session: Session) -> None:
    assert session.upload("f.txt", b"first version").status_code == 200
    assert session.upload(f"{FILES_AT}/f.txt", b"second").status_code == 200
    assert session.names() == ["f.txt"]
    assert session.content("f.txt").content == b"second"
    assert session.result("open('f.txt').read()") == "second"


def test_a_percent_in_a_file_name_is_decoded_once(session: Session) -> None:
    for name in ("100%41.txt", "a b.txt", "é.txt"):
        assert session.upload(name, name.encode()).status_code == 200
    assert session.names() == ["100%41.txt", "a b.txt", "é.txt"]
    for name in ("100%41.txt", "a b.txt", "é.txt"):
        for newer in (False, True):
            response = session.content(name, newer)
            assert (response.status_code, response.content) == (200, name.encode()), name
    # A name holding an escape is not another name: 100A.txt does not exist.
    assert session.content("100A.txt").status_code == 404


def test_identifiers_see_neither_each_others_variables_nor_files(
        new_session: Callable[..., Session]) -> None:
    a, b = new_session(), new_session()
    a.execute("secret = 'a only'")
    assert a.upload("a.txt", b"a's file").status_code == 200
    b.execute("mine = 1")
    assert b.result("'secret' in globals()") is False
    assert a.result("'mine' in globals()") is False
    assert b.names() == []
    assert b.content("a.txt").status_code == 404
    assert b.result(f"import os\n(os.listdir('.'), os.path.exists('{FILES_AT}/a.txt'))") == [
        [], False]
    # Even knowing where a's folder is, b's code can neither list nor read it.
    a_folder = next(p for p in session_folders(a.server) if (p / "a.txt").exists())
    props = b.execute(f"import os\nos.listdir({str(a_folder)!r})")
    assert props["stderr"].endswith(f"PermissionError: [Errno 13] Permission denied: "
                                    f"{str(a_folder)!r}\n")
    props = b.execute(f"open({str(a_folder / 'a.txt')!r}).read()")
    assert "PermissionError: [Errno 13] Permission denied" in props["stderr"]
    # An execution is found only through its own session.
    execution = a.execution_response("1").json()
    assert a.request("GET", f"/executions/{execution['id']}", NEWER).status_code == 200
    assert b.request("GET", f"/executions/{execution['id']}", NEWER).status_code == 404


def test_a_planted_symlink_is_never_followed(session: Session) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    session.execute(
        "import os\n"
        "os.symlink('/etc/passwd', 'passwd')\n"
        "os.symlink('/etc', 'etc')\n"
        "os.mkdir('folder')\n"
        "open('folder/inner.txt', 'w').write('x')\n"
        "os.mkfifo('fifo')\n"
        "open('real.txt', 'w').write('real')")
    assert session.names() == ["real.txt"]
    assert [f["name"] for f in session.listing(newer=True)["value"]] == ["real.txt"]
    for name in ("passwd", "etc", "folder", "fifo"):
        missing = f"no file {name!r} in this session"
        response = session.content(name)
        assert (response.status_code, response.json()) == (404, {"message": missing}), name
        for path in (f"/files/{name}", f"/files/{name}/content"):
            response = session.request("GET", path, NEWER)
            assert (response.status_code, response.json()) == (
                404, {"error": {"code": "NotFound", "message": missing}}), path
    response = session.request("GET", "/files/content/etc/passwd")
    assert response.status_code == 400

    # Uploading over the link replaces the link, never what it points to.
    assert session.upload("passwd", b"mine").status_code == 200
    assert Path("/etc/passwd").read_bytes() == passwd
    assert session.result("import os\n(os.path.islink('passwd'), open('passwd').read())") == [
        False, "mine"]
    # Deleting a link removes the link only.
    response = session.request("DELETE", "/files/etc", NEWER)
    assert response.status_code == 204
    assert session.result("os.path.lexists('etc')") is False
    assert Path("/etc/passwd").read_bytes() == passwd
    # A folder is not a file to replace.
    response = session.upload("folder", b"x")
    assert (response.status_code, response.json()) == (
        400, {"message": "'folder' is a folder in this session, not a file"})


BAD_NAMES = ["../escape.txt", "a/b.txt", "..", ".", "/etc/passwd", f"{FILES_AT}/",
             f"{FILES_AT}/../escape.txt", f"{FILES_AT}/sub/x.txt"]


def test_file_names_with_dotdot_or_slash_are_400(session: Session) -> None:
    for name in BAD_NAMES:
        message = f"file name {name!r} must be a plain name (optionally under {FILES_AT}/)"
        response = session.upload(name, b"x")
        assert (response.status_code, response.json()) == (400, {"message": message}), name
        response = session.upload(name, b"x", newer=True)
        assert (response.status_code, response.json()) == (
            400, {"error": {"code": "BadRequest", "message": message}}), name
    query = urllib.parse.urlencode(session.params())
    newer_query = urllib.parse.urlencode(session.params(NEWER))
    for target in ("/files/content/..%2F..%2Fetc%2Fpasswd", "/files/content/%2E%2E",
                   "/files/content/../../etc/passwd", "/files/content/sub/x.txt"):
        status, body = raw_request(session.server, "GET", f"{target}?{query}")
        assert status == 400, (target, body)
    for method, target in (("GET", "/files/%2E%2E"), ("GET", "/files/%2E%2E/content"),
                           ("DELETE", "/files/%2E%2E"), ("GET", "/files/../content")):
        status, body = raw_request(session.server, method, f"{target}?{newer_query}")
        assert status == 400, (target, body)
        assert json.loads(body)["error"]["code"] == "BadRequest"
    assert session.names() == []
    assert not (session.server.work_root / "escape.txt").exists()


# ---- client quirks -----------------------------------------------------------------------------

def multipart(name: str, data: bytes) -> tuple[str, bytes]:
    """A multipart/form-data body with one part `file`, and its boundary."""
    boundary = secrets.token_hex(12)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return boundary, body + data + f"\r\n--{boundary}--\r\n".encode()


def test_multipart_labelled_application_json_is_read_as_multipart(session: Session) -> None:
    # Semantic Kernel labels its upload application/json after its first execute call.
    payload = b"{\"not\": \"json\"}\r\n--x\r\n" + bytes(range(256))
    _, body = multipart(f"{FILES_AT}/sk.bin", payload)
    response = session.request("POST", "/files/upload", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    legacy_entry(response.json()["value"][0], "sk.bin", len(payload))
    _, body = multipart("sk2.bin", payload)
    response = session.request("POST", "/files", NEWER, content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    newer_file(response.json(), "sk2.bin", len(payload))
    assert session.content("sk.bin").content == payload
    assert session.content("sk2.bin").content == payload

    # Neither multipart nor readable as such: a clear 400, nothing stored.
    for content, label in ((b"{}", "application/json"),
                           (b"--xyz\r\ngarbage\r\n\r\nstuff\r\n--xyz--\r\n", "application/json"),
                           (b"--xyz\r\ngarbage\r\n", "multipart/form-data; boundary=xyz")):
        response = session.request("POST", "/files/upload", content=content,
                                    headers={"Content-Type": label})
        assert response.status_code == 400, (content, response.text)
    assert session.names() == ["sk.bin", "sk2.bin"]


def test_identifiers_raw_or_percent_encoded_reach_one_session(server: Server) -> None:
    identifier = f"raw-{secrets.token_hex(4)}" + AWKWARD.replace("#", "")
    body = json.dumps({"properties": {"code": "v = 7"}}).encode()
    headers = {"Content-Type": "application/json"}
    # Unencoded, as some clients send it: the raw & splits the query and is joined back,
    # whether the identifier comes first or last.
    status, reply = raw_request(server, "POST",
                                f"/code/execute?identifier={identifier}&api-version={LEGACY}",
                                body, headers)
    assert status == 200, reply
    with sessions_of(server) as make:
        encoded = make(identifier)
        assert encoded.result("v") == 7
        status, reply = raw_request(
            server, "POST", f"/code/execute?api-version={LEGACY}&identifier={identifier}",
            json.dumps({"properties": {"code": "v + 1"}}).encode(), headers)
        assert json.loads(reply)["properties"]["result"] == 8
        assert len(session_folders(server)) == 1
        # A # survives only percent-encoded (raw, it starts a fragment).
        hashed = make(f"hash#{secrets.token_hex(4)}")
        hashed.execute("h = 1")
        assert encoded.result("'h' in globals()") is False


def test_identifier_length_is_checked(server: Server,
                                      new_session: Callable[..., Session]) -> None:
    assert new_session("x" * 128).result("1") == 1
    assert new_session("abcd").result("2") == 2
    response = Session(server, "x" * 129).execute_response("1")
    assert (response.status_code, response.json()) == (
        400, {"message": "identifier must be at most 128 characters"})


def test_identifier_inside_properties(new_session: Callable[..., Session]) -> None:
    session = new_session()
    for code, expected in (("x = 3", ""), ("x", 3)):
        response = session.server.post("/code/execute", json={"properties": {
            "code": code, "identifier": session.identifier}})
        assert response.json()["properties"]["result"] == expected
    # The query's identifier, when there is one, is the session's.
    assert session.result("x") == 3


def test_any_api_version_or_none_and_enum_values_in_any_case(session: Session) -> None:
    with session.server.client() as client:
        for input_type, execution_type in (("inline", "synchronous"), ("Inline", "Synchronous"),
                                           ("INLINE", "SYNCHRONOUS")):
            response = client.post(
                "/code/execute", params={"identifier": session.identifier},
                headers={"Authorization": "Bearer not-a-real-token"},
                json={"properties": {"codeInputType": input_type,
                                     "executionType": execution_type, "code": "6 * 7"}})
            assert response.json()["properties"]["result"] == 42
        # GET /files without api-version answers in the legacy shape.
        listing = client.get("/files", params={"identifier": session.identifier}).json()
        assert listing == {"$id": "1", "value": []}
        for version in ("2024-08-02-preview", NEWER, "2025-02-02-preview"):
            response = client.post("/executions",
                                   params={"identifier": session.identifier,
                                           "api-version": version},
                                   json={"code": "1 + 1", "executionType": "synchronous"})
            assert response.json()["status"] == "Succeeded"
        response = client.post("/executions", params={"identifier": session.identifier},
                               json={"code": "2 + 2"})
        assert response.json()["result"]["executionResult"] == 4


# ---- one session at a time, sessions in parallel ------------------------------------------------

def test_cells_of_one_session_run_one_after_the_other(session: Session) -> None:
    session.execute("log = []")
    cell = "import time\nlog.append('{0} start')\ntime.sleep(0.5)\nlog.append('{0} end')"
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda name: session.execute(cell.format(name)), "ab"))
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in replies] == ["Success", "Success"]
    log = session.result("log")
    assert log in (["a start", "a end", "b start", "b end"],
                   ["b start", "b end", "a start", "a end"])


def test_sessions_run_in_parallel(new_session: Callable[..., Session]) -> None:
    a, b = new_session(), new_session()
    for s in (a, b):
        s.execute("import time")  # kernels started beforehand
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda s: s.execute("time.sleep(1)"), (a, b)))
    assert time.monotonic() - started < 1.8
    assert [r["status"] for r in replies] == ["Success", "Success"]


def test_a_cell_waiting_for_its_session_holds_no_run_slot(
        new_session: Callable[..., Session]) -> None:
    with new_session().server.client() as client:
        slots = client.get("/").json()["runs"]["maxConcurrent"]
    if slots < 2:
        pytest.skip("needs two run slots")
    a, b = new_session(), new_session()
    for s in (a, b):
        s.execute("import time")

    def timed(s: Session) -> float:
        started = time.monotonic()
        assert s.execute("time.sleep(1)")["status"] == "Success"
        return time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        a_cells = [pool.submit(timed, a), pool.submit(timed, a)]
        time.sleep(0.2)  # both of a's cells are in: one runs, one waits for it
        b_cell = pool.submit(timed, b)
        # b's cell takes the free slot at once, not after a's first cell.
        assert b_cell.result() < 1.6
        assert max(f.result() for f in a_cells) >= 1.9


# ---- the unprivileged mode ----------------------------------------------------------------------

def test_sessions_in_the_unprivileged_mode(unprivileged_server: Server) -> None:
    server = unprivileged_server
    assert server.mode == UNPRIVILEGED_MODE
    # Without CAP_SYS_ADMIN there is no mount namespace: no /mnt/data for code.
    assert layer_active(server, "mntns") is False
    with sessions_of(server) as make:
        session, other = make(), make()
        session.execute("x = 20")
        assert session.result("x + 1") == 21
        response = session.upload(f"{FILES_AT}/data.csv", b"a,b\n")
        assert response.status_code == 200, response.text
        legacy_entry(response.json()["value"][0], "data.csv", 4)
        cwd, text, at_files = session.result(
            "import os\nopen('made.txt', 'w').write('made')\n"
            f"(os.getcwd(), open('data.csv').read(), os.path.exists('{FILES_AT}/data.csv'))")
        # The files are in the working directory only: the session's own folder.
        assert Path(cwd).parent == server.work_root
        assert (text, at_files) == ("a,b\n", False)
        assert session.names() == ["data.csv", "made.txt"]
        assert session.content("made.txt").content == b"made"
        newer = session.upload("n.txt", b"newer", newer=True)
        assert newer.status_code == 200
        assert session.content("n.txt", newer=True).content == b"newer"
        # Runs share the service's uid here: only the confinement keeps sessions apart.
        assert other.names() == []
        props = other.execute(f"import os\nos.listdir({cwd!r})")
        assert "PermissionError" in props["stderr"], props
        props = other.execute(f"open({cwd + '/data.csv'!r}).read()")
        assert "PermissionError" in props["stderr"], props
        props = session.execute("import time\ntime.sleep(30)", timeoutInSeconds=0.5)
        assert props["sessionReset"] is True
        assert session.result("('x' in globals(), open('data.csv').read())") == [False, "a,b\n"]


# ---- cooldown and ceilings, on servers of their own --------------------------------------------

@pytest.fixture(scope="module")
def brief_server() -> Iterator[Server]:
    """A server whose sessions cool down after 1 s idle, and whose runs and cells stop after
    CEILING_S at most."""
    with serve({**SERVER_ENV, "SANDBOX_SESSION_COOLDOWN_S": "1",
                "SANDBOX_MAX_WALL_TIMEOUT_S": str(CEILING_S)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def small_server() -> Iterator[Server]:
    """A server with small ceilings on live sessions and on each session's files."""
    # 256 KiB of files: too small for a Go or Rust binary, so Python and C++ alone.
    with serve({**SERVER_ENV, "SANDBOX_MAX_SESSIONS": str(MAX_SESSIONS),
                "SANDBOX_MAX_DISK_BYTES": str(DISK_BYTES),
                "SANDBOX_MAX_DISK_FILES": str(DISK_FILES),
                "SANDBOX_MAX_UPLOAD_BYTES": str(UPLOAD_BYTES),
                **only_runtimes(*PYTHON_AND_CPP)}) as srv:
        yield srv


def test_an_idle_session_ends_after_the_cooldown_with_its_files(brief_server: Server) -> None:
    with sessions_of(brief_server) as make:
        session = make()
        assert session.upload("f.txt", b"x").status_code == 200
        pid = session.result("import os\nx = 1\nos.getpid()")
        # A cell running longer than the cooldown is in use, not idle: it is not cut short.
        assert session.result("import time\ntime.sleep(1.5)\nx + 1") == 2
        idle_since = time.monotonic()
        assert len(session_folders(brief_server)) == 1
        deadline = idle_since + 5
        while session_folders(brief_server) or alive(pid):
            assert time.monotonic() < deadline, "the idle session was never removed"
            time.sleep(0.05)
        assert time.monotonic() - idle_since >= 1.0
        assert_nothing_left(brief_server)
        assert [line["identifier"] for line in brief_server.log_lines()
                if line.get("event") == "session_expired"] == [session.identifier]
        # The next call starts afresh: no variables, no files.
        assert session.result("'x' in globals()") is False
        assert session.names() == []


def test_a_cell_timeout_above_the_ceiling_is_lowered_to_it(brief_server: Server) -> None:
    reason = RESET_LINE.format(f"the cell did not finish within {CEILING_S} s")
    with sessions_of(brief_server) as make:
        asked, default = make(), make()

        def above() -> str:
            props = asked.execute("import time\ntime.sleep(30)", timeoutInSeconds=100)
            return str(props["stderr"])

        def without() -> str:
            # The runtime's default of 10 s is lowered to the ceiling too.
            execution = default.execution_response("import time\ntime.sleep(30)").json()
            return str(execution["result"]["stderr"])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = [pool.submit(above), pool.submit(without)]
            assert [f.result() for f in replies] == [reason, reason]
        assert time.monotonic() - started < CEILING_S + 2


def test_sigterm_ends_live_sessions_with_their_kernels_and_files() -> None:
    root = make_work_root()
    try:
        with run_server(root, SERVER_ENV) as server:
            a, b = Session(server, new_identifier()), Session(server, new_identifier())
            pids = [s.result("import os\nopen('f.txt', 'w').write('x')\nos.getpid()")
                    for s in (a, b)]
            assert len(session_folders(server)) == 2
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(20) == 0
        assert not any(alive(pid) for pid in pids)
        assert run_folders(root) == []
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_live_sessions_beyond_the_ceiling_are_503(small_server: Server) -> None:
    with sessions_of(small_server) as make:
        a, b, c = make(), make(), make()
        a.execute("1")
        b.upload("f.txt", b"x")  # an upload starts a session too
        busy = (f"{MAX_SESSIONS} sessions are live, the most this service keeps; retry when one "
                "has cooled down")
        response = c.execute_response("1")
        assert (response.status_code, response.json(), response.headers["Retry-After"]) == (
            503, {"message": busy}, "1")
        response = c.execution_response("1")
        assert (response.status_code, response.json()) == (
            503, {"error": {"code": "ServiceUnavailable", "message": busy}})
        assert c.upload("f.txt", b"x").status_code == 503
        one_shot = small_server.post("/code/execute", json={"properties": {"code": "1"}})
        assert one_shot.status_code == 503
        assert len(session_folders(small_server)) == MAX_SESSIONS
        a.end()
        assert c.result("1") == 1


def test_session_file_bytes_beyond_the_quota_are_413_and_nothing_is_half_written(
        small_server: Server) -> None:
    with sessions_of(small_server) as make:
        session = make()
        first = os.urandom(100_000)
        assert session.upload("a.bin", first).status_code == 200
        response = session.upload("b.bin", b"b" * 170_000)
        assert (response.status_code, response.json()) == (413, {
            "message": f"the session's files would take 270000 bytes; the limit is {DISK_BYTES}"})
        response = session.upload("b.bin", b"b" * 170_000, newer=True)
        assert (response.status_code, response.json()["error"]["code"]) == (
            413, "PayloadTooLarge")
        # Several parts are stored all or none.
        response = session.request("POST", "/files/upload", files=[
            ("file", ("c.bin", b"c" * 1000)), ("file", ("d.bin", b"d" * 200_000))])
        assert response.status_code == 413
        assert session.names() == ["a.bin"]
        assert session.content("a.bin").content == first
        # Files code made count too, in sub-folders as well.
        session.execute("import os\nos.mkdir('sub')\nopen('sub/x', 'wb').write(b'x' * 100_000)")
        response = session.upload("e.bin", b"e" * 70_000)
        assert (response.status_code, response.json()) == (413, {
            "message": f"the session's files would take 270000 bytes; the limit is {DISK_BYTES}"})
        # A replaced file counts once.
        assert session.upload("a.bin", b"a" * 150_000).status_code == 200
        assert session.names() == ["a.bin"]


def test_an_upload_that_fills_the_disk_is_refused_whole(small_server: Server) -> None:
    if not layer_active(small_server, "tmpfs"):
        pytest.skip("needs the tmpfs layer: the page-rounded disk that fills before the count")
    with sessions_of(small_server) as make:
        session = make()
        # 257000 bytes take 63 of the tmpfs's 64 pages; 5000 more bytes fit the byte count
        # (262000 of 262144) but need two pages.
        session.execute("import os\nos.mkdir('sub')\nopen('sub/x', 'wb').write(b'x' * 257_000)")
        response = session.upload("f.bin", b"f" * 5000)
        assert (response.status_code, response.json()) == (
            413, {"message": "the session's disk is full: No space left on device"})
        assert session.names() == []


def test_session_files_beyond_the_count_are_413_and_nothing_is_half_written(
        small_server: Server) -> None:
    with sessions_of(small_server) as make:
        session = make()
        names = [f"f{i}.txt" for i in range(DISK_FILES)]
        response = session.request("POST", "/files/upload", files=[
            ("file", (name, name.encode())) for name in names])
        assert response.status_code == 200, response.text
        assert [e["properties"]["filename"] for e in response.json()["value"]] == names
        too_many = {"message": f"a session holds at most {DISK_FILES} files and folders"}
        response = session.upload("extra.txt", b"x")
        assert (response.status_code, response.json()) == (413, too_many)
        # Replacing one is fine; replacing one together with a new one is refused whole.
        assert session.upload("f0.txt", b"new f0").status_code == 200
        response = session.request("POST", "/files/upload", files=[
            ("file", ("extra.txt", b"x")), ("file", ("f1.txt", b"new f1"))])
        assert (response.status_code, response.json()) == (413, too_many)
        assert session.names() == sorted(names)
        assert session.content("f1.txt").content == b"f1.txt"
        assert session.content("f0.txt").content == b"new f0"
        # Streamed in that order, the new f1 needs an inode before the extra file is seen: on
        # a tmpfs, whose last inode the files take, the old f1 makes room for it first.
        response = session.request("POST", "/files/upload", files=[
            ("file", ("f1.txt", b"new f1")), ("file", ("extra.txt", b"x"))])
        assert (response.status_code, response.json()) == (413, too_many)
        tmpfs = layer_active(small_server, "tmpfs")
        assert session.names() == sorted(set(names) - ({"f1.txt"} if tmpfs else set()))


def test_an_upload_over_the_upload_limit_is_413(small_server: Server) -> None:
    with sessions_of(small_server) as make:
        session = make()
        response = session.upload("big.bin", b"x" * (UPLOAD_BYTES + 1))
        assert response.status_code == 413
        assert response.json()["message"].endswith(f"bytes; the limit is {UPLOAD_BYTES}")
        # Without a Content-Length the body is counted as it arrives.
        boundary, body = multipart("big.bin", b"x" * (UPLOAD_BYTES + 1))

        def chunks() -> Iterator[bytes]:
            for at in range(0, len(body), 65536):
                yield body[at:at + 65536]

        response = session.request(
            "POST", "/files/upload", content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert (response.status_code, response.json()) == (
            413, {"message": f"the upload exceeds the limit of {UPLOAD_BYTES} bytes"})
        assert session.names() == []


@pytest.mark.root
def test_a_mount_point_removed_after_startup_is_made_again(
        new_session: Callable[..., Session]) -> None:
    """/mnt/data is the machine's: a service in the other mode (or anyone) may remove it while
    this one runs; the next session's kernel still finds its files there."""
    session = new_session()
    if not layer_active(session.server, "mntns"):
        pytest.skip("no mount namespaces here: sessions do not bind /mnt/data")
    if os.path.isdir(FILES_AT) and not os.path.islink(FILES_AT):
        os.rmdir(FILES_AT)
    assert session.upload("data.csv", b"kept").status_code == 200
    assert session.result(f"open('{FILES_AT}/data.csv').read()") == "kept"


def test_without_mount_namespaces_mnt_data_links_to_one_session_at_a_time() -> None:
    """A default container (no CAP_SYS_ADMIN): /mnt/data is a link to the folder of the oldest
    live session, which in a pool container is the only one; a second session cannot follow
    the link into the first one's folder, and the link goes with its session."""
    with serve({"SANDBOX_MNTNS": "off"}) as srv:
        with srv.client() as client:
            status = client.get("/").json()["sessions"]["filesAt"]
            assert status == "/mnt/data links to the folder of the oldest live session " \
                             "(one at a time)"

            def cell(identifier: str, code: str) -> dict[str, Any]:
                reply = client.post(f"/code/execute?identifier={identifier}",
                                    json={"properties": {"code": code}})
                return dict(reply.json()["properties"])

            client.post("/files/upload?identifier=first-1",
                        files={"file": ("/mnt/data/a.txt", b"first's")})
            assert cell("first-1", "open('/mnt/data/a.txt').read()")["result"] == "first's"
            second = cell("second-1", "try:\n    r = open('/mnt/data/a.txt').read()\n"
                                      "except OSError as e:\n    r = type(e).__name__\nr")
            assert second["result"] == "PermissionError"
            for identifier in ("first-1", "second-1"):
                assert client.delete("/session", params={"identifier": identifier}) \
                    .status_code == 204
            assert not os.path.lexists("/mnt/data")
        assert_nothing_left(srv)
