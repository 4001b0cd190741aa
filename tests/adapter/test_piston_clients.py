"""Existing Piston client libraries, unchanged, against the real service, pointed at our base
URL instead of Piston's: piston_rspy (the Python binding of the Rust client piston_rs),
pistonpy, and npm's piston-client (run by node)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import piston_rspy
import pytest

from ..utils import Server, assert_nothing_left

T = TypeVar("T")


def run(call: Callable[[], Awaitable[T]]) -> T:
    """Runs one client call. The binding hands its future to the event loop running when the
    call is made, so the call itself must happen inside one."""
    async def main() -> T:
        return await call()
    return asyncio.run(main())


def client(server: Server, prefix: str = "/api/v2/piston") -> piston_rspy.Client:
    return piston_rspy.Client.with_url(server.url + prefix)


def execute(server: Server, executor: piston_rspy.Executor) -> piston_rspy.ExecResponse:
    response = run(lambda: client(server).execute(executor))
    assert_nothing_left(server)
    return response


@pytest.mark.parametrize("prefix", ["/api/v2/piston", "/api/v2"])
def test_fetch_runtimes_lists_every_language(server: Server, prefix: str) -> None:
    runtimes = run(client(server, prefix).fetch_runtimes)
    with server.client() as http:
        listed = http.get("/api/v2/runtimes").json()
    assert [(r.language, r.version, r.aliases) for r in runtimes] == [
        (r["language"], r["version"], r["aliases"]) for r in listed]
    assert [r.language for r in runtimes] == ["bash", "c", "c11", "c++", "c++20", "c++23", "go",
                                              "java", "javascript", "python", "rust"]


def test_python_with_stdin_and_args(server: Server) -> None:
    executor = (piston_rspy.Executor()
                .set_language("python")
                .set_version("3.x")
                .add_file(piston_rspy.File(name="main.py", content=(
                    "import sys\nprint(input(), sys.argv[1:])\n"
                    "print('warned', file=sys.stderr)")))
                .set_stdin("hello")
                .add_args(["a b", "c"]))
    # Sent with piston_rs's defaults: memory limits of -1, which must mean the default.
    response = execute(server, executor)
    assert (response.status, response.is_ok(), response.language) == (200, True, "python")
    assert response.compile is None
    run = response.run
    assert (run.stdout, run.stderr, run.output, run.code, run.signal) == (
        "hello ['a b', 'c']\n", "warned\n", "hello ['a b', 'c']\nwarned\n", 0, None)
    assert run.is_ok()


@pytest.mark.gxx
def test_cpp_compiles_and_runs(server: Server) -> None:
    executor = (piston_rspy.Executor()
                .set_language("cpp")
                .add_file(piston_rspy.File(name="main.cpp", content=(
                    "#include <iostream>\nint main(){int a, b; std::cin >> a >> b;"
                    " std::cout << a * b << std::endl;}")))
                .set_stdin("6 7"))
    response = execute(server, executor)
    assert (response.status, response.language) == (200, "c++")
    assert response.compile is not None
    assert (response.compile.code, response.compile.stderr) == (0, "")
    assert (response.run.stdout, response.run.code, response.run.signal) == ("42\n", 0, None)


@pytest.mark.gxx
def test_cpp_compile_error_is_the_run_result(server: Server) -> None:
    executor = (piston_rspy.Executor().set_language("c++")
                .add_file(piston_rspy.File(name="main.cpp", content="int main() { oops }")))
    response = execute(server, executor)
    assert response.compile is not None
    assert (response.run.code, response.run.stderr) == (response.compile.code,
                                                         response.compile.stderr)
    assert response.run.code == 1 and "error:" in response.run.stderr
    assert response.run.is_err()


def test_timeout_is_a_kill(server: Server) -> None:
    executor = (piston_rspy.Executor().set_language("py").set_run_timeout(500)
                .add_file(piston_rspy.File(content="import time\ntime.sleep(10)")))
    response = execute(server, executor)
    assert (response.status, response.run.code, response.run.signal) == (200, None, "SIGKILL")


def test_request_error_reaches_the_user_verbatim(server: Server) -> None:
    # piston_rs copies an error body into run.stderr: it must be Piston's compact JSON.
    executor = (piston_rspy.Executor().set_language("cobol")
                .add_file(piston_rspy.File(content="DISPLAY 'HI'.")))
    response = execute(server, executor)
    assert (response.status, response.is_err()) == (400, True)
    assert response.run.stderr == '400 Bad Request: {"message":"cobol-* runtime is unknown"}'


# ---- clients that send their JSON untyped or as text/plain -------------------------------------

NODE_CLIENT = Path(__file__).resolve().parents[2] / ".npm" / "node_modules" / "piston-client"


def test_pistonpy_runs_and_lists(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """pistonpy posts `data=json.dumps(...)` with no Content-Type. Its endpoint is written into
    the library (Piston's public instance): pointing it at ours is the only change."""
    import pistonpy.models
    from pistonpy import PistonApp

    endpoint = server.url + "/api/v2/piston"
    original = pistonpy.models.GetOutput.__init__

    def aimed(self: Any, payload: dict[str, Any]) -> None:
        original(self, payload)
        self._endpoint = endpoint + "/execute"

    monkeypatch.setattr(pistonpy.models.GetOutput, "__init__", aimed)
    app = PistonApp()
    app._endpoint = endpoint
    assert app.languages["python"] == next(
        r["version"] for r in httpx.get(endpoint + "/runtimes", timeout=30).json()
        if r["language"] == "python")
    output = app.run(language="python", version="3", code="print(input() * 2)", input="ab")
    assert output["run"]["stdout"] == "abab\n", output
    assert_nothing_left(server)


def test_npm_piston_client_runs(server: Server) -> None:
    """npm's piston-client posts JSON.stringify(body) through node-fetch: text/plain. (node
    and the client come with scripts/install.)"""
    assert shutil.which("node") and NODE_CLIENT.is_dir(), "run scripts/install first"
    script = (f"import piston from {json.dumps(str(NODE_CLIENT / 'index.js'))};\n"
              f"const client = piston({{server: {json.dumps(server.url)}}});\n"
              "const runtimes = await client.runtimes();\n"
              "const result = await client.execute('python', "
              "'import sys; print(sys.argv[1:])', {args: ['x', 'y']});\n"
              "console.log(JSON.stringify({runtimes: runtimes.map(r => r.language), result}));\n")
    done = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert "python" in reply["runtimes"]
    assert reply["result"]["run"]["stdout"] == "['x', 'y']\n", reply
    assert_nothing_left(server)
