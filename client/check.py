"""`sandbox-service check --endpoint URL`: real requests against a deployed service.

Points at a local container (`http://localhost:8080`) or at a session pool's management endpoint
(with `--token`). Every request carries `api-version` and `identifier`, as a pool requires, so
all of them reach the same session. One line per check, PASS or FAIL with its duration; a
failure says what happened and, for the usual deployment mistakes, what it means:

    FAIL  health                     1 ms  GET /health answered 404: {"message":"Not Found"}
          why: the request never reached this service: a wrong image, a wrong target port, (...)
    SKIP  status, python print, ...: every request would fail the same way

An endpoint that cannot be reached at all ends the check with one line on stderr instead
(`cannot reach http://localhost:8080: connection refused`). Exit status: 0 when every check
passed, 1 when one did not or the endpoint cannot be reached, 2 for bad arguments.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .endpoint import UNREACHABLE, unreachable

API_VERSION = "2024-02-02-preview"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_OUTPUT_CAP = 1048576  # a run's output cap unless its request asks for another
PISTON_SEED = {"language": "python", "version": "*", "files": [{"content": "print(42)"}]}
# Layers whose inactivity is by design: each watchdog is off exactly when the kernel bounds
# the same (a tmpfs the disk, a cgroup the memory).
QUIET_LAYERS = {"disk_watchdog", "memory_watchdog"}

TIMED_OUT = ("no answer in time: the service is stuck or overloaded, or a pool is still starting "
             "a session; try again, or raise --timeout")
BROKEN = ("the connection broke before an answer: the service may have crashed or restarted "
          "(docker logs <container>)")
UNAUTHORIZED = ("the token is missing, expired or for another resource (az account "
                "get-access-token --resource https://dynamicsessions.io), or the caller lacks the "
                "\"Azure ContainerApps Session Executor\" role on the pool")
NOT_REACHED = ("the request never reached this service: a wrong image, a wrong target port, or a "
               "path the pool does not forward (a pool also answers 404 when it has no session "
               "left to give: max-sessions)")
NOT_READY = ("the service is up but not ready, for the reason above: a runtime's self-test failed "
             "or is still running (GET / and the service's log say more)")
FOREIGN_503 = ("the 503 did not come from this service but from something in front of it (a "
               "proxy, or the pool): the container may still be starting")
FOREIGN_REPLY = "the answer is not in this service's format: is this endpoint serving its image?"


class CheckFailed(Exception):
    """A check's failure: what happened, what it usually means, and whether any other request
    could fare better (`fatal`: every request would fail the same way)."""

    def __init__(self, reason: str, explanation: str | None = None, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.explanation = explanation
        self.fatal = fatal


@dataclass(frozen=True)
class Passed:
    detail: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    duration_s: float
    detail: str  # on failure, the reason
    explanation: str | None = None
    warnings: tuple[str, ...] = ()
    fatal: bool = False


Check = Callable[[httpx.Client], Passed]


# ---- reading answers ----------------------------------------------------------------------------

def describe(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"


def snippet(response: httpx.Response, limit: int = 200) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def is_ours_404(response: httpx.Response) -> bool:
    """Whether a 404 comes from this service: its JSON names the routes or the languages there
    are. A bare `{"message": "Not Found"}` comes from something else answering on the port."""
    body = json_object(response)
    return (body is not None and isinstance(body.get("message"), str)
            and ("routes" in body or "languages" in body))


def unexpected(response: httpx.Response) -> CheckFailed:
    """The failure for an answer whose status the check did not expect, explained."""
    where = f"{describe(response.request)} answered {response.status_code}"
    status = response.status_code
    body = json_object(response)
    message = body.get("message") if body else None
    if status in (401, 403):
        return CheckFailed(f"{where}: {snippet(response) or 'no body'}", UNAUTHORIZED, fatal=True)
    if status == 404 and not is_ours_404(response):
        return CheckFailed(f"{where}: {snippet(response) or 'no body'}", NOT_REACHED, fatal=True)
    if status == 503:
        if isinstance(message, str):
            return CheckFailed(f"{where}: {message}", NOT_READY)
        return CheckFailed(f"{where}: {snippet(response) or 'no body'}", FOREIGN_503)
    if isinstance(message, str):
        return CheckFailed(f"{where}: {message}")
    return CheckFailed(f"{where}: {snippet(response) or 'no body'}")


def expect(response: httpx.Response, status: int = 200) -> httpx.Response:
    if response.status_code != status:
        raise unexpected(response)
    return response


def expect_json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    body = json_object(expect(response, status))
    if body is None:
        raise CheckFailed(f"{describe(response.request)} answered {response.status_code} "
                          f"without a JSON object: {snippet(response)}", FOREIGN_REPLY)
    return body


def properties_of(response: httpx.Response) -> dict[str, Any]:
    """The `properties` of an Azure-shaped execute reply."""
    props = expect_json(response).get("properties")
    if not isinstance(props, dict):
        raise CheckFailed(f"{describe(response.request)} answered without `properties`: "
                          f"{snippet(response)}", FOREIGN_REPLY)
    return props


def transport_failure(exc: httpx.TransportError) -> CheckFailed:
    """The failure for a request that was sent but got no answer, explained (one that could
    not connect ends the suite instead: see main)."""
    try:
        where = describe(exc.request)
    except RuntimeError:  # raised before there was a request
        where = "the request"
    if isinstance(exc, httpx.TimeoutException):
        return CheckFailed(f"{where}: no answer in time", TIMED_OUT)
    return CheckFailed(f"{where}: {type(exc).__name__}: {exc}", BROKEN)


def execute(client: httpx.Client, language: str, code: str, **properties: Any
            ) -> dict[str, Any]:
    response = client.post(f"/{language}/execute",
                           json={"properties": {"code": code, **properties}})
    return properties_of(response)


def expect_stdout(props: dict[str, Any], stdout: str) -> Passed:
    if props.get("stdout") != stdout or props.get("status") != "Success":
        raise CheckFailed(f"expected stdout {stdout!r} and status Success, got stdout "
                          f"{props.get('stdout')!r}, status {props.get('status')!r}, outcome "
                          f"{props.get('outcome')!r}, stderr {str(props.get('stderr'))[:200]!r}")
    return Passed(f"{stdout!r} in {props.get('executionTimeInMilliseconds')} ms")


# ---- the checks ---------------------------------------------------------------------------------

def check_health(client: httpx.Client) -> Passed:
    response = expect(client.get("/health"))
    if response.text != "ok":
        raise CheckFailed(f"GET /health answered 200 {snippet(response)!r}, not 'ok'",
                          FOREIGN_REPLY)
    return Passed("ok")


def check_status(client: httpx.Client) -> Passed:
    status = expect_json(client.get("/"))
    runtimes, layers = status.get("runtimes"), status.get("layers")
    if not isinstance(runtimes, list) or not runtimes or not isinstance(layers, list):
        raise CheckFailed("GET / has no `runtimes` or `layers`", FOREIGN_REPLY)
    runtimes = [r for r in runtimes if isinstance(r, dict)]
    layers = [layer for layer in layers if isinstance(layer, dict)]
    failed = [r.get("language") for r in runtimes
              if isinstance(r.get("selfTest"), dict) and not r["selfTest"].get("passed")]
    if failed:
        raise CheckFailed(f"self-tests failed: {', '.join(map(str, failed))}", NOT_READY)
    warnings = tuple(f"layer {layer.get('name')} inactive: {layer.get('detail')}"
                     for layer in layers if not layer.get("active")
                     and layer.get("name") not in QUIET_LAYERS
                     and not str(layer.get("detail", "")).startswith("not used"))
    versions = ", ".join(f"{r.get('language')} {r.get('version')}" for r in runtimes)
    active = sum(1 for layer in layers if layer.get("active"))
    return Passed(f"{versions}; {active} of {len(layers)} layers active", warnings)


def check_python(client: httpx.Client) -> Passed:
    return expect_stdout(execute(client, "python", "print(6 * 7)"), "42\n")


def check_cpp(client: httpx.Client) -> Passed:
    code = '#include <iostream>\nint main() { std::cout << "hello " << 6 * 7 << "\\n"; }\n'
    return expect_stdout(execute(client, "cpp", code), "hello 42\n")


def check_stdin(client: httpx.Client) -> Passed:
    code = "a, b = map(int, input().split())\nprint(a + b)"
    return expect_stdout(execute(client, "python", code, stdin="2 3\n"), "5\n")


def check_timeout(client: httpx.Client) -> Passed:
    props = execute(client, "python", "while True:\n    pass", timeoutInSeconds=1)
    if props.get("outcome") not in ("wall_timeout", "cpu_limit"):
        raise CheckFailed(f"an endless loop with timeoutInSeconds 1 ended with outcome "
                          f"{props.get('outcome')!r}, not wall_timeout or cpu_limit")
    return Passed(f"{props['outcome']} after {props.get('executionTimeInMilliseconds')} ms")


def output_cap(client: httpx.Client) -> int:
    """The output cap of a Python run that does not ask for another, from GET / (the usual
    default when GET / does not say)."""
    status = json_object(client.get("/")) or {}
    try:
        return int(status["limits"]["defaults"]["python"]["run"]["max_output_bytes"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_OUTPUT_CAP


def check_output_cap(client: httpx.Client) -> Passed:
    cap = output_cap(client)
    props = execute(client, "python", f"import sys\nsys.stdout.write('x' * {cap + 1000})")
    kept = len(props.get("stdout") or "")
    if props.get("stdoutTruncated") is not True or kept > cap:
        raise CheckFailed(f"{cap + 1000} bytes printed past a cap of {cap}: stdoutTruncated "
                          f"{props.get('stdoutTruncated')!r}, {kept} bytes kept")
    return Passed(f"{kept} of {cap + 1000} bytes kept, outcome {props.get('outcome')}")


def check_unknown_route(client: httpx.Client) -> Passed:
    response = client.get("/no-such-route")
    body = json_object(response)
    if response.status_code != 404 or body is None or not is_ours_404(response):
        raise unexpected(response)
    return Passed(f"404 {body['message']!r}")


def check_piston(client: httpx.Client) -> Passed:
    reply = expect_json(client.post("/api/v2/execute", json=PISTON_SEED))
    run = reply.get("run")
    stdout = run.get("stdout") if isinstance(run, dict) else None
    if stdout != "42\n":
        raise CheckFailed(f"POST /api/v2/execute: expected run.stdout '42\\n', got "
                          f"{json.dumps(reply)[:200]}")
    return Passed(f"{reply.get('language')} {reply.get('version')}")


CHECKS: tuple[tuple[str, Check], ...] = (
    ("health", check_health),
    ("status", check_status),
    ("python print", check_python),
    ("c++ compile and run", check_cpp),
    ("stdin", check_stdin),
    ("timeout enforced", check_timeout),
    ("output cap enforced", check_output_cap),
    ("unknown route", check_unknown_route),
    ("piston execute", check_piston),
)


# ---- running and reporting ----------------------------------------------------------------------

def run_check(name: str, check: Check, client: httpx.Client) -> Result:
    started = time.perf_counter()
    try:
        try:
            passed = check(client)
        except UNREACHABLE:
            raise
        except httpx.TransportError as exc:
            raise transport_failure(exc) from exc
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            # A reply shaped unlike this service's: report it rather than crash the suite.
            raise CheckFailed(f"unexpected reply: {type(exc).__name__}: {exc}",
                              FOREIGN_REPLY) from exc
    except CheckFailed as failure:
        return Result(name, False, time.perf_counter() - started, failure.reason,
                      failure.explanation, fatal=failure.fatal)
    return Result(name, True, time.perf_counter() - started, passed.detail,
                  warnings=passed.warnings)


def format_result(result: Result) -> list[str]:
    """The lines of one result: the verdict, then its explanation or warnings."""
    verdict = "PASS" if result.passed else "FAIL"
    milliseconds = round(result.duration_s * 1000)
    lines = [f"{verdict}  {result.name:<22}{milliseconds:>6} ms  {result.detail}".rstrip()]
    if result.explanation:
        lines.append(f"      why: {result.explanation}")
    lines += [f"WARN  {warning}" for warning in result.warnings]
    return lines


def summarize(results: Sequence[Result], total: int) -> str:
    failed = sum(1 for r in results if not r.passed)
    not_run = total - len(results)
    if failed == 0 and not_run == 0:
        return f"OK: all {total} checks passed"
    skipped = f", {not_run} not run" if not_run else ""
    return f"FAILED: {failed} of {total} checks failed{skipped}"


def make_client(endpoint: str, token: str | None, identifier: str,
                timeout_s: float) -> httpx.Client:
    """A client that adds what a session pool needs to every request: `api-version`,
    `identifier` (one session for the whole suite) and the bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=endpoint.rstrip("/"), headers=headers, timeout=timeout_s,
                        params={"api-version": API_VERSION, "identifier": identifier})


def run_checks(client: httpx.Client, checks: Sequence[tuple[str, Check]] = CHECKS,
               report: Callable[[str], None] = print) -> list[Result]:
    """Runs `checks` in order, reporting each as it ends; stops after a failure that every
    other request would share (nothing reachable, or refused credentials)."""
    results: list[Result] = []
    for position, (name, check) in enumerate(checks):
        result = run_check(name, check, client)
        results.append(result)
        for line in format_result(result):
            report(line)
        if result.fatal and position + 1 < len(checks):
            rest = ", ".join(n for n, _ in checks[position + 1:])
            report(f"SKIP  {rest}: every request would fail the same way")
            break
    return results


def main(endpoint: str, token: str | None = None, identifier: str | None = None,
         timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Runs the whole suite against `endpoint`; 0 when every check passed, else 1."""
    identifier = identifier or f"check-{secrets.token_hex(6)}"
    print(f"checking {endpoint} (identifier {identifier}, api-version {API_VERSION})")
    with make_client(endpoint, token, identifier, timeout_s) as client:
        try:
            results = run_checks(client)
        except UNREACHABLE as exc:
            # No request can fare better: one line, rather than a failure for every check.
            sys.stdout.flush()
            print(f"sandbox-service check: {unreachable(endpoint, exc)}", file=sys.stderr)
            return 1
    print(summarize(results, len(CHECKS)))
    sys.stdout.flush()
    return 0 if len(results) == len(CHECKS) and all(r.passed for r in results) else 1
