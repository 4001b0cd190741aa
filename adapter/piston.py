"""Piston's v2 execute format: the request validated with Piston's exact messages, the reply in
Piston's exact shape. Shared by `POST /api/v2/execute` and the `/api/v2/connect` WebSocket.

Where Piston is rough, this differs on purpose (docs/api.md lists it): a bad `encoding`, bad
base64/hex, unsafe or clashing file names and non-string `stdin`/`args` are 400s naming the
field instead of crashes or silent guesses; `-1` memory limits mean the default; output is cut
at exactly the cap instead of dropping whole chunks; a `version` range over 256 characters is
unknown.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import nodesemver

from runtimes import (
    Execution,
    Registry,
    ReservedSourceName,
    RunRequest,
    Runtime,
    SourceFile,
    check_source_names,
    effective_limits,
)
from sandbox import Limits, Outcome, RunResult, UnsafeName, resolve_inside

from .errors import BadRequest
from .fields import optional_args, utf8
from .render import signal_name, text

ENCODINGS = ("utf8", "base64", "hex")
# Piston checks the limits in this order, and names them `<stage>_<constraint>`.
# Piston's three, and ours: `<stage>_output_limit`, bytes kept of stdout and of stderr.
CONSTRAINTS = ("memory_limit", "timeout", "cpu_time", "output_limit")
STAGES = ("compile", "run")
WHITESPACE = re.compile(rb"\s+")
# Longer `version` ranges are unknown without being parsed: the node-semver port's patterns take
# time that grows faster than the square of the length on runs of spaces (100 000 spaces: 17 s
# of the event loop). Node's semver refuses versions over the same 256 characters.
MAX_RANGE_CHARS = 256


def resolve_runtime(registry: Registry, language: str, version: str) -> Runtime | None:
    """The installed runtime named `language` (or an alias) whose version satisfies the
    node-semver range `version`, the highest if several do; None if none does. A language
    standard as `version` (`"c++20"` with `"language": "c++"`) picks that variant: no range
    looks like one."""
    if len(version) > MAX_RANGE_CHARS:
        return None
    variant = next((rt for rt in registry if language in rt.family and rt.variant == version),
                   None)
    if variant is not None:
        return variant
    wanted = _parse_range(version)
    if wanted is None:
        return None
    matches = [rt for rt in registry if language in rt.names and _satisfies(rt.version, wanted)]
    if not matches:
        return None
    return max(matches, key=lambda rt: functools.cmp_to_key(_compare)(rt.version))


def _parse_range(wanted: str) -> Any | None:
    """The node-semver range `wanted`, or None when it is not one. Parsed here rather than by
    `nodesemver.satisfies`, which logs a client's malformed range with a full traceback."""
    try:
        return nodesemver.make_range(wanted, loose=False)
    except (ValueError, TypeError):  # not a range at all, as for Node's semver
        return None


def _satisfies(installed: str, wanted: Any) -> bool:
    try:
        return bool(wanted.test(installed))
    except (ValueError, TypeError):  # an installed version that is not semver matches nothing
        return False


def _compare(a: str, b: str) -> int:
    return int(nodesemver.compare(a, b, loose=False))


def _js_falsy(value: Any) -> bool:
    """Whether JavaScript finds a JSON value false: null, false, 0 and "". Unlike Python's,
    `[]` and `{}` are true, so Piston reports `"run_timeout": []` instead of ignoring it."""
    return value is None or value is False or value == "" or (
        isinstance(value, (int, float)) and value == 0)


def _encoding(file: dict[str, Any]) -> Any:
    """A file's encoding as Piston reads it: utf8 when the field is false in JavaScript."""
    encoding = file.get("encoding")
    return "utf8" if _js_falsy(encoding) else encoding


def runtimes_list(registry: Registry) -> list[dict[str, Any]]:
    """`GET /api/v2/runtimes`."""
    listed = []
    for rt in registry:
        entry: dict[str, Any] = {"language": rt.name, "version": rt.version,
                                 "aliases": list(rt.aliases)}
        if rt.toolchain:
            entry["runtime"] = rt.toolchain
        listed.append(entry)
    return listed


def parse_job(body: Any, registry: Registry, ceilings: Limits) -> RunRequest:
    """Validates an execute (or WebSocket init) body, in Piston's order and words: what to
    run and under which limits."""
    if not isinstance(body, dict):
        raise BadRequest("language is required as a string")
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise BadRequest("language is required as a string")
    if not version or not isinstance(version, str):
        raise BadRequest("version is required as a string")
    if not isinstance(files, list):
        raise BadRequest("files is required as an array")
    for i, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise BadRequest(f"files[{i}].content is required as a string")
    runtime = resolve_runtime(registry, language, version)
    if runtime is None:
        raise BadRequest(f"{language}-{version} runtime is unknown")
    if not any(_encoding(f) == "utf8" for f in files):
        raise BadRequest("files must include at least one utf8 encoded file")
    overrides = _limit_overrides(body, ceilings)
    sources, main = _source_files(files, runtime)
    stdin = body.get("stdin")
    if stdin is None:
        stdin = ""
    if not isinstance(stdin, str):
        raise BadRequest("stdin must be a string")
    # Piston ends stdin with a newline when it lacks one; programs written against it rely on
    # it (input() of a last line), so it is kept.
    if not stdin.endswith("\n"):
        stdin += "\n"
    run_limits = effective_limits(runtime.run.limits, ceilings, **overrides["run"])
    compile_limits = (effective_limits(runtime.compile.limits, ceilings, **overrides["compile"])
                      if runtime.compile is not None else None)
    return RunRequest(runtime, sources, run_limits, compile_limits, utf8(stdin, "stdin"),
                      optional_args(body.get("args"), "args"), main)


def _js_number(value: float) -> str:
    """A number as JavaScript prints it in a template string (60000, not 60000.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _limit_overrides(body: dict[str, Any], ceilings: Limits) -> dict[str, dict[str, float]]:
    """`<stage>_<constraint>` fields as Limits fields per stage. 0, null or absent is the
    default, as is -1 for memory (piston_rs always sends it)."""
    configured = {"memory_limit": ceilings.memory_bytes,
                  "timeout": ceilings.wall_timeout_s * 1000,
                  "cpu_time": ceilings.cpu_time_s * 1000,
                  "output_limit": ceilings.max_output_bytes}
    overrides: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
    for constraint in CONSTRAINTS:
        for stage in STAGES:
            name = f"{stage}_{constraint}"
            value = body.get(name)
            if _js_falsy(value):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise BadRequest(f"If specified, {name} must be a number")
            if constraint == "memory_limit" and value == -1:
                continue
            if value > configured[constraint]:
                raise BadRequest(f"{name} cannot exceed the configured limit of "
                                 f"{_js_number(configured[constraint])}")
            if value < 0:
                raise BadRequest(f"{name} must be non-negative")
            # Limits must be positive: a fraction of a byte is one byte, and a time under 1 ms
            # is 1 ms (a tiny one would underflow to 0 s in the division).
            if constraint == "memory_limit":
                overrides[stage]["memory_bytes"] = math.ceil(value)
            elif constraint == "output_limit":
                overrides[stage]["max_output_bytes"] = math.ceil(value)
            elif constraint == "timeout":
                overrides[stage]["wall_timeout_s"] = max(value, 1) / 1000
            else:
                overrides[stage]["cpu_time_s"] = max(value, 1) / 1000
    return overrides


def _decode(file: dict[str, Any], i: int) -> bytes:
    encoding = _encoding(file)
    content: str = file["content"]
    if encoding not in ENCODINGS:
        raise BadRequest(f"files[{i}].encoding must be one of {', '.join(ENCODINGS)}")
    if encoding == "utf8":
        return utf8(content, f"files[{i}].content")
    raw = WHITESPACE.sub(b"", content.encode("ascii", errors="replace"))
    try:
        if encoding == "hex":
            return binascii.unhexlify(raw)
        # Like Node's decoder: padding optional, the URL-safe alphabet accepted too.
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"files[{i}].content is not valid {encoding}") from None


def _source_files(files: list[dict[str, Any]], runtime: Runtime) -> tuple[tuple[SourceFile, ...],
                                                                        str]:
    """The files with their names checked; the main file is the first utf8 one. Unnamed files
    are `file<i>` plus the runtime's extension (Piston's `file<i>.code` would not compile).
    A name starting with `-` is given as `./-…`: the run and compile argv lists carry names as
    they are, and `-c` or `-fplugin=x.cpp` would be read as an option of the interpreter or
    the compiler instead of a file."""
    extension = PurePosixPath(runtime.source_file).suffix
    sources: list[SourceFile] = []
    paths: dict[PurePosixPath, int] = {}
    main = None
    for i, file in enumerate(files):
        name = file.get("name")
        if _js_falsy(name):
            name = f"file{i}{extension}"
        if not isinstance(name, str):
            raise BadRequest(f"files[{i}].name must be a string")
        try:
            path = PurePosixPath(resolve_inside(Path("/"), name).relative_to("/"))
        except UnsafeName as exc:
            raise BadRequest(f"files[{i}].name: {exc}") from None
        _check_clash(path, paths, i)
        paths[path] = i
        argv_name = f"./{path}" if path.parts[0].startswith("-") else str(path)
        sources.append(SourceFile(argv_name, _decode(file, i)))
        if main is None and _encoding(file) == "utf8":
            main = argv_name
    assert main is not None  # parse_job checked that a utf8 file exists
    try:
        check_source_names(runtime, [source.name for source in sources])
    except ReservedSourceName as exc:
        raise BadRequest(f"files[{exc.index}].name: {exc}") from None
    return tuple(sources), main


def _check_clash(path: PurePosixPath, earlier: dict[PurePosixPath, int], i: int) -> None:
    if path in earlier:
        raise BadRequest(f"files[{i}].name {str(path)!r} is also files[{earlier[path]}]'s")
    for other, j in earlier.items():
        if other in path.parents or path in other.parents:
            raise BadRequest(f"files[{i}].name {str(path)!r} and files[{j}].name "
                             f"{str(other)!r} use one name as both file and folder")


# -- the reply ------------------------------------------------------------------------------------

def status_of(result: RunResult) -> tuple[str | None, str | None]:
    """Piston's (status, message) for a stage result: null on success, RE, SG, TO, OL, EL."""
    outcome = result.outcome
    if outcome is Outcome.OK:
        return None, None
    if outcome is Outcome.WALL_TIMEOUT:
        return "TO", "Time limit exceeded (wall clock)"
    if outcome is Outcome.CPU_LIMIT:
        return "TO", "Time limit exceeded"
    if outcome is Outcome.OUTPUT_LIMIT:
        if result.stdout_truncated:
            return "OL", "stdout length exceeded"
        return "EL", "stderr length exceeded"
    if result.signal is not None:
        return "SG", f"Caught fatal signal {result.signal}"
    return "RE", f"Exited with error status {result.exit_code}"


def render_stage(result: RunResult) -> dict[str, Any]:
    status, message = status_of(result)
    killed = status in ("TO", "OL", "EL")
    return {
        "stdout": text(result.stdout),
        "stderr": text(result.stderr),
        "output": text(result.output),
        # As Piston: a run stopped for time or output was killed, whatever it was doing.
        "code": None if killed else result.exit_code,
        "signal": "SIGKILL" if killed else signal_name(result.signal),
        "message": message,
        "status": status,
        "cpu_time": round(result.cpu_time_s * 1000),
        "wall_time": round(result.wall_time_s * 1000),
        "memory": result.memory_bytes,
    }


def render_execution(execution: Execution) -> dict[str, Any]:
    """The execute reply. When compilation fails, `run` is the compile stage, as in Piston."""
    reply: dict[str, Any] = {"language": execution.runtime.name,
                             "version": execution.runtime.version}
    compiled = render_stage(execution.compile) if execution.compile is not None else None
    reply["run"] = render_stage(execution.run) if execution.run is not None else compiled
    if compiled is not None:
        reply["compile"] = compiled
    return reply

