"""Turning program output (arbitrary bytes) into JSON-safe text, shared by every wire format."""

from __future__ import annotations

import signal

from runtimes import Execution


def text(data: bytes) -> str:
    """Bytes as text; invalid UTF-8 becomes U+FFFD, so the JSON is always valid."""
    return data.decode("utf-8", errors="replace")


def signal_name(number: int | None) -> str | None:
    """`9` → `"SIGKILL"`; None stays None."""
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def outcome_name(execution: Execution) -> str:
    """The execution's outcome as the wire formats name it: `compile_error` when the compile
    stage failed, else the run's outcome."""
    return "compile_error" if execution.run is None else execution.final.outcome.value
