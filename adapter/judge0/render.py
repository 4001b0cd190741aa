"""A stored submission as Judge0 answers it: the fields asked for, text in base64 or UTF-8."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Sequence
from typing import Any

from .fields import BOUNDS
from .judging import STATUSES
from .languages import Languages
from .store import Stored

# Every field, in Judge0's order; `fields=*` asks for them all.
ALL_FIELDS = (
    "source_code", "language_id", "stdin", "expected_output", "stdout", "status_id",
    "created_at", "finished_at", "time", "memory", "stderr", "token", "number_of_runs",
    "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
    "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output",
    "exit_code", "exit_signal", "message", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url", "additional_files",
    "enable_network", "status", "language")
DEFAULT_FIELDS = ("token", "time", "memory", "stdout", "stderr", "compile_output", "message",
                  "status")
# Text a client reads in base64 when it asks (base64_encoded=true), else as UTF-8.
ENCODED = ("source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output",
           "message")
STORED_AS_BASE64 = ("source_code", "stdin", "expected_output", "stdout", "stderr",
                    "compile_output")
RESULT_FIELDS = ("stdout", "stderr", "compile_output", "message", "time", "wall_time",
                 "memory", "exit_code", "exit_signal")
# Judge0's decimal columns, which it answers as strings ("5.0").
DECIMALS = ("cpu_time_limit", "cpu_extra_time", "wall_time_limit")
CONVERSION_ERROR = ("some attributes for this submission cannot be converted to UTF-8, use "
                    "base64_encoded=true query parameter")
BATCH_CONVERSION_ERROR = ("some attributes for one or more submissions cannot be converted to "
                          "UTF-8, use base64_encoded=true query parameter")


class NotUtf8(ValueError):
    """Output that is not UTF-8 was asked for without base64."""


def requested_fields(raw: str | None) -> tuple[tuple[str, ...], list[str]]:
    """(the fields asked for, the unknown ones) from a `fields` parameter."""
    if raw is None or not raw.strip():
        return DEFAULT_FIELDS, []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if "*" in names:
        return ALL_FIELDS, []
    return tuple(dict.fromkeys(names)), [name for name in names if name not in ALL_FIELDS]


def timestamp(seconds: float | None) -> str | None:
    """Judge0's timestamps: ISO 8601 in UTC, to the millisecond, with a Z."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render(stored: Stored, fields: Sequence[str], base64_encoded: bool,
           languages: Languages) -> dict[str, Any]:
    """The submission with `fields`; raises NotUtf8 when text that is not UTF-8 is asked for
    without base64 (Judge0's rule: bytes are never silently changed)."""
    request, result = stored.request, stored.result or {}
    language_id = request["language_id"]
    values: dict[str, Any] = {
        **{name: request.get(name) for name in ("source_code", "stdin", "expected_output",
                                                "compiler_options", "command_line_arguments",
                                                "redirect_stderr_to_stdout", "callback_url",
                                                "additional_files", "enable_network",
                                                "enable_per_process_and_thread_time_limit",
                                                "enable_per_process_and_thread_memory_limit",
                                                *BOUNDS)},
        **{name: result.get(name) for name in RESULT_FIELDS},
        "language_id": language_id, "status_id": stored.status_id, "token": stored.token,
        "created_at": timestamp(stored.created_at),
        "finished_at": timestamp(stored.finished_at),
        "status": {"id": stored.status_id, "description": STATUSES[stored.status_id]},
        "language": {"id": language_id,
                     "name": (languages.name(language_id) if language_id in languages
                              else None)},
    }
    for name in DECIMALS:
        if values[name] is not None:
            values[name] = str(float(values[name]))
    shown: dict[str, Any] = {}
    for name in fields:
        value = values.get(name)
        if name in ENCODED and value is not None:
            data = (base64.b64decode(value) if name in STORED_AS_BASE64
                    else str(value).encode())
            if base64_encoded:
                value = base64.b64encode(data).decode()
            else:
                try:
                    value = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise NotUtf8(name) from None
        shown[name] = value
    return shown
