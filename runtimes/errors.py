"""Failures of the runtimes layer.

    RuntimesError
    ├── RuntimeConfigError   a runtime file is invalid, or its toolchain is missing (at startup)
    ├── UnknownRuntime       a request named a language that no runtime answers to
    └── ReservedSourceName   a source file is named like a file the compile writes
"""

from __future__ import annotations


class RuntimesError(Exception):
    """Base of this layer's errors."""


class RuntimeConfigError(RuntimesError):
    """A runtime description is wrong; the message names the file and the key."""


class UnknownRuntime(RuntimesError, LookupError):
    """No runtime has this name or alias."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown language {name!r}; available: {', '.join(known)}")
        self.name = name
        self.known = known


class ReservedSourceName(RuntimesError, ValueError):
    """Source file `index` of a request is named like a file the compile writes."""

    def __init__(self, index: int, name: str) -> None:
        super().__init__(f"{name!r} is the name of the program the compile writes")
        self.index = index
        self.name = name
