"""Running one Judge0 submission through the runtimes, and its status as Judge0 names it.

Statuses are Judge0's 1–14, with Judge0's descriptions. A run killed for its memory limit,
which Judge0 cannot tell from another kill, is status 12 "Runtime Error (Other)" with the
message "Memory limit exceeded" (and `exit_signal` 9): the status keeps the `judge0` SDK and
other clients, which know ids 1–14 only, working, and the message tells it apart.
"""

from __future__ import annotations

import base64
import logging
import signal
from dataclasses import dataclass
from typing import Any

from runtimes import Compiled, RunRequest, Runtime, SourceFile
from sandbox import Limits, Outcome, RunResult, SandboxError

from ..checkers import Checker
from ..errors import ServiceError
from ..service import Service
from .archive import ArchiveError, read_archive
from .fields import KB, Submission

log = logging.getLogger("adapter.judge0")

STATUSES = {
    1: "In Queue", 2: "Processing", 3: "Accepted", 4: "Wrong Answer",
    5: "Time Limit Exceeded", 6: "Compilation Error", 7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)", 9: "Runtime Error (SIGFPE)", 10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)", 12: "Runtime Error (Other)", 13: "Internal Error",
    14: "Exec Format Error",
}
ACCEPTED, WRONG_ANSWER, TIME_LIMIT, COMPILATION_ERROR = 3, 4, 5, 6
SIGNAL_STATUSES: dict[int, int] = {signal.SIGSEGV: 7, signal.SIGXFSZ: 8, signal.SIGFPE: 9,
                                   signal.SIGABRT: 10}
NZEC, OTHER, INTERNAL_ERROR, EXEC_FORMAT_ERROR = 11, 12, 13, 14
# Judge0 compares as the `lines` checker does: trailing whitespace of each line and trailing
# blank lines aside.
JUDGE0_COMPARISON = Checker("lines")
MEMORY_LIMIT_MESSAGE = "Memory limit exceeded"
# Of the archive in additional_files: Judge0's MAX_EXTRACT_SIZE (10 MB), and a file count.
MAX_EXTRACT_BYTES = 10240 * KB
MAX_EXTRACT_FILES = 256


@dataclass(frozen=True)
class Judged:
    """A finished submission's status and what the store keeps of it (`result`)."""

    status_id: int
    result: dict[str, Any]


def internal_error(message: str) -> dict[str, Any]:
    return {"message": message, "stdout": None, "stderr": None, "compile_output": None,
            "time": None, "wall_time": None, "memory": None, "exit_code": None,
            "exit_signal": None}


async def judge(service: Service, runtime: Runtime, submission: Submission) -> Judged:
    """Compiles once (when the runtime compiles), runs `number_of_runs` times (stopping at the
    first run that is not accepted), and judges; a failure of the service is Internal Error,
    never an exception."""
    try:
        return await _judge(service, runtime, submission)
    except ArchiveError as exc:  # checked when submitted; a stored row may predate a change
        return Judged(INTERNAL_ERROR, internal_error(f"additional_files: {exc}"))
    except SandboxError as exc:
        text = str(exc)
        if "could not start the program" in text:
            return Judged(EXEC_FORMAT_ERROR, internal_error(text))
        log.error("submission failed in the sandbox: %s", text)
        return Judged(INTERNAL_ERROR, internal_error(f"the sandbox failed: {text}"))
    except ServiceError:
        raise  # busy or shutting down: the queue decides what becomes of the submission
    except Exception as exc:
        log.exception("submission failed")
        return Judged(INTERNAL_ERROR, internal_error(f"internal error: {exc}"))


def source_files(runtime: Runtime, submission: Submission) -> tuple[SourceFile, ...]:
    main = SourceFile(runtime.source_file, submission.source_code)
    if submission.additional_files is None:
        return (main,)
    extra = read_archive(submission.additional_files, max_files=MAX_EXTRACT_FILES,
                         max_bytes=MAX_EXTRACT_BYTES, taken=(runtime.source_file,))
    return (main, *extra)


async def _judge(service: Service, runtime: Runtime, submission: Submission) -> Judged:
    files = source_files(runtime, submission)
    limits = submission.limits(runtime.run.limits, service.settings.ceilings())
    compiled: Compiled | None = None
    if runtime.compile is not None:
        compiled = await service.compile(RunRequest(runtime, files, limits,
                                                    args=submission.args))
        if not compiled.result.ok:
            return Judged(COMPILATION_ERROR, _compile_failure(compiled.result))
    runs: list[RunResult] = []
    status, message = ACCEPTED, None
    for _ in range(submission.number_of_runs):
        execution = await service.execute(RunRequest(
            runtime, files, limits, stdin=submission.stdin, args=submission.args,
            compiled=compiled))
        assert execution.run is not None
        runs.append(execution.run)
        status, message = status_of(execution.run, submission, limits)
        if status != ACCEPTED:
            break
    last = runs[-1]
    stdout, stderr = ((last.output, b"") if submission.redirect_stderr_to_stdout
                      else (last.stdout, last.stderr))
    return Judged(status, {
        "stdout": _b64(stdout), "stderr": _b64(stderr), "compile_output": _b64(
            compiled.result.output if compiled is not None and compiled.result.output
            else None),
        "message": message,
        # Judge0 reports the mean over the runs made.
        "time": _seconds(sum(r.cpu_time_s for r in runs) / len(runs)),
        "wall_time": _seconds(sum(r.wall_time_s for r in runs) / len(runs)),
        "memory": sum(r.memory_bytes for r in runs) // len(runs) // KB,
        "exit_code": last.exit_code if last.signal is None else None,
        "exit_signal": last.signal,
    })


def status_of(result: RunResult, submission: Submission,
              limits: Limits) -> tuple[int, str | None]:
    """Judge0's status of one run, and its message (isolate's wording, as Judge0 shows it)."""
    outcome = result.outcome
    if outcome is Outcome.WALL_TIMEOUT:
        return TIME_LIMIT, "Time limit exceeded (wall clock)"
    if outcome is Outcome.CPU_LIMIT or result.cpu_time_s > submission.cpu_time_limit:
        return TIME_LIMIT, "Time limit exceeded"
    if outcome is Outcome.MEMORY_LIMIT:
        return OTHER, MEMORY_LIMIT_MESSAGE
    if outcome is Outcome.OUTPUT_LIMIT:
        return SIGNAL_STATUSES[signal.SIGXFSZ], (
            f"Output limit exceeded ({limits.max_output_bytes // KB} KB)")
    if outcome is Outcome.FILE_SIZE_LIMIT:
        return SIGNAL_STATUSES[signal.SIGXFSZ], "File size limit exceeded"
    if outcome is Outcome.DISK_LIMIT:
        return SIGNAL_STATUSES[signal.SIGXFSZ], "Disk quota exceeded"
    if outcome is Outcome.SIGNALED:
        number = result.signal or 0
        return SIGNAL_STATUSES.get(number, OTHER), f"Caught fatal signal {number}"
    if outcome is Outcome.NONZERO_EXIT:
        return NZEC, f"Exited with error status {result.exit_code}"
    if submission.expected_output is None:
        return ACCEPTED, None
    actual = result.output if submission.redirect_stderr_to_stdout else result.stdout
    verdict = JUDGE0_COMPARISON.compare(actual, submission.expected_output)
    return (ACCEPTED, None) if verdict.name == "accepted" else (WRONG_ANSWER, None)


def _compile_failure(result: RunResult) -> dict[str, Any]:
    output = result.output
    if result.outcome in (Outcome.WALL_TIMEOUT, Outcome.CPU_LIMIT):
        output = b"Compilation time limit exceeded."
    elif result.outcome is Outcome.MEMORY_LIMIT and not output:
        output = b"Compilation memory limit exceeded."
    return {"stdout": None, "stderr": None, "compile_output": _b64(output),
            "message": None, "time": None, "wall_time": None, "memory": None,
            "exit_code": None, "exit_signal": None}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _seconds(value: float) -> str:
    """Judge0's times: seconds as a decimal string, to the millisecond."""
    return f"{value:.3f}"
