"""`python -m adapter [--host H] [--port P]`: serve on HOST:PORT (default 0.0.0.0:8080).

`python -m adapter check --endpoint URL [--token T] [--identifier ID]`: run the deployment
check against a running service or a session pool's endpoint.

`python -m adapter grade SOURCE --tests DIR_OR_FILE [--endpoint URL] [--language L] [--json]`:
grade a program against test cases on a running service.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import NoReturn

import client


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox-service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to listen on (env HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
    commands = parser.add_subparsers(dest="command", metavar="{check,grade}")
    client.add_commands(commands)
    return parser


def serve(options: argparse.Namespace) -> int:
    # The server is imported only to serve: `check` and `grade` start without loading it.
    from runtimes import RuntimeConfigError
    from sandbox import SandboxError

    from . import logs, server
    from .app import create_app
    from .settings import Settings, SettingsError

    overrides = {k: v for k, v in (("host", options.host), ("port", options.port)) if v}
    try:
        settings = Settings.from_environ(**overrides)
    except SettingsError as exc:
        print(f"sandbox-service: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        app = create_app(settings)
    except (RuntimeConfigError, SandboxError, SettingsError, OSError) as exc:
        print(f"sandbox-service: cannot start: {exc}", file=sys.stderr)
        return 1
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is over, which
    # would end the process as killed by SIGTERM; a stop that let the runs finish is a success.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, exit_stopped)
    # uvicorn exits with 3 when it could not start (the port taken, the lifespan failing).
    return 0 if server.serve(app, settings) else 3


def exit_stopped(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if options.command in client.COMMANDS:
        return client.run(options)
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
