"""The Azure session-pool execute format: `{"properties": {"code": ...}}` in, the legacy
code-interpreter reply out (`$id`, `properties.status/stdout/stderr/result/...`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtimes import Execution
from sandbox import RunResult

from .fields import (
    optional_args,
    optional_positive_integer,
    optional_positive_number,
    optional_string,
    require_object,
    require_string,
    utf8,
)
from .render import outcome_name, signal_name, text


@dataclass(frozen=True)
class ExecuteRequest:
    code: bytes
    stdin: bytes
    args: tuple[str, ...]
    timeout_s: float | None
    identifier: str | None
    max_output_bytes: int | None = None


def parse_execute(body: Any, query: Mapping[str, str]) -> ExecuteRequest:
    """Validates an execute body. Only `properties.code` is required; `codeInputType`,
    `executionType` and other keys are accepted and ignored, in any case."""
    properties = require_object(require_object(body, "body").get("properties"), "properties")
    code = require_string(properties.get("code"), "properties.code")
    identifier = query.get("identifier") or properties.get("identifier")
    return ExecuteRequest(
        code=utf8(code, "properties.code"),
        stdin=utf8(optional_string(properties.get("stdin"), "properties.stdin"),
                   "properties.stdin"),
        args=optional_args(properties.get("args"), "properties.args"),
        timeout_s=optional_positive_number(properties.get("timeoutInSeconds"),
                                           "properties.timeoutInSeconds"),
        identifier=identifier if isinstance(identifier, str) else None,
        max_output_bytes=optional_positive_integer(properties.get("maxOutputBytes"),
                                                   "properties.maxOutputBytes"),
    )


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def render_stage(result: RunResult) -> dict[str, Any]:
    """One stage (compile or run) in the camelCase style of the Azure reply."""
    return {
        "outcome": result.outcome.value,
        "exitCode": result.exit_code,
        "signal": signal_name(result.signal),
        "stdout": text(result.stdout),
        "stderr": text(result.stderr),
        "output": text(result.output),
        "stdoutTruncated": result.stdout_truncated,
        "stderrTruncated": result.stderr_truncated,
        "executionTimeInMilliseconds": _milliseconds(result.wall_time_s),
        "cpuTimeInMilliseconds": _milliseconds(result.cpu_time_s),
        "peakMemoryInBytes": result.memory_bytes,
    }


def render_execution(execution: Execution) -> dict[str, Any]:
    """The reply. `status`, `stdout`, `stderr`, `result`, `executionResult` and
    `executionTimeInMilliseconds` are what Azure clients read; the rest is ours. When the
    compile fails, the top-level streams are the compiler's, so clients that read only them
    still see the error."""
    final = render_stage(execution.final)
    properties: dict[str, Any] = {
        "$id": "2",
        "status": "Success" if execution.ok else "Failure",
        "stdout": final["stdout"],
        "stderr": final["stderr"],
        "result": "",
        "executionResult": "",
        "executionTimeInMilliseconds": final["executionTimeInMilliseconds"],
        **{k: v for k, v in final.items() if k not in ("stdout", "stderr")},
        "outcome": outcome_name(execution),
        "compile": render_stage(execution.compile) if execution.compile is not None else None,
        "runtime": {"language": execution.runtime.name, "version": execution.runtime.version},
    }
    return {"$id": "1", "properties": properties}
