"""The Starlette application: its routes (adapter.routes), the one error handler, startup and
shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from runtimes import ReservedSourceName, RuntimesError, UnknownRuntime
from sandbox import SandboxError, UnsafeName, harden_service

from . import routes, status_api
from .access_log import AccessLog
from .errors import BadRequest, MethodNotAllowed, NotFound, ServiceError
from .judge0.api import Judge0
from .service import Service
from .settings import Settings
from .version import VERSION

log = logging.getLogger("adapter")


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
        allowed = routes.allowed_methods(request) or (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}",
                                 allowed=allowed)
        # RFC 9110: a 405 lists the methods the resource has.
        error.headers["Allow"] = allowed
    elif isinstance(exc, HTTPException) and exc.status_code == 404:
        error = NotFound(f"no route for {request.method} {request.url.path}",
                         routes=request.app.state.route_list)
    elif isinstance(exc, HTTPException):
        error = ServiceError(str(exc.detail))
        error.status = exc.status_code
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = ServiceError("internal error of the service; see its log")
    request.state.error = error.message
    body = error.body()
    style = getattr(request.state, "error_style", None)
    if style == "newer":
        # Azure's newer session family wraps errors: {"error": {"code", "message"}}.
        body = {"error": {"code": ERROR_CODES.get(error.status, "InternalServerError"),
                          "message": error.message}}
    elif style == "judge0":
        body = {"error": error.message}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


ERROR_CODES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
               413: "PayloadTooLarge", 415: "UnsupportedMediaType", 426: "UpgradeRequired",
               503: "ServiceUnavailable"}


def create_app(settings: Settings | None = None) -> Starlette:
    """The service, configured from `settings` (default: the environment). Probing the sandbox
    and loading the runtimes happen here, so a misconfiguration fails before serving."""
    settings = settings or Settings.from_environ()
    service = Service.create(settings)
    judge0 = Judge0(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        harden_service()
        # What this process is and which confinement the machine gave it, and why not the rest:
        # the first thing to read when a deployment behaves unlike a test machine.
        log.info("startup", extra=status_api.startup_summary(service))
        await service.runtimes.start()
        await judge0.queue.start()
        sweeper = asyncio.create_task(service.sessions.sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            await judge0.queue.close()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await service.sessions.close()
            # uvicorn has stopped accepting and waited SANDBOX_SHUTDOWN_GRACE_S for requests in
            # flight, then cancelled them (their runs killed and jails disposed on the way out).
            await service.runtimes.close()
            await asyncio.to_thread(service.sandbox.close)
            log.info("shutdown", extra={"event": "shutdown", "service": "sandbox-service"})

    handlers: dict[Any, Any] = {
        cls: handle_error
        for cls in (ServiceError, RuntimesError, SandboxError, HTTPException, ClientDisconnect,
                    Exception)
    }
    app = Starlette(
        routes=routes.starlette_routes(),
        middleware=[Middleware(AccessLog)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.judge0 = judge0
    app.state.route_list = routes.route_list(service.runtimes.names())
    app.state.openapi = routes.openapi_document(VERSION, service.runtimes.names(),
                                                judge0.document_schemas())
    return app
