"""Sessions against clients and cells that consume: through real HTTP, real kernels, real jails.

Calls that only read or delete start no session; what a cell does to its files (names that are
not UTF-8, absurd timestamps, a folder without permissions) never makes the files API fail.
Each test ends the sessions it started, then checks that the service still answers and that
nothing of the run is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from ..conftest import SERVER_ENV, SERVER_OUTPUT_CAP
from ..utils import (
    IS_ROOT,
    SERVICE_USER,
    Server,
    alive,
    assert_nothing_left,
    find_user,
    provide_user_python,
    serve,
)
from .test_sessions import LEGACY, NEWER, RESET_LINE, new_identifier, sessions_of

PROBED_IDENTIFIERS = 100


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[Server]:
    """The service as an unprivileged user, its kernels under its own uid: the suite's user,
    else `nobody` (no process of it may run here but the service's own)."""
    if not IS_ROOT:
        pytest.skip("needs root to start the service as another user")
    user = find_user(SERVICE_USER) or find_user("nobody")
    assert user is not None
    with serve({**SERVER_ENV, "SANDBOX_COMPILE_CACHE_BYTES": "0"}, user=user,
               python=provide_user_python()) as srv:
        yield srv


def live_sessions(server: Server) -> int:
    with server.client() as client:
        live: int = client.get("/").json()["sessions"]["live"]
    return live


def assert_service_intact(server: Server) -> None:
    """The service answers and no process or folder of any run is left."""
    assert server.health().status_code == 200
    assert_nothing_left(server)


def probe(client: httpx.Client, identifier: str) -> list[tuple[str, int, Any]]:
    """Every read-only and delete call on `identifier`: (call, status, body or None)."""
    legacy = {"identifier": identifier, "api-version": LEGACY}
    newer = {"identifier": identifier, "api-version": NEWER}
    calls = [
        ("GET", "/files", legacy), ("GET", "/files", newer),
        ("GET", "/files/content/x.txt", legacy), ("GET", "/files/x.txt/content", newer),
        ("GET", "/files/x.txt", newer), ("DELETE", "/files/x.txt", newer),
        ("GET", "/executions/e1", newer), ("DELETE", "/session", newer),
        ("GET", "/files/content/a/b", legacy),
    ]
    answers = []
    for method, path, params in calls:
        response = client.request(method, path, params=params)
        body = response.json() if response.content else None
        answers.append((f"{method} {path}", response.status_code, body))
    return answers


def test_read_and_delete_calls_on_new_identifiers_start_no_session(server: Server) -> None:
    missing = "no file 'x.txt' in this session"
    newer_missing = {"error": {"code": "NotFound", "message": missing}}
    expected = [
        ("GET /files", 200, {"$id": "1", "value": []}),
        ("GET /files", 200, {"value": [], "nextLink": None}),
        ("GET /files/content/x.txt", 404, {"message": missing}),
        ("GET /files/x.txt/content", 404, newer_missing),
        ("GET /files/x.txt", 404, newer_missing),
        ("DELETE /files/x.txt", 404, newer_missing),
        ("GET /executions/e1", 404, {"error": {
            "code": "NotFound", "message": "no execution 'e1' in this session"}}),
        ("DELETE /session", 204, None),
        ("GET /files/content/a/b", 400, {
            "message": "file name 'a/b' must be a plain name (optionally under /mnt/data/)"}),
    ]
    before = live_sessions(server)
    with server.client() as client:
        for _ in range(PROBED_IDENTIFIERS):
            assert probe(client, new_identifier("probe")) == expected
    # Nothing was allocated: no live session, no jail folder (and so no uid, no tmpfs).
    assert live_sessions(server) == before
    assert list(server.work_root.iterdir()) == []
    assert_service_intact(server)

    # A real session still starts, and once it has a file it answers with it.
    with sessions_of(server) as make:
        session = make()
        assert session.upload("x.txt", b"kept").status_code == 200
        assert session.names() == ["x.txt"]
        assert session.content("x.txt").content == b"kept"
        assert session.result("open('x.txt').read()") == "kept"
        assert live_sessions(server) == before + 1
    assert live_sessions(server) == before
    assert_service_intact(server)


def test_executing_on_an_unknown_identifier_still_starts_its_session(server: Server) -> None:
    with sessions_of(server) as make:
        session = make()
        assert session.names() == []
        assert list(server.work_root.iterdir()) == []
        assert session.result("6 * 7") == 42
        assert len(list(server.work_root.iterdir())) == 1
    assert_service_intact(server)


# ---- what cells do to their files ---------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_left_out_of_listings(server: Server) -> None:
    with sessions_of(server) as make:
        session = make()
        session.execute("open(b'\\xff\\xfe', 'w').write('hidden')\n"
                        "open('ok.txt', 'w').write('shown')")
        assert session.names() == ["ok.txt"]
        assert [f["name"] for f in session.listing(newer=True)["value"]] == ["ok.txt"]
        assert session.content("ok.txt").content == b"shown"
        # Uploads still count it (and store beside it); code still sees it.
        assert session.upload("new.txt", b"new").status_code == 200
        assert session.result("import os\nsorted(os.fsencode(n).hex() for n in os.listdir('.'))"
                              ) == sorted([b"\xff\xfe".hex(), b"ok.txt".hex(), b"new.txt".hex()])
    assert_service_intact(server)


def test_timestamps_beyond_what_a_date_can_show_are_clamped(server: Server) -> None:
    with sessions_of(server) as make:
        session = make()
        session.execute("import os\n"
                        "for name, moment in (('future.txt', 1e15), ('past.txt', -1e15)):\n"
                        "    open(name, 'w').write(name)\n"
                        "    os.utime(name, (moment, moment))")
        listed = {e["properties"]["filename"]: e["properties"]["lastModifiedTime"]
                  for e in session.listing()["value"]}
        assert listed == {"future.txt": "9999-12-31T23:59:59Z",
                          "past.txt": "0001-01-01T00:00:00Z"}
        newer = session.request("GET", "/files/future.txt", NEWER)
        assert (newer.status_code, newer.json()["lastModifiedAt"]) == (
            200, "9999-12-31T23:59:59Z")
        assert session.content("past.txt").content == b"past.txt"
    assert_service_intact(server)


def locked_folder_calls(server: Server) -> None:
    with sessions_of(server) as make:
        session = make()
        props = session.execute(
            "import os\n"
            "open('a.txt', 'w').write('a')\n"
            "os.mkdir('sub')\n"
            "open('sub/x', 'w').write('x' * 1000)\n"
            "os.chmod('sub', 0)\n"
            "os.chmod('.', 0)\n"
            # Killed, its launcher's disk watchdog (which opens folders up again as it
            # measures them) cannot undo the chmod before the calls below.
            "os.kill(os.getpid(), 9)")
        assert props["sessionReset"] is True, props
        assert session.names() == ["a.txt"]
        assert session.content("a.txt").content == b"a"
        newer = session.request("GET", "/files/a.txt", NEWER)
        assert (newer.status_code, newer.json()["sizeInBytes"]) == (200, 1)
        assert session.upload("b.txt", b"b").status_code == 200
        assert session.request("DELETE", "/files/a.txt", NEWER).status_code == 204
        assert session.names() == ["b.txt"]
        # The next kernel starts in it again.
        assert session.result("open('b.txt').read()") == "b"
    assert_service_intact(server)


def test_a_session_folder_chmod_to_0_in_the_unprivileged_mode(unprivileged: Server) -> None:
    # The kernel runs as the service's own uid: the folder is the service's to open up again.
    locked_folder_calls(unprivileged)


def test_a_session_folder_chmod_to_0_with_per_run_uids(server: Server) -> None:
    locked_folder_calls(server)


# ---- kernel output ------------------------------------------------------------------------------

FLOOD_BETWEEN_CELLS = """
import os, threading, time

def flood():
    time.sleep(0.3)  # past the end of this cell: the flood comes between cells
    while True:
        os.write(1, b'z' * 65536)

threading.Thread(target=flood, daemon=True).start()
x = 1
os.getpid()
"""
WATCHED_S = 8
RSS_GROWTH_BYTES = 30 * 1024 * 1024


def test_a_kernel_flooding_between_cells_is_reset_and_kept_nothing(server: Server) -> None:
    service = psutil.Process(server.process.pid)
    with sessions_of(server) as make:
        session, bystander = make(), make()
        bystander.execute("y = 2")
        assert session.upload("kept.txt", b"kept").status_code == 200
        props = session.execute(FLOOD_BETWEEN_CELLS)
        assert (props["status"], props["sessionReset"]) == ("Success", False), props
        pid = props["result"]
        before = service.memory_info().rss
        deadline = time.monotonic() + WATCHED_S
        while time.monotonic() < deadline:
            # Checked as it goes: a service that keeps the flood grows by ~200 MB/s.
            grown = service.memory_info().rss - before
            assert grown < RSS_GROWTH_BYTES, f"the service grew by {grown} bytes"
            assert server.health().status_code == 200
            time.sleep(0.2)
        # Killed between cells, not only when the next cell came.
        assert not alive(pid)
        props = session.execute("'x' in globals(), open('kept.txt').read()")
        reason = f"the kernel printed more than {SERVER_OUTPUT_CAP} bytes between cells"
        assert (props["status"], props["sessionReset"], props["sessionResetReason"]) == (
            "Success", True, reason), props
        assert props["result"] == [False, "kept"]
        assert props["stderr"] == RESET_LINE.format(reason)
        # The state carries over again; the other session never noticed.
        session.execute("x = 3")
        assert session.result("x") == 3
        assert bystander.result("y") == 2
    assert_service_intact(server)


def test_a_kernel_that_dies_between_cells_is_reported_by_the_next(server: Server) -> None:
    with sessions_of(server) as make:
        session = make()
        session.execute("import os, threading, time\n"
                        "threading.Thread(target=lambda: (time.sleep(0.2), os._exit(3))).start()")
        time.sleep(1)
        props = session.execute("1")
        assert (props["status"], props["result"], props["sessionResetReason"]) == (
            "Success", 1, "the kernel ended between cells (nonzero_exit)"), props
    assert_service_intact(server)
