"""The state of one running service: settings, sandbox, runtimes, admission, self-tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from runtimes import (
    CompileCache,
    CompileCacheError,
    Compiled,
    Execution,
    Registry,
    RunRequest,
    Runtimes,
    StageEvents,
    cache_exposure,
    load_runtimes,
)
from sandbox import Sandbox, own_memory_limit_bytes

from .admission import Admission
from .errors import ServiceBusy, ShuttingDown
from .metrics import Metrics, Readings
from .render import outcome_name
from .sessions import Sessions
from .settings import Settings, SettingsError

log = logging.getLogger("adapter")


@dataclass
class Service:
    """Wire formats meet the runtimes here, through admission and metrics."""

    settings: Settings
    sandbox: Sandbox
    runtimes: Runtimes
    admission: Admission
    metrics: Metrics
    sessions: Sessions
    started_at: float = field(default_factory=time.time)
    memory_budget_detail: str = ""  # where the memory budget comes from

    @classmethod
    def create(cls, settings: Settings) -> Service:
        """Probes the sandbox and loads the runtimes; fails loudly on any misconfiguration."""
        sandbox = Sandbox(settings.sandbox_config())
        registry = Registry(load_runtimes(*settings.runtimes_dirs))
        budget, budget_detail = memory_budget(settings)
        admission = Admission(settings.max_concurrent_runs, settings.max_queued_runs, budget)
        cache, detail = open_compile_cache(settings, sandbox, registry)
        # Read at scrape time: `sessions` is made below, once the runtimes are.
        metrics = Metrics(Readings(
            running=lambda: admission.running, waiting=lambda: admission.waiting,
            live_sessions=lambda: len(sessions.live),
            memory_budget_bytes=lambda: admission.memory_budget_bytes,
            memory_reserved_bytes=lambda: admission.reserved_bytes,
            compile_cache=lambda: cache.stats() if cache is not None else None))
        runtimes = Runtimes(sandbox, registry, settings.ceilings(), cache=cache,
                            cache_detail=detail,
                            precompiled_folder=(settings.precompiled_folder()
                                                if settings.precompile else None),
                            precompiled="turned off by configuration",
                            warm_sessions=settings.warm_sessions_mode())
        sessions = Sessions(settings, sandbox, registry.find("python"), admission,
                            runtimes.session_warm(registry.find("python")))
        return cls(settings, sandbox, runtimes, admission, metrics, sessions,
                   memory_budget_detail=budget_detail)

    def run_memory_bytes(self, request: RunRequest) -> int:
        """What one execution holds of the memory budget: its largest stage's limit (stages
        run one after another), the service's copies of its output, plus its working
        directory where that is a tmpfs its cgroup does not charge (no cgroups)."""
        stages = request.stage_limits
        memory = max(stage.memory_bytes for stage in stages)
        memory += OUTPUT_COPIES * max(stage.max_output_bytes for stage in stages)
        layers = self.sandbox.layers
        if layers.active("tmpfs") and layers.cgroups is None:
            memory += self.settings.max_disk_bytes
        return memory

    @contextlib.asynccontextmanager
    async def run_slot(self, memory_bytes: int = 0) -> AsyncIterator[None]:
        """An admission slot for one execution or compile: a full waiting line is counted as a
        rejection, and a cancellation (only a shutdown past its grace period cancels a run, its
        jail gone by then) becomes a clear 503 to retry elsewhere rather than a bare 500."""
        try:
            async with self.admission.slot(memory_bytes):
                yield
        except ServiceBusy:
            self.metrics.rejections.inc()
            raise
        except asyncio.CancelledError:
            raise ShuttingDown("the service is shutting down and stopped this run; "
                               "retry on another instance") from None

    async def execute(self, request: RunRequest,
                      events: StageEvents | None = None) -> Execution:
        """One execution in an admission slot, counted."""
        async with self.run_slot(self.run_memory_bytes(request)):
            started = time.perf_counter()
            execution = await self.runtimes.execute(request, events)
        self.metrics.observe_run(request.runtime.name, outcome_name(execution),
                                 time.perf_counter() - started)
        return execution

    async def compile(self, request: RunRequest) -> Compiled:
        """One compile kept for later runs, in an admission slot. A failed compile is counted
        as a run ending in compile_error."""
        async with self.run_slot(self.run_memory_bytes(request)):
            started = time.perf_counter()
            compiled = await self.runtimes.compile(request)
        if not compiled.result.ok:
            self.metrics.observe_run(request.runtime.name, "compile_error",
                                     time.perf_counter() - started)
        return compiled

    def health_problem(self) -> str | None:
        """Why the service cannot run code yet, or None when it can."""
        return self.runtimes.health_problem()


def service_of(connection: HTTPConnection) -> Service:
    """The service of the app a request or WebSocket reached (set by `create_app`)."""
    service: Service = connection.app.state.service
    return service


# Copies of a run's output the service may hold at once, per stream's cap: each stream's
# chunks and their join, the interleaved output, the reply's text.
OUTPUT_COPIES = 6


def memory_budget(settings: Settings) -> tuple[int, str]:
    """The memory budget of admission, and where it comes from."""
    if settings.memory_budget_bytes is not None:
        return settings.memory_budget_bytes, "SANDBOX_MEMORY_BUDGET_BYTES"
    limit = own_memory_limit_bytes()
    source = "the service's cgroup limit"
    if limit is None:
        limit = _available_bytes()
        source = "the memory available at startup"
    reserve = settings.memory_reserve_bytes
    detail = f"{source} ({limit} bytes) less SANDBOX_MEMORY_RESERVE_BYTES ({reserve})"
    if settings.warm_sessions_mode() != "off":
        # The session kernels' warm interpreter is held by the service, whenever it starts.
        reserve += settings.warm_sessions_bytes
        detail += f" and SANDBOX_WARM_SESSIONS_BYTES ({settings.warm_sessions_bytes})"
    return max(limit - reserve, 0), detail


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def open_compile_cache(settings: Settings, sandbox: Sandbox,
                       registry: Registry) -> tuple[CompileCache | None, str]:
    """The compile cache, or None and why not. A folder the settings name must be usable
    (startup fails otherwise); the default folder may be missing (a user without a home)."""
    if settings.compile_cache_bytes == 0:
        return None, "off: SANDBOX_COMPILE_CACHE_BYTES is 0"
    try:
        folder = settings.compile_cache_folder()
    except RuntimeError as exc:  # no home folder to default to
        return None, f"off: no folder for it ({exc})"
    read_paths = [path for runtime in registry for path in runtime.read_paths]
    # Runs must never reach it: an entry a run could write would be served to other requests.
    exposed = cache_exposure(folder, sandbox, read_paths)
    if exposed is not None:
        if settings.compile_cache_dir is not None:
            raise SettingsError(f"SANDBOX_COMPILE_CACHE_DIR={folder}: runs could reach it: "
                                f"{exposed}")
        return None, f"off: runs could reach it: {exposed}"
    try:
        cache = CompileCache(folder, settings.compile_cache_bytes)
    except CompileCacheError as exc:
        if settings.compile_cache_dir is not None:
            raise SettingsError(f"SANDBOX_COMPILE_CACHE_DIR: {exc}") from exc
        log.warning("no compile cache: %s", exc)
        return None, f"off: {exc}"
    return cache, f"in {folder}, at most {settings.compile_cache_bytes} bytes"
