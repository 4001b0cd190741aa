"""The `check` and `grade` subcommands of `sandbox-service`: their flags, and running them."""

from __future__ import annotations

import argparse
import re

from . import check, grade
from .endpoint import EndpointAction

COMMANDS = ("check", "grade")
# Binary multiples, as memory limits are usually given: 256M is 256 MiB.
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def byte_size(text: str) -> int:
    """`--memory`'s argument in bytes: plain bytes, or a number with K, M or G (binary:
    `256M` is 268435456)."""
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: give bytes, or a number with K, M or G (512K, 256M, 1G)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `check` and `grade` to the subcommands of the `sandbox-service` parser."""
    checker = commands.add_parser(
        "check", help="run the deployment check against a service",
        description="Runs a short suite of real requests against a service and explains each "
                    "failure; exits 1 if any check fails.")
    checker.add_argument("--endpoint", required=True, action=EndpointAction,
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
    grader.add_argument("--endpoint", default=grade.DEFAULT_ENDPOINT, action=EndpointAction,
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
    grader.add_argument("--memory", type=byte_size, metavar="SIZE",
                        help="memory limit of every case: bytes, or with K, M or G (256M)")
    grader.add_argument("--timeout", type=float, default=grade.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for each answer (default %(default)s)")
    grader.add_argument("--checker", metavar="KIND",
                        help="how outputs are compared: exact, lines (the default), tokens, "
                             "floats or unordered (docs/api.md, POST /batch)")
    grader.add_argument("--tolerance", type=float, metavar="X",
                        help="absolute and relative tolerance of the floats checker "
                             "(default 1e-6; implies --checker floats)")


def run(options: argparse.Namespace) -> int:
    """Runs the subcommand `options.command` (one of COMMANDS); its exit status."""
    if options.command == "check":
        return check.main(options.endpoint, options.token, options.identifier, options.timeout)
    limits = grade.limit_options(options.wall_timeout, options.cpu_time, options.memory)
    return grade.main(options.source, options.tests, options.endpoint, options.language,
                      options.as_json, options.chunk, limits, options.timeout,
                      grade.checker_option(options.checker, options.tolerance))
