"""`POST /batch`: one program and many test cases; compiled once, every case run in a fresh jail
of its own and judged against its expected output.

    {"language": "c++",
     "files": [{"name": "main.cpp", "content": "..."}],
     "limits": {"wall_timeout_s": 2, "cpu_time_s": 1, "memory_bytes": 268435456},
     "cases": [{"name": "1", "stdin": "2 3\\n", "expected_output": "5\\n",
                "args": [], "limits": {"cpu_time_s": 2}}]}

`limits` apply to every case, a case's own `limits` win field by field; neither may exceed the
service's ceilings. Verdicts, checked in this order: `time_limit` (wall clock or CPU time),
`memory_limit`, `output_limit` (stdout or stderr over the cap, a file over the size limit, the
working directory full), `runtime_error` (a fatal signal or a non-zero exit code: `detail`
names it), then against `expected_output`: `accepted` or `wrong_answer`, as the batch's
`checker` compares (adapter/checkers.py; by default trailing whitespace of each line and
trailing blank lines do not count, as in Judge0); `ran` when the case has no
`expected_output` to compare with. When compiling fails, every case is `compile_error`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtimes import (
    Compiled,
    Registry,
    ReservedSourceName,
    RunRequest,
    Runtime,
    SourceFile,
    check_source_names,
    effective_limits,
)
from sandbox import Limits, Outcome, RunResult, UnsafeName, resolve_inside

from .body import read_json
from .checkers import KINDS, Checker, Verdict
from .errors import BadRequest
from .fields import optional_args, optional_string, require_object, require_string, utf8
from .render import signal_name, text
from .service import Service, service_of

DEFAULT_CHECKER = Checker()
VERDICTS = ("accepted", "wrong_answer", "time_limit", "memory_limit", "output_limit",
            "runtime_error", "compile_error", "ran", "presentation_error", "checker_error")
# Verdicts that do not fail a batch: `ran` had nothing to be compared with.
PASSING = ("accepted", "ran")
# The limits a request may set, with the ceiling each is checked against.
LIMIT_KEYS = ("wall_timeout_s", "cpu_time_s", "memory_bytes", "max_output_bytes")
BATCH_KEYS = ("language", "files", "limits", "cases", "checker")
CHECKER_KEYS = ("type", "absolute", "relative", "language", "files", "limits")
# What a checker program is given, in its working directory and as its arguments (testlib's
# order: the input, the program's output, the expected answer).
CHECKER_INPUTS = ("input.txt", "output.txt", "expected.txt")
# A checker program's exit codes, as testlib's checkers use them.
CHECKER_VERDICTS = {0: "accepted", 1: "wrong_answer", 2: "presentation_error",
                    3: "checker_error"}
CHECKER_MESSAGE_CHARS = 300
CASE_KEYS = ("name", "stdin", "expected_output", "args", "limits")
# Of each case's stdout and stderr, the reply carries this much: a thousand cases at the full
# output cap would make a reply of gigabytes. The verdict is judged on everything captured.
EXCERPT_BYTES = 8192
TIME_LIMITS = {Outcome.WALL_TIMEOUT: "wall clock", Outcome.CPU_LIMIT: "CPU time"}
OUTPUT_LIMITS = {Outcome.OUTPUT_LIMIT: None, Outcome.FILE_SIZE_LIMIT: "a file over the size limit",
                 Outcome.DISK_LIMIT: "the working directory is full"}


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


@dataclass(frozen=True)
class CaseResult:
    """A judged case. `run` keeps only the beginning of each stream, what the reply carries;
    `stdout_bytes` and `stderr_bytes` count what was captured. `run` is None after a failed
    compile."""

    verdict: Verdict
    run: RunResult | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0


@dataclass(frozen=True)
class Graded:
    compiled: Compiled | None  # None for runtimes that do not compile
    cases: tuple[CaseResult, ...]

    @property
    def compile_failed(self) -> bool:
        return self.compiled is not None and not self.compiled.result.ok


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
    _check_keys(checker, CHECKER_KEYS[:3], path + ".")
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


# ---- judging ------------------------------------------------------------------------------------

def judge(result: RunResult, expected_output: bytes | None,
          checker: Checker = DEFAULT_CHECKER) -> Verdict:
    """The verdict of one case's run (see the module docstring for the order)."""
    outcome = result.outcome
    if outcome in TIME_LIMITS:
        return Verdict("time_limit", TIME_LIMITS[outcome])
    if outcome is Outcome.MEMORY_LIMIT:
        return Verdict("memory_limit")
    if outcome in OUTPUT_LIMITS:
        stream = "stdout" if result.stdout_truncated else "stderr"
        return Verdict("output_limit", OUTPUT_LIMITS[outcome] or f"{stream} over the cap")
    if outcome is Outcome.SIGNALED:
        return Verdict("runtime_error", signal_name(result.signal))
    if outcome is Outcome.NONZERO_EXIT:
        return Verdict("runtime_error", f"exit code {result.exit_code}")
    if expected_output is None:
        return Verdict("ran")
    return checker.compare(result.stdout, expected_output)


def judged(result: RunResult, expected_output: bytes | None,
           checker: Checker = DEFAULT_CHECKER) -> CaseResult:
    """The verdict, and the run reduced to what the reply carries: the full output was needed
    for the verdict, and keeping less bounds a large batch's memory while its cases run."""
    return CaseResult(judge(result, expected_output, checker),
                      dataclasses.replace(result, stdout=result.stdout[:EXCERPT_BYTES],
                                          stderr=result.stderr[:EXCERPT_BYTES], output=b""),
                      len(result.stdout), len(result.stderr))


# ---- running ------------------------------------------------------------------------------------

async def run_batch(service: Service, batch: Batch) -> Graded:
    """Compiles once (through the compile cache), then runs the cases in parallel, as many at
    once as the service runs programs; each case in a fresh jail with a copy of the program
    (and its checker program, if it has one, in another fresh jail after it)."""
    compiled = None
    if batch.runtime.compile is not None:
        # Its run limits only count toward what the compile holds of the memory budget.
        compiled = await service.compile(RunRequest(batch.runtime, batch.files,
                                                    batch.runtime.run.limits,
                                                    batch.compile_limits))
        if not compiled.result.ok:
            failed = CaseResult(Verdict("compile_error"))
            return Graded(compiled, tuple(failed for _ in batch.cases))
    program = batch.checker_program
    checker_compiled = None
    if program is not None and program.runtime.compile is not None:
        checker_compiled = await service.compile(RunRequest(
            program.runtime, program.files, program.limits, program.compile_limits))
        if not checker_compiled.result.ok:
            failed = CaseResult(Verdict("checker_error", "the checker did not compile: "
                                        + _message(checker_compiled.result)))
            return Graded(compiled, tuple(failed for _ in batch.cases))
    # At most as many cases wait for a slot as there are slots: a large batch takes its turns
    # among other requests instead of filling the waiting line and getting 503s.
    gate = asyncio.Semaphore(service.admission.max_running)

    async def run_case(case: Case) -> CaseResult:
        async with gate:
            execution = await service.execute(RunRequest(
                batch.runtime, batch.files, case.limits, stdin=case.stdin, args=case.args,
                compiled=compiled))
            assert execution.run is not None
            judged_case = judged(execution.run, case.expected_output, batch.checker)
            if program is None or judged_case.verdict.name not in ("accepted", "wrong_answer"):
                return judged_case
            assert case.expected_output is not None
            verdict = await run_checker(service, program, checker_compiled, case,
                                        execution.run.stdout)
            return dataclasses.replace(judged_case, verdict=verdict)

    tasks = [asyncio.ensure_future(run_case(case)) for case in batch.cases]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        # One case failed the service (503, shutdown): the others stop, and their jails are
        # disposed of before the error is answered.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return Graded(compiled, tuple(results))


async def run_checker(service: Service, program: CheckerProgram, compiled: Compiled | None,
                      case: Case, output: bytes) -> Verdict:
    """The checker program's verdict on one case's output: it runs in a jail of its own with
    the case's input, the output and the expected answer, and nothing of any other case."""
    assert case.expected_output is not None
    given = (SourceFile(CHECKER_INPUTS[0], case.stdin), SourceFile(CHECKER_INPUTS[1], output),
             SourceFile(CHECKER_INPUTS[2], case.expected_output))
    execution = await service.execute(RunRequest(
        program.runtime, (*program.files, *given), program.limits, args=CHECKER_INPUTS,
        compiled=compiled))
    result = execution.run
    assert result is not None
    if result.outcome is Outcome.NONZERO_EXIT or result.outcome is Outcome.OK:
        name = CHECKER_VERDICTS.get(result.exit_code or 0)
        if name is not None:
            message = _message(result)
            if name == "accepted":
                return Verdict(name)
            return Verdict(name, message or None)
        return Verdict("checker_error", f"the checker exited with {result.exit_code} (0 "
                       "accepted, 1 wrong answer, 2 presentation error, 3 checker failure)"
                       + (f": {_message(result)}" if _message(result) else ""))
    return Verdict("checker_error", f"the checker ended with {result.outcome.value}"
                   + (f" ({signal_name(result.signal)})" if result.signal else ""))


def _message(result: RunResult) -> str:
    """What a checker (or its compiler) said: its stderr, else its stdout, first lines, cut."""
    said = (result.stderr.strip() or result.stdout.strip()).decode(errors="replace")
    return said if len(said) <= CHECKER_MESSAGE_CHARS else said[:CHECKER_MESSAGE_CHARS - 1] + "…"


# ---- the reply ----------------------------------------------------------------------------------

def _stage(result: RunResult) -> dict[str, Any]:
    return {
        "outcome": result.outcome.value,
        "exit_code": result.exit_code,
        "signal": signal_name(result.signal),
        "stdout": text(result.stdout),
        "stderr": text(result.stderr),
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "wall_time_ms": round(result.wall_time_s * 1000),
        "cpu_time_ms": round(result.cpu_time_s * 1000),
        "memory_bytes": result.memory_bytes,
    }


def render_batch(batch: Batch, graded: Graded) -> dict[str, Any]:
    """The reply: the compile stage once, the cases in request order, counts of verdicts."""
    compile_stage = None
    if graded.compiled is not None:
        compile_stage = {**_stage(graded.compiled.result), "cached": graded.compiled.cached}
    cases = []
    for index, (case, result) in enumerate(zip(batch.cases, graded.cases, strict=True)):
        entry: dict[str, Any] = {"index": index, "name": case.name,
                                 "verdict": result.verdict.name, "detail": result.verdict.detail}
        if result.run is not None:
            entry.update(_stage(result.run), stdout_bytes=result.stdout_bytes,
                         stderr_bytes=result.stderr_bytes)
        cases.append(entry)
    summary = {"total": len(cases), **dict.fromkeys(VERDICTS, 0)}
    for result in graded.cases:
        summary[result.verdict.name] += 1
    return {"language": batch.runtime.name, "version": batch.runtime.version,
            "compile": compile_stage, "cases": cases, "summary": summary}


async def post_batch(request: Request) -> Response:
    """POST /batch: grade one program against many test cases."""
    service = service_of(request)
    settings = service.settings
    batch = parse_batch(await read_json(request, settings.max_body_bytes),
                        service.runtimes.registry,
                        settings.ceilings(), settings.max_batch_cases)
    request.state.runtime = batch.runtime.name
    graded = await run_batch(service, batch)
    if graded.compile_failed:
        request.state.outcome = "compile_error"
    return JSONResponse(render_batch(batch, graded))
