"""`python -m adapter check`: against the real service, a closed port, and small fake servers
that answer as the usual deployment mistakes do."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from client.check import API_VERSION, CHECKS

from ..utils import REPO, Server, free_port

CHECK_NAMES = [name for name, _ in CHECKS]
NOT_RUN = ("SKIP  " + ", ".join(CHECK_NAMES[1:]) + ": every request would fail the same way")
NOT_REACHED = ("      why: the request never reached this service: a wrong image, a wrong target "
               "port, or a path the pool does not forward (a pool also answers 404 when it has no "
               "session left to give: max-sessions)")
UNAUTHORIZED = ("      why: the token is missing, expired or for another resource (az account "
                "get-access-token --resource https://dynamicsessions.io), or the caller lacks the "
                "\"Azure ContainerApps Session Executor\" role on the pool")
NOT_READY = ("      why: the service is up but not ready, for the reason above: a runtime's "
             "self-test failed or is still running (GET / and the service's log say more)")


def run_check(endpoint: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapter", "check", "--endpoint", endpoint,
                           *options], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)


def verdict(line: str) -> tuple[str, str, str]:
    """(PASS|FAIL, check name, detail) of a result line, without its duration."""
    match = re.fullmatch(r"(PASS|FAIL)  (.+?) +\d+ ms  (.*)", line)
    assert match, line
    return match.group(1), match.group(2), match.group(3)


def results(stdout: str) -> list[tuple[str, str, str]]:
    return [verdict(line) for line in stdout.splitlines() if line[:6] in ("PASS  ", "FAIL  ")]


def test_every_check_passes_against_the_service(server: Server) -> None:
    done = run_check(server.url, "--identifier", "check-test-1")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"checking {server.url} (identifier check-test-1, "
                        f"api-version {API_VERSION})")
    assert [(v, name) for v, name, _ in results(done.stdout)] == [
        ("PASS", name) for name in CHECK_NAMES]
    assert lines[-1] == f"OK: all {len(CHECKS)} checks passed"


def test_a_closed_port_ends_the_check_with_one_line() -> None:
    port = free_port()
    done = run_check(f"http://127.0.0.1:{port}/", "--identifier", "check-test-0")
    assert done.returncode == 1
    # No check can fare better than the first: no result per check, one reason.
    assert done.stdout.splitlines() == [(f"checking http://127.0.0.1:{port}/ (identifier "
                                        f"check-test-0, api-version {API_VERSION})")]
    assert done.stderr.splitlines() == [
        f"sandbox-service check: cannot reach http://127.0.0.1:{port}: connection refused"]


@pytest.mark.parametrize(("command", "endpoint", "message"), [
    ("check", "127.0.0.1:8080",
     "--endpoint must start with http:// or https:// (got '127.0.0.1:8080')"),
    ("check", "localhost:8080/",
     "--endpoint must start with http:// or https:// (got 'localhost:8080/')"),
    ("check", "ftp://localhost", ("--endpoint must start with http:// or https:// (got "
                                 "'ftp://localhost')")),
    ("check", "http://", "--endpoint has no host (got 'http://')"),
    ("grade", "127.0.0.1:8080",
     "--endpoint must start with http:// or https:// (got '127.0.0.1:8080')"),
])
def test_an_endpoint_that_is_not_a_url_is_a_usage_error(command: str, endpoint: str,
                                                         message: str) -> None:
    arguments = {"check": [], "grade": ["main.py", "--tests", "cases"]}[command]
    done = subprocess.run([sys.executable, "-m", "adapter", command, *arguments, "--endpoint",
                           endpoint], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    # Exit 2 before any request: not a failed check for each of the suite's requests.
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == f"sandbox-service {command}: error: {message}"


# ---- fake servers --------------------------------------------------------------------------------

@dataclass
class Fake:
    """What a fake server answers (to everything, or per path in `paths`; status 0: it closes
    the connection without an answer), and the requests it saw, with their bodies."""

    status: int
    content_type: str
    body: bytes
    paths: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, str, bytes]:
        return self.paths.get(urlsplit(path).path, (self.status, self.content_type, self.body))


@contextmanager
def fake_server(fake: Fake) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            fake.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            fake.seen.append((self.command, self.path, dict(self.headers.items())))
            status, content_type, body = fake.answer(self.path)
            if status == 0:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


JSON = "application/json"
TEXT = "text/plain"


@pytest.mark.parametrize(("status", "content_type", "body", "explanation"), [
    # What answered when the pool forwarded to the wrong thing (the old incident).
    (404, JSON, '{"message":"Not Found"}', NOT_REACHED),
    (404, TEXT, "Not Found", NOT_REACHED),
    (401, TEXT, "", UNAUTHORIZED),
    (403, JSON, '{"error":{"code":"Forbidden"}}', UNAUTHORIZED),
], ids=["404-json", "404-text", "401", "403"])
def test_an_endpoint_that_is_not_the_service_is_explained(
        status: int, content_type: str, body: str, explanation: str) -> None:
    with fake_server(Fake(status, content_type, body.encode())) as url:
        done = run_check(url, "--token", "t0k3n")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert results(done.stdout) == [
        ("FAIL", "health", f"GET /health answered {status}: {body or 'no body'}")]
    assert lines[2:] == [explanation, NOT_RUN,
                         f"FAILED: 1 of {len(CHECKS)} checks failed, 8 not run"]


def test_a_service_that_is_not_ready_shows_its_message_and_every_request_is_addressed() -> None:
    message = "the self-test of c++ failed: g++ not found"
    fake = Fake(503, JSON, json.dumps({"message": message}).encode())
    with fake_server(fake) as url:
        done = run_check(url, "--token", "t0k3n", "--identifier", "check-test-2")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    verdicts = results(done.stdout)
    assert [(v, name) for v, name, _ in verdicts] == [("FAIL", name) for name in CHECK_NAMES]
    assert verdicts[0][2] == f"GET /health answered 503: {message}"
    assert verdicts[2][2] == f"POST /python/execute answered 503: {message}"
    assert lines.count(NOT_READY) == len(CHECKS)
    assert lines[-1] == f"FAILED: {len(CHECKS)} of {len(CHECKS)} checks failed"
    # What a pool needs on every request, the output-cap lookup included.
    assert len(fake.seen) == len(CHECKS) + 1
    for method, target, headers in fake.seen:
        query = parse_qs(urlsplit(target).query)
        assert query == {"api-version": [API_VERSION], "identifier": ["check-test-2"]}, target
        assert headers["Authorization"] == "Bearer t0k3n", (method, target)


def test_inactive_layers_are_warnings_not_failures() -> None:
    tmpfs = "mount refused (needs CAP_SYS_ADMIN)"
    status = {"runtimes": [{"language": "python", "version": "3.11.2",
                            "selfTest": {"passed": True, "detail": "printed 'python OK'"}}],
              "layers": [
                  {"name": "seccomp", "active": True, "detail": "..."},
                  {"name": "tmpfs", "active": False, "detail": tmpfs},
                  # Off by design: the tmpfs or the watchdog bounds the disk; pidns is unused.
                  {"name": "disk_watchdog", "active": False, "detail": "the tmpfs bounds the disk"},
                  {"name": "pidns", "active": False, "detail": "not used: ..."}]}
    not_found = json.dumps({"message": "no route", "routes": []}).encode()
    fake = Fake(404, JSON, not_found, paths={"/health": (200, TEXT, b"ok"),
                                             "/": (200, JSON, json.dumps(status).encode())})
    with fake_server(fake) as url:
        done = run_check(url)
    lines = done.stdout.splitlines()
    assert results(done.stdout)[:2] == [("PASS", "health", "ok"),
                                        ("PASS", "status", "python 3.11.2; 1 of 4 layers active")]
    assert [line for line in lines if line.startswith("WARN")] == [
        f"WARN  layer tmpfs inactive: {tmpfs}"]
    assert lines[3].startswith("WARN")  # right under the status line
    assert done.returncode == 1  # the execute routes answered 404
