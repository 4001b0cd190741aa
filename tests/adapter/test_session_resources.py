"""Sessions against clients and cells that consume: through real HTTP, real kernels, real jails.

Calls that only read or delete start no session; what a cell does to its files (names that are
not UTF-8, absurd timestamps, a folder without permissions) never makes the files API fail.
Each test ends the sessions it started, then checks that the service still answers and that
nothing of the run is left.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..utils import Server, assert_nothing_left
from .test_sessions import LEGACY, NEWER, new_identifier, sessions_of

PROBED_IDENTIFIERS = 100


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
