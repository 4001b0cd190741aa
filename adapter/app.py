"""The Starlette application: routes, the one error handler, startup and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from runtimes import (
    ReservedSourceName,
    RuntimesError,
    UnknownRuntime,
    source_files,
    stage_limits,
)
from sandbox import SandboxError, UnsafeName, harden_service

from . import piston, session_api
from .access_log import AccessLog
from .azure import parse_execute, render_execution
from .batch import post_batch
from .body import read_json
from .errors import BadRequest, MethodNotAllowed, NotFound, ServiceError, UnsupportedMediaType
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .openapi import openapi_document
from .piston_socket import PistonSocket
from .render import outcome_name
from .service import VERSION, Service
from .settings import Settings

log = logging.getLogger("adapter")


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def status(request: Request) -> Response:
    """GET /: what this service is, what it runs, under which limits and confinement."""
    service = _service(request)
    problem = service.health_problem()
    ceilings = service.settings.ceilings()
    return JSONResponse({
        "service": "sandbox-service",
        "version": VERSION,
        "status": "ready" if problem is None else "unavailable",
        "problem": problem,
        "runtimes": [
            {
                "language": runtime.name,
                "version": runtime.version,
                "aliases": list(runtime.aliases),
                "sourceFile": runtime.source_file,
                "extensions": list(runtime.extensions),
                "compiled": runtime.compiled,
                "selfTest": (
                    {"passed": test.passed, "detail": test.detail}
                    if (test := service.selftests.get(runtime.name)) else None
                ),
                "warmInterpreter": service.warm_status(runtime),
            }
            for runtime in service.registry
        ],
        "limits": {
            "ceilings": ceilings.as_dict(),
            "defaults": {
                runtime.name: {
                    "run": runtime.run.limits.clamp(ceilings).as_dict(),
                    "compile": (runtime.compile.limits.clamp(ceilings).as_dict()
                                if runtime.compile else None),
                }
                for runtime in service.registry
            },
            "maxBodyBytes": service.settings.max_body_bytes,
        },
        "layers": [layer.as_dict() for layer in service.sandbox.layers.all],
        "compileCache": compile_cache_status(service),
        "precompiledHeaders": service.precompiled,
        "sessions": {
            "live": len(service.sessions.live),
            "max": service.settings.max_sessions,
            "filesAt": service.sessions.files_mode,
        },
        "runs": {
            "running": service.admission.running,
            "waiting": service.admission.waiting,
            "maxConcurrent": service.admission.max_running,
            "maxWaiting": service.admission.max_waiting,
            "memoryBudgetBytes": service.admission.memory_budget_bytes,
            "memoryReservedBytes": service.admission.reserved_bytes,
            "memoryBudgetFrom": service.memory_budget_detail,
        },
        "routes": route_list(service),
    })


def compile_cache_status(service: Service) -> dict[str, Any]:
    cache = service.compile_cache
    status: dict[str, Any] = {"active": cache is not None,
                              "detail": service.compile_cache_detail}
    if cache is not None:
        stats = cache.stats()
        status.update(entries=stats.entries, bytes=stats.bytes,
                      capacityBytes=stats.capacity_bytes, hits=stats.hits, misses=stats.misses,
                      evictions=stats.evictions, storeFailures=stats.store_failures)
    return status


async def health(request: Request) -> Response:
    """GET /health: 200 `ok` once every runtime's self-test passed, else 503 with the reason."""
    problem = _service(request).health_problem()
    if problem is None:
        return PlainTextResponse("ok")
    return JSONResponse({"message": problem}, status_code=503)


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format."""
    return Response(_service(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    """GET /openapi.json: the OpenAPI document of every route."""
    service = _service(request)
    return JSONResponse(openapi_document(VERSION, service.registry.names()))


async def piston_runtimes(request: Request) -> Response:
    """GET /api/v2/runtimes: Piston's list of installed runtimes."""
    return JSONResponse(piston.runtimes_list(_service(request).registry))


async def piston_execute(request: Request) -> Response:
    """POST /api/v2/execute: one job in Piston's request and reply format."""
    service = _service(request)
    # Piston refuses anything but JSON before looking at the body; clients rely on the 415.
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise UnsupportedMediaType("requests must be of type application/json")
    job = piston.parse_job(await read_json(request, service.settings.max_body_bytes),
                           service.registry, service.settings.ceilings())
    request.state.runtime = job.runtime.name
    execution = await service.execute(
        job.runtime, job.files, run_limits=job.run_limits, compile_limits=job.compile_limits,
        stdin=job.stdin, args=job.args, main=job.main)
    request.state.outcome = outcome_name(execution)
    return JSONResponse(piston.render_execution(execution))


async def piston_connect(websocket: WebSocket) -> None:
    """GET /api/v2/connect: Piston's interactive WebSocket (see piston_socket)."""
    await PistonSocket(websocket, websocket.app.state.service).serve()


async def execute_code(request: Request) -> Response:
    """POST /{language}/execute: run one program in a fresh jail, answer in Azure's shape."""
    service = _service(request)
    language = request.path_params.get("language", "python")
    runtime = service.registry.find(language)
    request.state.runtime = runtime.name
    parsed = parse_execute(await read_json(request, service.settings.max_body_bytes),
                           request.query_params)
    request.state.identifier = parsed.identifier
    # Values above a ceiling are lowered to it, as Azure clients send fixed large timeouts.
    run_limits, compile_limits = stage_limits(
        runtime, service.settings.ceilings(),
        {"wall_timeout_s": parsed.timeout_s, "cpu_time_s": parsed.timeout_s,
         "max_output_bytes": parsed.max_output_bytes})
    execution = await service.execute(
        runtime, source_files(runtime, parsed.code), run_limits=run_limits,
        compile_limits=compile_limits, stdin=parsed.stdin, args=parsed.args)
    request.state.outcome = outcome_name(execution)
    return JSONResponse(render_execution(execution))


def startup_summary(service: Service) -> dict[str, Any]:
    settings = service.settings
    return {
        "event": "startup",
        "service": "sandbox-service",
        "version": VERSION,
        "listen": f"{settings.host}:{settings.port}",
        "runtimes": {rt.name: rt.version for rt in service.registry},
        "ceilings": settings.ceilings().as_dict(),
        "max_concurrent_runs": settings.max_concurrent_runs,
        "max_queued_runs": settings.max_queued_runs,
        "compile_cache": service.compile_cache_detail,
        "layers": {layer.name: {"active": layer.active, "detail": layer.detail}
                   for layer in service.sandbox.layers.all},
    }


def route_list(service: Service) -> list[str]:
    return [
        "GET /",
        "GET /health",
        "GET /metrics",
        "GET /openapi.json",
        "POST /code/execute",
        f"POST /{{language}}/execute for language in {', '.join(service.registry.names())}",
        "POST /batch",
        "POST /files/upload, GET /files, GET /files/content/{name} (sessions, legacy)",
        ("POST /files, GET /files/{name}, GET /files/{name}/content, DELETE /files/{name}, "
         "POST /executions, GET /executions/{id}, DELETE /session (sessions, newer)"),
        "GET /api/v2/runtimes",
        "POST /api/v2/execute",
        "WebSocket /api/v2/connect",
        "the same three under /api/v2/piston/",
    ]


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one place where exceptions become responses: JSON `{"message": ...}`."""
    error: ServiceError
    if isinstance(exc, ServiceError):
        error = exc
    elif isinstance(exc, UnknownRuntime):
        error = NotFound(str(exc), languages=exc.known)
    elif isinstance(exc, UnsafeName):
        error = BadRequest(str(exc))
    elif isinstance(exc, ReservedSourceName):
        error = BadRequest(f"files[{exc.index}].name: {exc}")
    elif isinstance(exc, (SandboxError, RuntimesError)):
        log.error("the sandbox failed on %s %s: %s", request.method, request.url.path, exc)
        error = ServiceError(f"the sandbox failed: {exc}")
    elif isinstance(exc, ClientDisconnect):
        # The client left mid-body (or its body stopped arriving and the server closed it):
        # nobody reads the answer, and a traceback for each would let clients fill the log.
        error = BadRequest("the client left before its request body was complete")
    elif isinstance(exc, HTTPException) and exc.status_code == 405:
        error = MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}",
            allowed=(exc.headers or {}).get("Allow", ""))
    elif isinstance(exc, HTTPException) and exc.status_code == 404:
        error = NotFound(f"no route for {request.method} {request.url.path}",
                         routes=route_list(_service(request)))
    elif isinstance(exc, HTTPException):
        error = ServiceError(str(exc.detail))
        error.status = exc.status_code
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = ServiceError("internal error of the service; see its log")
    request.state.error = error.message
    body = error.body()
    if getattr(request.state, "error_style", None) == "newer":
        # Azure's newer session family wraps errors: {"error": {"code", "message"}}.
        body = {"error": {"code": ERROR_CODES.get(error.status, "InternalServerError"),
                          "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


ERROR_CODES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
               413: "PayloadTooLarge", 415: "UnsupportedMediaType", 503: "ServiceUnavailable"}


def create_app(settings: Settings | None = None) -> Starlette:
    """The service, configured from `settings` (default: the environment). Probing the sandbox
    and loading the runtimes happen here, so a misconfiguration fails before serving."""
    settings = settings or Settings.from_environ()
    service = Service.create(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        harden_service()
        # What this process is and which confinement the machine gave it, and why not the rest:
        # the first thing to read when a deployment behaves unlike a test machine.
        log.info(json.dumps(startup_summary(service)))
        selftests = asyncio.create_task(service.run_selftests())
        precompiling = asyncio.create_task(service.precompile())
        sweeper = asyncio.create_task(service.sessions.sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await service.sessions.close()
            # uvicorn has stopped accepting and waited SANDBOX_SHUTDOWN_GRACE_S for requests in
            # flight, then cancelled them (their runs killed and jails disposed on the way out).
            for task in (selftests, precompiling):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(service.sandbox.close)
            if service.compile_cache is not None:
                service.compile_cache.close()
            log.info(json.dumps({"event": "shutdown", "service": "sandbox-service"}))

    handlers: dict[Any, Any] = {
        cls: handle_error
        for cls in (ServiceError, RuntimesError, SandboxError, HTTPException, ClientDisconnect,
                    Exception)
    }
    app = Starlette(
        routes=[
            Route("/", status, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/code/execute", session_api.code_execute, methods=["POST"]),
            Route("/files/upload", session_api.files_upload, methods=["POST"]),
            Route("/files", session_api.files_list, methods=["GET"]),
            Route("/files", session_api.files_post, methods=["POST"]),
            Route("/files/content/{name:path}", session_api.file_content, methods=["GET"]),
            # {name:path}: a name with an encoded slash still reaches the handler, whose 400
            # says why, in the family's error shape (the legacy route above matches first).
            Route("/files/{name:path}/content", session_api.file_content, methods=["GET"]),
            Route("/files/{name:path}", session_api.file_info, methods=["GET"]),
            Route("/files/{name:path}", session_api.file_delete, methods=["DELETE"]),
            Route("/executions", session_api.executions_post, methods=["POST"]),
            Route("/executions/{id}", session_api.executions_get, methods=["GET"]),
            Route("/session", session_api.session_delete, methods=["DELETE"]),
            Route("/batch", post_batch, methods=["POST"]),
            Route("/{language}/execute", execute_code, methods=["POST"]),
            # Piston's v2 API, also under /api/v2/piston/ where its client libraries point.
            *(route
              for prefix in ("/api/v2", "/api/v2/piston")
              for route in (
                  Route(f"{prefix}/runtimes", piston_runtimes, methods=["GET"]),
                  Route(f"{prefix}/execute", piston_execute, methods=["POST"]),
                  WebSocketRoute(f"{prefix}/connect", piston_connect),
              )),
        ],
        middleware=[Middleware(AccessLog)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.service = service
    return app
