"""Every route of the service, declared once: its method and path, its handler, its OpenAPI
operation. The app's routes, the route list of `GET /` and of a 404, and `/openapi.json` are
all made from `ENDPOINTS`, so none can name a route another lacks."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute

from . import openapi, session_api, status_api
from .batch import post_batch
from .errors import UpgradeRequired
from .execute_api import (
    execute_code,
    piston_connect,
    piston_execute,
    piston_package_change,
    piston_packages,
    piston_runtimes,
)
from .judge0 import api as judge0
from .judge0 import operations as judge0_operations

# Piston's v2 API is served under both: its own prefix, and where its client libraries point.
PISTON_PREFIXES = ("/api/v2", "/api/v2/piston")
WEBSOCKET = "WebSocket"
# A path parameter's converter ({name:path}) is Starlette's matching, not part of the API.
CONVERTER = re.compile(r"\{(\w+):\w+\}")


class FileConvertor(PathConvertor):
    """A file's name in /files/{name} that is not a path of the other /files routes: DELETE
    /files/x/content is a method the content has not (405), not a file named `x/content`."""

    # `upload` is the legacy family's upload route (POST): a file of that name is reached by
    # its content route (GET /files/upload/content) only.
    # [\s\S]: a name with a line break still reaches the handler, whose 400 says why.
    regex = r"(?!content/)(?!upload$)(?:(?!/content$)[\s\S])+"


register_url_convertor("file", FileConvertor())


@dataclass(frozen=True)
class Endpoint:
    """One route: `method` GET, POST, DELETE or WebSocket; `path` as Starlette matches it."""

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    operation: dict[str, Any]

    @property
    def documented_path(self) -> str:
        return CONVERTER.sub(r"{\1}", self.path)

    def route(self) -> BaseRoute:
        if self.method == WEBSOCKET:
            return WebSocketRoute(self.path, self.handler)
        return Route(self.path, self.handler, methods=[self.method])


def _piston() -> Iterator[Endpoint]:
    for prefix in PISTON_PREFIXES:
        yield Endpoint("GET", f"{prefix}/runtimes", piston_runtimes, openapi.PISTON_RUNTIMES)
        yield Endpoint("POST", f"{prefix}/execute", piston_execute, openapi.PISTON_EXECUTE)
        yield Endpoint(WEBSOCKET, f"{prefix}/connect", piston_connect, openapi.PISTON_CONNECT)
        yield Endpoint("GET", f"{prefix}/packages", piston_packages, openapi.PISTON_PACKAGES)
        for method in ("POST", "DELETE"):
            yield Endpoint(method, f"{prefix}/packages", piston_package_change,
                           openapi.PISTON_PACKAGE_CHANGE)


def _judge0() -> Iterator[Endpoint]:
    # /submissions/batch before /submissions/{token}, which would match it too.
    yield Endpoint("POST", "/submissions/batch", judge0.create_batch, judge0_operations.JUDGE0_BATCH_POST)
    yield Endpoint("GET", "/submissions/batch", judge0.get_batch, judge0_operations.JUDGE0_BATCH_GET)
    yield Endpoint("POST", "/submissions", judge0.create_submission,
                   judge0_operations.JUDGE0_SUBMISSION_POST)
    yield Endpoint("GET", "/submissions/{token}", judge0.get_submission,
                   judge0_operations.JUDGE0_SUBMISSION_GET)
    yield Endpoint("GET", "/languages", judge0.languages, judge0_operations.JUDGE0_LANGUAGES)
    yield Endpoint("GET", "/languages/all", judge0.languages, judge0_operations.JUDGE0_LANGUAGES)
    yield Endpoint("GET", "/languages/{id}", judge0.language, judge0_operations.JUDGE0_LANGUAGE)
    for path, handler in (("/statuses", judge0.statuses), ("/about", judge0.about),
                          ("/version", judge0.version), ("/config_info", judge0.config_info),
                          ("/system_info", judge0.system_info), ("/workers", judge0.workers)):
        yield Endpoint("GET", path, handler, judge0_operations.judge0_info(path))


# In matching order: Starlette takes the first route whose path matches.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/", status_api.status, openapi.STATUS),
    Endpoint("GET", "/health", status_api.health, openapi.HEALTH),
    Endpoint("GET", "/metrics", status_api.metrics, openapi.METRICS),
    Endpoint("GET", "/openapi.json", status_api.openapi, openapi.OPENAPI),
    Endpoint("POST", "/code/execute", session_api.code_execute, openapi.CODE_EXECUTE),
    Endpoint("POST", "/files/upload", session_api.files_upload, openapi.FILES_UPLOAD),
    Endpoint("GET", "/files", session_api.files_list, openapi.FILES_LIST),
    Endpoint("POST", "/files", session_api.files_post, openapi.FILES_POST),
    Endpoint("GET", "/files/content/{name:path}", session_api.file_content,
             openapi.FILE_CONTENT_LEGACY),
    # {name:path}: a name with an encoded slash still reaches the handler, whose 400 says why,
    # in the family's error shape (the legacy route above matches first).
    Endpoint("GET", "/files/{name:path}/content", session_api.file_content,
             openapi.FILE_CONTENT),
    Endpoint("GET", "/files/{name:file}", session_api.file_info, openapi.FILE_INFO),
    Endpoint("DELETE", "/files/{name:file}", session_api.file_delete, openapi.FILE_DELETE),
    Endpoint("POST", "/executions", session_api.executions_post, openapi.EXECUTIONS_POST),
    Endpoint("GET", "/executions/{id}", session_api.executions_get, openapi.EXECUTIONS_GET),
    Endpoint("DELETE", "/session", session_api.session_delete, openapi.SESSION_DELETE),
    Endpoint("POST", "/batch", post_batch, openapi.BATCH),
    Endpoint("POST", "/{language}/execute", execute_code, openapi.LANGUAGE_EXECUTE),
    *_piston(),
    *_judge0(),
)


async def upgrade_required(request: Request) -> Response:
    """A plain GET of a WebSocket route: 426, saying which upgrade it takes."""
    raise UpgradeRequired(f"{request.url.path} is a WebSocket: connect with an Upgrade: "
                          "websocket request")


def starlette_routes() -> list[BaseRoute]:
    routes = []
    for endpoint in ENDPOINTS:
        routes.append(endpoint.route())
        if endpoint.method == WEBSOCKET:
            # A WebSocket route matches only upgrades; plain HTTP on its path gets a 426.
            routes.append(Route(endpoint.path, upgrade_required, methods=["GET"]))
    return routes


def allowed_methods(request: Request) -> str:
    """Every method some route has for the request's path (RFC 9110's Allow of a 405):
    Starlette's own names the first route's alone."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and \
                route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def route_list(languages: Sequence[str]) -> list[str]:
    """`METHOD /path` of every route, as `GET /` and a 404 list them."""
    listed = []
    for endpoint in ENDPOINTS:
        line = f"{endpoint.method} {endpoint.documented_path}"
        if "{language}" in endpoint.path:
            line += f" for language in {', '.join(languages)}"
        listed.append(line)
    return listed


def openapi_document(version: str, languages: Sequence[str],
                     schemas: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document of every route; a WebSocket is documented as the GET that
    upgrades. `schemas`: components that depend on the service (Judge0's languages)."""
    return openapi.openapi_document(
        version, ((("GET" if endpoint.method == WEBSOCKET else endpoint.method),
                   endpoint.documented_path, endpoint.operation)
                  for endpoint in ENDPOINTS),
        languages, schemas)
