"""The service's version, from its installed metadata.

Its own module, importing nothing of the server: `sandbox-service --version` answers without
loading Starlette, the runtimes or the sandbox.
"""

from __future__ import annotations

import importlib.metadata

try:
    VERSION = importlib.metadata.version("sandbox-service")
except importlib.metadata.PackageNotFoundError:  # running from a source checkout
    VERSION = "0.1.0"
