"""The execute routes: Azure's session-pool `/{language}/execute` and Piston's v2 API."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from runtimes import RunRequest, source_files, stage_limits

from . import piston
from .azure import parse_execute, render_execution
from .body import read_json
from .errors import BadRequest, MethodNotAllowed, UnsupportedMediaType
from .piston_socket import PistonSocket
from .render import outcome_name
from .service import service_of


async def piston_runtimes(request: Request) -> Response:
    """GET /api/v2/runtimes: Piston's list of installed runtimes."""
    return JSONResponse(piston.runtimes_list(service_of(request).runtimes.registry))


async def piston_execute(request: Request) -> Response:
    """POST /api/v2/execute: one job in Piston's request and reply format."""
    service = service_of(request)
    declared_json = request.headers.get("content-type", "").startswith("application/json")
    try:
        body = await read_json(request, service.settings.max_body_bytes)
    except BadRequest:
        # A body that is JSON is taken whatever its declared type: npm's piston-client and
        # pistonpy send theirs as text/plain or untyped. One that is not keeps Piston's 415.
        if not declared_json:
            raise UnsupportedMediaType("requests must be of type application/json") from None
        raise
    job = piston.parse_job(body, service.runtimes.registry, service.settings.ceilings())
    request.state.runtime = job.runtime.name
    execution = await service.execute(job)
    request.state.outcome = outcome_name(execution)
    return JSONResponse(piston.render_execution(execution))


async def piston_packages(request: Request) -> Response:
    """GET /api/v2/packages: the runtimes as Piston's installed packages, for its CLI."""
    return JSONResponse([
        {"language": runtime.name, "language_version": runtime.version, "installed": True}
        for runtime in service_of(request).runtimes])


async def piston_package_change(request: Request) -> Response:
    """POST and DELETE /api/v2/packages: runtimes are part of the image."""
    error = MethodNotAllowed(f"{request.method} {request.url.path}: packages cannot be "
                             "installed or uninstalled here; the runtimes are part of the "
                             "service's image (GET lists them)")
    error.headers["Allow"] = "GET"
    raise error


async def piston_connect(websocket: WebSocket) -> None:
    """GET /api/v2/connect: Piston's interactive WebSocket (see piston_socket)."""
    await PistonSocket(websocket, service_of(websocket)).serve()


async def execute_code(request: Request) -> Response:
    """POST /{language}/execute: run one program in a fresh jail, answer in Azure's shape."""
    service = service_of(request)
    language = request.path_params.get("language", "python")
    runtime = service.runtimes.find(language)
    request.state.runtime = runtime.name
    parsed = parse_execute(await read_json(request, service.settings.max_body_bytes),
                           request.query_params)
    request.state.identifier = parsed.identifier
    # Values above a ceiling are lowered to it, as Azure clients send fixed large timeouts.
    run_limits, compile_limits = stage_limits(
        runtime, service.settings.ceilings(),
        {"wall_timeout_s": parsed.timeout_s, "cpu_time_s": parsed.timeout_s,
         "max_output_bytes": parsed.max_output_bytes})
    execution = await service.execute(RunRequest(
        runtime, tuple(source_files(runtime, parsed.code)), run_limits, compile_limits,
        stdin=parsed.stdin, args=tuple(parsed.args)))
    request.state.outcome = outcome_name(execution)
    return JSONResponse(render_execution(execution))
