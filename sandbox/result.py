"""What one sandboxed run produced: an outcome and its measurements."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """How a run ended. Every value is a normal result, not a failure of the service."""

    OK = "ok"
    NONZERO_EXIT = "nonzero_exit"
    SIGNALED = "signaled"
    WALL_TIMEOUT = "wall_timeout"
    CPU_LIMIT = "cpu_limit"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    FILE_SIZE_LIMIT = "file_size_limit"
    DISK_LIMIT = "disk_limit"  # the working directory reached its bound of bytes or files


@dataclass(frozen=True)
class RunResult:
    """Everything measured of one run.

    `output` holds the captured bytes of both streams in the order they arrived.
    `memory_bytes` is the peak resident set of the main process and its waited-for children.
    """

    outcome: Outcome
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    output: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time_s: float
    cpu_time_s: float
    memory_bytes: int

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK
