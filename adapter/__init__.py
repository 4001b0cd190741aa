"""The HTTP face of the service: wire JSON in, runtimes calls, wire JSON out."""

from .app import create_app
from .settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]
