"""A Judge0 submission's fields: read from a request, checked against Judge0's bounds, kept.

Units are Judge0's: seconds for times, kilobytes for memory, stack and file size. A field
outside its bounds is refused, as Judge0 refuses it, with a 422 whose body maps each field to
its errors (`{"cpu_time_limit": ["must be less than or equal to 15"]}`); Judge0's maxima are
lowered to this service's ceilings where those are lower. What is accepted is kept in the
store as `Submission.stored()`, text fields in base64, so that a submission can be run (again,
after a restart) from its row alone.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox import Limits

KB = 1024
# Judge0's `$ & ; < > | \``, stripped from compiler options and program arguments: a shell
# never sees them here, but Judge0's clients expect them gone.
STRIPPED = str.maketrans("", "", "$&;<>|`")
MAX_OPTION_CHARS = 512


@dataclass(frozen=True)
class Bound:
    """A numeric field: Judge0's default and bounds (inclusive), and whether it is an integer."""

    default: float
    minimum: float
    maximum: float
    integer: bool = False


# Judge0 CE 1.13's defaults and maxima (its `/config_info`).
BOUNDS: dict[str, Bound] = {
    "cpu_time_limit": Bound(5, 0, 15),
    "cpu_extra_time": Bound(1, 0, 5),
    "wall_time_limit": Bound(10, 0, 20),
    "memory_limit": Bound(128000, 2048, 512000, integer=True),
    "stack_limit": Bound(64000, 0, 128000, integer=True),
    "max_processes_and_or_threads": Bound(60, 1, 120, integer=True),
    "max_file_size": Bound(1024, 0, 4096, integer=True),
    "number_of_runs": Bound(1, 1, 20, integer=True),
}
# Limits below which a run could not start at all (a zero CPU or wall limit ends every run
# before its first instruction): a request's zero means "as little as can be".
FLOORS_S = {"cpu_time_limit": 0.01, "wall_time_limit": 0.05}
# Times greater than zero: Judge0 refuses a zero CPU or wall time limit.
POSITIVE = ("cpu_time_limit", "wall_time_limit")
FLAGS = ("redirect_stderr_to_stdout", "enable_network",
         "enable_per_process_and_thread_time_limit",
         "enable_per_process_and_thread_memory_limit")
# Flags this service never turns on: runs have no network, and every run's time and memory are
# its whole process tree's (a cgroup), never one process's alone.
REFUSED_FLAGS = ("enable_network", "enable_per_process_and_thread_time_limit",
                 "enable_per_process_and_thread_memory_limit")
TEXT_FIELDS = ("source_code", "stdin", "expected_output")
ACCEPTED = (*TEXT_FIELDS, "language_id", "compiler_options", "command_line_arguments",
            *BOUNDS, *FLAGS, "additional_files", "callback_url")


class Invalid(ValueError):
    """What is wrong with a submission, by field (Judge0's 422 body)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Submission:
    """An accepted submission: its text in bytes, its limits in Judge0's units."""

    source_code: bytes
    language_id: int
    stdin: bytes = b""
    expected_output: bytes | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    cpu_time_limit: float = 5
    cpu_extra_time: float = 1
    wall_time_limit: float = 10
    memory_limit: int = 128000
    stack_limit: int = 64000
    max_processes_and_or_threads: int = 60
    max_file_size: int = 1024
    number_of_runs: int = 1
    redirect_stderr_to_stdout: bool = False
    enable_network: bool = False
    enable_per_process_and_thread_time_limit: bool = False
    enable_per_process_and_thread_memory_limit: bool = False
    additional_files: bytes | None = None  # a zip
    callback_url: str | None = None
    # Which numeric fields the request set (the others are the runtime's or Judge0's default).
    given: tuple[str, ...] = ()

    @property
    def args(self) -> tuple[str, ...]:
        """The program's arguments, split as a shell would split them (no shell runs them)."""
        return tuple(shlex.split(self.command_line_arguments or ""))

    def limits(self, defaults: Limits, ceilings: Limits) -> Limits:
        """The run's limits: the CPU limit plus the extra time Judge0 grants before killing
        (a run over `cpu_time_limit` but within the extra is still a time limit exceeded),
        memory, stack and file size from kilobytes; output kept up to the file size limit, as
        Judge0's output is a file under it. Memory and processes the request did not set are
        Judge0's defaults or the runtime's, whichever is larger: a JVM does not start in
        Judge0's 128 MB of address space with 60 threads."""
        memory = self.memory_limit * KB
        processes = self.max_processes_and_or_threads
        if "memory_limit" not in self.given:
            memory = max(memory, defaults.memory_bytes)
        if "max_processes_and_or_threads" not in self.given:
            processes = max(processes, defaults.max_processes)
        file_bytes = max(1, self.max_file_size * KB)
        return defaults.replace(
            wall_timeout_s=max(self.wall_time_limit, FLOORS_S["wall_time_limit"]),
            cpu_time_s=max(self.cpu_time_limit, FLOORS_S["cpu_time_limit"])
            + self.cpu_extra_time,
            memory_bytes=memory,
            stack_bytes=self.stack_limit * KB if self.stack_limit else None,
            max_processes=processes, max_file_bytes=file_bytes,
            max_output_bytes=file_bytes).clamp(ceilings)

    def stored(self) -> dict[str, Any]:
        """As the store keeps it: JSON, bytes in base64."""
        kept: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kept[field.name] = (base64.b64encode(value).decode()
                                if isinstance(value, bytes) else value)
        kept["given"] = list(self.given)
        return kept

    @classmethod
    def from_stored(cls, kept: Mapping[str, Any]) -> Submission:
        values = dict(kept)
        for name in ("source_code", "stdin", "expected_output", "additional_files"):
            if values.get(name) is not None:
                values[name] = base64.b64decode(values[name])
        values["given"] = tuple(values.get("given", ()))
        return cls(**values)


def maxima(ceilings: Limits) -> dict[str, float]:
    """Judge0's maxima, each lowered to this service's ceiling where that is lower."""
    top = {name: bound.maximum for name, bound in BOUNDS.items()}
    top["cpu_time_limit"] = min(top["cpu_time_limit"], ceilings.cpu_time_s)
    top["wall_time_limit"] = min(top["wall_time_limit"], ceilings.wall_timeout_s)
    top["memory_limit"] = min(top["memory_limit"], ceilings.memory_bytes // KB)
    top["stack_limit"] = min(top["stack_limit"], ceilings.stack_bytes // KB)
    top["max_processes_and_or_threads"] = min(top["max_processes_and_or_threads"],
                                              ceilings.max_processes)
    top["max_file_size"] = min(top["max_file_size"], ceilings.max_file_bytes // KB)
    return top


def parse_submission(body: Any, base64_encoded: bool, languages: Any,
                     ceilings: Limits) -> Submission:
    """The submission in `body`, or `Invalid` naming every field that is wrong. `languages`
    answers `in` for the ids this service serves."""
    if not isinstance(body, dict):
        raise Invalid({"submission": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}

    def wrong(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    for field in TEXT_FIELDS:
        raw = body.get(field)
        if raw is None:
            continue
        if not isinstance(raw, str):
            wrong(field, "must be a string")
            continue
        decoded = _text(raw, base64_encoded)
        if decoded is None:
            wrong(field, "is not valid base64")
        else:
            values[field] = decoded
    if not values.get("source_code") and "source_code" not in errors:
        wrong("source_code", "can't be blank")
    language_id = _integer(body.get("language_id"))
    if body.get("language_id") is None:
        wrong("language_id", "can't be blank")
    elif language_id is None:
        wrong("language_id", "is not a number")
    elif language_id not in languages:
        wrong("language_id", f"language with id {body.get('language_id')} doesn't exist")
    else:
        values["language_id"] = language_id
    top = maxima(ceilings)
    given = []
    for field, bound in BOUNDS.items():
        raw = body.get(field)
        if raw is None:
            continue
        number = _number(raw)
        if number is None:
            wrong(field, "is not a number")
        elif bound.integer and number != int(number):
            wrong(field, "must be an integer")
        elif field in POSITIVE and number <= 0:
            wrong(field, "must be greater than 0")
        elif number < bound.minimum:
            wrong(field, f"must be greater than or equal to {_shown(bound.minimum)}")
        elif number > top[field]:
            wrong(field, f"must be less than or equal to {_shown(top[field])}")
        else:
            values[field] = int(number) if bound.integer else number
            given.append(field)
    for field in FLAGS:
        raw = body.get(field)
        if raw is None:
            continue
        flag = _flag(raw)
        if flag is None:
            wrong(field, "must be true or false")
        elif flag and field in REFUSED_FLAGS:
            wrong(field, "this option cannot be enabled")
        else:
            values[field] = flag
    for field in ("compiler_options", "command_line_arguments"):
        raw = body.get(field)
        if raw is None:
            continue
        if not isinstance(raw, str):
            wrong(field, "must be a string")
        elif len(raw) > MAX_OPTION_CHARS:
            wrong(field, f"is too long (maximum is {MAX_OPTION_CHARS} characters)")
        else:
            values[field] = raw.translate(STRIPPED)
    if "command_line_arguments" in values:
        try:
            shlex.split(values["command_line_arguments"])
        except ValueError as exc:
            wrong("command_line_arguments", f"cannot be split into arguments: {exc}")
    raw_files = body.get("additional_files")
    if raw_files is not None:
        # Always base64, whatever base64_encoded says: a zip is binary.
        files = _text(raw_files, True) if isinstance(raw_files, str) else None
        if files is None:
            wrong("additional_files", "must be a base64-encoded zip archive")
        elif files:
            values["additional_files"] = files
    url = body.get("callback_url")
    if url is not None:
        if isinstance(url, str):
            values["callback_url"] = url
        else:
            wrong("callback_url", "must be a string")
    if errors:
        raise Invalid(errors)
    return Submission(**values, given=tuple(given))


def _text(raw: str, base64_encoded: bool) -> bytes | None:
    """A text field's bytes: decoded from base64 when the request says so (Judge0's decoder
    ignores line breaks, as MIME base64 has them), else its UTF-8."""
    if not base64_encoded:
        return raw.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _number(raw: Any) -> float | None:
    """A number, or a string that is one (Judge0 reads form fields and JSON alike)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        number = float(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _integer(raw: Any) -> int | None:
    number = _number(raw)
    return int(number) if number is not None and number == int(number) else None


def _flag(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "false"):
        return bool(raw == "true")
    return None


def _shown(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)
