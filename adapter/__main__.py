"""`python -m adapter [--host H] [--port P]`: serve on HOST:PORT (default 0.0.0.0:8080).

`python -m adapter check --endpoint URL [--token T] [--identifier ID]`: run the deployment
check against a running service or a session pool's endpoint.

`python -m adapter grade SOURCE --tests DIR_OR_FILE [--endpoint URL] [--language L] [--json]`:
grade a program against test cases on a running service.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from types import FrameType
from typing import NoReturn

from runtimes import RuntimeConfigError
from sandbox import SandboxError

from . import check, grade, server
from .app import create_app
from .settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox-service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to listen on (env HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
    commands = parser.add_subparsers(dest="command", metavar="{check,grade}")
    checker = commands.add_parser(
        "check", help="run the deployment check against a service",
        description="Runs a short suite of real requests against a service and explains each "
                    "failure; exits 1 if any check fails.")
    checker.add_argument("--endpoint", required=True,
                         help="the service's base URL (http://localhost:8080), or a session "
                              "pool's management endpoint")
    checker.add_argument("--token", help="bearer token sent as Authorization (a pool needs one: "
                                         "az account get-access-token --resource "
                                         "https://dynamicsessions.io)")
    checker.add_argument("--identifier",
                         help="session identifier sent with every request (default: a random one)")
    checker.add_argument("--timeout", type=float, default=check.DEFAULT_TIMEOUT_S,
                         help="seconds to wait for each answer (default %(default)s)")
    grader = commands.add_parser(
        "grade", help="grade a program against test cases on a service",
        description=grade.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    grader.add_argument("source", metavar="SOURCE", help="the program's source file")
    grader.add_argument("--tests", required=True, metavar="DIR_OR_FILE",
                        help="a folder of NAME.in/NAME.out pairs, or a JSON file of cases")
    grader.add_argument("--endpoint", default=grade.DEFAULT_ENDPOINT,
                        help="the service's base URL (default %(default)s)")
    grader.add_argument("--language",
                        help="a runtime name or alias (default: from SOURCE's suffix)")
    grader.add_argument("--json", action="store_true", dest="as_json",
                        help="print only the reply, as JSON")
    grader.add_argument("--chunk", type=int, default=grade.DEFAULT_CHUNK_CASES, metavar="N",
                        help="cases per request (default %(default)s)")
    grader.add_argument("--wall-timeout", type=float, metavar="S",
                        help="wall-clock limit of every case, seconds")
    grader.add_argument("--cpu-time", type=float, metavar="S",
                        help="CPU-time limit of every case, seconds")
    grader.add_argument("--memory", type=int, metavar="BYTES",
                        help="address-space limit of every case's processes, bytes")
    grader.add_argument("--timeout", type=float, default=grade.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for each answer (default %(default)s)")
    return parser


def serve(options: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", options.host), ("port", options.port)) if v}
    try:
        settings = Settings.from_environ(**overrides)
    except SettingsError as exc:
        print(f"sandbox-service: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
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


class JsonLines(logging.Formatter):
    """Every log line is one JSON object: ours already are; others (uvicorn's) are wrapped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and not record.exc_info:
            return message
        line = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def exit_stopped(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if options.command == "check":
        return check.main(options.endpoint, options.token, options.identifier, options.timeout)
    if options.command == "grade":
        limits = grade.limit_options(options.wall_timeout, options.cpu_time, options.memory)
        return grade.main(options.source, options.tests, options.endpoint, options.language,
                          options.as_json, options.chunk, limits, options.timeout)
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
