"""The service's log, read from a real server's stderr: one JSON object a line, each with its
time, level and logger, and the id of the request it was written for."""

from __future__ import annotations

import json
import logging
import re
import socket
from datetime import datetime, timedelta
from typing import Any

import pytest
from websockets.sync.client import connect

from adapter import logs

from ..utils import Server

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def raw_request(server: Server, head: bytes) -> tuple[int, dict[str, str]]:
    """Sends `head` (a request without body) as bytes, however odd, and returns the reply's
    status and headers (names in lower case)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status_line, *header_lines = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def access_lines(server: Server, request_id: str) -> list[dict[str, Any]]:
    return server.wait_for_log(lambda line: line.get("request_id") == request_id
                               and line["logger"] == "adapter.access")


def test_every_line_is_json_with_a_utc_timestamp_a_level_and_a_logger(server: Server) -> None:
    with server.client() as client:
        client.get("/health")
        client.get("/no/such/route")
    lines = server.log_lines()  # json.loads of each line: one that is not JSON fails here
    assert lines
    for line in lines:
        assert isinstance(line, dict), line
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() == timedelta(0), line
        assert line["level"] in {"debug", "info", "warning", "error", "critical"}, line
        assert isinstance(line["logger"], str) and line["logger"], line
    # The events are fields of the line, not JSON inside its message.
    assert not [line for line in lines if line["message"].startswith("{")]


def test_a_clients_request_id_is_echoed_and_on_its_access_line(server: Server) -> None:
    with server.client() as client:
        response = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    [line] = access_lines(server, "abc-123")
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health", 200)


def test_without_a_request_id_one_is_made_echoed_and_logged(server: Server) -> None:
    with server.client() as client:
        first = client.get("/health").headers["x-request-id"]
        second = client.get("/health").headers["x-request-id"]
    assert GENERATED_ID.fullmatch(first) and GENERATED_ID.fullmatch(second)
    assert first != second
    [line] = access_lines(server, first)
    assert (line["path"], line["status"]) == ("/health", 200)


@pytest.mark.parametrize("sent", [
    b"x" * 129,  # longer than 128 characters
    b"",
    b"abc 123",
    b'abc","level":"critical',  # a forged field
    b"abc\xff\xfe",  # not UTF-8
    b"\x1b[31mred",  # a terminal escape
])
def test_a_long_or_hostile_request_id_is_replaced(server: Server, sent: bytes) -> None:
    status, headers = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                          b"X-Request-Id: " + sent + b"\r\n\r\n")
    assert status == 200
    made = headers["x-request-id"]
    assert GENERATED_ID.fullmatch(made), made
    [line] = access_lines(server, made)
    assert line["path"] == "/health"


def test_a_malformed_piston_version_is_a_400_and_one_line_without_a_traceback(
        server: Server) -> None:
    for index, version in enumerate(["not a version!!", ">=x<<"]):
        request_id = f"bad-version-{index}"
        response = server.post("/api/v2/execute",
                               {"language": "python", "version": version,
                                "files": [{"content": "print(1)"}]},
                               headers={"X-Request-Id": request_id})
        assert (response.status_code, response.json()) == (
            400, {"message": f"python-{version} runtime is unknown"})
        [line] = access_lines(server, request_id)
        assert line["status"] == 400
        written = [line for line in server.log_lines() if line.get("request_id") == request_id]
        assert written == [line]
    text = server.log_path.read_text()
    assert "Traceback" not in text and "nodesemver" not in text


def test_a_path_that_is_not_utf8_is_logged_escaped(server: Server) -> None:
    status, headers = raw_request(
        server, b"GET /caf%C3%A9/%FF%FEx?q=%FF HTTP/1.1\r\nHost: x\r\n"
                b"User-Agent: odd \xff\xfe\x80 bytes\r\nX-Request-Id: odd-path\r\n\r\n")
    assert (status, headers["x-request-id"]) == (404, "odd-path")
    [line] = access_lines(server, "odd-path")
    assert (line["path"], line["query"]) == ("/caf\u00e9/\\xff\\xfex", "q=%FF")
    assert line["message"] == "GET /caf\u00e9/\\xff\\xfex 404"


def test_a_websocket_has_a_request_id_echoed_and_an_access_line(server: Server) -> None:
    url = server.url.replace("http://", "ws://") + "/api/v2/connect"
    with connect(url, proxy=None, open_timeout=5, close_timeout=5,
                 additional_headers={"X-Request-Id": "ws-abc"}) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "ws-abc"
        ws.send(json.dumps({"type": "init", "language": "python", "version": "*",
                            "files": [{"content": "print(42)"}]}))
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1].get("type") != "exit":
            messages.append(json.loads(ws.recv(timeout=10)))
    [line] = access_lines(server, "ws-abc")
    assert (line["path"], line["status"], line["websocket"]) == ("/api/v2/connect", 101, True)
    assert line["response_bytes"] > 0


def test_text_that_is_not_utf8_is_escaped_by_the_formatter() -> None:
    """Undecodable bytes reach records as lone surrogates (os.fsdecode, surrogateescape): the
    line is still ASCII JSON that gives them back, never an encoding error."""
    record = logging.LogRecord("adapter", logging.WARNING, __file__, 1, "file %s", ("a\udcff",),
                               None)
    record.path = "/\udcfe"
    line = logs.formatter().format(record)
    assert line.isascii()
    parsed = json.loads(line)
    assert (parsed["message"], parsed["path"], parsed["level"]) == (
        "file a\udcff", "/\udcfe", "warning")
