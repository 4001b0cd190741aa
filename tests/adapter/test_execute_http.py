"""The Azure execute routes through real HTTP, a real uvicorn and real programs."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from ..conftest import SECRET, SERVER_OUTPUT_CAP
from ..utils import IS_ROOT, Server, alive, assert_nothing_left


def execute(server: Server, code: str, language: str = "python", **properties: Any
            ) -> dict[str, Any]:
    response = server.post(f"/{language}/execute?api-version=2024-02-02-preview&identifier=t1",
                           json={"properties": {"code": code, **properties}})
    assert response.status_code == 200, response.text
    props: dict[str, Any] = response.json()["properties"]
    assert server.health().text == "ok"
    assert_nothing_left(server)
    return props


def test_python_print(server: Server) -> None:
    response = server.post("/python/execute?api-version=2024-02-02-preview&identifier=s1",
                           json={"properties": {"code": "print(6*7)"}})
    body = response.json()
    assert body["$id"] == "1"
    props = body["properties"]
    assert (props["$id"], props["status"], props["stdout"], props["stderr"]) == (
        "2", "Success", "42\n", "")
    assert (props["result"], props["executionResult"], props["outcome"], props["exitCode"]) == (
        "", "", "ok", 0)
    assert isinstance(props["executionTimeInMilliseconds"], int)
    assert props["runtime"]["language"] == "python"


@pytest.mark.gxx
def test_cpp_with_stdin(server: Server) -> None:
    code = '#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";}'
    props = execute(server, code, "cpp", stdin="2 3")
    assert (props["status"], props["stdout"], props["compile"]["outcome"]) == ("Success", "5\n", "ok")


def test_code_execute_is_python_and_accepts_every_client_variant(server: Server) -> None:
    response = server.post("/code/execute", json={"properties": {
        "codeInputType": "inline", "executionType": "Synchronous", "code": "print('hi')",
        "identifier": "abc|&#", "timeoutInSeconds": 100}})
    assert response.json()["properties"]["stdout"] == "hi\n"
    # The identifier started a session, which lives on until it is ended.
    with server.client() as client:
        assert client.delete("/session", params={"identifier": "abc|&#"}).status_code == 204


def test_stdin_and_args(server: Server) -> None:
    props = execute(server, "import sys\nprint(sys.argv[1:], sys.stdin.read())", "py3",
                    stdin="in put", args=["a b", "--c"])
    assert props["stdout"] == "['a b', '--c'] in put\n"


@pytest.mark.gxx
def test_compile_error(server: Server) -> None:
    props = execute(server, "int main() { return undeclared; }", "c++")
    assert (props["status"], props["outcome"], props["compile"]["outcome"]) == (
        "Failure", "compile_error", "nonzero_exit")
    assert "undeclared" in props["stderr"] and props["exitCode"] == 1


def test_runtime_error_has_its_traceback(server: Server) -> None:
    props = execute(server, "def f():\n    1/0\nf()")
    assert (props["status"], props["outcome"], props["exitCode"]) == ("Failure", "nonzero_exit", 1)
    assert props["stderr"].startswith("Traceback (most recent call last):")
    assert props["stderr"].endswith("ZeroDivisionError: division by zero\n")


def test_infinite_loop_is_a_wall_timeout(server: Server) -> None:
    props = execute(server, "import time\nwhile True: time.sleep(0.1)", timeoutInSeconds=1)
    assert (props["status"], props["outcome"], props["signal"]) == ("Failure", "wall_timeout",
                                                                    "SIGKILL")
    assert 1000 <= props["executionTimeInMilliseconds"] < 3000


def test_cpu_spin_spread_over_children_hits_the_cpu_limit(server: Server) -> None:
    # timeoutInSeconds sets wall and CPU alike, so whether the CPU bound comes first depends
    # on how many cores the spinners get; Piston's fields set them apart: 1 s CPU, 30 s wall.
    code = "import os\nos.fork()\nos.fork()\nwhile True: pass"
    reply = server.post("/api/v2/execute", {
        "language": "python", "version": "*", "files": [{"content": code}],
        "run_cpu_time": 1000, "run_timeout": 30000}).json()
    assert (reply["run"]["status"], reply["run"]["message"]) == ("TO", "Time limit exceeded")
    assert reply["run"]["wall_time"] < 30000


def test_python_memory_bomb(server: Server) -> None:
    props = execute(server, "x = []\nwhile True: x.append(' ' * (1 << 20))")
    assert (props["status"], props["outcome"]) == ("Failure", "memory_limit")


@pytest.mark.gxx
def test_cpp_memory_bomb(server: Server) -> None:
    code = "#include <vector>\nint main(){std::vector<std::vector<char>> v;" \
           "while(true) v.emplace_back(1 << 20, 'x');}"
    props = execute(server, code, "cpp")
    assert props["outcome"] == "memory_limit"


@pytest.mark.root
def test_fork_bomb(server: Server) -> None:
    # Runs only as root, where each run has its own uid and RLIMIT_NPROC bounds the bomb.
    code = ("import os, time\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        time.sleep(0.05)\n")
    props = execute(server, code, timeoutInSeconds=2)
    assert props["outcome"] == "wall_timeout"


def test_output_flood_capped_at_exactly_the_cap(server: Server) -> None:
    props = execute(server, "import sys\nwhile True: sys.stdout.write('ab' * 4096)")
    assert (props["outcome"], props["stdoutTruncated"]) == ("output_limit", True)
    assert props["stdout"] == ("ab" * SERVER_OUTPUT_CAP)[:SERVER_OUTPUT_CAP]


def test_invalid_utf8_and_nul_still_give_json(server: Server) -> None:
    props = execute(server, "import sys\nsys.stdout.buffer.write(b'a\\xff\\x00b')")
    assert props["stdout"] == "a\ufffd\x00b"


def test_double_forked_setsid_sleeper_leaves_nothing(server: Server) -> None:
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        print(os.getpid(), flush=True)\n        time.sleep(120)\n    os._exit(0)\n"
            "time.sleep(0.3)\n")
    props = execute(server, code)
    assert props["outcome"] == "ok"
    assert not alive(int(props["stdout"]))


def test_service_secrets_are_invisible(server: Server) -> None:
    code = (f"import os\nprint(sorted(os.environ))\n"
            f"open('/proc/{server.process.pid}/environ', 'rb').read()")
    props = execute(server, code)
    assert SECRET not in props["stdout"] + props["stderr"]
    assert "SANDBOX_TEST_SECRET" not in props["stdout"]
    assert props["stderr"].endswith(
        f"PermissionError: [Errno 13] Permission denied: '/proc/{server.process.pid}/environ'\n")


@pytest.mark.root
def test_runs_are_another_uid(server: Server) -> None:
    props = execute(server, "import os\nprint(os.getuid())")
    assert int(props["stdout"]) >= 60000


def test_health_and_status_answer_while_runs_go_on(server: Server) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(server.post, "/python/execute",
                            {"properties": {"code": "import time\ntime.sleep(2)"}})
                for _ in range(2)]
        time.sleep(0.5)
        with server.client(timeout=5) as client:
            started = time.monotonic()
            assert client.get("/health").text == "ok"
            status = client.get("/").json()
            assert time.monotonic() - started < 1
        assert status["runs"]["running"] >= 1
        assert all(f.result().json()["properties"]["outcome"] == "ok" for f in slow)
    assert_nothing_left(server)


def test_status_lists_runtimes_limits_and_layers(server: Server) -> None:
    with server.client() as client:
        status = client.get("/").json()
    assert status["service"] == "sandbox-service" and status["status"] == "ready"
    languages = {r["language"]: r for r in status["runtimes"]}
    assert languages["python"]["selfTest"]["passed"] is True
    assert status["limits"]["ceilings"]["max_output_bytes"] == SERVER_OUTPUT_CAP
    layers = {layer["name"]: layer["active"] for layer in status["layers"]}
    assert layers["rlimits"] and layers["no_new_privs"]
    assert layers["per_run_uid"] is IS_ROOT
