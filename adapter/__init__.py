"""The HTTP face of the service: wire JSON in, runtimes calls, wire JSON out."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]

# Loaded on first use: `sandbox-service check` and `grade` start in adapter.__main__, and
# importing this package for them must not load the server (Starlette, runtimes, the sandbox).
_EXPORTS = {"create_app": ".app", "Settings": ".settings", "SettingsError": ".settings"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
