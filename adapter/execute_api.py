"""The execute routes: Azure's session-pool `/{language}/execute` and Piston's v2 API."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from runtimes import RunRequest, source_files, stage_limits

from . import piston
from .azure import parse_execute, render_execution
from .body import read_json
from .errors import UnsupportedMediaType
from .piston_socket import PistonSocket
from .render import outcome_name
from .service import service_of


async def piston_runtimes(request: Request) -> Response:
    """GET /api/v2/runtimes: Piston's list of installed runtimes."""
    return JSONResponse(piston.runtimes_list(service_of(request).runtimes.registry))


async def piston_execute(request: Request) -> Response:
    """POST /api/v2/execute: one job in Piston's request and reply format."""
    service = service_of(request)
    # Piston refuses anything but JSON before looking at the body; clients rely on the 415.
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise UnsupportedMediaType("requests must be of type application/json")
    job = piston.parse_job(await read_json(request, service.settings.max_body_bytes),
                           service.runtimes.registry, service.settings.ceilings())
    request.state.runtime = job.runtime.name
    execution = await service.execute(job)
    request.state.outcome = outcome_name(execution)
    return JSONResponse(piston.render_execution(execution))


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
