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
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtimes import Compiled, RunRequest, SourceFile
from sandbox import Outcome, RunResult

from .batch_request import (
    CHECKER_INPUTS,
    DEFAULT_CHECKER,
    Batch,
    Case,
    CheckerProgram,
    parse_batch,
)
from .body import read_json
from .checkers import Checker, Verdict
from .render import signal_name, text
from .service import Service, service_of

VERDICTS = ("accepted", "wrong_answer", "time_limit", "memory_limit", "output_limit",
            "runtime_error", "compile_error", "ran", "presentation_error", "checker_error")
# Verdicts that do not fail a batch: `ran` had nothing to be compared with.
PASSING = ("accepted", "ran")
# A checker program's exit codes, as testlib's checkers use them.
CHECKER_VERDICTS = {0: "accepted", 1: "wrong_answer", 2: "presentation_error",
                    3: "checker_error"}
CHECKER_MESSAGE_CHARS = 300
# Of each case's stdout and stderr, the reply carries this much: a thousand cases at the full
# output cap would make a reply of gigabytes. The verdict is judged on everything captured.
EXCERPT_BYTES = 8192
TIME_LIMITS = {Outcome.WALL_TIMEOUT: "wall clock", Outcome.CPU_LIMIT: "CPU time"}
OUTPUT_LIMITS = {Outcome.OUTPUT_LIMIT: None, Outcome.FILE_SIZE_LIMIT: "a file over the size limit",
                 Outcome.DISK_LIMIT: "the working directory is full"}


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
    if result.outcome not in (Outcome.OK, Outcome.NONZERO_EXIT):
        return Verdict("checker_error", f"the checker ended with {result.outcome.value}"
                       + (f" ({signal_name(result.signal)})" if result.signal else ""))
    message = _message(result)
    name = CHECKER_VERDICTS.get(result.exit_code or 0)
    if name == "accepted":
        return Verdict(name)
    if name is not None:
        return Verdict(name, message or None)
    return Verdict("checker_error", f"the checker exited with {result.exit_code} (0 "
                   "accepted, 1 wrong answer, 2 presentation error, 3 checker failure)"
                   + (f": {message}" if message else ""))


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
