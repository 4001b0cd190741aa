"""`GET /openapi.json`: an OpenAPI 3.1 document of every route, written as data.

Kept next to the wire formats it describes (azure.py, piston.py); adapter.routes pairs each
operation with its route, so the document has exactly the routes the app serves, and a test
validates it.

(Longer than the other modules: it is the schemas of every body and reply of three wire
formats, data rather than logic; Judge0's operations are in adapter.judge0.operations.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .batch import VERDICTS

OUTCOMES = ["ok", "nonzero_exit", "signaled", "wall_timeout", "cpu_limit", "memory_limit",
            "output_limit", "file_size_limit", "disk_limit", "compile_error"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_SCHEMAS = {"legacy": "Error", "newer": "NewerError", "judge0": "Judge0Error"}


def _errors(*statuses: int, style: str = "legacy") -> dict[str, Any]:
    """Error replies in a family's shape: `{"message"}`; the newer sessions family's
    `{"error": {"code", "message"}}`; Judge0's `{"error"}`."""
    meaning = {400: "a field is missing or wrong; the message names it",
               404: "unknown language, route, session file or execution",
               405: "wrong method", 409: "the session's folder is locked by its code",
               413: "the body is over SANDBOX_MAX_BODY_BYTES",
               415: "the content type is not application/json",
               500: "the sandbox itself failed (never for anything a program does)",
               503: "too many runs waiting (Retry-After)"}
    return {str(s): _json(_ref(ERROR_SCHEMAS[style]), meaning[s]) for s in statuses}


STAGE_FIELDS = {
    "type": "object",
    "properties": {
        "exitCode": {"type": ["integer", "null"]},
        "signal": {"type": ["string", "null"], "examples": ["SIGKILL"]},
        "stdout": {"type": "string"}, "stderr": {"type": "string"},
        "output": {"type": "string", "description": "both streams in arrival order"},
        "stdoutTruncated": {"type": "boolean"}, "stderrTruncated": {"type": "boolean"},
        "executionTimeInMilliseconds": {"type": "integer"},
        "cpuTimeInMilliseconds": {"type": "integer"},
        "peakMemoryInBytes": {"type": "integer"},
    },
}
# A stage alone (compile): its outcome is the run's, never compile_error.
STAGE = {"allOf": [STAGE_FIELDS, {"type": "object", "properties": {
    "outcome": {"type": "string", "enum": OUTCOMES[:-1]}}}]}

PISTON_STAGE = {
    "type": "object",
    "required": ["stdout", "stderr", "output", "code", "signal", "message", "status"],
    "properties": {
        "stdout": {"type": "string"}, "stderr": {"type": "string"}, "output": {"type": "string"},
        "code": {"type": ["integer", "null"]}, "signal": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"], "enum": ["RE", "SG", "TO", "OL", "EL", "XX", None]},
        "cpu_time": {"type": "integer", "description": "ms"},
        "wall_time": {"type": "integer", "description": "ms"},
        "memory": {"type": "integer", "description": "bytes"},
    },
}

LIMIT_FIELDS = {
    f"{stage}_{name}": {"type": "number", "description": description}
    for stage in ("compile", "run")
    for name, description in (("timeout", "wall clock, ms"), ("cpu_time", "CPU time, ms"),
                              ("memory_limit", "address space, bytes; -1 is the default"))
}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["message"],
              "properties": {"message": {"type": "string"}}},
    "NewerError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Judge0Error": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
    "AzureExecuteRequest": {
        "type": "object", "required": ["properties"],
        "properties": {"properties": {
            "type": "object", "required": ["code"],
            "properties": {
                "code": {"type": "string"},
                "stdin": {"type": ["string", "null"]},
                "args": {"type": ["array", "null"], "items": {"type": "string"}},
                "timeoutInSeconds": {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                               {"type": "null"}]},
                "maxOutputBytes": {"anyOf": [{"type": "integer", "exclusiveMinimum": 0},
                                             {"type": "null"}]},
                "identifier": {"description": "the session, when not in the query"},
                # Sent by Azure's clients, accepted and ignored whatever they hold.
                "codeInputType": {}, "executionType": {},
            }}},
    },
    "AzureCellRequest": {
        "type": "object", "required": ["properties"],
        "description": "a session's cell: other keys (stdin, args) are accepted and ignored",
        "properties": {"properties": {
            "type": "object", "required": ["code"],
            "properties": {
                "code": {"type": "string"},
                "timeoutInSeconds": {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                               {"type": "null"}]},
                "identifier": {"description": "the session, when not in the query"},
                "codeInputType": {}, "executionType": {},
            }}},
    },
    "AzureExecuteResponse": {
        "type": "object",
        "properties": {"$id": {"type": "string"}, "properties": {
            "allOf": [STAGE_FIELDS, {"type": "object", "properties": {
                "$id": {"type": "string"},
                "status": {"type": "string", "enum": ["Success", "Failure"]},
                # A session cell's trailing value: JSON when it is JSON, else its repr; an
                # image object; "" for a plain run.
                "result": {}, "executionResult": {},
                "outcome": {"type": "string", "enum": OUTCOMES},
                "compile": {"oneOf": [STAGE, {"type": "null"}]},
                "runtime": {"type": "object", "properties": {
                    "language": {"type": "string"}, "version": {"type": "string"}}},
            }}]}},
    },
    "PistonRuntime": {
        "type": "object", "required": ["language", "version", "aliases"],
        "properties": {"language": {"type": "string"}, "version": {"type": "string"},
                       "aliases": {"type": "array", "items": {"type": "string"}},
                       "runtime": {"type": "string"}},
    },
    "PistonExecuteRequest": {
        "type": "object", "required": ["language", "version", "files"],
        "properties": {
            "language": {"type": "string"},
            "version": {"type": "string", "description": "a node-semver range"},
            "files": {"type": "array", "items": {
                "type": "object", "required": ["content"],
                "properties": {"name": {"type": "string"}, "content": {"type": "string"},
                               "encoding": {"type": "string",
                                            "enum": ["utf8", "base64", "hex"]}}}},
            "stdin": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            **LIMIT_FIELDS,
        },
    },
    "BatchLimits": {
        "type": "object", "additionalProperties": False,
        "description": "each at most the service's ceiling (a 400 names the field otherwise)",
        "properties": {"wall_timeout_s": {"type": "number", "exclusiveMinimum": 0},
                       "cpu_time_s": {"type": "number", "exclusiveMinimum": 0},
                       "memory_bytes": {"type": "number", "exclusiveMinimum": 0,
                                        "description": "address space per process"}},
    },
    "BatchRequest": {
        "type": "object", "required": ["language", "files", "cases"],
        "additionalProperties": False,
        "properties": {
            "language": {"type": "string", "description": "a runtime name or alias"},
            "files": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["content"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "description":
                                        "required but for the first (main) file, which "
                                        "defaults to the runtime's main file name"},
                               "content": {"type": "string"}}}},
            "limits": {**_ref("BatchLimits"), "description": "for every case"},
            "checker": {"description": "how stdout is compared with expected_output "
                                       "(adapter/checkers.py); default lines",
                        "oneOf": [
                            {"type": "string",
                             "enum": ["exact", "lines", "tokens", "floats", "unordered"]},
                            {"type": "object", "required": ["type"],
                             "additionalProperties": False,
                             "properties": {
                                 "type": {"type": "string", "enum": [
                                     "exact", "lines", "tokens", "floats", "unordered"]},
                                 "absolute": {"type": "number", "minimum": 0},
                                 "relative": {"type": "number", "minimum": 0}}},
                            {"type": "object", "required": ["type", "language", "files"],
                             "additionalProperties": False,
                             "description": "a checker program, run per case with "
                                            "input.txt, output.txt, expected.txt as its "
                                            "arguments; exit 0 accepted, 1 wrong answer, 2 "
                                            "presentation error, 3 checker failure",
                             "properties": {
                                 "type": {"const": "program"},
                                 "language": {"type": "string"},
                                 "files": {"type": "array", "minItems": 1, "items": {
                                     "type": "object", "required": ["content"],
                                     "properties": {"name": {"type": "string"},
                                                    "content": {"type": "string"}}}},
                                 "limits": _ref("BatchLimits")}}]},
            "cases": {"type": "array", "minItems": 1,
                      "description": "at most SANDBOX_MAX_BATCH_CASES (1000)",
                      "items": {
                          "type": "object", "additionalProperties": False,
                          "properties": {
                              "name": {"type": "string"},
                              "stdin": {"type": "string", "description": "the whole input"},
                              "expected_output": {
                                  "type": ["string", "null"],
                                  "description": "compared with stdout, trailing whitespace "
                                                 "of lines and trailing blank lines ignored; "
                                                 "absent: the verdict is `ran`"},
                              "args": {"type": "array", "items": {"type": "string"}},
                              "limits": {**_ref("BatchLimits"),
                                         "description": "this case's, over the batch's"}}}},
        },
    },
    "BatchStage": {
        "type": "object",
        "properties": {
            "outcome": {"type": "string", "enum": OUTCOMES[:-1]},
            "exit_code": {"type": ["integer", "null"]},
            "signal": {"type": ["string", "null"], "examples": ["SIGSEGV"]},
            "stdout": {"type": "string"}, "stderr": {"type": "string"},
            "stdout_truncated": {"type": "boolean"}, "stderr_truncated": {"type": "boolean"},
            "wall_time_ms": {"type": "integer"}, "cpu_time_ms": {"type": "integer"},
            "memory_bytes": {"type": "integer", "description": "peak resident memory"},
        },
    },
    "BatchResponse": {
        "type": "object", "required": ["language", "version", "compile", "cases", "summary"],
        "properties": {
            "language": {"type": "string"}, "version": {"type": "string"},
            "compile": {"oneOf": [
                {"allOf": [_ref("BatchStage"), {"type": "object", "properties": {
                    "cached": {"type": "boolean", "description":
                               "the stored result of an earlier compile of the same sources; "
                               "no compiler ran"}}}]},
                {"type": "null", "description": "the runtime does not compile"}]},
            "cases": {"type": "array", "description": "in request order", "items": {
                "allOf": [{"type": "object", "required": ["index", "verdict"], "properties": {
                    "index": {"type": "integer"}, "name": {"type": ["string", "null"]},
                    "verdict": {"type": "string", "enum": list(VERDICTS)},
                    "detail": {"type": ["string", "null"], "description":
                               "the signal or exit code of a runtime_error, which limit, "
                               "the first line that differs"},
                    "stdout_bytes": {"type": "integer", "description":
                                     "captured; `stdout` carries the first 8 KiB"},
                    "stderr_bytes": {"type": "integer"}}},
                    _ref("BatchStage")]}},
            "summary": {"type": "object", "description": "total, and the count of each verdict",
                        "properties": {name: {"type": "integer"}
                                       for name in ("total", *VERDICTS)}},
        },
    },
    "PistonExecuteResponse": {
        "type": "object", "required": ["language", "version", "run"],
        "properties": {"language": {"type": "string"}, "version": {"type": "string"},
                       "run": PISTON_STAGE, "compile": PISTON_STAGE},
    },
}


def _execute_operation(summary: str, *, language: bool,
                       body: str = "AzureExecuteRequest") -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "api-version", "in": "query", "schema": {"type": "string"},
         "description": "accepted and logged"},
        {"name": "identifier", "in": "query", "schema": {"type": "string"},
         "description": "the session identifier; accepted and logged"},
    ]
    if language:
        # Its enum is filled in with the service's runtime names (`openapi_document`).
        parameters.insert(0, {"name": "language", "in": "path", "required": True,
                              "schema": {"type": "string"}})
    return {
        "summary": summary, "parameters": parameters,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref(body)}}},
        "responses": {"200": _json(_ref("AzureExecuteResponse"),
                                   "the program ran; its outcome says how it ended"),
                      **_errors(400, 404, 405, 413, 500, 503)},
    }


IDENTIFIER = {"name": "identifier", "in": "query", "required": True,
              "schema": {"type": "string", "minLength": 1, "maxLength": 128},
              "description": "the session (1-128 characters, raw or percent-encoded)"}
API_VERSION = {"name": "api-version", "in": "query", "schema": {"type": "string"},
               "description": "2024-10-02-preview or later selects the newer family's shapes"}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
UPLOAD = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}}}
OBJECT = {"type": "object"}
SESSION_OK = {"200": _json(OBJECT, "see azure-sessions: the legacy or the newer shape")}
RAW = {"200": {"description": "the file's bytes",
               "content": {"application/octet-stream": {"schema": {"type": "string"}}}}}
GONE = {"204": {"description": "done"}}
PLAIN_TEXT = {"text/plain": {"schema": {"type": "string"}}}
TIMEOUT = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}


def _session_op(summary: str, responses: dict[str, Any], *, name: bool = False,
                body: dict[str, Any] | None = None, style: str = "newer",
                extra: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    if style != "either":
        errors = _errors(400, 404, 409, 413, 503, style=style)
    else:
        # GET /files answers in the family api-version selects.
        errors = {status: _json({"anyOf": [_ref("Error"), _ref("NewerError")]},
                                reply["description"])
                  for status, reply in _errors(400, 404, 409, 413, 503).items()}
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [IDENTIFIER, API_VERSION, *([NAME] if name else []), *extra],
        "responses": {**responses, **errors}}
    if body is not None:
        operation["requestBody"] = body
    return operation


# ---- the operations, one per route (adapter.routes pairs each with its handler) ------------------

STATUS = {"summary": "Status: runtimes, limits, confinement layers, runs, routes",
          "responses": {"200": _json({"type": "object"}, "the status")}}
HEALTH = {"summary": "Ready once every runtime's self-test passed",
          "responses": {"200": {"description": "ok", "content": PLAIN_TEXT},
                        "503": _json(_ref("Error"), "not ready, and why")}}
METRICS = {"summary": "Prometheus metrics",
           "responses": {"200": {"description": "the text exposition format",
                                 "content": PLAIN_TEXT}}}
OPENAPI = {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI")}}
CODE_EXECUTE = _execute_operation(
    "Code-interpreter session: run a cell in the identifier's session (state persists; "
    "result is the trailing expression)", language=False, body="AzureCellRequest")
LANGUAGE_EXECUTE = _execute_operation("Azure session pool: run in a language", language=True)
BATCH = {
    "summary": "Grade one program against many test cases",
    "description": "Compiles once (through the compile cache), runs every case in a jail "
                   "of its own, as many at once as the service runs programs, and judges "
                   "each: accepted, wrong_answer, time_limit (wall or CPU), memory_limit, "
                   "output_limit, runtime_error, compile_error (every case, when compiling "
                   "fails) or ran (no expected_output). Each case counts as a run in "
                   "/metrics.",
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": _ref("BatchRequest")}}},
    "responses": {"200": _json(_ref("BatchResponse"), "every case ran and was judged"),
                  **_errors(400, 404, 405, 413, 500, 503)}}
PISTON_RUNTIMES = {
    "summary": "Piston: installed runtimes",
    "responses": {"200": _json({"type": "array", "items": _ref("PistonRuntime")},
                               "every runtime")}}
PISTON_EXECUTE = {
    "summary": "Piston: run one job",
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": _ref("PistonExecuteRequest")}}},
    "responses": {"200": _json(_ref("PistonExecuteResponse"), "the job ran"),
                  **_errors(400, 413, 415, 500, 503)}}
PISTON_CONNECT = {
    "summary": "Piston: interactive WebSocket",
    "description": "Upgrade to a WebSocket. Client messages: init (the execute fields), "
                   "data (stream stdin, data, eof), signal. Server messages: runtime, "
                   "stage, data, exit, error. Close codes 4999 done, 4000-4005 errors.",
    "responses": {"101": {"description": "switching to the WebSocket protocol"},
                  "426": _json(_ref("Error"), "a plain GET, without the upgrade")}}
PISTON_PACKAGES = {
    "summary": "Piston: the runtimes as installed packages",
    "responses": {"200": _json({"type": "array", "items": {
        "type": "object", "required": ["language", "language_version", "installed"],
        "properties": {"language": {"type": "string"}, "language_version": {"type": "string"},
                       "installed": {"type": "boolean"}}}}, "every runtime")}}
PISTON_PACKAGE_CHANGE = {
    "summary": "Piston: install or uninstall a package (refused: runtimes are in the image)",
    "responses": _errors(405)}
FILES_UPLOAD = _session_op("Session files (legacy): upload", SESSION_OK, body=UPLOAD,
                           style="legacy")
FILES_LIST = _session_op("Session files: list", SESSION_OK, style="either")
FILES_POST = _session_op("Session files (newer): upload", SESSION_OK, body=UPLOAD)
FILE_CONTENT_LEGACY = _session_op("Session files (legacy): content", RAW, name=True,
                                  style="legacy")
FILE_CONTENT = _session_op("Session files (newer): content", RAW, name=True)
FILE_INFO = _session_op("Session files (newer): one file", SESSION_OK, name=True)
FILE_DELETE = _session_op("Session files (newer): delete", GONE, name=True)
EXECUTIONS_POST = _session_op("Sessions (newer): run a cell or a shell command", SESSION_OK,
                              body={"required": True, "content": {"application/json": {
                                  "schema": {"oneOf": [
                                      {"type": "object", "required": ["code"], "properties": {
                                          "code": {"type": "string"},
                                          "timeoutInSeconds": TIMEOUT,
                                          "codeInputType": {}, "executionType": {}}},
                                      {"type": "object", "required": ["shellCommand"],
                                       "not": {"required": ["code"]}, "properties": {
                                           "shellCommand": {"type": "string"},
                                           "timeoutInSeconds": TIMEOUT}}]}}}})
EXECUTIONS_GET = _session_op("Sessions (newer): an execution", SESSION_OK, extra=(
    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},))
SESSION_DELETE = _session_op("Sessions (newer): end one, files and all", GONE)


def openapi_document(version: str, operations: Iterable[tuple[str, str, dict[str, Any]]],
                     languages: Sequence[str], schemas: dict[str, Any]) -> dict[str, Any]:
    """The whole document of `operations` (method, path, operation), for a service with these
    runtime names and aliases: each `{language}` path parameter lists them."""
    paths: dict[str, Any] = {}
    for method, path, operation in operations:
        paths.setdefault(path, {})[method.lower()] = _with_languages(operation, languages)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sandbox-service", "version": version,
                 "description": "Runs untrusted programs (Python, C++, C, Java, JavaScript, "
                                "Bash, Go, Rust) under confinement; "
                                "Azure session-pool execute routes, Piston's v2 API and "
                                "Judge0 CE's API."},
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **schemas}},
    }


def _with_languages(operation: dict[str, Any], languages: Sequence[str]) -> dict[str, Any]:
    parameters = operation.get("parameters", [])
    if not any(p["name"] == "language" and p["in"] == "path" for p in parameters):
        return operation
    return {**operation, "parameters": [
        {**p, "schema": {**p["schema"], "enum": list(languages)}}
        if p["name"] == "language" and p["in"] == "path" else p
        for p in parameters]}
