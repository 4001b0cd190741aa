"""Sessions against clients and cells that consume: through real HTTP, real kernels, real jails.

Calls that only read or delete start no session; what a cell does to its files (names that are
not UTF-8, absurd timestamps, a folder without permissions) never makes the files API fail.
Each test ends the sessions it started, then checks that the service still answers and that
nothing of the run is left.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from ..conftest import SERVER_ENV, SERVER_OUTPUT_CAP
from ..utils import (
    IS_ROOT,
    PYTHON_AND_CPP,
    SERVICE_USER,
    Server,
    alive,
    assert_nothing_left,
    find_user,
    only_runtimes,
    provide_user_python,
    run_folders,
    serve,
)
from .test_sessions import LEGACY, NEWER, RESET_LINE, Session, new_identifier, sessions_of

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
    assert run_folders(server.work_root) == []
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
        assert run_folders(server.work_root) == []
        assert session.result("6 * 7") == 42
        assert len(run_folders(server.work_root)) == 1
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


# ---- uploads ------------------------------------------------------------------------------------

MiB = 1024 * 1024
PARALLEL_UPLOADS = 4
BIG_UPLOAD_BYTES = 100 * MiB
UPLOAD_RSS_GROWTH_BYTES = 60 * MiB
QUOTA_BYTES = 4 * MiB


def multipart_chunks(name: str, size: int, chunk: bytes = b"u" * MiB,
                     boundary: str = "upload-boundary-1234") -> tuple[str, Iterator[bytes]]:
    """A multipart body of one part `file` of `size` bytes, sent in pieces (chunked: no
    Content-Length), and its content type."""
    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        left = size
        while left:
            piece = chunk[:min(left, len(chunk))]
            left -= len(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body()


def stream_upload(session: Session, name: str, size: int) -> httpx.Response:
    content_type, body = multipart_chunks(name, size)
    return session.request("POST", "/files/upload", content=body,
                           headers={"Content-Type": content_type})


def session_entries(session: Session) -> list[str]:
    """Everything in the session's folder, as its code sees it (temporary files too)."""
    listed: list[str] = session.result("import os\nsorted(os.listdir('.'))")
    return listed


def test_parallel_big_uploads_stream_without_growing_the_service(server: Server) -> None:
    service = psutil.Process(server.process.pid)
    with sessions_of(server) as make:
        sessions = [make() for _ in range(PARALLEL_UPLOADS)]
        before = service.memory_info().rss
        peak = before
        with concurrent.futures.ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:
            uploads = [pool.submit(stream_upload, s, "big.bin", BIG_UPLOAD_BYTES)
                       for s in sessions]
            while not all(u.done() for u in uploads):
                peak = max(peak, service.memory_info().rss)
                time.sleep(0.05)
            responses = [u.result() for u in uploads]
        assert [r.status_code for r in responses] == [200] * PARALLEL_UPLOADS
        assert peak - before < UPLOAD_RSS_GROWTH_BYTES, f"grew by {peak - before} bytes"
        for session in sessions:
            assert session.listing()["value"][0]["properties"]["size"] == BIG_UPLOAD_BYTES
            assert session.result("import os\nos.path.getsize('big.bin')") == BIG_UPLOAD_BYTES
    assert_service_intact(server)


def test_an_upload_round_trips_byte_for_byte(server: Server) -> None:
    data = os.urandom(3 * MiB + 17)
    with sessions_of(server) as make:
        session = make()
        assert session.upload("data.bin", data).status_code == 200
        assert session.content("data.bin").content == data
        assert session.upload("newer.bin", data[::-1], newer=True).status_code == 200
        assert session.content("newer.bin", newer=True).content == data[::-1]
        digest = hashlib.sha256(data).hexdigest()
        assert session.result("import hashlib\n"
                              "hashlib.sha256(open('data.bin', 'rb').read()).hexdigest()") == digest
        # Parts of any size, split anywhere by the network: the same bytes.
        content_type, body = multipart_chunks("split.bin", len(data), chunk=data)
        pieces = b"".join(body)
        response = session.request(
            "POST", "/files/upload", headers={"Content-Type": content_type},
            content=(pieces[at:at + 7919] for at in range(0, len(pieces), 7919)))
        assert response.status_code == 200, response.text
        assert session.content("split.bin").content == data
        assert session_entries(session) == ["data.bin", "newer.bin", "split.bin"]
    assert_service_intact(server)


def test_a_refused_upload_to_a_new_identifier_starts_no_session(server: Server) -> None:
    before = live_sessions(server)
    with sessions_of(server) as make:
        session = make()
        no_file = session.request("POST", "/files/upload", files={"other": ("x", b"x")})
        assert (no_file.status_code, no_file.json()) == (
            400, {"message": "the upload has no part named file"})
        bad_name = session.upload("../x", b"x")
        assert bad_name.status_code == 400
        not_multipart = session.request("POST", "/files/upload", content=b"{}",
                                        headers={"Content-Type": "application/json"})
        assert (not_multipart.status_code, not_multipart.json()) == (400, {
            "message": "the upload must be multipart/form-data with a part named file"})
        content_type, body = multipart_chunks("cut.bin", 1000)
        cut = b"".join(body)[:-30]  # the closing boundary never comes
        response = session.request("POST", "/files/upload", content=cut,
                                   headers={"Content-Type": content_type})
        assert (response.status_code, response.json()) == (400, {
            "message": "the upload is not valid multipart/form-data: it ends before its "
                       "closing boundary"})
        assert live_sessions(server) == before
        assert run_folders(server.work_root) == []
    assert_service_intact(server)


@pytest.fixture(scope="module")
def quota_server() -> Iterator[Server]:
    """A server whose sessions hold QUOTA_BYTES of files and that takes one upload at once."""
    # 4 MiB of files: too small for a Rust binary, so Python and C++ alone.
    with serve({**SERVER_ENV, "SANDBOX_MAX_DISK_BYTES": str(QUOTA_BYTES),
                "SANDBOX_MAX_UPLOADS_IN_FLIGHT": "1", **only_runtimes(*PYTHON_AND_CPP)}) as srv:
        yield srv


def test_an_upload_past_the_quota_is_refused_mid_stream_leaving_nothing(
        quota_server: Server) -> None:
    with sessions_of(quota_server) as make:
        session = make()
        assert session.upload("kept.txt", b"kept").status_code == 200
        response = stream_upload(session, "big.bin", 2 * QUOTA_BYTES)
        assert (response.status_code, response.json()) == (413, {
            "message": f"the session's files would take {2 * QUOTA_BYTES + 4} bytes; the "
                       f"limit is {QUOTA_BYTES}"})
        # Nothing of it: neither the file nor a temporary one, and the old file is intact.
        assert session.names() == ["kept.txt"]
        assert session_entries(session) == ["kept.txt"]
        assert session.content("kept.txt").content == b"kept"
        # A refused upload that started its session leaves none.
        fresh = make()
        response = stream_upload(fresh, "big.bin", 2 * QUOTA_BYTES)
        assert response.status_code == 413
        assert live_sessions(quota_server) == 1
        # Within the quota, the same session still takes files.
        assert stream_upload(session, "fits.bin", QUOTA_BYTES // 2).status_code == 200
        assert session.names() == ["fits.bin", "kept.txt"]
    assert_service_intact(quota_server)


def test_uploads_past_the_bound_in_flight_are_503(quota_server: Server) -> None:
    release = threading.Event()
    content_type, body = multipart_chunks("slow.bin", 1000, chunk=b"s" * 100)

    def slow() -> Iterator[bytes]:
        yield next(body)
        release.wait(20)
        yield from body

    with sessions_of(quota_server) as make:
        first, second = make(), make()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(first.request, "POST", "/files/upload", content=slow(),
                                  headers={"Content-Type": content_type})
            try:
                # In flight once it started its session (it takes its slot before that). Sent
                # sooner, the second upload could take the slot first and the first be refused.
                deadline = time.monotonic() + 10
                while live_sessions(quota_server) == 0 and time.monotonic() < deadline:
                    assert not pending.done(), pending.result().text
                    time.sleep(0.02)
                response = second.upload("x.txt", b"x")
                assert (response.status_code, response.headers.get("Retry-After"),
                        response.json()) == (503, "1", {
                            "message": "1 uploads are in flight, the most this service takes "
                                       "at once; retry in a moment"})
                newer = second.upload("x.txt", b"x", newer=True)
                assert (newer.status_code, newer.json()["error"]["code"]) == (
                    503, "ServiceUnavailable")
            finally:
                release.set()
            assert pending.result().status_code == 200
        assert first.names() == ["slow.bin"]
        assert second.upload("x.txt", b"x").status_code == 200
    assert_service_intact(quota_server)


def test_uploads_stream_in_the_unprivileged_mode(unprivileged: Server) -> None:
    # No tmpfs and no uid of the session's own. An upload over the request limit (128 MiB)
    # is cut off where it passes it, and what it had written goes with it.
    data = os.urandom(MiB + 3)
    with sessions_of(unprivileged) as make:
        session = make()
        assert session.upload("data.bin", data).status_code == 200
        assert session.content("data.bin").content == data
        response = stream_upload(session, "big.bin", 129 * MiB)
        assert (response.status_code, response.json()) == (413, {
            "message": f"the upload exceeds the limit of {128 * MiB} bytes"})
        assert session_entries(session) == ["data.bin"]
    assert_service_intact(unprivileged)
