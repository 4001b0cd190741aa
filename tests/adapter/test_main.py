"""The `sandbox-service` command line (and `python -m adapter`, the same), as real processes:
its commands, help, version, and that nothing but `serve` ever serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..utils import REPO, Server, free_port, serve

# The console script beside this interpreter, when the project is installed in its environment.
CONSOLE_SCRIPT = shutil.which("sandbox-service", path=str(Path(sys.executable).parent))
COMMAND_LINES = [pytest.param([sys.executable, "-m", "adapter"], id="python -m adapter"),
                 pytest.param([CONSOLE_SCRIPT or "sandbox-service"], id="sandbox-service",
                              marks=pytest.mark.skipif(CONSOLE_SCRIPT is None,
                                                       reason="the console script is not "
                                                              "installed here"))]


def run(command: list[str], *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False, env=env)


@pytest.mark.parametrize("command", COMMAND_LINES)
def test_version_is_the_one_the_service_reports(command: list[str], server: Server) -> None:
    done = run(command, "--version")
    with server.client() as client:
        version = client.get("/").json()["version"]
    assert (done.returncode, done.stdout, done.stderr) == (0, f"sandbox-service {version}\n", "")


@pytest.mark.parametrize("command", COMMAND_LINES)
def test_a_bare_command_prints_help_and_serves_nothing(command: list[str]) -> None:
    # HOST and PORT set as a deployment would: still nothing listens.
    port = free_port()
    done = run(command, env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: sandbox-service ")
    for line in ("  sandbox-service serve [--host H] [--port P]",
                 "  sandbox-service check --endpoint URL [--token T] [--identifier ID]",
                 "  sandbox-service --version"):
        assert line in done.stdout.splitlines()
    assert "python -m adapter [" not in done.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")


@pytest.mark.parametrize("subcommand", ["serve", "check", "grade"])
@pytest.mark.parametrize("command", COMMAND_LINES)
def test_each_command_has_its_own_help(command: list[str], subcommand: str) -> None:
    done = run(command, subcommand, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: sandbox-service {subcommand} ")


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "9000"],
     "sandbox-service: error: to serve, name the command: sandbox-service serve --port 9000"),
    (["--host", "0.0.0.0", "--port", "9000"],
     ("sandbox-service: error: to serve, name the command: sandbox-service serve --host 0.0.0.0 "
      "--port 9000")),
    (["--no-such-option"], "sandbox-service: error: unrecognized arguments: --no-such-option"),
    (["serve", "--port", "eighty"],
     "sandbox-service serve: error: argument --port: invalid int value: 'eighty'"),
    (["nonsense"], ("sandbox-service: error: argument <command>: invalid choice: 'nonsense' "
                    "(choose from 'serve', 'check', 'grade')")),
])
def test_usage_errors_are_exit_2_with_one_line_of_reason(args: list[str], message: str) -> None:
    # `--host`/`--port` alone served before `serve` existed: now they never start a server.
    done = run([sys.executable, "-m", "adapter"], *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == message
    assert done.stderr.splitlines()[0].startswith("usage: sandbox-service")


def test_serve_listens_where_its_flags_say() -> None:
    # HOST and PORT point elsewhere (an address of no interface here): the flags win.
    decoys = {"HOST": "192.0.2.1", "PORT": str(free_port())}
    with serve(decoys, listen_flags=True) as server, server.client() as client:
        assert client.get("/health").text == "ok"
