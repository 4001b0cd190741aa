"""Failures of the runtimes layer.

    RuntimesError
    ├── RuntimeConfigError   a runtime file is invalid, or its toolchain is missing (at startup)
    └── UnknownRuntime       a request named a language that no runtime answers to
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
