"""The service's own routes: its status, health, metrics and OpenAPI document."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from runtimes import Status, WarmStatus

from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .service import Service, service_of
from .version import VERSION


async def status(request: Request) -> Response:
    """GET /: what this service is, what it runs, under which limits and confinement."""
    service = service_of(request)
    problem = service.health_problem()
    ceilings = service.settings.ceilings()
    runtimes = service.runtimes.status()
    return JSONResponse({
        "service": "sandbox-service",
        "version": VERSION,
        "status": "ready" if problem is None else "unavailable",
        "problem": problem,
        "runtimes": [
            {
                "language": entry.runtime.name,
                "version": entry.runtime.version,
                "aliases": list(entry.runtime.aliases),
                "sourceFile": entry.runtime.source_file,
                "extensions": list(entry.runtime.extensions),
                "compiled": entry.runtime.compiled,
                "libraries": dict(entry.runtime.libraries),
                "selfTest": ({"passed": entry.selftest.passed, "detail": entry.selftest.detail}
                             if entry.selftest else None),
                "warmInterpreter": warm_status(entry.warm),
                "sessionWarmInterpreter": warm_status(entry.session_warm),
            }
            for entry in runtimes.runtimes
        ],
        "limits": {
            "ceilings": ceilings.as_dict(),
            "defaults": {
                runtime.name: {
                    "run": runtime.run.limits.clamp(ceilings).as_dict(),
                    "compile": (runtime.compile.limits.clamp(ceilings).as_dict()
                                if runtime.compile else None),
                }
                for runtime in service.runtimes
            },
            "maxBodyBytes": service.settings.max_body_bytes,
        },
        "layers": [layer.as_dict() for layer in service.sandbox.layers.all],
        "compileCache": compile_cache_status(runtimes),
        "precompiledHeaders": runtimes.precompiled,
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
        "routes": request.app.state.route_list,
    })


def warm_status(warm: WarmStatus | None) -> dict[str, Any] | None:
    if warm is None:
        return None
    if warm.preload is None:  # warm interpreters are turned off
        return {"active": warm.active, "detail": warm.detail}
    return {"active": warm.active, "preload": list(warm.preload), "starts": warm.starts,
            "residentBytes": warm.resident_bytes, "detail": warm.detail}


def compile_cache_status(status: Status) -> dict[str, Any]:
    cache = status.compile_cache
    shown: dict[str, Any] = {"active": cache.active, "detail": cache.detail}
    if cache.stats is not None:
        stats = cache.stats
        shown.update(entries=stats.entries, bytes=stats.bytes,
                     capacityBytes=stats.capacity_bytes, hits=stats.hits, misses=stats.misses,
                     evictions=stats.evictions, storeFailures=stats.store_failures)
    return shown


async def health(request: Request) -> Response:
    """GET /health: 200 `ok` once every runtime's self-test passed, else 503 with the reason."""
    problem = service_of(request).health_problem()
    if problem is None:
        return PlainTextResponse("ok")
    return JSONResponse({"message": problem}, status_code=503)


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format."""
    return Response(service_of(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    """GET /openapi.json: the OpenAPI document of every route (made with the app, from the
    same route table)."""
    return JSONResponse(request.app.state.openapi)


def startup_summary(service: Service) -> dict[str, Any]:
    settings = service.settings
    return {
        "event": "startup",
        "service": "sandbox-service",
        "version": VERSION,
        "listen": f"{settings.host}:{settings.port}",
        "runtimes": {rt.name: rt.version for rt in service.runtimes},
        "ceilings": settings.ceilings().as_dict(),
        "max_concurrent_runs": settings.max_concurrent_runs,
        "max_queued_runs": settings.max_queued_runs,
        "compile_cache": service.runtimes.cache_detail,
        "layers": {layer.name: {"active": layer.active, "detail": layer.detail}
                   for layer in service.sandbox.layers.all},
    }
