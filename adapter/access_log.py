"""One log line per request, and per WebSocket connection once it ends: what was asked, how it
ended, how long it took. Never the program text or its output.

Each request has an id, echoed as `X-Request-Id` on its response (on a WebSocket's accept) and
carried by every line written while it is handled (adapter.logs): the client's own when it
sent one that is short and plain, else a random one.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs

log = logging.getLogger("adapter.access")

REQUEST_ID_HEADER = b"x-request-id"
# What a client's id may be: enough for UUIDs, ULIDs, base64 and trace ids, nothing that could
# forge a field, a line or a terminal escape in a log viewer, nor fill the log.
ACCEPTED_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        echoed = (REQUEST_ID_HEADER, request_id.encode())
        started = time.perf_counter()
        status = 500 if scope["type"] == "http" else 403  # a socket closed before its accept
        size = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind in ("http.response.start", "websocket.accept"):
                status = message.get("status", 101)
                message = {**message, "headers": [*message.get("headers", []), echoed]}
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "websocket.send":
                text = message.get("text")
                size += len(text.encode()) if text is not None else len(message.get("bytes") or b"")
            await send(message)

        token = logs.request_id.set(request_id)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            _log_access(scope, status, size, seconds)
            logs.request_id.reset(token)
            # The route template, not the path: unknown paths must not make new series. A
            # WebSocket's time is how long it stayed open, not a request's: left out.
            route = getattr(scope.get("route"), "path", "unmatched")
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            if service is not None and scope["type"] == "http":
                service.metrics.observe_request(scope["method"], route, status, seconds)


def _log_access(scope: Scope, status: int, size: int, seconds: float) -> None:
    state: dict[str, Any] = scope.get("state", {})
    method = scope.get("method", "GET")  # a WebSocket's opening request is a GET
    path = _path(scope)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "query": scope.get("query_string", b"").decode("utf-8", "backslashreplace"),
        "identifier": state.get("identifier"),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "runtime": state.get("runtime"),
        "outcome": state.get("outcome"),
        "error": state.get("error"),
        "request_bytes": _content_length(scope),
        "response_bytes": size,
    }
    if scope["type"] == "websocket":
        fields["websocket"] = True
    log.info("%s %s %d", method, path, status, extra=fields)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            if ACCEPTED_REQUEST_ID.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return secrets.token_hex(16)


def _path(scope: Scope) -> str:
    """The path as the client sent it, percent-decoded; bytes that are not UTF-8 shown as
    `\\xff` (the server's own decoding turns them into U+FFFD, which would hide them)."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return unquote_to_bytes(raw).decode("utf-8", "backslashreplace")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None
