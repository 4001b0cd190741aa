"""`sandbox-service grade SOURCE --tests DIR_OR_FILE`: a program against test cases, on a service.

Tests are a folder of `NAME.in` / `NAME.out` pairs (a missing `.out`: the case only runs; a
missing `.in`: empty input), in natural order of NAME, or a JSON file: a list of cases shaped as
`POST /batch` takes them, or an object with `cases` (and `limits`). The cases go to `POST /batch`
in chunks, so that stderr can show real progress; the program compiles once (later chunks find
it in the service's compile cache). Then a table of verdicts and a summary line:

    case  verdict       wall ms  cpu ms   memory  detail
    1     accepted            6       3  8.3 MiB
    2     wrong_answer        5       3  8.3 MiB  line 1 differs: expected '6', got '7'
    FAILED: 1 accepted, 1 wrong_answer of 2 cases

`--json` prints only the reply, in `POST /batch`'s shape (the chunks' replies joined). Exit
status: 0 when every case was accepted (or only ran: it had no expected output), 1 when one was
not, 2 when grading was impossible (bad arguments or tests, the service unreachable or refusing).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from .endpoint import UNREACHABLE, unreachable

DEFAULT_ENDPOINT = "http://localhost:8080"
DEFAULT_CHUNK_CASES = 25
DEFAULT_TIMEOUT_S = 600.0
BAR_CELLS = 30
# The verdicts that let the exit status be 0, this command's rule (see above): `ran` had
# nothing to be compared with. Every other verdict, and its order, comes from the service's
# replies, so a verdict it adds is counted and shown without a change here.
PASSING = ("accepted", "ran")


class GradeError(Exception):
    """Grading cannot happen; the message says why (exit status 2)."""


@dataclass(frozen=True)
class Tests:
    cases: list[dict[str, Any]]
    limits: dict[str, Any] | None = None
    checker: Any = None  # as POST /batch takes it: "tokens", {"type": "floats", ...}


def natural_key(name: str) -> list[Any]:
    """`2` before `10`: numbers in names compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name)]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GradeError(f"cannot read {path}: {exc}") from None


def load_tests(path: Path) -> Tests:
    """The cases of a folder of `.in`/`.out` pairs or of a JSON file."""
    if path.is_dir():
        stems = {p.stem for p in path.iterdir() if p.suffix in (".in", ".out") and p.is_file()}
        cases = []
        for stem in sorted(stems, key=natural_key):
            case: dict[str, Any] = {"name": stem, "stdin": ""}
            if (path / f"{stem}.in").is_file():
                case["stdin"] = read_text(path / f"{stem}.in")
            if (path / f"{stem}.out").is_file():
                case["expected_output"] = read_text(path / f"{stem}.out")
            cases.append(case)
        if not cases:
            raise GradeError(f"no test cases in {path} (expected NAME.in and NAME.out files)")
        return Tests(cases)
    try:
        data = json.loads(read_text(path))
    except ValueError as exc:
        raise GradeError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("cases"), list):
        return Tests(data["cases"], data.get("limits"), data.get("checker"))
    if isinstance(data, list) and data:
        return Tests(data)
    raise GradeError(f"{path} must hold a non-empty list of cases, or an object with `cases`")


def language_of(client: httpx.Client, source: Path, language: str | None) -> str:
    """`language` if given, else the runtime whose sources have the suffix of `source`: the
    service says which suffixes each of its runtimes takes (`extensions` in `GET /`)."""
    if language:
        return language
    for runtime in runtimes_of(client):
        if source.suffix in runtime["extensions"]:
            return str(runtime["language"])
    raise GradeError(f"cannot tell the language of {source.name} from its suffix; "
                     "give --language")


def runtimes_of(client: httpx.Client) -> list[dict[str, Any]]:
    """The runtime entries of the service's `GET /`, each with `language` and `extensions`."""
    try:
        response = client.get("/")
    except httpx.TransportError as exc:
        raise transport_error(client, exc) from None
    if response.status_code != 200:
        raise GradeError(f"GET / answered {response.status_code}: {message_of(response)}")
    try:
        runtimes = response.json()["runtimes"]
    except (ValueError, KeyError, TypeError):
        raise GradeError("GET / answered in an unknown shape: is this the service?") from None
    if not (isinstance(runtimes, list)
            and all(isinstance(r, dict) and isinstance(r.get("language"), str)
                    for r in runtimes)):
        raise GradeError("GET / answered in an unknown shape: is this the service?")
    if not all(isinstance(r.get("extensions"), list) for r in runtimes):
        raise GradeError("GET / does not say which suffixes its runtimes' sources have (a "
                         "service older than this command?); give --language")
    return runtimes


def message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)[:200]


def transport_error(client: httpx.Client, exc: httpx.TransportError) -> GradeError:
    """The error for a request that got no answer, naming the URL it went to."""
    if isinstance(exc, UNREACHABLE):
        return GradeError(unreachable(str(client.base_url), exc))
    return GradeError(f"{exc.request.method} {exc.request.url} failed: "
                      f"{type(exc).__name__}: {exc}")


def post_batch(client: httpx.Client, body: dict[str, Any], first: int) -> dict[str, Any]:
    """One chunk's reply; `first` is the position of its first case among all of them."""
    try:
        response = client.post("/batch", json=body)
    except httpx.TransportError as exc:
        raise transport_error(client, exc) from None
    if response.status_code != 200:
        # A message names a case by its place in the chunk (cases[2]); say where that is.
        where = f" (cases[0] is case {first + 1})" if first else ""
        raise GradeError(f"POST /batch answered {response.status_code}: "
                         f"{message_of(response)}{where}")
    reply = response.json()
    if (not isinstance(reply, dict) or not isinstance(reply.get("cases"), list)
            or not isinstance(reply.get("summary"), dict)):
        raise GradeError("POST /batch answered in an unknown shape: is this the service?")
    return reply


def grade(client: httpx.Client, source: Path, language: str, tests: Tests, chunk_cases: int,
          progress: Callable[[int, int], None]) -> dict[str, Any]:
    """The reply of `POST /batch` for all of `tests`, sent `chunk_cases` cases at a time."""
    base: dict[str, Any] = {"language": language,
                            "files": [{"name": source.name, "content": read_text(source)}]}
    if tests.limits is not None:
        base["limits"] = tests.limits
    if tests.checker is not None:
        base["checker"] = tests.checker
    total = len(tests.cases)
    reply: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    progress(0, total)
    for start in range(0, total, chunk_cases):
        chunk = tests.cases[start:start + chunk_cases]
        answer = post_batch(client, {**base, "cases": chunk}, start)
        reply = reply or answer
        cases += answer["cases"]
        failed_compile = answer.get("compile") and answer["compile"].get("outcome") != "ok"
        if failed_compile:
            # Every further case would fail to compile the same way.
            cases += [{"name": case.get("name") if isinstance(case, dict) else None,
                       "verdict": "compile_error", "detail": None}
                      for case in tests.cases[len(cases):]]
        # Once per chunk, after the cases a compile error settles: the last count only once.
        progress(len(cases), total)
        if failed_compile:
            break
    assert reply is not None
    for index, case in enumerate(cases):
        case["index"] = index
    # The first reply's summary names every verdict the service has, in its order.
    summary = {"total": len(cases), **dict.fromkeys(verdicts(reply), 0)}
    for case in cases:
        summary[case["verdict"]] = summary.get(case["verdict"], 0) + 1
    return {**reply, "cases": cases, "summary": summary}


def verdicts(reply: dict[str, Any]) -> list[str]:
    """The verdict names of a reply's summary, in the service's order."""
    return [name for name in reply["summary"] if name != "total"]


def passed(reply: dict[str, Any]) -> bool:
    return all(case["verdict"] in PASSING for case in reply["cases"])


def table(reply: dict[str, Any]) -> list[str]:
    """The lines of the verdict table, a summary line last."""
    lines = []
    compiled = reply.get("compile")
    if compiled is not None:
        cached = " (cached)" if compiled.get("cached") else ""
        lines.append(f"compile: {compiled['outcome']} in {compiled['wall_time_ms']} ms{cached}")
        if compiled["outcome"] != "ok":
            lines += (compiled.get("stderr") or compiled.get("stdout") or "").rstrip().splitlines()
    rows = [("case", "verdict", "wall ms", "cpu ms", "memory", "detail")]
    for case in reply["cases"]:
        if case["verdict"] == "compile_error":
            continue
        memory = case.get("memory_bytes")
        rows.append((str(case["name"] if case.get("name") is not None else case["index"] + 1),
                     case["verdict"], str(case.get("wall_time_ms", "")),
                     str(case.get("cpu_time_ms", "")),
                     f"{memory / (1 << 20):.1f} MiB" if memory is not None else "",
                     case.get("detail") or ""))
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                     *(cell.rjust(width) for cell, width in zip(row[2:5], widths[2:5],
                                                                 strict=True)), row[5]]
            lines.append("  ".join(cells).rstrip())
    lines.append(summary_line(reply))
    return lines


def summary_line(reply: dict[str, Any]) -> str:
    summary = reply["summary"]
    counts = ", ".join(f"{summary[v]} {v}" for v in verdicts(reply) if summary.get(v))
    verdict = "OK" if passed(reply) else "FAILED"
    return f"{verdict}: {counts} of {summary['total']} cases"


def progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    """Progress on `stream`: a bar redrawn in place on a terminal, else a line per step."""
    interactive = stream.isatty()

    def show(done: int, total: int) -> None:
        if interactive:
            filled = BAR_CELLS * done // total
            stream.write(f"\r[{'#' * filled}{'.' * (BAR_CELLS - filled)}] {done}/{total} cases")
            if done == total:
                stream.write("\n")
        else:
            stream.write(f"graded {done}/{total} cases\n")
        stream.flush()
    return show


def main(source: str, tests: str, endpoint: str = DEFAULT_ENDPOINT, language: str | None = None,
         as_json: bool = False, chunk_cases: int = DEFAULT_CHUNK_CASES,
         limits: dict[str, float] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
         checker: Any = None) -> int:
    """Grades `source` against `tests` on the service at `endpoint`; the exit status.
    `checker`: how outputs are compared (POST /batch's `checker`), over the tests file's."""
    try:
        path = Path(source)
        loaded = load_tests(Path(tests))
        if limits:
            loaded = Tests(loaded.cases, {**(loaded.limits or {}), **limits}, loaded.checker)
        if checker is not None:
            loaded = Tests(loaded.cases, loaded.limits, checker)
        with httpx.Client(base_url=endpoint.rstrip("/"), timeout=timeout_s) as client:
            reply = grade(client, path, language_of(client, path, language), loaded,
                          max(1, chunk_cases), progress_bar(sys.stderr))
    except GradeError as exc:
        print(f"sandbox-service grade: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(reply))
    else:
        print("\n".join(table(reply)))
    sys.stdout.flush()
    return 0 if passed(reply) else 1


def checker_option(kind: str | None, tolerance: float | None) -> Any:
    """`--checker` and `--tolerance` as POST /batch's `checker` (None: the service's default,
    or the tests file's)."""
    if kind is None and tolerance is None:
        return None
    if tolerance is None:
        return kind
    return {"type": kind or "floats", "absolute": tolerance, "relative": tolerance}


def limit_options(wall_timeout_s: float | None, cpu_time_s: float | None,
                  memory_bytes: int | None) -> dict[str, float]:
    """The limits given on the command line, for every case."""
    given: Sequence[tuple[str, float | None]] = (
        ("wall_timeout_s", wall_timeout_s), ("cpu_time_s", cpu_time_s),
        ("memory_bytes", memory_bytes))
    return {name: value for name, value in given if value is not None}
