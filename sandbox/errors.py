"""Failures of the sandbox itself (never of the program it runs).

    SandboxError
    ├── UnsafeName      a file name that would leave the working directory
    └── LaunchError     the launcher could not start or supervise the program
"""

from __future__ import annotations


class SandboxError(Exception):
    """The sandbox could not do what was asked."""


class UnsafeName(SandboxError, ValueError):
    """A file name that is absolute, climbs out with `..`, or is otherwise unusable."""


class LaunchError(SandboxError):
    """The launcher failed: the program could not be started or supervised."""
