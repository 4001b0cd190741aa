"""`POST /batch`'s request: its JSON validated into a `Batch` (see adapter.batch); every 400
names the JSON path of what is wrong."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runtimes import (
    Registry,
    ReservedSourceName,
    Runtime,
    SourceFile,
    check_source_names,
    effective_limits,
)
from sandbox import Limits, UnsafeName, resolve_inside

from .checkers import KINDS, Checker
from .errors import BadRequest
from .fields import optional_args, optional_string, require_object, require_string, utf8

DEFAULT_CHECKER = Checker()
# The limits a request may set, with the ceiling each is checked against.
LIMIT_KEYS = ("wall_timeout_s", "cpu_time_s", "memory_bytes", "max_output_bytes")
BATCH_KEYS = ("language", "files", "limits", "cases", "checker")
COMPARER_KEYS = ("type", "absolute", "relative")
CHECKER_KEYS = (*COMPARER_KEYS, "language", "files", "limits")  # a checker program's
# What a checker program is given, in its working directory and as its arguments (testlib's
# order: the input, the program's output, the expected answer).
CHECKER_INPUTS = ("input.txt", "output.txt", "expected.txt")
CASE_KEYS = ("name", "stdin", "expected_output", "args", "limits")


@dataclass(frozen=True)
class Case:
    name: str | None
    stdin: bytes
    expected_output: bytes | None
    args: tuple[str, ...]
    limits: Limits  # the run's, clamped and checked


@dataclass(frozen=True)
class Batch:
    """A validated request."""

    runtime: Runtime
    files: tuple[SourceFile, ...]
    cases: tuple[Case, ...]
    compile_limits: Limits | None
    checker: Checker = DEFAULT_CHECKER
    checker_program: CheckerProgram | None = None


@dataclass(frozen=True)
class CheckerProgram:
    """A custom checker: a program in any runtime, run for each case in a jail of its own with
    CHECKER_INPUTS, its exit code the verdict."""

    runtime: Runtime
    files: tuple[SourceFile, ...]
    limits: Limits
    compile_limits: Limits | None


# ---- the request --------------------------------------------------------------------------------

def parse_batch(body: Any, registry: Registry, ceilings: Limits, max_cases: int) -> Batch:
    """Validates a batch request; every 400 names the JSON path of what is wrong."""
    body = require_object(body, "the request body")
    _check_keys(body, BATCH_KEYS, "")
    runtime = registry.find(require_string(body.get("language"), "language"))
    files = _files(body.get("files"), runtime)
    defaults = _limits(body.get("limits"), "limits", ceilings)
    cases = body.get("cases")
    if not isinstance(cases, list) or not cases:
        raise BadRequest("cases must be a non-empty array")
    if len(cases) > max_cases:
        raise BadRequest(f"cases has {len(cases)} entries; a request may have at most "
                         f"{max_cases} (SANDBOX_MAX_BATCH_CASES)")
    parsed = tuple(_case(case, f"cases[{i}]", runtime, ceilings, defaults)
                   for i, case in enumerate(cases))
    compile_limits = (effective_limits(runtime.compile.limits, ceilings)
                      if runtime.compile is not None else None)
    value = body.get("checker")
    program = None
    if isinstance(value, dict) and value.get("type") == "program":
        program = parse_checker_program(value, registry, ceilings)
        value = None
    return Batch(runtime, files, parsed, compile_limits, parse_checker(value), program)


def parse_checker_program(value: dict[str, Any], registry: Registry,
                          ceilings: Limits) -> CheckerProgram:
    """`{"type": "program", "language": "python", "files": [...], "limits": {...}}`."""
    _check_keys(value, CHECKER_KEYS, "checker.")
    runtime = registry.find(require_string(value.get("language"), "checker.language"))
    files = _files(value.get("files"), runtime, "checker.files")
    for i, source in enumerate(files):
        if source.name in CHECKER_INPUTS:
            raise BadRequest(f"checker.files[{i}].name {source.name!r} is the name of a file "
                             f"the checker is given ({', '.join(CHECKER_INPUTS)})")
    overrides = _limits(value.get("limits"), "checker.limits", ceilings)
    compile_limits = (effective_limits(runtime.compile.limits, ceilings)
                      if runtime.compile is not None else None)
    return CheckerProgram(runtime, files,
                          effective_limits(runtime.run.limits, ceilings, **overrides),
                          compile_limits)


def parse_checker(value: Any, path: str = "checker") -> Checker:
    """`"tokens"`, or `{"type": "floats", "absolute": 1e-9, "relative": 1e-9}`; absent: lines.
    (A checker program is read by `parse_checker_program`.)"""
    if value is None:
        return DEFAULT_CHECKER
    if isinstance(value, str):
        value = {"type": value}
    checker = require_object(value, path)
    _check_keys(checker, COMPARER_KEYS, path + ".")
    kind = checker.get("type")
    if kind not in KINDS:
        raise BadRequest(f"{path}.type must be one of {', '.join(KINDS)}, program")
    tolerances: dict[str, float] = {}
    for key in ("absolute", "relative"):
        raw = checker.get(key)
        if raw is None:
            continue
        if kind != "floats":
            raise BadRequest(f"{path}.{key} applies to the floats checker only")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) \
                or not math.isfinite(raw) or raw < 0:
            raise BadRequest(f"{path}.{key} must be a number of at least 0")
        tolerances[key] = float(raw)
    return Checker(kind, **tolerances)


def _check_keys(value: dict[str, Any], known: Sequence[str], path: str) -> None:
    # A misspelt `expected_output` would silently turn every verdict into `ran`.
    for key in value:
        if key not in known:
            raise BadRequest(f"{path}{key} is not a known field (known: {', '.join(known)})")


def _files(value: Any, runtime: Runtime, where: str = "files") -> tuple[SourceFile, ...]:
    """The source files; the first is the main one and may go unnamed (the runtime's name)."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where} must be a non-empty array")
    sources: list[SourceFile] = []
    taken: dict[PurePosixPath, str] = {}
    for i, item in enumerate(value):
        path = f"{where}[{i}]"
        file = require_object(item, path)
        _check_keys(file, ("name", "content"), path + ".")
        raw_name = file.get("name")
        if raw_name is None and i == 0:
            name = runtime.source_file
        elif raw_name is None:
            raise BadRequest(f"{path}.name is required (only the first file may go unnamed)")
        else:
            name = require_string(raw_name, f"{path}.name")
        try:
            relative = PurePosixPath(resolve_inside(Path("/"), name).relative_to("/"))
        except UnsafeName as exc:
            raise BadRequest(f"{path}.name: {exc}") from None
        # Names reach compiler and interpreter argv lists: `-o…` would be read as an option.
        if relative.parts[0].startswith("-"):
            raise BadRequest(f"{path}.name must not start with '-'")
        for other, other_path in taken.items():
            if relative == other or other in relative.parents or relative in other.parents:
                raise BadRequest(f"{path}.name {name!r} clashes with {other_path}.name")
        taken[relative] = path
        content = utf8(require_string(file.get("content"), f"{path}.content"), f"{path}.content")
        sources.append(SourceFile(str(relative), content))
    try:
        check_source_names(runtime, [source.name for source in sources])
    except ReservedSourceName as exc:
        raise BadRequest(f"{where}[{exc.index}].name: {exc}") from None
    return tuple(sources)


def _limits(value: Any, path: str, ceilings: Limits) -> dict[str, float]:
    """The limits an object sets, each checked against its ceiling (never silently lowered: a
    grader must know the limits its verdicts were judged under)."""
    if value is None:
        return {}
    limits = require_object(value, path)
    _check_keys(limits, LIMIT_KEYS, path + ".")
    parsed: dict[str, float] = {}
    for key, raw in limits.items():
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) \
                or raw <= 0:
            raise BadRequest(f"{path}.{key} must be a positive number")
        ceiling = getattr(ceilings, key)
        if raw > ceiling:
            shown = int(ceiling) if float(ceiling).is_integer() else ceiling
            raise BadRequest(f"{path}.{key} cannot exceed the ceiling of {shown}")
        parsed[key] = math.ceil(raw) if key.endswith("_bytes") else float(raw)
    return parsed


def _case(value: Any, path: str, runtime: Runtime, ceilings: Limits,
          defaults: dict[str, float]) -> Case:
    case = require_object(value, path)
    _check_keys(case, CASE_KEYS, path + ".")
    name = case.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"{path}.name must be a string")
    stdin = utf8(optional_string(case.get("stdin"), f"{path}.stdin"), f"{path}.stdin")
    expected = case.get("expected_output")
    expected_bytes = None if expected is None else utf8(
        require_string(expected, f"{path}.expected_output"), f"{path}.expected_output")
    overrides = {**defaults, **_limits(case.get("limits"), f"{path}.limits", ceilings)}
    return Case(name, stdin, expected_bytes, optional_args(case.get("args"), f"{path}.args"),
                effective_limits(runtime.run.limits, ceilings, **overrides))
