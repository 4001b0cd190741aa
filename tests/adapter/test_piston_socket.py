"""Piston's `/api/v2/connect` WebSocket end to end: a real uvicorn service, a real WebSocket
client, real programs fed stdin and signals as they run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ..utils import Server, assert_nothing_left, leftover_processes

CONNECT = "/api/v2/connect"
JOB_COMPLETED = (4999, "Job Completed")
NOTIFIED_ERROR = (4002, "Notified Error")
ECHO = "import os\nwhile data := os.read(0, 65536):\n    os.write(1, data)\n"
# One write (print would write the newline apart), so "ready\n" arrives as one message.
READY_THEN_SLEEP = "import sys, time\nsys.stdout.write('ready\\n')\nwhile True: time.sleep(0.1)\n"
# Enough headers that g++ takes a while: the client can act during the compile stage.
SLOW_COMPILE = "#include <bits/stdc++.h>\nint main() { std::puts(\"compiled\"); }\n"


class Conversation:
    """One client connection: send JSON messages, read them back, see how it closed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.close: tuple[int, str] | None = None

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        received = json.loads(self.ws.recv(timeout=timeout))
        assert isinstance(received, dict)
        return received

    def receive_until(self, done: Any, timeout: float = 10) -> list[dict[str, Any]]:
        """Messages up to and including the first for which `done(message)` is true."""
        messages = [self.receive(timeout)]
        while not done(messages[-1]):
            messages.append(self.receive(timeout))
        return messages

    def rest(self, timeout: float = 15) -> list[dict[str, Any]]:
        """Every message until the service closes the connection; the close is kept."""
        messages = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                messages.append(self.receive(max(0.0, deadline - time.monotonic())))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the service did not send a close frame"
            self.close = (closed.rcvd.code, closed.rcvd.reason)
        return messages


@contextmanager
def conversation(server: Server, path: str = CONNECT) -> Iterator[Conversation]:
    url = server.url.replace("http://", "ws://") + path
    with connect(url, proxy=None, open_timeout=5, close_timeout=5) as ws:
        yield Conversation(ws)
    # Whatever happened, the job is gone and the service still answers.
    assert_nothing_left(server)
    assert server.health().text == "ok"


def once_ready(server: Server, message: dict[str, Any], code: str = READY_THEN_SLEEP
               ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """Starts `code`, sends `message` once it printed "ready", and returns the messages that
    followed and how the connection was closed."""
    with conversation(server) as talk:
        talk.send(init("python", code))
        talk.receive_until(is_data("ready\n"))
        talk.send(message)
        messages = talk.rest()
    return messages, talk.close


def init(language: str, code: str, **fields: Any) -> dict[str, Any]:
    name = "main.cpp" if language in ("c++", "cpp", "g++") else "main.py"
    return {"type": "init", "language": language, "version": "*",
            "files": [{"name": name, "content": code}], **fields}


def stream_text(messages: list[dict[str, Any]], stream: str) -> str:
    return "".join(m["data"] for m in messages if m["type"] == "data" and m["stream"] == stream)


def exit_message(stage: str, code: int | None = 0, signal: str | None = None,
                 status: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"type": "exit", "stage": stage, "code": code, "signal": signal, "status": status,
            "message": message}


def is_data(text: str) -> Any:
    return lambda m: m["type"] == "data" and text in m["data"]


@pytest.fixture(scope="module")
def python_version(server: Server) -> str:
    with server.client() as client:
        runtimes = client.get("/api/v2/runtimes").json()
    version: str = next(rt["version"] for rt in runtimes if rt["language"] == "python")
    return version


# ---- jobs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CONNECT, "/api/v2/piston/connect"])
def test_echo_streams_stdin_until_eof(server: Server, python_version: str, path: str) -> None:
    with conversation(server, path) as talk:
        talk.send(init("py", ECHO, stdin="from init\n"))
        assert talk.receive() == {"type": "runtime", "language": "python",
                                  "version": python_version}
        assert talk.receive() == {"type": "stage", "stage": "run"}
        first = talk.receive_until(is_data("from init\n"))
        # Each chunk is echoed while the program runs, before any end of input.
        talk.send({"type": "data", "stream": "stdin", "data": "h\u00e9llo "})
        second = talk.receive_until(is_data("llo "))
        talk.send({"type": "data", "stream": "stdin", "data": "w\u00f6rld\n"})
        talk.send({"type": "data", "stream": "stdin", "data": "\u2603 no newline"})
        talk.send({"type": "data", "stream": "stdin", "eof": True})
        rest = talk.rest()
    messages = first + second + rest
    assert {m["type"] for m in messages[:-1]} == {"data"}
    assert stream_text(messages, "stdout") == "from init\nh\u00e9llo w\u00f6rld\n\u2603 no newline"
    assert stream_text(messages, "stderr") == ""
    assert messages[-1] == exit_message("run")
    assert talk.close == JOB_COMPLETED


def test_eof_may_come_with_the_last_data(server: Server) -> None:
    with conversation(server) as talk:
        talk.send(init("python", "import sys\ndata = sys.stdin.read()\nprint(len(data), data)"))
        talk.send({"type": "data", "stream": "stdin", "data": "abc", "eof": True})
        messages = talk.rest()
    assert stream_text(messages, "stdout") == "3 abc\n"
    assert messages[-1] == exit_message("run")
    assert talk.close == JOB_COMPLETED


def test_program_ending_on_its_own_completes_the_job(server: Server) -> None:
    with conversation(server) as talk:
        talk.send(init("python", "import sys\nprint(input())\nprint('err', file=sys.stderr)\n"
                                 "sys.exit(3)"))
        talk.send({"type": "data", "stream": "stdin", "data": "line\nnever read"})
        messages = talk.rest()
    assert (stream_text(messages, "stdout"), stream_text(messages, "stderr")) == ("line\n",
                                                                                  "err\n")
    assert messages[-1] == exit_message("run", 3, None, "RE", "Exited with error status 3")
    assert talk.close == JOB_COMPLETED


def test_utf8_split_across_writes_arrives_whole(server: Server) -> None:
    # "é" in two writes, far enough apart to be two chunks; a stray byte at the very end.
    code = ("import os, time\nos.write(1, b'caf\\xc3')\ntime.sleep(0.2)\n"
            "os.write(1, b'\\xa9\\n')\ntime.sleep(0.2)\nos.write(1, b'\\xe2\\x98')")
    with conversation(server) as talk:
        talk.send(init("python", code))
        messages = talk.rest()
    assert stream_text(messages, "stdout") == "caf\u00e9\n\ufffd"
    assert messages[-1] == exit_message("run")


def test_init_in_a_binary_frame_is_read_as_json(server: Server) -> None:
    with conversation(server) as talk:
        talk.send(json.dumps(init("python", "print('binary')")).encode())
        messages = talk.rest()
    assert stream_text(messages, "stdout") == "binary\n"
    assert talk.close == JOB_COMPLETED


def test_sigint_reaches_the_program(server: Server) -> None:
    messages, close = once_ready(server, {"type": "signal", "signal": "SIGINT"})
    # Python turns SIGINT into KeyboardInterrupt and a traceback, then, uncaught, ends itself
    # by SIGINT so that its parent sees why.
    stderr = stream_text(messages, "stderr")
    assert stderr.startswith("Traceback (most recent call last):")
    assert stderr.endswith("KeyboardInterrupt\n")
    assert messages[-1] == exit_message("run", None, "SIGINT", "SG", "Caught fatal signal 2")
    assert close == JOB_COMPLETED


def test_a_handled_signal_lets_the_program_finish(server: Server) -> None:
    code = ("import signal, sys, time\n"
            "def handler(number, frame):\n"
            "    print('caught', signal.Signals(number).name, flush=True)\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGUSR1, handler)\n" + READY_THEN_SLEEP)
    messages, close = once_ready(server, {"type": "signal", "signal": "SIGUSR1"}, code)
    assert stream_text(messages, "stdout") == "caught SIGUSR1\n"
    assert messages[-1] == exit_message("run")
    assert close == JOB_COMPLETED


def test_sigterm_kills_the_program(server: Server) -> None:
    messages, close = once_ready(server, {"type": "signal", "signal": "SIGTERM"})
    assert messages == [exit_message("run", None, "SIGTERM", "SG", "Caught fatal signal 15")]
    assert close == JOB_COMPLETED


@pytest.mark.gxx
def test_cpp_job_has_a_compile_stage_then_a_run_stage(server: Server) -> None:
    with server.client() as client:
        version = next(rt["version"] for rt in client.get("/api/v2/runtimes").json()
                       if rt["language"] == "c++")
    code = "#include <iostream>\nint main(){std::string s; std::cin >> s; std::cout << s << 2;}"
    with conversation(server) as talk:
        talk.send(init("cpp", code))
        talk.send({"type": "data", "stream": "stdin", "data": "sent during compile", "eof": True})
        messages = talk.rest()
    assert messages == [
        {"type": "runtime", "language": "c++", "version": version},
        {"type": "stage", "stage": "compile"},
        exit_message("compile"),
        {"type": "stage", "stage": "run"},
        {"type": "data", "stream": "stdout", "data": "sent2"},
        exit_message("run"),
    ]
    assert talk.close == JOB_COMPLETED


@pytest.mark.gxx
def test_cpp_compile_error_ends_after_the_compile_stage(server: Server) -> None:
    with conversation(server) as talk:
        talk.send(init("c++", "int main() { return undeclared; }"))
        messages = talk.rest()
    assert [m["type"] for m in messages[:2]] == ["runtime", "stage"]
    assert messages[-1] == exit_message("compile", 1, None, "RE", "Exited with error status 1")
    assert {m["stream"] for m in messages[2:-1]} == {"stderr"}
    assert "error:" in stream_text(messages, "stderr")
    assert talk.close == JOB_COMPLETED


# ---- closing codes -------------------------------------------------------------------------------

def test_second_init_closes_4000(server: Server) -> None:
    messages, close = once_ready(server, init("python", "print(2)"))
    # The running program is killed on the way out; nothing of the second job ran.
    assert messages == [exit_message("run", None, "SIGKILL", "SG", "Caught fatal signal 9")]
    assert close == (4000, "Already Initialized")


def test_no_init_within_a_second_closes_4001(server: Server) -> None:
    started = time.monotonic()
    with conversation(server) as talk:
        messages = talk.rest()
    assert messages == []
    assert talk.close == (4001, "Initialization Timeout")
    assert 0.9 <= time.monotonic() - started < 5


@pytest.mark.parametrize(("message", "error"), [
    (init("cobol", "x"), "cobol-* runtime is unknown"),
    ({**init("python", "x"), "version": "3.1"}, "python-3.1 runtime is unknown"),
    ({"type": "init", "language": "python"}, "version is required as a string"),
    ({**init("python", "x"), "run_timeout": 1e9},
     "run_timeout cannot exceed the configured limit of 60000"),
    ({**init("python", "x"), "files": [{"name": "../x", "content": "x"}]},
     "files[0].name: file name '../x' must not contain '..'"),
    ("{", ("the message is not valid JSON: Expecting property name enclosed in double quotes: "
           "line 1 column 2 (char 1)")),
    ("[1]", "a message must be a JSON object"),
])
def test_bad_init_sends_the_error_then_closes_4002(server: Server, message: dict[str, Any] | str,
                                                   error: str) -> None:
    with conversation(server) as talk:
        talk.send(message)
        messages = talk.rest()
    assert messages == [{"type": "error", "message": error}]
    assert talk.close == NOTIFIED_ERROR


def test_bad_data_during_a_run_sends_the_error_then_closes_4002(server: Server) -> None:
    messages, close = once_ready(server, {"type": "data", "stream": "stdin", "data": 5})
    assert messages[0] == {"type": "error", "message": "data must be a string"}
    assert close == NOTIFIED_ERROR


@pytest.mark.parametrize("message", [
    {"type": "data", "stream": "stdin", "data": "early"},
    {"type": "signal", "signal": "SIGINT"},
])
def test_data_or_signal_before_init_closes_4003(server: Server, message: dict[str, Any]) -> None:
    with conversation(server) as talk:
        talk.send(message)
        assert talk.rest() == []
    assert talk.close == (4003, "Not yet initialized")


@pytest.mark.parametrize("stream", ["stdout", "stderr", None])
def test_data_for_another_stream_than_stdin_closes_4004(server: Server,
                                                        stream: str | None) -> None:
    messages, close = once_ready(server, {"type": "data", "stream": stream, "data": "x"})
    assert messages == [exit_message("run", None, "SIGKILL", "SG", "Caught fatal signal 9")]
    assert close == (4004, "Can only write to stdin")


@pytest.mark.parametrize("name", ["SIGFOO", "sigint", "2", 2, None, ["SIGINT"]])
def test_unknown_signal_closes_4005(server: Server, name: Any) -> None:
    messages, close = once_ready(server, {"type": "signal", "signal": name})
    assert messages == [exit_message("run", None, "SIGKILL", "SG", "Caught fatal signal 9")]
    assert close == (4005, "Invalid signal")


def test_unknown_message_types_are_ignored(server: Server) -> None:
    with conversation(server) as talk:
        talk.send({"type": "hello"})
        talk.send({"no": "type"})
        talk.send(init("python", "print('still fine')"))
        messages = talk.rest()
    assert stream_text(messages, "stdout") == "still fine\n"
    assert talk.close == JOB_COMPLETED


# ---- clients that leave --------------------------------------------------------------------------

def test_client_leaving_mid_run_leaves_no_process(server: Server) -> None:
    # `conversation` checks that nothing is left once the client has gone.
    with conversation(server) as talk:
        talk.send(init("python", "import os\nos.fork()\n" + READY_THEN_SLEEP))
        talk.receive_until(is_data("ready\n"))


@pytest.mark.gxx
def test_client_leaving_mid_compile_leaves_no_process(server: Server) -> None:
    with conversation(server) as talk:
        talk.send(init("c++", SLOW_COMPILE))
        talk.receive_until(lambda m: m == {"type": "stage", "stage": "compile"})
        deadline = time.monotonic() + 5
        while not any(p.name() == "cc1plus" for p in leftover_processes(server)):
            assert time.monotonic() < deadline, "the compiler never started"
            time.sleep(0.02)


# The other runtimes, interactively: each reads a line, answers, reads the rest to end of input.
INTERACTIVE = {
    "javascript": ("const rl = require('readline').createInterface({input: process.stdin});\n"
                   "const lines = []; rl.on('line', l => { lines.push(l);"
                   " if (lines.length === 1) console.log('got ' + l); });\n"
                   "rl.on('close', () => console.log('then ' + lines.slice(1).join('|')));\n"),
    "bash": "read first\necho \"got $first\"\nrest=$(cat)\necho \"then ${rest//$'\\n'/|}\"\n",
    "java": ("import java.util.*;\npublic class Main { public static void main(String[] a) {\n"
             "  Scanner in = new Scanner(System.in); System.out.println(\"got \" + in.nextLine());"
             "\n  List<String> rest = new ArrayList<>();"
             " while (in.hasNextLine()) rest.add(in.nextLine());\n"
             "  System.out.println(\"then \" + String.join(\"|\", rest)); } }\n"),
    "c": ("#include <stdio.h>\n#include <string.h>\nint main(void){ char l[64]; fgets(l, 64, stdin);"
          " l[strcspn(l, \"\\n\")] = 0; printf(\"got %s\\n\", l); fflush(stdout);\n"
          "  char all[256] = \"\"; while (fgets(l, 64, stdin)) { l[strcspn(l, \"\\n\")] = 0;"
          " if (*all) strcat(all, \"|\"); strcat(all, l); } printf(\"then %s\\n\", all); }\n"),
}


MAIN_FILES = {"javascript": "main.js", "bash": "main.sh", "java": "Main.java", "c": "main.c"}


@pytest.mark.parametrize("language", sorted(INTERACTIVE))
def test_other_runtimes_stream_stdin_too(server: Server, language: str) -> None:
    with conversation(server) as talk:
        talk.send({**init(language, INTERACTIVE[language]),
                   "files": [{"name": MAIN_FILES[language], "content": INTERACTIVE[language]}]})
        talk.send({"type": "data", "stream": "stdin", "data": "first\n"})
        answered = talk.receive_until(is_data("got first\n"), timeout=60)
        talk.send({"type": "data", "stream": "stdin", "data": "second\nthird\n"})
        talk.send({"type": "data", "stream": "stdin", "eof": True})
        messages = answered + talk.rest(timeout=60)
    assert stream_text(messages, "stdout") == "got first\nthen second|third\n", messages
    assert messages[-1] == exit_message("run")
    assert talk.close == JOB_COMPLETED
