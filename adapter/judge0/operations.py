"""The OpenAPI operations of Judge0's routes (adapter.openapi assembles the document)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .fields import BOUNDS, MAX_OPTION_CHARS, POSITIVE, REFUSED_FLAGS


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OBJECT: dict[str, Any] = {"type": "object"}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
# 422: each wrong field with its errors.
FIELD_ERRORS = {"type": "object", "additionalProperties": {"type": "array",
                                                            "items": {"type": "string"}}}
# As Judge0 reads them: "true" turns the switch on, any other value leaves it off.
BASE64 = {"name": "base64_encoded", "in": "query", "schema": {"type": "string"},
          "description": "true: text fields in base64 (default false)"}
WAIT = {"name": "wait", "in": "query", "schema": {"type": "string"},
        "description": "true: answer once the submission has finished"}
FIELDS = {"name": "fields", "in": "query", "schema": {"type": "string"},
          "description": "comma-separated fields, or * for all"}
TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
# A number as a string (what the checks read as one).
NUMERIC = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
SUBMISSION = {"$ref": "#/components/schemas/Judge0Submission"}


def submission_schema(language_ids: Sequence[int], top: Mapping[str, float]) -> dict[str, Any]:
    """A submission's fields, from the declarations that check them (adapter.judge0.fields):
    the ids served, each bound with this service's maxima."""
    numbers: dict[str, Any] = {}
    for name, bound in BOUNDS.items():
        # Judge0 reads numbers sent as strings too ("5"), as Rails casts form fields.
        numbers[name] = {"anyOf": [
            {"type": "integer" if bound.integer else "number", "maximum": top[name],
             **({"exclusiveMinimum": 0} if name in POSITIVE else {"minimum": bound.minimum})},
            {"type": "string", "pattern": NUMERIC}], "default": bound.default}
    properties: dict[str, Any] = {
            "source_code": {"type": "string", "minLength": 1},
            "language_id": {"anyOf": [{"type": "integer", "enum": list(language_ids)},
                                      {"type": "string",
                                       "enum": [str(i) for i in language_ids]}]},
            "stdin": {"type": "string"}, "expected_output": {"type": "string"},
            "compiler_options": {"type": "string", "maxLength": MAX_OPTION_CHARS,
                                 "description": "only -std= choosing a standard"},
            "command_line_arguments": {"type": "string", "maxLength": MAX_OPTION_CHARS},
            **numbers,
            "redirect_stderr_to_stdout": {"enum": [True, False, "true", "false"]},
            **{flag: {"enum": [False, "false"], "description": "true is refused"}
               for flag in REFUSED_FLAGS},
            "additional_files": {"type": "string", "description": "a zip, in base64"},
            "callback_url": {"type": "string", "format": "uri",
                             "description": "only when callbacks are turned on"}}
    # Judge0 takes null for any field it does not require: its default.
    return {"type": "object", "required": ["source_code", "language_id"],
            "properties": {name: schema if name in ("source_code", "language_id")
                           else {"anyOf": [schema, {"type": "null"}]}
                           for name, schema in properties.items()}}


BUSY = {"503": _json(ERROR, "queue is full")}

JUDGE0_SUBMISSION_POST = {
    "summary": "Judge0: create a submission",
    "parameters": [BASE64, WAIT, FIELDS],
    "requestBody": {"required": True, "content": {"application/json": {"schema": SUBMISSION}}},
    "responses": {"201": _json(OBJECT, "its token, or with wait=true the finished submission"),
                  "400": _json(ERROR, "wait not allowed, invalid fields or a bad body"),
                  "422": _json(FIELD_ERRORS, "the wrong fields"), **BUSY}}
JUDGE0_SUBMISSION_GET = {
    "summary": "Judge0: one submission",
    "parameters": [TOKEN, BASE64, FIELDS],
    "responses": {"200": _json(OBJECT, "the submission's fields"),
                  "400": _json(ERROR, "invalid fields, or text that is not UTF-8 without "
                                      "base64"),
                  "404": _json(ERROR, "no such token")}}
JUDGE0_BATCH_POST = {
    "summary": "Judge0: create up to 20 submissions",
    "parameters": [BASE64],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["submissions"],
        "properties": {"submissions": {"type": "array", "items": SUBMISSION}}}}}},
    "responses": {"201": _json({"type": "array", "items": OBJECT},
                               "a token or the field errors for each"),
                  "400": _json(ERROR, "none or too many"),
                  "422": _json({"type": "array", "items": FIELD_ERRORS}, "none was valid"),
                  **BUSY}}
JUDGE0_BATCH_GET = {
    "summary": "Judge0: several submissions",
    "parameters": [{"name": "tokens", "in": "query", "required": True,
                    "schema": {"type": "string"}}, BASE64, FIELDS],
    "responses": {"200": _json({"type": "object", "properties": {"submissions": {
        "type": "array", "items": {"anyOf": [OBJECT, {"type": "null"}]}}}},
        "each submission, null for an unknown token"),
        "400": _json(ERROR, "none or too many tokens, or invalid fields")}}
JUDGE0_LANGUAGES = {"summary": "Judge0: languages",
                    "responses": {"200": _json({"type": "array", "items": OBJECT},
                                               "id and name of each")}}
JUDGE0_LANGUAGE = {"summary": "Judge0: one language",
                   "parameters": [{"name": "id", "in": "path", "required": True,
                                   "schema": {"type": "string"}}],
                   "responses": {"200": _json(OBJECT, "the language"),
                                 "404": _json(ERROR, "no such language")}}


def judge0_info(path: str) -> dict[str, Any]:
    """The operation of an information route (/statuses, /about, /config_info, …)."""
    if path == "/version":
        return {"summary": "Judge0: version", "responses": {"200": {
            "description": "the version", "content": {"text/plain": {"schema": {
                "type": "string"}}}}}}
    return {"summary": f"Judge0: {path.strip('/')}",
            "responses": {"200": _json({"anyOf": [OBJECT, {"type": "array"}]}, path)}}
