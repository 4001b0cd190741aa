"""One log line per request, as JSON: what was asked, how it ended, how long it took.

Never the program text or its output.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("adapter.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        size = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            state: dict[str, Any] = scope.get("state", {})
            query = scope.get("query_string", b"").decode("latin-1")
            log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "method": scope["method"],
                "path": scope["path"],
                "query": query,
                "identifier": state.get("identifier"),
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                "runtime": state.get("runtime"),
                "outcome": state.get("outcome"),
                "error": state.get("error"),
                "request_bytes": _content_length(scope),
                "response_bytes": size,
            })
            # The route template, not the path: unknown paths must not make new series.
            route = getattr(scope.get("route"), "path", "unmatched")
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            if service is not None:
                service.metrics.observe_request(scope["method"], route, status, seconds)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None
