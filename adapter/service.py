"""The state of one running service: settings, sandbox, runtimes, admission, self-tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtimes import (
    CompileCache,
    CompileCacheError,
    Compiled,
    Execution,
    Registry,
    Runtime,
    RuntimesError,
    SelfTestResult,
    SourceFile,
    build_precompiled,
    cache_exposure,
    compile_program,
    execute,
    load_runtimes,
    run_selftest,
    warm_interpreter,
)
from sandbox import Limits, Sandbox, own_memory_limit_bytes

from .admission import Admission
from .errors import ServiceBusy, ShuttingDown
from .metrics import Metrics
from .render import outcome_name
from .sessions import Sessions
from .settings import Settings, SettingsError

log = logging.getLogger("adapter")

try:
    VERSION = importlib.metadata.version("sandbox-service")
except importlib.metadata.PackageNotFoundError:  # running from a source checkout
    VERSION = "0.1.0"


@dataclass
class Service:
    settings: Settings
    sandbox: Sandbox
    registry: Registry
    admission: Admission
    metrics: Metrics
    sessions: Sessions
    selftests: dict[str, SelfTestResult] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    compile_cache: CompileCache | None = None
    compile_cache_detail: str = "not set up"  # where it is, or why there is none
    precompiled: str = "being built"  # which headers are precompiled, or why none
    memory_budget_detail: str = ""  # where the memory budget comes from

    @classmethod
    def create(cls, settings: Settings) -> Service:
        """Probes the sandbox and loads the runtimes; fails loudly on any misconfiguration."""
        sandbox = Sandbox(settings.sandbox_config())
        registry = Registry(load_runtimes(*settings.runtimes_dirs))
        budget, budget_detail = memory_budget(settings)
        admission = Admission(settings.max_concurrent_runs, settings.max_queued_runs, budget)
        metrics = Metrics(lambda: admission.running, lambda: admission.waiting)
        sessions = Sessions(settings, sandbox, registry.find("python"), admission)
        cache, detail = open_compile_cache(settings, sandbox, registry)
        for runtime in registry:
            # Started now, so the first run finds its interpreter warm.
            sandbox.warm_zygote(warm_interpreter(runtime))
        return cls(settings, sandbox, registry, admission, metrics, sessions,
                   compile_cache=cache, compile_cache_detail=detail,
                   memory_budget_detail=budget_detail)

    def run_memory_bytes(self, *limits: Limits | None) -> int:
        """What one execution holds of the memory budget: its largest stage's limit (stages
        run one after another), the service's copies of its output, plus its working
        directory where that is a tmpfs its cgroup does not charge (no cgroups)."""
        stages = [stage for stage in limits if stage is not None]
        memory = max((stage.memory_bytes for stage in stages), default=0)
        memory += OUTPUT_COPIES * max((stage.max_output_bytes for stage in stages), default=0)
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

    async def execute(self, runtime: Runtime, files: Sequence[SourceFile],
                      **options: Any) -> Execution:
        """One execution (see runtimes.execute for `options`) in an admission slot, counted;
        compiles go through the compile cache."""
        options.setdefault("cache", self.compile_cache)
        memory = self.run_memory_bytes(*stage_limits_of(runtime, options))
        async with self.run_slot(memory):
            started = time.perf_counter()
            execution = await execute(self.sandbox, runtime, files, **options)
        self.metrics.observe_run(runtime.name, outcome_name(execution),
                                 time.perf_counter() - started)
        return execution

    async def compile(self, runtime: Runtime, files: Sequence[SourceFile],
                      **options: Any) -> Compiled:
        """One compile kept for later runs (see runtimes.compile_program), through the compile
        cache, in an admission slot. A failed compile is counted as a run ending in
        compile_error."""
        async with self.run_slot(self.run_memory_bytes(*stage_limits_of(runtime, options))):
            started = time.perf_counter()
            compiled = await compile_program(self.sandbox, runtime, files,
                                             cache=self.compile_cache, **options)
        if not compiled.result.ok:
            self.metrics.observe_run(runtime.name, "compile_error", time.perf_counter() - started)
        return compiled

    def warm_status(self, runtime: Runtime) -> dict[str, Any] | None:
        """Whether the runtime's runs are forked from a warm interpreter (None: it has none)."""
        warm = warm_interpreter(runtime)
        if warm is None:
            return None
        zygote = self.sandbox.warm_zygote(warm)
        if zygote is None:
            return {"active": False, "detail": "turned off by configuration"}
        return {"active": zygote.alive, "preload": list(warm.preload), "starts": zygote.starts,
                "detail": "runs are forked from it" if zygote.alive
                else "not running: runs start afresh until it is restarted"}

    async def precompile(self) -> None:
        """Builds the runtimes' precompiled headers (in the background after startup; until
        they are there, compiles simply parse the headers) and points the runtimes at them."""
        layers = self.sandbox.layers
        if not self.settings.precompile:
            self.precompiled = "turned off by configuration"
            return
        if not (layers.active("per_run_uid") or layers.active("landlock")):
            # A run sharing our uid without Landlock could rewrite them for everyone.
            self.precompiled = "not built: neither per-run uids nor Landlock keep runs from them"
            return
        built = []
        for runtime in list(self.registry):
            if runtime.compile is None or runtime.compile.precompiled is None:
                continue
            try:
                ready = await asyncio.to_thread(build_precompiled, runtime,
                                                self.settings.precompiled_folder())
            except (RuntimesError, OSError, subprocess.SubprocessError) as exc:
                log.error(json.dumps({"event": "precompile_failed", "runtime": runtime.name,
                                      "error": str(exc)}))
                continue
            self.registry.replace(ready)
            built.append(f"{runtime.name}: {', '.join(runtime.compile.precompiled.headers)}")
        self.precompiled = "; ".join(built) or "none"
        log.info(json.dumps({"event": "precompiled", "headers": built}))

    async def run_selftests(self) -> None:
        """Runs every runtime's self-test once, in parallel; `/health` waits for all of them."""
        results = await asyncio.gather(*(
            run_selftest(self.sandbox, runtime, self.settings.ceilings())
            for runtime in self.registry))
        for result in results:
            self.selftests[result.runtime] = result
            if not result.passed:
                log.error("self-test of %s failed: %s", result.runtime, result.detail)

    def health_problem(self) -> str | None:
        """Why the service cannot run code yet, or None when it can."""
        pending = [r.name for r in self.registry if r.name not in self.selftests]
        if pending:
            return f"self-tests have not finished for: {', '.join(pending)}"
        failed = [r for r in self.selftests.values() if not r.passed]
        if failed:
            return "; ".join(f"self-test of {r.runtime} failed: {r.detail}" for r in failed)
        return None


# Copies of a run's output the service may hold at once, per stream's cap: each stream's
# chunks and their join, the interleaved output, the reply's text.
OUTPUT_COPIES = 6


def stage_limits_of(runtime: Runtime, options: dict[str, Any]) -> tuple[Limits | None, ...]:
    """The limits an execution's stages run under (a compile without its own limits takes the
    runtime's). A cached compile is not known ahead, so a compiling runtime's request holds
    its compile's memory too."""
    compile_limits = options.get("compile_limits")
    if compile_limits is None and runtime.compile is not None:
        compile_limits = runtime.compile.limits
    return options.get("run_limits") or runtime.run.limits, compile_limits


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
    return max(limit - reserve, 0), (f"{source} ({limit} bytes) less "
                                     f"SANDBOX_MEMORY_RESERVE_BYTES ({reserve})")


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
