"""Azure's code-interpreter session routes, both families (azure-sessions.md).

Legacy (api-version 2024-02-02-preview, 2024-08-02-preview, or none): POST /code/execute,
POST /files/upload, GET /files, GET /files/content/{name}. Newer (2024-10-02-preview and later):
POST /executions, GET /executions/{id}, POST /files, GET /files, GET /files/{name},
GET /files/{name}/content, DELETE /files/{name}, DELETE /session; its errors are
`{"error": {"code", "message"}}`. GET /files answers in the newer shape when api-version says so.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .body import read_json
from .errors import BadRequest, NotFound, PayloadTooLarge
from .fields import optional_positive_number, require_object, require_string
from .render import text
from .service import Service, service_of
from .sessions import FileInfo, Session, file_name
from .uploads import Upload, multipart_boundary

NEWER_API = "2024-10-02"
MIN_IDENTIFIER, MAX_IDENTIFIER = 1, 128
KNOWN_QUERY_KEYS = ("api-version=", "identifier=")


def is_newer(request: Request) -> bool:
    """Whether the caller speaks the newer family (api-version 2024-10-02-preview or later)."""
    return request.query_params.get("api-version", "") >= NEWER_API


def identifier_of(request: Request, body: dict[str, Any] | None = None) -> str | None:
    """The session identifier, leniently: clients that do not percent-encode it let a raw `&`
    split it, so the parts up to the next known parameter are joined back."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    parts = raw.split("&")
    for i, part in enumerate(parts):
        if part.startswith("identifier="):
            value = [part[len("identifier="):]]
            for rest in parts[i + 1:]:
                if rest.startswith(KNOWN_QUERY_KEYS):
                    break
                value.append(rest)
            identifier = urllib.parse.unquote("&".join(value))
            break
    else:
        found = (body or {}).get("identifier")
        identifier = found if isinstance(found, str) else ""
    if not identifier:
        return None
    if len(identifier) > MAX_IDENTIFIER:
        raise BadRequest(f"identifier must be at most {MAX_IDENTIFIER} characters")
    request.state.identifier = identifier
    return identifier


def require_identifier(request: Request) -> str:
    identifier = identifier_of(request)
    if identifier is None:
        raise BadRequest("identifier is required (a query parameter)")
    return identifier


def _newer_errors(request: Request) -> None:
    request.state.error_style = "newer"


def _timeout(service: Service, value: Any, path: str) -> float:
    """A cell's time: as asked, else the runtime's default; either lowered to the ceiling, as
    every default of a runtime is."""
    wanted = optional_positive_number(value, path)
    if wanted is None:
        wanted = service.runtimes.find("python").run.limits.wall_timeout_s
    return min(wanted, service.settings.max_wall_timeout_s)


def _image(base64_data: str) -> dict[str, Any]:
    """An image result as Azure's code interpreter gives it."""
    return {"type": "image", "format": "png", "base64_data": base64_data}


async def _cell(service: Service, session: Session, code: str, timeout_s: float,
                shell: bool = False) -> dict[str, Any]:
    """Runs a cell (or a shell command) in an admission slot; the parts both families'
    replies are made of. An image result (a figure, plt.show(), display() of a PNG) is
    Azure's image object; every image of the cell is also in `images` (a field of ours, in a
    reply only when the cell made one)."""
    cell = await service.sessions.run(session, code, timeout_s, service.run_slot, shell=shell)
    stderr = text(cell.stderr)
    if cell.reset is not None:
        stderr += (f"\nThe session state was reset: {cell.reset}. Variables and imports are "
                   "gone; files are kept.\n")
    outcome = "ok" if cell.ok else ("session_reset" if cell.reset else "error")
    service.metrics.observe_run("shell-session" if shell else "python-session", outcome,
                                cell.wall_time_s)
    result = (_image(cell.images[cell.result_image]) if cell.result_image is not None
              else cell.result)
    return {"ok": cell.ok, "stdout": text(cell.stdout), "stderr": stderr, "result": result,
            "images": [_image(data) for data in cell.images], "exitCode": cell.exit_code,
            "ms": round(cell.wall_time_s * 1000), "reset": cell.reset,
            "stdoutTruncated": cell.stdout_truncated, "stderrTruncated": cell.stderr_truncated}


# -- legacy family ------------------------------------------------------------------------------

async def code_execute(request: Request) -> Response:
    """POST /code/execute: a cell in the identifier's session (a one-shot session without)."""
    service = service_of(request)
    body = require_object(await read_json(request, service.settings.max_body_bytes), "body")
    properties = require_object(body.get("properties"), "properties")
    code = require_string(properties.get("code"), "properties.code")
    timeout_s = _timeout(service, properties.get("timeoutInSeconds"),
                         "properties.timeoutInSeconds")
    identifier = identifier_of(request, properties)
    request.state.runtime = "python-session"
    sessions = service.sessions
    session = await (sessions.get(identifier) if identifier else sessions.one_shot())
    try:
        cell = await _cell(service, session, code, timeout_s)
    finally:
        if identifier is None:
            await sessions.end(session.identifier)
    request.state.outcome = "ok" if cell["ok"] else "failure"
    properties = {
        "$id": "2", "status": "Success" if cell["ok"] else "Failure",
        "stdout": cell["stdout"], "stderr": cell["stderr"],
        "result": cell["result"], "executionResult": cell["result"],
        "executionTimeInMilliseconds": cell["ms"],
        "stdoutTruncated": cell["stdoutTruncated"], "stderrTruncated": cell["stderrTruncated"],
        "sessionReset": cell["reset"] is not None, "sessionResetReason": cell["reset"],
    }
    if cell["images"]:
        properties["images"] = cell["images"]
    return JSONResponse({"$id": "1", "properties": properties})


def _legacy_files(files: list[FileInfo]) -> dict[str, Any]:
    return {"$id": "1", "value": [
        {"$id": str(2 + 2 * i), "properties": {
            "$id": str(3 + 2 * i), "filename": f.name, "size": f.size,
            "lastModifiedTime": f.iso_modified()}}
        for i, f in enumerate(files)]}


def _newer_file(f: FileInfo) -> dict[str, Any]:
    return {"name": f.name, "type": "File", "contentType": "application/octet-stream",
            "sizeInBytes": f.size, "lastModifiedAt": f.iso_modified()}


async def _bounded(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge(f"the upload exceeds the limit of {max_bytes} bytes")
        yield chunk


async def _store(request: Request) -> list[FileInfo]:
    """Stores the uploaded files, all or none, streaming each into the session's folder as it
    arrives (see uploads.py). The session is looked up at the first file part, so a body
    without one starts none; one that this upload started and then refused is ended again."""
    service = service_of(request)
    identifier = require_identifier(request)
    settings = service.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload is {declared} bytes; the limit is "
                              f"{settings.max_upload_bytes}")
    sessions = service.sessions
    existed = sessions.find(identifier) is not None
    with sessions.upload_slot():
        boundary, body = await multipart_boundary(
            request.headers.get("content-type", ""),
            _bounded(request.stream(), settings.max_upload_bytes))
        upload = Upload(lambda: sessions.get(identifier), settings.max_disk_bytes,
                        settings.max_disk_files)
        try:
            return await upload.receive(boundary, body)
        except BaseException:
            if not existed and upload.session is not None:
                await sessions.end_if_unused(identifier)
            raise


async def files_upload(request: Request) -> Response:
    """POST /files/upload (legacy): replies like the file list, with the uploaded files."""
    return JSONResponse(_legacy_files(await _store(request)))


async def files_list(request: Request) -> Response:
    """GET /files: the legacy or the newer shape, as api-version says."""
    service = service_of(request)
    if is_newer(request):
        _newer_errors(request)
    session = service.sessions.find(require_identifier(request))
    files = session.files() if session is not None else []
    if is_newer(request):
        return JSONResponse({"value": [_newer_file(f) for f in files], "nextLink": None})
    return JSONResponse(_legacy_files(files))


async def file_content(request: Request) -> Response:
    """GET /files/content/{name} (legacy) and GET /files/{name}/content (newer): the bytes."""
    if request.url.path.endswith("/content") and "/files/content/" not in request.url.path:
        _newer_errors(request)
    session, name = _named_file(request)
    return Response(session.read(name), media_type="application/octet-stream")


def _named_file(request: Request) -> tuple[Session, str]:
    """The live session and the checked file name of a call on one file. An unknown
    identifier is answered as an empty session would be (a 404 for the file), without
    starting one: only executing and uploading start sessions."""
    service = service_of(request)
    session = service.sessions.find(require_identifier(request))
    if session is None:
        name = file_name(_path_name(request), service.settings.work_root)
        raise NotFound(f"no file {name!r} in this session")
    return session, session.file_name(_path_name(request))


def _path_name(request: Request) -> str:
    """The file name in the path, as sent: the server has percent-decoded the path once, which
    is what clients that encode names expect; decoding again would turn a name holding `%41`
    into another name."""
    name: str = request.path_params["name"]
    return name


# -- newer family -------------------------------------------------------------------------------

async def files_post(request: Request) -> Response:
    """POST /files: one file object (the first, when several were sent)."""
    _newer_errors(request)
    return JSONResponse(_newer_file((await _store(request))[0]))


async def file_info(request: Request) -> Response:
    _newer_errors(request)
    session, name = _named_file(request)
    return JSONResponse(_newer_file(session.info(name)))


async def file_delete(request: Request) -> Response:
    _newer_errors(request)
    session, name = _named_file(request)
    async with session.lock:
        session.delete(name)
    return Response(status_code=204)


async def executions_post(request: Request) -> Response:
    """POST /executions: a cell from a flat body; the execution resource in reply."""
    _newer_errors(request)
    service = service_of(request)
    body = require_object(await read_json(request, service.settings.max_body_bytes), "body")
    # A shell session's command (LangChain's SessionsBashTool) or a Python cell.
    shell = "shellCommand" in body and "code" not in body
    code = (require_string(body.get("shellCommand"), "shellCommand") if shell
            else require_string(body.get("code"), "code"))
    timeout_s = _timeout(service, body.get("timeoutInSeconds"), "timeoutInSeconds")
    identifier = require_identifier(request)
    request.state.runtime = "shell-session" if shell else "python-session"
    session = await service.sessions.get(identifier)
    started = time.time()
    cell = await _cell(service, session, code, timeout_s, shell=shell)
    result: dict[str, Any] = {"stdout": cell["stdout"], "stderr": cell["stderr"],
                              "executionResult": cell["result"],
                              "executionTimeInMilliseconds": cell["ms"]}
    if cell["images"]:
        result["images"] = cell["images"]
    if shell:
        # As Azure's shell pools answer: the exit code, as a string, is the status.
        exit_code = cell["exitCode"] if cell["exitCode"] is not None else -1
        status = str(exit_code)
        result = {"stdout": cell["stdout"], "stderr": cell["stderr"], "exitCode": exit_code,
                  "executionTimeInMilliseconds": cell["ms"]}
    else:
        status = "Succeeded" if cell["ok"] else "Failed"
    execution = {
        "id": secrets.token_hex(16), "identifier": identifier,
        "executionType": "Synchronous", "status": status, "result": result,
        "startedAt": _iso(started), "sessionReset": cell["reset"] is not None,
    }
    session.remember(execution)
    request.state.outcome = "ok" if cell["ok"] else "failure"
    return JSONResponse(execution)


async def executions_get(request: Request) -> Response:
    _newer_errors(request)
    session = service_of(request).sessions.find(require_identifier(request))
    executions = session.executions if session is not None else {}
    execution = executions.get(request.path_params["id"])
    if execution is None:
        raise NotFound(f"no execution {request.path_params['id']!r} in this session")
    return JSONResponse(execution)


async def session_delete(request: Request) -> Response:
    """DELETE /session: ends the session; its kernel and files are gone."""
    _newer_errors(request)
    await service_of(request).sessions.end(require_identifier(request))
    return Response(status_code=204)


def _iso(moment: float) -> str:
    return FileInfo("", 0, moment).iso_modified()
