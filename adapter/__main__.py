"""`sandbox-service <command>` (`python -m adapter` is the same):

  sandbox-service serve [--host H] [--port P]
      serve on HOST:PORT (default 0.0.0.0:8080; env HOST and PORT)
  sandbox-service check --endpoint URL [--token T] [--identifier ID]
      run the deployment check against a running service or a session pool's endpoint
  sandbox-service grade SOURCE --tests DIR_OR_FILE [--endpoint URL] [--language L] [--json]
      grade a program against test cases on a running service
  sandbox-service --version

`sandbox-service <command> --help` describes each command.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import NoReturn

import client

from .version import VERSION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox-service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sandbox-service {VERSION}")
    # `--host`/`--port` before any command once meant "serve": still accepted, so that such a
    # command line gets a usage error naming `serve` (see main) rather than "unrecognized".
    parser.add_argument("--host", dest="bare_host", help=argparse.SUPPRESS)
    parser.add_argument("--port", dest="bare_port", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    server = commands.add_parser(
        "serve", help="serve the API on HOST:PORT",
        description="Serves the API on HOST:PORT until SIGTERM or SIGINT (settings: "
                    "environment variables, docs/operating.md).")
    server.add_argument("--host", help="address to listen on (env HOST, default 0.0.0.0)")
    server.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
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
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.bare_host is not None or options.bare_port is not None:
        # Serving is never implied: a bare command line must not open a public port.
        given = " ".join(f"--{name} {value}" for name, value in
                         (("host", options.bare_host), ("port", options.bare_port))
                         if value is not None)
        parser.error(f"to serve, name the command: sandbox-service serve {given}")
    if options.command is None:
        parser.print_help()
        return 0
    if options.command in client.COMMANDS:
        return client.run(options)
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
