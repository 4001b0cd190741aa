"""Every error row: bad input gets a 4xx naming the field, and the service keeps serving."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from starlette.testclient import TestClient

from ..strategies import execute_bodies


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, ("the request body is not valid JSON: Expecting property name enclosed "
                         "in double quotes: line 1 column 2 (char 1)")),
    (b"", 400, "the request body is empty; expected a JSON object"),
    (b"[1, 2]", 400, "body must be an object"),
    (b"{}", 400, "properties must be an object"),
    (b'{"properties": 5}', 400, "properties must be an object"),
    (b'{"properties": {}}', 400, "properties.code must be a string"),
    (b'{"properties": {"code": 5}}', 400, "properties.code must be a string"),
    (b'{"properties": {"code": "\\ud800"}}', 400,
     "properties.code must be valid Unicode (it has a lone surrogate)"),
    (b'{"properties": {"code": "", "stdin": []}}', 400, "properties.stdin must be a string"),
    (b'{"properties": {"code": "", "args": "a"}}', 400, "properties.args must be an array of strings"),
    (b'{"properties": {"code": "", "args": ["a", 1]}}', 400, "properties.args[1] must be a string"),
    (b'{"properties": {"code": "", "args": ["a\\u0000"]}}', 400,
     "properties.args[0] must not contain a NUL character"),
    (json.dumps({"properties": {"code": "", "args": ["x" * 140000]}}).encode(), 400,
     "properties.args[0] is 140000 bytes; one argument may have 131071"),
    (b'{"properties": {"code": "", "timeoutInSeconds": 0}}', 400,
     "properties.timeoutInSeconds must be a positive number"),
    (b'{"properties": {"code": "", "timeoutInSeconds": "5"}}', 400,
     "properties.timeoutInSeconds must be a positive number"),
    (b'{"properties": {"code": "", "timeoutInSeconds": true}}', 400,
     "properties.timeoutInSeconds must be a positive number"),
    (b'{"properties": {"code": "' + b"x" * 1100000 + b'"}}', 413,
     "the request body is 1100028 bytes; the limit is 1048576"),
])
def test_bad_bodies(app_client: TestClient, body: bytes, status: int, message: str) -> None:
    response = app_client.post("/python/execute", content=body,
                               headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["message"]) == (status, message)
    assert app_client.get("/health").status_code == 200


def test_oversized_chunked_body_is_413(app_client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(1100):
            yield b"x" * 1024
    response = app_client.post("/python/execute", content=chunks())
    assert response.status_code == 413
    assert response.json() == {"message": "the request body exceeds the limit of 1048576 bytes"}


# What a request for an unknown language hears: every name and alias there is.
UNKNOWN_COBOL = (
    "unknown language 'cobol'; available: bash, c, c++, c++17, c++20, c++23, c11, c17, cpp, "
    "cpp17, cpp20, cpp23, g++, gcc, go, golang, java, javascript, js, node, nodejs, openjdk, "
    "py, py3, python, python3, rs, rust, rustc, sh")


def test_unknown_language_lists_languages(app_client: TestClient) -> None:
    response = app_client.post("/cobol/execute", json={"properties": {"code": ""}})
    assert response.status_code == 404
    assert response.json()["message"] == UNKNOWN_COBOL


def test_unknown_path_names_method_path_and_routes(app_client: TestClient) -> None:
    response = app_client.delete("/python/run")
    assert response.status_code == 404
    body = response.json()
    assert body["message"] == "no route for DELETE /python/run"
    assert "POST /code/execute" in body["routes"] and "GET /health" in body["routes"]


def test_wrong_method_is_405(app_client: TestClient) -> None:
    response = app_client.get("/python/execute")
    assert (response.status_code, response.json()["message"]) == (
        405, "GET is not allowed on /python/execute")


def test_api_version_and_identifier_are_optional(app_client: TestClient) -> None:
    response = app_client.post("/python/execute", json={"properties": {"code": "print(1)"}},
                               headers={"Authorization": "Bearer not-checked"})
    assert response.json()["properties"]["stdout"] == "1\n"


@given(execute_bodies)
def test_any_json_body_gives_a_result_or_a_4xx(app_client: TestClient, body: Any) -> None:
    response = app_client.post("/python/execute", content=json.dumps(body),
                               headers={"content-type": "application/json"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.json()["properties"]["status"] in ("Success", "Failure")
    else:
        assert response.json()["message"]
