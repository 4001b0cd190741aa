"""Judge0 CE's routes: submissions (one or a batch, waited for or not), languages, statuses
and the information routes its clients read when they start.

Errors are Judge0's: `{"error": "..."}` with 400, 404 or 503, and 422 with the wrong fields
(`{"language_id": ["language with id 7 doesn't exist"]}`); a batch answers per submission.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox import private_folder

from ..body import read_json
from ..errors import BadRequest, NotFound, ServiceBusy
from ..service import Service
from .archive import ArchiveError, read_archive
from .callbacks import CallbackPolicy, check_callback_url
from .fields import BOUNDS, Invalid, Submission, maxima, parse_submission
from .judging import MAX_EXTRACT_BYTES, MAX_EXTRACT_FILES, STATUSES
from .languages import Languages
from .operations import submission_schema
from .queue import Liveness, QueueFull, Retention, SubmissionQueue
from .render import (
    BATCH_CONVERSION_ERROR,
    CONVERSION_ERROR,
    DEFAULT_FIELDS,
    NotUtf8,
    render,
    requested_fields,
)
from .store import SqliteStore, SqlStore, Stored

# The folder in the work root that holds the SQLite file of submissions.
STATE_FOLDER = "submissions"
# The version clients read from /about: the `judge0` SDK picks its language-id table by it.
JUDGE0_VERSION = "1.13.1"


class Judge0:
    """The API's state: the languages served, the queue and its store, the switches."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        self.service = service
        self.languages = Languages(service.runtimes.registry)
        self.wait_allowed = settings.judge0_wait
        self.max_batch = settings.max_submission_batch
        self.callbacks = CallbackPolicy(enabled=settings.callbacks,
                                        timeout_s=settings.callback_timeout_s,
                                        max_tries=settings.callback_max_tries)
        store, sqlite = open_store(settings.database_url, settings.work_root)
        self.queue = SubmissionQueue(
            service, store, self.languages, max_queued=settings.max_queued_submissions,
            retention=Retention(settings.submissions_kept, settings.submissions_max_age_s),
            callbacks=self.callbacks, render_callback=self.callback_body,
            recover_at_start=sqlite,
            liveness=Liveness(settings.judge0_housekeeping_interval_s,
                              settings.judge0_replica_timeout_s))

    def callback_body(self, stored: Stored) -> dict[str, Any]:
        """What a callback carries: the default fields, always in base64 (as Judge0 sends)."""
        return render(stored, DEFAULT_FIELDS, True, self.languages)

    def parse(self, body: Any, base64_encoded: bool) -> Submission:
        """A submission checked as Judge0 checks it, and beyond: its archive read, its
        compiler options understood, its callback address allowed."""
        submission = parse_submission(body, base64_encoded, self.languages,
                                      self.service.settings.ceilings())
        errors: dict[str, list[str]] = {}
        try:
            self.languages.with_options(submission.language_id, submission.compiler_options)
        except ValueError as exc:
            errors["compiler_options"] = [str(exc)]
        if submission.additional_files is not None:
            try:
                read_archive(submission.additional_files, max_files=MAX_EXTRACT_FILES,
                             max_bytes=MAX_EXTRACT_BYTES,
                             taken=(self.languages.runtime(submission.language_id)
                                    .source_file,))
            except ArchiveError as exc:
                errors["additional_files"] = [str(exc)]
        if submission.callback_url is not None:
            problem = check_callback_url(submission.callback_url, self.callbacks)
            if problem is not None:
                errors["callback_url"] = [problem]
        if errors:
            raise Invalid(errors)
        return submission

    def document_schemas(self) -> dict[str, Any]:
        """The schemas of the OpenAPI document that depend on this service: the submission's
        languages and maxima."""
        return {"Judge0Submission": submission_schema(
            sorted(self.languages.runtimes), maxima(self.service.settings.ceilings()))}

    def config_info(self) -> dict[str, Any]:
        """Judge0's `/config_info`: every key its clients read (the SDK requires them all)."""
        top = maxima(self.service.settings.ceilings())
        defaults = {name: bound.default for name, bound in BOUNDS.items()}
        return {
            "maintenance_mode": False, "enable_wait_result": self.wait_allowed,
            "enable_compiler_options": True, "allowed_languages_for_compile_options": [],
            "enable_command_line_arguments": True, "enable_submission_delete": False,
            "enable_callbacks": self.callbacks.enabled,
            "callbacks_max_tries": self.callbacks.max_tries,
            "callbacks_timeout": self.callbacks.timeout_s,
            "enable_additional_files": True, "max_extract_size": MAX_EXTRACT_BYTES // 1024,
            "enable_batched_submissions": True, "max_submission_batch_size": self.max_batch,
            "submission_cache_duration": 0.0, "use_docs_as_homepage": False,
            "allow_enable_network": False, "enable_network": False,
            "allow_enable_per_process_and_thread_time_limit": False,
            "allow_enable_per_process_and_thread_memory_limit": False,
            "enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False,
            "redirect_stderr_to_stdout": False,
            "max_queue_size": self.queue.max_queued,
            "cpu_time_limit": defaults["cpu_time_limit"],
            "max_cpu_time_limit": top["cpu_time_limit"],
            "cpu_extra_time": defaults["cpu_extra_time"],
            "max_cpu_extra_time": top["cpu_extra_time"],
            "wall_time_limit": defaults["wall_time_limit"],
            "max_wall_time_limit": top["wall_time_limit"],
            "memory_limit": int(defaults["memory_limit"]),
            "max_memory_limit": int(top["memory_limit"]),
            "stack_limit": int(defaults["stack_limit"]),
            "max_stack_limit": int(top["stack_limit"]),
            "max_processes_and_or_threads": int(defaults["max_processes_and_or_threads"]),
            "max_max_processes_and_or_threads": int(top["max_processes_and_or_threads"]),
            "max_file_size": int(defaults["max_file_size"]),
            "max_max_file_size": int(top["max_file_size"]),
            "number_of_runs": int(defaults["number_of_runs"]),
            "max_number_of_runs": int(top["number_of_runs"]),
        }


def open_store(url: str, work_root: Path) -> tuple[SqlStore, bool]:
    """The store a database URL names: empty, a SQLite file in the work folder;
    `sqlite:///path`; `postgresql://…` (adapter.judge0.postgres). Second: whether it is
    SQLite."""
    if not url:
        return SqliteStore(state_folder(work_root) / "submissions.sqlite3"), True
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url[len("sqlite://"):])), True
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # the driver loads only when it is used
        return PostgresStore(url), False
    raise ValueError("SANDBOX_DATABASE_URL must be empty, sqlite:///path or postgresql://…")


def state_folder(work_root: Path) -> Path:
    """The service's own folder in its work root (whose other entries are runs' folders, all
    named `run-…`): there the service's user can always write, which is not so of the work
    root's parent."""
    return private_folder(work_root / STATE_FOLDER)


def judge0_of(request: Request) -> Judge0:
    request.state.error_style = "judge0"
    judge0: Judge0 = request.app.state.judge0
    return judge0


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _fields(request: Request) -> tuple[str, ...]:
    fields, unknown = requested_fields(request.query_params.get("fields"))
    if unknown:
        raise BadRequest(f"invalid fields: [{', '.join(unknown)}]")
    return fields


def _queue_full() -> ServiceBusy:
    return ServiceBusy("queue is full", retry_after_s=5)


# ---- submissions ---------------------------------------------------------------------------------

async def create_submission(request: Request) -> Response:
    """POST /submissions: 201 {"token"}; with wait=true, the finished submission."""
    judge0 = judge0_of(request)
    wait = _flag(request, "wait")
    if wait and not judge0.wait_allowed:
        raise BadRequest("wait not allowed")
    fields = _fields(request)
    base64_encoded = _flag(request, "base64_encoded")
    body = await read_json(request, judge0.service.settings.max_body_bytes)
    try:
        submission = judge0.parse(body, base64_encoded)
    except Invalid as exc:
        return JSONResponse(exc.errors, status_code=422)
    try:
        [token] = await judge0.queue.submit([submission])
    except QueueFull:
        raise _queue_full() from None
    if not wait:
        return JSONResponse({"token": token}, status_code=201)
    stored = await judge0.queue.wait(token)
    if stored is None:
        raise NotFound(f"submission {token} finished and was removed by retention before it "
                       "could be answered (SANDBOX_SUBMISSIONS_KEPT)")
    try:
        return JSONResponse(render(stored, fields, base64_encoded, judge0.languages),
                            status_code=201)
    except NotUtf8:
        return JSONResponse({"error": CONVERSION_ERROR, "token": token}, status_code=201)


async def get_submission(request: Request) -> Response:
    """GET /submissions/{token}."""
    judge0 = judge0_of(request)
    fields = _fields(request)
    token = request.path_params["token"]
    stored = (await judge0.queue.get([token])).get(token)
    if stored is None:
        raise NotFound(f"no submission with token {token!r}")
    try:
        return JSONResponse(render(stored, fields, _flag(request, "base64_encoded"),
                                   judge0.languages))
    except NotUtf8:
        raise BadRequest(CONVERSION_ERROR) from None


def _batch_size(count: int, limit: int) -> None:
    if count > limit:
        raise BadRequest("number of submissions in a batch should be less than or equal to "
                         f"{limit}")
    if count == 0:
        raise BadRequest("there should be at least one submission in a batch")


async def create_batch(request: Request) -> Response:
    """POST /submissions/batch: a token or the errors for each; 201 if any was accepted."""
    judge0 = judge0_of(request)
    body = await read_json(request, judge0.service.settings.max_body_bytes)
    items = body.get("submissions") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequest("submissions must be a list of submissions")
    _batch_size(len(items), judge0.max_batch)
    base64_encoded = _flag(request, "base64_encoded")
    answers: list[dict[str, Any]] = []
    accepted: list[tuple[int, Submission]] = []
    for item in items:
        try:
            accepted.append((len(answers), judge0.parse(item, base64_encoded)))
            answers.append({})
        except Invalid as exc:
            answers.append(exc.errors)
    if not accepted:
        return JSONResponse(answers, status_code=422)
    try:
        tokens = await judge0.queue.submit([submission for _, submission in accepted])
    except QueueFull:
        raise _queue_full() from None
    for (index, _), token in zip(accepted, tokens, strict=True):
        answers[index] = {"token": token}
    return JSONResponse(answers, status_code=201)


async def get_batch(request: Request) -> Response:
    """GET /submissions/batch?tokens=a,b: each submission, or null for an unknown token."""
    judge0 = judge0_of(request)
    fields = _fields(request)
    tokens = [token for token in request.query_params.get("tokens", "").strip().split(",")
              if token]
    _batch_size(len(tokens), judge0.max_batch)
    found = await judge0.queue.get(tokens)
    base64_encoded = _flag(request, "base64_encoded")
    try:
        shown = [None if token not in found else
                 render(found[token], fields, base64_encoded, judge0.languages)
                 for token in tokens]
    except NotUtf8:
        raise BadRequest(BATCH_CONVERSION_ERROR) from None
    return JSONResponse({"submissions": shown})


# ---- information ---------------------------------------------------------------------------------

async def languages(request: Request) -> Response:
    """GET /languages and /languages/all (nothing is archived here)."""
    return JSONResponse(judge0_of(request).languages.listed())


async def language(request: Request) -> Response:
    """GET /languages/{id}."""
    judge0 = judge0_of(request)
    raw = request.path_params["id"]
    if not raw.isdigit() or int(raw) not in judge0.languages:
        raise NotFound(f"language with id {raw} doesn't exist")
    return JSONResponse(judge0.languages.detail(int(raw)))


async def statuses(request: Request) -> Response:
    """GET /statuses."""
    judge0_of(request)
    return JSONResponse([{"id": number, "description": description}
                         for number, description in STATUSES.items()])


async def about(request: Request) -> Response:
    """GET /about: the API version clients choose their language table by."""
    judge0_of(request)
    return JSONResponse({"version": JUDGE0_VERSION, "homepage": "",
                         "source_code": "", "maintainer": "sandbox-service"})


async def version(request: Request) -> Response:
    """GET /version."""
    judge0_of(request)
    return PlainTextResponse(JUDGE0_VERSION)


async def config_info(request: Request) -> Response:
    """GET /config_info."""
    return JSONResponse(judge0_of(request).config_info())


async def system_info(request: Request) -> Response:
    """GET /system_info: the machine, as `lscpu` and `free` would name it."""
    judge0_of(request)
    return JSONResponse({"Architecture": platform.machine(), "CPU(s)": str(os.cpu_count()),
                         "Model name": _cpu_model(), "Mem": _memory_total()})


async def workers(request: Request) -> Response:
    """GET /workers: the queue as Judge0's monitoring reads it."""
    judge0 = judge0_of(request)
    counts = await judge0.queue.counts()
    running = judge0.queue.running
    return JSONResponse([{"queue": JUDGE0_VERSION, "size": counts.get(1, 0),
                          "available": judge0.queue.workers,
                          "idle": judge0.queue.workers - running, "working": running,
                          "paused": 0, "failed": 0}])


def _cpu_model() -> str:
    return _first_value(Path("/proc/cpuinfo"), "model name") or platform.processor()


def _memory_total() -> str:
    kilobytes = _first_value(Path("/proc/meminfo"), "MemTotal")
    return kilobytes.replace(" kB", "K") if kilobytes else ""


def _first_value(path: Path, key: str) -> str:
    try:
        lines: Sequence[str] = path.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""
