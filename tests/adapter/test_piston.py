"""Piston's v2 execute API: version resolution, every error message, files, and each status a
real program can end with. Validation tables go through the app in-process; runs go through a
real uvicorn service."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from adapter.piston import resolve_runtime
from runtimes import Registry, Runtime, SelfTest, Stage
from sandbox import Limits

from ..conftest import SERVER_OUTPUT_CAP
from ..utils import Server, assert_nothing_left

EXECUTE = "/api/v2/execute"
ROUTE_PREFIXES = ("/api/v2", "/api/v2/piston")
SEED = {"language": "python", "version": "3.11", "files": [{"content": "print(42)"}],
        "stdin": "", "args": []}
# A request that passes every check, to change one field at a time.
GOOD: dict[str, Any] = {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}
MISSING = object()  # a field left out of the body
STAGE_KEYS = {"stdout", "stderr", "output", "code", "signal", "message", "status", "cpu_time",
              "wall_time", "memory"}
# The limits the app's default settings configure: SANDBOX_MAX_MEMORY_BYTES, and
# SANDBOX_MAX_WALL_TIMEOUT_S and SANDBOX_MAX_CPU_TIME_S in milliseconds.
CONFIGURED = {"memory_limit": 2147483648, "timeout": 60000, "cpu_time": 60000}
LIMIT_FIELDS = [(f"{stage}_{constraint}", limit)
                for constraint, limit in CONFIGURED.items() for stage in ("compile", "run")]
B64_FILE = {"content": base64.b64encode(b"print(1)").decode(), "encoding": "base64"}
HEX_FILE = {"content": b"print(1)".hex(), "encoding": "hex"}


# ---- helpers -------------------------------------------------------------------------------------

def compact(parsed: Any) -> bytes:
    """JSON as the service must send it: no spaces (piston_rs copies error bodies verbatim)."""
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


def piston(server: Server, body: dict[str, Any], path: str = EXECUTE) -> dict[str, Any]:
    """One execute call through real HTTP: a 200 in compact JSON, and nothing left behind."""
    response = server.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.content == compact(response.json())
    reply: dict[str, Any] = response.json()
    assert_nothing_left(server)
    return reply


def python(code: str, **fields: Any) -> dict[str, Any]:
    return {"language": "python", "version": "*", "files": [{"content": code}], **fields}


def cpp(code: str, **fields: Any) -> dict[str, Any]:
    return {"language": "c++", "version": "*", "files": [{"name": "main.cpp", "content": code}],
            **fields}


def post_raw(client: TestClient, body: Any, path: str = EXECUTE) -> httpx2.Response:
    """Posts `body` as JSON text, NaN and escaped lone surrogates included."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


def with_fields(**changes: Any) -> dict[str, Any]:
    body = dict(GOOD)
    for key, value in changes.items():
        if value is MISSING:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def assert_error(response: httpx2.Response, status: int, message: str) -> None:
    """Piston's error shape exactly: `{"message": …}` alone, compact."""
    assert (response.status_code, response.json()) == (status, {"message": message})
    assert response.content == compact({"message": message})


@pytest.fixture(scope="session")
def versions(server: Server) -> dict[str, str]:
    """Each installed runtime's exact version, as the service lists it."""
    with server.client() as client:
        return {rt["language"]: rt["version"] for rt in client.get("/api/v2/runtimes").json()}


# ---- the runtimes list and the seed request ------------------------------------------------------

@pytest.mark.parametrize("prefix", ROUTE_PREFIXES)
def test_runtimes_list_is_pistons_shape(server: Server, prefix: str,
                                        versions: dict[str, str]) -> None:
    with server.client() as client:
        response = client.get(f"{prefix}/runtimes")
    assert response.status_code == 200
    assert response.content == compact(response.json())
    listed = {rt["language"]: rt for rt in response.json()}
    assert set(listed) == {"bash", "c", "c11", "c++", "c++20", "c++23", "go", "java",
                           "javascript", "python", "rust"}
    # The default standard keeps the runtime's name and aliases, and answers to its own.
    assert listed["c++"] == {"language": "c++", "version": versions["c++"],
                             "aliases": ["cpp", "g++", "c++17", "cpp17"], "runtime": "gcc"}
    assert listed["c++20"] == {"language": "c++20", "version": versions["c++"],
                               "aliases": ["cpp20"], "runtime": "gcc"}
    assert listed["javascript"]["runtime"] == "node"
    assert listed["python"] == {"language": "python", "version": versions["python"],
                                "aliases": ["py", "python3", "py3"]}


def test_listed_python_version_is_the_interpreter_that_runs(server: Server,
                                                            versions: dict[str, str]) -> None:
    reply = piston(server, python("import platform\nprint(platform.python_version())"))
    assert re.fullmatch(r"3\.11\.\d+", versions["python"])
    assert reply["run"]["stdout"] == versions["python"] + "\n"
    assert reply["version"] == versions["python"]


@pytest.mark.parametrize("path", [f"{prefix}/execute" for prefix in ROUTE_PREFIXES])
@pytest.mark.parametrize("version", ["3.11", "*", "3.x", "3", "^3.10", ">=3", "exact"])
def test_seed_request_prints_42_for_every_matching_range(server: Server, versions: dict[str, str],
                                                         path: str, version: str) -> None:
    body = {**SEED, "version": versions["python"] if version == "exact" else version}
    reply = piston(server, body, path)
    run = reply.pop("run")
    assert reply == {"language": "python", "version": versions["python"]}  # no compile stage
    assert set(run) == STAGE_KEYS
    assert {k: run[k] for k in ("stdout", "stderr", "output", "code", "signal", "message",
                                "status")} == {
        "stdout": "42\n", "stderr": "", "output": "42\n", "code": 0, "signal": None,
        "message": None, "status": None}
    assert all(type(run[k]) is int and run[k] >= 0 for k in ("cpu_time", "wall_time", "memory"))
    assert run["memory"] > 0


# ---- version ranges and names --------------------------------------------------------------------

@pytest.mark.parametrize(("language", "version"), [
    ("python", "3.1"),  # a range of 3.1.x: it must not match 3.11
    ("python", "2.x"),
    ("python", "abc"),
    ("python", "4"),
    ("python", "<3"),
    ("Python", "*"),  # names are case-sensitive
    ("PY", "3"),
    ("c++", "3.11"),  # python's version under another language
    ("cobol", "*"),
    ("python", " " * 257),  # longer than any range is allowed to be
])
def test_unmatched_language_or_range_is_unknown(app_client: TestClient, language: str,
                                                version: str) -> None:
    response = post_raw(app_client, with_fields(language=language, version=version))
    assert_error(response, 400, f"{language}-{version} runtime is unknown")


@pytest.mark.parametrize(("alias", "name"), [("py", "python"), ("py3", "python"),
                                             ("python3", "python")])
def test_python_aliases_resolve_to_the_runtimes_name(server: Server, versions: dict[str, str],
                                                     alias: str, name: str) -> None:
    reply = piston(server, {**python("print('via alias')"), "language": alias})
    assert (reply["language"], reply["version"], reply["run"]["stdout"]) == (
        name, versions[name], "via alias\n")


@pytest.mark.gxx
@pytest.mark.parametrize("alias", ["cpp", "c++", "g++"])
def test_cpp_aliases_resolve_to_the_runtimes_name(server: Server, versions: dict[str, str],
                                                  alias: str) -> None:
    major = versions["c++"].split(".")[0]
    body = {**cpp('#include <cstdio>\nint main(){std::puts("via alias");}'), "language": alias,
            "version": major}
    reply = piston(server, body)
    assert (reply["language"], reply["version"], reply["run"]["stdout"]) == (
        "c++", versions["c++"], "via alias\n")
    assert reply["compile"]["status"] is None


def fake_runtime(name: str, version: str, *aliases: str) -> Runtime:
    stage = Stage(argv=("true",), env={}, limits=Limits())
    return Runtime(name=name, aliases=aliases, version=version, source_file="main.x",
                   executables={}, run=stage, selftest=SelfTest(code="", stdout=""))


FAKE_REGISTRY = Registry((
    fake_runtime("python", "3.9.1", "py"),
    fake_runtime("python", "3.12.0", "py"),
    fake_runtime("python", "3.11.4", "py"),
    fake_runtime("python", "2.7.18", "py"),
    fake_runtime("node", "20.1.0", "js"),
))


@pytest.mark.parametrize(("language", "version", "resolved"), [
    ("python", "*", "3.12.0"),
    ("py", "3", "3.12.0"),
    ("python", "3.x", "3.12.0"),
    ("python", ">=3.9 <3.12", "3.11.4"),
    ("python", "^3.9", "3.12.0"),
    ("python", "~3.9", "3.9.1"),
    ("python", "3.11", "3.11.4"),
    ("python", "3.9.1", "3.9.1"),
    ("python", "2", "2.7.18"),
    ("python", "<3", "2.7.18"),
    ("python", "2.7.18 || 3.9.1", "3.9.1"),
    ("python", "3.1", None),
    ("python", "3.12.1", None),
    ("python", "20", None),  # node's version, not python's
    ("js", "*", "20.1.0"),
    ("Py", "*", None),
    ("python", "not a range", None),
])
def test_resolve_runtime_takes_the_highest_satisfying_version(language: str, version: str,
                                                              resolved: str | None) -> None:
    runtime = resolve_runtime(FAKE_REGISTRY, language, version)
    assert (runtime.version if runtime else None) == resolved
    if runtime is not None:
        assert language in runtime.names


# ---- every error message -------------------------------------------------------------------------

def limit_rows() -> Iterator[tuple[dict[str, Any], str]]:
    for field, limit in LIMIT_FIELDS:
        must_be_number = f"If specified, {field} must be a number"
        not_numbers: tuple[Any, ...] = ("1000", True, [], {}, [1], float("nan"), float("inf"))
        for value in not_numbers:
            yield {field: value}, must_be_number
        for value in (limit + 1, limit + 0.5, 1e308):
            yield {field: value}, f"{field} cannot exceed the configured limit of {limit}"
        for value in (-5, -0.5, -1e308):
            yield {field: value}, f"{field} must be non-negative"
        if "memory" not in field:  # -1 is the default memory limit, any other stage's error
            yield {field: -1}, f"{field} must be non-negative"


ERROR_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"language": MISSING}, "language is required as a string"),
    ({"language": ""}, "language is required as a string"),
    ({"language": 5}, "language is required as a string"),
    ({"language": None}, "language is required as a string"),
    ({"language": ["python"]}, "language is required as a string"),
    ({"language": 5, "version": 5, "files": 5}, "language is required as a string"),
    ({"version": MISSING}, "version is required as a string"),
    ({"version": ""}, "version is required as a string"),
    ({"version": 3.11}, "version is required as a string"),
    ({"version": 5, "files": 5}, "version is required as a string"),
    ({"files": MISSING}, "files is required as an array"),
    ({"files": None}, "files is required as an array"),
    ({"files": {"content": "print(1)"}}, "files is required as an array"),
    ({"files": "print(1)"}, "files is required as an array"),
    ({"files": [{"content": "print(1)"}, {"name": "a.py"}]},
     "files[1].content is required as a string"),
    ({"files": [{"content": "x"}, {"content": 1}, {"content": None}]},
     "files[1].content is required as a string"),
    ({"files": [{"content": 1}, {"content": 2}]}, "files[0].content is required as a string"),
    ({"files": [{"content": "print(1)"}, "print(2)"]}, "files[1].content is required as a string"),
    ({"files": [None]}, "files[0].content is required as a string"),
    ({"files": [{"content": b"x".hex(), "encoding": "hex"}, {"content": 7}]},
     "files[1].content is required as a string"),
    # content is checked before the runtime, the runtime before the utf8 file
    ({"language": "cobol", "files": [{"content": 5}]}, "files[0].content is required as a string"),
    ({"language": "cobol", "files": [B64_FILE]}, "cobol-* runtime is unknown"),
    ({"language": "c++", "version": "3.11"}, "c++-3.11 runtime is unknown"),
    ({"files": [B64_FILE]}, "files must include at least one utf8 encoded file"),
    ({"files": [B64_FILE, HEX_FILE]}, "files must include at least one utf8 encoded file"),
    ({"files": []}, "files must include at least one utf8 encoded file"),
    ({"files": [{"content": "print(1)", "encoding": "UTF8"}]},
     "files must include at least one utf8 encoded file"),
    # the utf8 file before the limits, the limits in Piston's order: memory, timeout, cpu time;
    # compile before run
    ({"files": [B64_FILE], "run_timeout": "x"},
     "files must include at least one utf8 encoded file"),
    ({"run_memory_limit": "x", "compile_timeout": "x"},
     "If specified, run_memory_limit must be a number"),
    ({"run_timeout": -1, "compile_timeout": 1e9},
     "compile_timeout cannot exceed the configured limit of 60000"),
    ({"run_cpu_time": -1, "run_timeout": 70000},
     "run_timeout cannot exceed the configured limit of 60000"),
    ({"compile_cpu_time": -1, "run_memory_limit": 1e12},
     "run_memory_limit cannot exceed the configured limit of 2147483648"),
    ({"run_cpu_time": "x", "compile_cpu_time": "y"},
     "If specified, compile_cpu_time must be a number"),
    *limit_rows(),
    # Stricter than Piston: what it would crash on or silently guess at is a 400 naming the field.
    ({"files": [{"content": "print(1)"}, {"content": "x", "encoding": "utf16"}]},
     "files[1].encoding must be one of utf8, base64, hex"),
    ({"files": [{"content": "print(1)"}, {"content": "x", "encoding": ["hex"]}]},
     "files[1].encoding must be one of utf8, base64, hex"),
    # [] and {} are true in JavaScript: not a missing encoding meaning utf8
    ({"files": [{"content": "print(1)"}, {"content": "x", "encoding": []}]},
     "files[1].encoding must be one of utf8, base64, hex"),
    ({"files": [{"content": "print(1)"}, {"content": "x", "encoding": {}}]},
     "files[1].encoding must be one of utf8, base64, hex"),
    ({"files": [{"content": "print(1)"}, {"content": "!!!!", "encoding": "base64"}]},
     "files[1].content is not valid base64"),
    ({"files": [{"content": "print(1)"}, {"content": "QUJDR", "encoding": "base64"}]},
     "files[1].content is not valid base64"),
    ({"files": [{"content": "print(1)"}, {"content": "QUJD\u00e9", "encoding": "base64"}]},
     "files[1].content is not valid base64"),
    ({"files": [{"content": "print(1)"}, {"content": "zz", "encoding": "hex"}]},
     "files[1].content is not valid hex"),
    ({"files": [{"content": "print(1)"}, {"content": "abc", "encoding": "hex"}]},
     "files[1].content is not valid hex"),
    ({"files": [{"content": "\ud800"}]},
     "files[0].content must be valid Unicode (it has a lone surrogate)"),
    ({"files": [{"name": "../x.py", "content": "print(1)"}]},
     "files[0].name: file name '../x.py' must not contain '..'"),
    ({"files": [{"name": "a/../../x.py", "content": "print(1)"}]},
     "files[0].name: file name 'a/../../x.py' must not contain '..'"),
    ({"files": [{"name": "/abs.py", "content": "print(1)"}]},
     "files[0].name: file name '/abs.py' must be relative"),
    ({"files": [{"name": "./.", "content": "print(1)"}]},
     "files[0].name: file name './.' names no file"),
    ({"files": [{"name": "a\u0000b", "content": "print(1)"}]},
     "files[0].name: file names must be non-empty and contain no NUL character"),
    ({"files": [{"name": 5, "content": "print(1)"}]}, "files[0].name must be a string"),
    ({"files": [{"name": "a.py", "content": "print(1)"}, {"name": "./a.py", "content": ""}]},
     "files[1].name 'a.py' is also files[0]'s"),
    ({"files": [{"content": "print(1)"}, {"name": "file0.py", "content": ""}]},
     "files[1].name 'file0.py' is also files[0]'s"),
    ({"files": [{"name": "a", "content": "print(1)"}, {"name": "a/b.py", "content": ""}]},
     "files[1].name 'a/b.py' and files[0].name 'a' use one name as both file and folder"),
    ({"files": [{"name": "p/q/r.py", "content": "print(1)"}, {"name": "p/q", "content": ""}]},
     "files[1].name 'p/q' and files[0].name 'p/q/r.py' use one name as both file and folder"),
    ({"stdin": 5}, "stdin must be a string"),
    ({"stdin": ["a"]}, "stdin must be a string"),
    ({"stdin": "\udc00"}, "stdin must be valid Unicode (it has a lone surrogate)"),
    ({"args": "a b"}, "args must be an array of strings"),
    ({"args": ["a", 1]}, "args[1] must be a string"),
    ({"args": ["a\u0000"]}, "args[0] must not contain a NUL character"),
]


def row_id(changes: dict[str, Any]) -> str:
    shown = {k: "<missing>" if v is MISSING else v for k, v in changes.items()}
    return json.dumps(shown)[:70]


@pytest.mark.parametrize(("changes", "message"), ERROR_ROWS,
                         ids=[row_id(changes) for changes, _ in ERROR_ROWS])
def test_each_bad_request_gets_pistons_exact_message(app_client: TestClient,
                                                     changes: dict[str, Any],
                                                     message: str) -> None:
    assert_error(post_raw(app_client, with_fields(**changes)), 400, message)


@pytest.mark.parametrize("prefix", ROUTE_PREFIXES)
@pytest.mark.parametrize("headers", [
    {"content-type": "text/plain"},  # npm's piston-client (node-fetch with a string body)
    {},  # no content type at all (pistonpy: requests with data=)
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "multipart/form-data; boundary=x"},
    {"content-type": "text/json"},
])
def test_a_json_body_runs_whatever_its_declared_type(app_client: TestClient, prefix: str,
                                                     headers: dict[str, str]) -> None:
    request = app_client.build_request("POST", f"{prefix}/execute", content=json.dumps(GOOD),
                                       headers=headers)
    assert request.headers.get("content-type") == headers.get("content-type")
    response = app_client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["run"]["code"] == 0


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {}])
def test_a_body_that_is_not_json_and_not_declared_json_is_415(app_client: TestClient,
                                                              headers: dict[str, str]) -> None:
    response = app_client.post(EXECUTE, content=b"language=python&files=print(1)",
                               headers=headers)
    assert_error(response, 415, "requests must be of type application/json")


def test_a_body_declared_json_that_is_not_is_400(app_client: TestClient) -> None:
    response = app_client.post(EXECUTE, content=b"{not json",
                               headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("the request body is not valid JSON")


@pytest.mark.parametrize("prefix", ROUTE_PREFIXES)
def test_packages_list_the_runtimes_and_refuse_changes(app_client: TestClient,
                                                       prefix: str) -> None:
    listed = app_client.get(f"{prefix}/packages").json()
    runtimes = app_client.get(f"{prefix}/runtimes").json()
    assert listed == [{"language": r["language"], "language_version": r["version"],
                       "installed": True} for r in runtimes]
    for method in ("POST", "DELETE"):
        response = app_client.request(method, f"{prefix}/packages",
                                      json={"language": "python", "version": "3.11"})
        assert response.status_code == 405
        assert "the runtimes are part of the service's image" in response.json()["message"]
        assert response.headers["allow"] == "GET"


def test_form_encoded_body_is_415(app_client: TestClient) -> None:
    # What the `pistonapi` package sends.
    response = app_client.post(EXECUTE, data={"language": "python", "version": "*",
                                              "files": "print(1)"})
    assert_error(response, 415, "requests must be of type application/json")


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, ("the request body is not valid JSON: Expecting property name enclosed "
                         "in double quotes: line 1 column 2 (char 1)")),
    (b'{"language": "python",}', 400, ("the request body is not valid JSON: Expecting property "
                                       "name enclosed in double quotes: line 1 column 23 "
                                       "(char 22)")),
    (b"", 400, "the request body is empty; expected a JSON object"),
    (b"[1, 2]", 400, "language is required as a string"),
    (b'"python"', 400, "language is required as a string"),
    (b'{"language": "' + b"x" * (1 << 20) + b'"}', 413,
     f"the request body is {(1 << 20) + 16} bytes; the limit is 1048576"),
])
def test_unreadable_bodies_get_a_message_only(app_client: TestClient, body: bytes, status: int,
                                              message: str) -> None:
    assert_error(post_raw(app_client, body), status, message)


def test_oversized_chunked_body_is_413(app_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"language": "'
        for _ in range(1100):
            yield b"x" * 1024
    response = app_client.post(EXECUTE, content=chunks(),
                               headers={"content-type": "application/json"})
    assert_error(response, 413, "the request body exceeds the limit of 1048576 bytes")


@pytest.mark.parametrize("fields", [
    {"run_memory_limit": -1, "compile_memory_limit": -1},  # what piston_rs always sends
    {f: 0 for f, _ in LIMIT_FIELDS},
    {f: None for f, _ in LIMIT_FIELDS},
    {f: "" for f, _ in LIMIT_FIELDS},
    {f: False for f, _ in LIMIT_FIELDS},
    {f: limit for f, limit in LIMIT_FIELDS},  # exactly the configured limit is allowed
    {"stdin": None, "args": None},
    {"files": [{"content": "print(1)", "encoding": "utf8"}]},
    {"files": [{"content": "print(1)", "encoding": ""}], "unknown_field": [1, 2]},
    {"files": [{"content": "print(1)", "encoding": None, "name": ""}]},
    {"files": [{"content": "print(1)", "name": None}]},
])
def test_defaults_and_limits_at_the_ceiling_are_accepted(app_client: TestClient,
                                                         fields: dict[str, Any]) -> None:
    response = post_raw(app_client, {**GOOD, **fields})
    assert response.status_code == 200, response.text
    assert (response.json()["run"]["stdout"], response.json()["run"]["status"]) == ("1\n", None)


def test_charset_in_the_content_type_is_accepted(app_client: TestClient) -> None:
    response = app_client.post(EXECUTE, content=json.dumps(GOOD),
                               headers={"content-type": "application/json; charset=utf-8"})
    assert (response.status_code, response.json()["run"]["stdout"]) == (200, "1\n")


@pytest.mark.parametrize(("fields", "status"), [
    ({"run_memory_limit": 0.5}, "SG"),  # the interpreter cannot even start: a crash, not a 500
    ({"run_memory_limit": 1}, "SG"),
    ({"run_timeout": 5e-324}, "TO"),  # a denormal that would be 0 s once in seconds
    ({"run_timeout": 0.5}, "TO"),
])
def test_tiny_limits_are_a_result_not_a_server_error(app_client: TestClient,
                                                     fields: dict[str, Any],
                                                     status: str | None) -> None:
    response = post_raw(app_client, {**GOOD, **fields})
    assert response.status_code == 200, response.text
    assert response.json()["run"]["status"] == status


def test_service_still_answers_after_the_error_table(app_client: TestClient) -> None:
    for changes, _ in ERROR_ROWS:
        assert post_raw(app_client, with_fields(**changes)).status_code == 400
    assert app_client.get("/health").status_code == 200
    response = post_raw(app_client, GOOD)
    assert (response.status_code, response.json()["run"]["stdout"]) == (200, "1\n")


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
piston_bodies = st.fixed_dictionaries({}, optional={
    # Not c++: a compile per example would make this slow, and it validates the same way.
    "language": st.sampled_from(["python", "py", "cobol", ""]) | json_values,
    "version": st.sampled_from(["*", "3", "3.1", "x", ""]) | json_values,
    "files": st.lists(st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["a.py", "", "../x", "d/e.py", "-x"]) | json_values,
        "content": st.sampled_from(["print(1)", "raise SystemExit(3)", "QUJD", "4142"])
        | json_values,
        "encoding": st.sampled_from(["utf8", "base64", "hex", ""]) | json_values,
    }), max_size=3) | json_values,
    "stdin": st.text(max_size=10) | json_values,
    "args": st.lists(st.text(max_size=5), max_size=3) | json_values,
    **{field: st.integers(-2, 70000) | st.floats() | json_values for field, _ in LIMIT_FIELDS},
})
# Limits on an otherwise good request, fractions of a millisecond or a byte included, which
# must not reach the sandbox as zero.
limit_values = st.fixed_dictionaries({}, optional={
    field: st.integers(-2, 70000) | st.floats(-1, 2) | st.floats() | json_values
    for field, _ in LIMIT_FIELDS})


@given(piston_bodies)
def test_any_json_body_gets_a_reply_or_a_400(app_client: TestClient, body: Any) -> None:
    response = post_raw(app_client, body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert set(response.json()) == {"message"}
    else:
        assert set(response.json()["run"]) == STAGE_KEYS


@given(limit_values)
def test_any_limits_get_a_reply_or_a_400(app_client: TestClient, limits: dict[str, Any]) -> None:
    response = post_raw(app_client, {**GOOD, "files": [{"content": "print(1)"}], **limits})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert set(response.json()["run"]) == STAGE_KEYS


# ---- files ---------------------------------------------------------------------------------------

DATA = bytes(range(256)) + b"\xff\xfe\x00 not UTF-8 \xc3\x28"


def test_base64_and_hex_files_arrive_byte_for_byte(server: Server) -> None:
    code = ("for name in ('data.b64', 'sub/data.hex', 'plain.txt'):\n"
            "    print(name, open(name, 'rb').read().hex())\n")
    reply = piston(server, {"language": "python", "version": "*", "files": [
        {"name": "main.py", "content": code},
        {"name": "data.b64", "content": base64.b64encode(DATA).decode(), "encoding": "base64"},
        {"name": "sub/data.hex", "content": DATA.hex().upper(), "encoding": "hex"},
        {"name": "plain.txt", "content": "h\u00e9llo \u2603\n", "encoding": "utf8"},
    ]})
    plain = "h\u00e9llo \u2603\n".encode().hex()
    assert reply["run"]["stdout"] == (f"data.b64 {DATA.hex()}\nsub/data.hex {DATA.hex()}\n"
                                      f"plain.txt {plain}\n")


def test_base64_accepts_missing_padding_line_breaks_and_the_url_alphabet(server: Server) -> None:
    data = b"\xfb\xff\xbf?>"  # encodes with both + and / in the standard alphabet
    standard = base64.b64encode(data).decode()
    assert "+" in standard and "/" in standard
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    reply = piston(server, {"language": "python", "version": "*", "files": [
        {"content": "print(open('a', 'rb').read() == open('b', 'rb').read() == "
                    f"{data!r})"},
        {"name": "a", "content": standard[:4] + "\n" + standard[4:], "encoding": "base64"},
        {"name": "b", "content": urlsafe, "encoding": "base64"},
    ]})
    assert reply["run"]["stdout"] == "True\n"


def test_main_file_is_the_first_utf8_one(server: Server) -> None:
    first = base64.b64encode(b"print('the base64 file ran')").decode()
    reply = piston(server, {"language": "python", "version": "*", "files": [
        {"name": "first.py", "content": first, "encoding": "base64"},
        {"name": "second.py", "content": "import first, os\n"
                                         "print('main is', os.path.basename(__file__))"},
        {"name": "third.py", "content": "print('third ran')"},
    ]})
    # The base64 file only runs when imported, after which the main file goes on.
    assert reply["run"]["stdout"] == "the base64 file ran\nmain is second.py\n"


def test_sub_folders_hold_modules_of_the_main_file(server: Server) -> None:
    reply = piston(server, {"language": "python", "version": "*", "files": [
        {"name": "main.py", "content": "from pkg.util import double\nprint(double(21))"},
        {"name": "pkg/util.py", "content": "from .deeper.k import K\ndef double(x): return K*x"},
        {"name": "pkg/deeper/k.py", "content": "K = 2"},
    ]})
    assert reply["run"]["stdout"] == "42\n"


def test_unnamed_files_are_numbered_with_the_runtimes_extension(server: Server) -> None:
    reply = piston(server, {"language": "python", "version": "*", "files": [
        {"content": "import file1, os\n"
                    "print(os.path.basename(__file__), file1.X, sorted(os.listdir('.')))"},
        {"content": "X = 'from file1'"},
        {"name": "", "content": ""},
    ]})
    assert reply["run"]["stdout"] == "file0.py from file1 ['file0.py', 'file1.py', 'file2.py']\n"


def test_a_file_named_like_an_option_runs_as_a_file(server: Server) -> None:
    reply = piston(server, {"language": "python", "version": "*", "args": ["print('option')"],
                            "files": [{"name": "-c", "content": "import sys\nprint(sys.argv)"}]})
    assert reply["run"]["stdout"] == "['./-c', \"print('option')\"]\n"


UTIL_H = "#pragma once\nint twice(int);\n"
UTIL_CPP = '#include "util.h"\nint twice(int x) { return 2 * x; }\n'


@pytest.mark.gxx
@pytest.mark.parametrize("folder", ["", "lib/", "-lib/"])
def test_multi_file_cpp_program_compiles_every_source(server: Server, folder: str) -> None:
    main = (f'#include <cstdio>\n#include "{folder}util.h"\n'
            'int main(int argc, char**) { std::printf("%d\\n", twice(20 + argc)); }\n')
    reply = piston(server, {"language": "c++", "version": "*", "files": [
        {"name": f"{folder}util.h", "content": UTIL_H},
        {"name": "main.cpp", "content": main},
        {"name": f"{folder}util.cpp", "content": UTIL_CPP},
    ], "args": ["one"]})
    assert reply["compile"]["status"] is None, reply["compile"]["stderr"]
    assert (reply["run"]["stdout"], reply["run"]["code"]) == ("44\n", 0)


# ---- the reply for each way a program ends -------------------------------------------------------

@pytest.mark.gxx
def test_compile_error_is_both_compile_and_run(server: Server) -> None:
    reply = piston(server, cpp("int main() { return undeclared }"))
    assert reply["run"] == reply["compile"]
    stage = reply["compile"]
    assert (stage["code"], stage["signal"], stage["status"], stage["message"], stage["stdout"]) \
        == (1, None, "RE", "Exited with error status 1", "")
    assert "error:" in stage["stderr"] and "undeclared" in stage["stderr"]
    assert stage["output"] == stage["stderr"]


@pytest.mark.gxx
def test_compile_timeout_limits_the_compile_stage(server: Server) -> None:
    reply = piston(server, cpp("#include <bits/stdc++.h>\nint main() {}", compile_timeout=50))
    assert reply["run"] == reply["compile"]
    stage = reply["compile"]
    assert (stage["code"], stage["signal"], stage["status"], stage["message"]) == (
        None, "SIGKILL", "TO", "Time limit exceeded (wall clock)")


@pytest.mark.parametrize(("limit", "stdout", "status"), [
    (64 << 20, "", "RE"),  # the allocation fails under the request's limit
    (-1, "allocated\n", None),  # the runtime's default (512 MiB) allows it
])
def test_run_memory_limit_applies_to_the_program(server: Server, limit: int, stdout: str,
                                                 status: str | None) -> None:
    run = piston(server, python("b = bytearray(128 << 20)\nprint('allocated')",
                                run_memory_limit=limit))["run"]
    assert (run["stdout"], run["status"]) == (stdout, status)
    if status is not None:
        assert run["stderr"].endswith("MemoryError\n")


def test_nonzero_exit_is_re(server: Server) -> None:
    run = piston(server, python("import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                                "sys.exit(3)"))["run"]
    assert {k: run[k] for k in ("stdout", "stderr", "output", "code", "signal", "status",
                                "message")} == {
        "stdout": "out\n", "stderr": "err\n", "output": "out\nerr\n", "code": 3,
        "signal": None, "status": "RE", "message": "Exited with error status 3"}


@pytest.mark.gxx
def test_null_dereference_is_sg(server: Server) -> None:
    # The pointer itself is volatile, so the compiler cannot see it is null and trap instead;
    # the store through it is volatile, so it cannot be dropped.
    reply = piston(server, cpp("int main() { volatile int* volatile p = nullptr; *p = 1; }"))
    assert reply["compile"]["code"] == 0
    run = reply["run"]
    assert (run["code"], run["signal"], run["status"], run["message"]) == (
        None, "SIGSEGV", "SG", "Caught fatal signal 11")


def test_wall_clock_timeout_is_to(server: Server) -> None:
    run = piston(server, python("import time\nprint('started')\ntime.sleep(10)",
                                run_timeout=500))["run"]
    assert (run["stdout"], run["code"], run["signal"], run["status"], run["message"]) == (
        "started\n", None, "SIGKILL", "TO", "Time limit exceeded (wall clock)")
    assert 500 <= run["wall_time"] < 2500 and run["cpu_time"] < 500


def test_cpu_time_limit_is_to(server: Server) -> None:
    run = piston(server, python("while True: pass", run_cpu_time=500))["run"]
    assert (run["code"], run["signal"], run["status"], run["message"]) == (
        None, "SIGKILL", "TO", "Time limit exceeded")
    assert 500 <= run["cpu_time"] < 2500


@pytest.mark.parametrize(("stream", "status", "message"), [
    ("stdout", "OL", "stdout length exceeded"),
    ("stderr", "EL", "stderr length exceeded"),
])
def test_output_past_the_cap_is_ol_or_el_with_exactly_the_cap_kept(
        server: Server, stream: str, status: str, message: str) -> None:
    code = (f"import sys\nsys.{'stderr' if stream == 'stdout' else 'stdout'}.write('other\\n')\n"
            f"i = 0\nwhile True:\n    sys.{stream}.write(f'{{i:07d}}\\n')\n    i += 1\n")
    run = piston(server, python(code))["run"]
    assert (run["code"], run["signal"], run["status"], run["message"]) == (
        None, "SIGKILL", status, message)
    expected = "".join(f"{i:07d}\n" for i in range(SERVER_OUTPUT_CAP // 8 + 1))
    assert len(run[stream].encode()) == SERVER_OUTPUT_CAP
    assert run[stream] == expected[:SERVER_OUTPUT_CAP]
    assert run["stderr" if stream == "stdout" else "stdout"] == "other\n"


@pytest.mark.parametrize(("stdin", "seen"), [
    ("x", "'x\\n'"),  # Piston ends stdin with a newline when it lacks one
    ("", "'\\n'"),
    (MISSING, "'\\n'"),
    ("a\nb\n", "'a\\nb\\n'"),  # no second newline
    ("h\u00e9\u2603", "'h\u00e9\u2603\\n'"),
])
def test_stdin_ends_with_a_newline(server: Server, stdin: Any, seen: str) -> None:
    body = python("import sys\nprint(repr(sys.stdin.read()))")
    if stdin is not MISSING:
        body["stdin"] = stdin
    assert piston(server, body)["run"]["stdout"] == seen + "\n"


def test_input_reads_a_last_line_without_newline(server: Server) -> None:
    reply = piston(server, python("a = input()\nb = input()\nprint(int(a) + int(b))",
                                  stdin="2\n40"))
    assert (reply["run"]["stdout"], reply["run"]["status"]) == ("42\n", None)


def test_args_arrive_as_given(server: Server) -> None:
    args = ["a b", "--c", "", "\u2603", "$HOME", "*"]
    reply = piston(server, python("import sys\nprint(sys.argv[1:])", args=args))
    assert reply["run"]["stdout"] == f"{args}\n"


def test_service_answers_after_the_runs(server: Server) -> None:
    assert server.health().text == "ok"
    assert_nothing_left(server)
