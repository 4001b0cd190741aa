"""Resource limits of one sandboxed run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one run may use. Every field is enforced by the launcher before or during the run."""

    wall_timeout_s: float = 10.0
    cpu_time_s: float = 5.0
    memory_bytes: int = 512 * MiB  # address space of each process (RLIMIT_AS)
    stack_bytes: int = 8 * MiB
    max_processes: int = 64  # processes and threads of the run's uid (RLIMIT_NPROC)
    max_open_files: int = 256
    max_file_bytes: int = 16 * MiB  # size of any one file written (RLIMIT_FSIZE)
    max_output_bytes: int = 1 * MiB  # bytes kept of stdout, and separately of stderr

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{field.name} must be a positive number, not {value!r}")

    def clamp(self, ceilings: Limits) -> Limits:
        """Each field lowered to its ceiling where it exceeds it."""
        return Limits(**{
            f.name: min(getattr(self, f.name), getattr(ceilings, f.name))
            for f in dataclasses.fields(self)
        })

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits))
