"""The service's log: one flat JSON object a line on stderr, whoever logs (ours, uvicorn's,
libraries').

Every line has `timestamp` (ISO 8601, UTC), `level`, `logger` and `message`; fields passed as
`extra=` are fields of the line; a line written while a request or WebSocket is handled
carries its `request_id` (set by adapter.access_log for the request's duration):

    {"timestamp": "2026-12-03T19:04:11.532087+00:00", "level": "info",
     "logger": "adapter.access", "message": "GET /health 200", "request_id": "abc-123", ...}
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# The id of the request being handled, None outside one. A contextvar rather than a field
# threaded through every call: tasks and threads the request starts (asyncio.to_thread) copy
# it, so lines from the runtimes and the sandbox carry it too.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None)

# uvicorn passes a copy of its message with terminal colours as `color_message`: not a field.
NOT_FIELDS = (*RESERVED_ATTRS, "color_message")


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to each record (on the handler, so that records of every
    logger pass it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


class LineFormatter(JsonFormatter):
    """python-json-logger's formatter, with the level in lower case as the service always
    wrote it. ensure_ascii (its default) escapes whatever is not ASCII, lone surrogates from
    undecodable bytes included, so no text can make a line fail to encode."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()


def formatter() -> logging.Formatter:
    return LineFormatter(
        "{timestamp}{levelname}{name}{message}", style="{", timestamp=True,
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        reserved_attrs=NOT_FIELDS)


def configure(level: str) -> None:
    """Sends every logger's records at `level` (`info`, `debug`…) and above to stderr as JSON
    lines; Python warnings too, which would otherwise be bare text on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
