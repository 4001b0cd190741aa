"""`python -m adapter [--host H] [--port P]`: serve on HOST:PORT (default 0.0.0.0:8080)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from runtimes import RuntimeConfigError
from sandbox import SandboxError

from .app import create_app
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sandbox-service", description=__doc__)
    parser.add_argument("--host", help="address to listen on (env HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
    options = parser.parse_args(argv)
    overrides = {k: v for k, v in (("host", options.host), ("port", options.port)) if v}
    try:
        settings = Settings.from_environ(**overrides)
    except SettingsError as exc:
        print(f"sandbox-service: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s", stream=sys.stderr)
    try:
        app = create_app(settings)
    except (RuntimeConfigError, SandboxError, OSError) as exc:
        print(f"sandbox-service: cannot start: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False,
                log_level=settings.log_level, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
