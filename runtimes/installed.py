"""The runtimes of one service, from start to close: the one object a wire format talks to.

    runtimes = Runtimes(sandbox, Registry(load_runtimes()), ceilings, cache=cache)
    await runtimes.start()       # warm interpreters now; self-tests and headers in the background
    execution = await runtimes.execute(RunRequest(runtime, files, run_limits))
    runtimes.status()            # what GET / shows of them
    await runtimes.close()

Everything a runtime needs beyond its description lives here: the compile cache every compile
goes through, the precompiled headers built after startup, the warm interpreters runs fork from,
and the self-tests that decide whether the service is healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox import Limits, Sandbox, SandboxError, WarmInterpreter

from .compile_cache import CacheStats, CompileCache, Compiled
from .errors import RuntimesError
from .execution import (
    Execution,
    StageEvents,
    compile_program,
    execute,
    source_files,
    stage_limits,
    warm_interpreter,
)
from .precompiled import build_precompiled
from .registry import Registry
from .request import RunRequest
from .runtime import Runtime
from .warm import session_warm_interpreter

log = logging.getLogger("runtimes")
# When session kernels' warm interpreters start: with the service, with the first session, or
# never (every kernel starts afresh).
WARM_SESSIONS = ("startup", "lazy", "off")
# Self-tests running at once at startup (see `_run_selftests`).
SELFTESTS_AT_ONCE = 2


@dataclass(frozen=True)
class SelfTestResult:
    runtime: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class WarmStatus:
    """Whether a runtime's runs are forked from its warm interpreter."""

    active: bool
    detail: str
    preload: tuple[str, ...] | None = None  # None: warm interpreters are turned off
    starts: int = 0
    resident_bytes: int | None = None  # its memory now; None when not running


@dataclass(frozen=True)
class RuntimeStatus:
    runtime: Runtime
    selftest: SelfTestResult | None  # None until it has run
    warm: WarmStatus | None  # None: the runtime has no warm interpreter
    session_warm: WarmStatus | None = None  # its session kernels' one, if they have one


@dataclass(frozen=True)
class CacheStatus:
    active: bool
    detail: str  # where it is, or why there is none
    stats: CacheStats | None


@dataclass(frozen=True)
class Status:
    runtimes: tuple[RuntimeStatus, ...]
    compile_cache: CacheStatus
    precompiled: str  # which headers are precompiled, or why none


class Runtimes:
    """The loaded runtimes with what runs them: `start`, then `execute` and `compile` any number
    of requests, then `close`. `precompiled_folder`: where precompiled headers are built, or None
    with `precompiled` saying why they are not. `warm_sessions`: when the warm interpreters of
    session kernels start, one of WARM_SESSIONS ("lazy": with the first session)."""

    def __init__(self, sandbox: Sandbox, registry: Registry, ceilings: Limits, *,
                 cache: CompileCache | None = None, cache_detail: str = "off",
                 precompiled_folder: Path | None = None,
                 precompiled: str = "not built", warm_sessions: str = "startup") -> None:
        if warm_sessions not in WARM_SESSIONS:
            raise ValueError(f"warm_sessions must be one of {', '.join(WARM_SESSIONS)}")
        self.warm_sessions = warm_sessions
        self.sandbox = sandbox
        self.registry = registry
        self.ceilings = ceilings
        self.cache = cache
        self.cache_detail = cache_detail
        self.selftests: dict[str, SelfTestResult] = {}
        layers = sandbox.layers
        if precompiled_folder is not None and not (layers.active("per_run_uid")
                                                   or layers.active("landlock")):
            # A run sharing our uid without Landlock could rewrite them for everyone.
            precompiled_folder = None
            precompiled = "not built: neither per-run uids nor Landlock keep runs from them"
        self.precompiled = "being built" if precompiled_folder is not None else precompiled
        self._precompiled_folder = precompiled_folder
        self._background: list[asyncio.Task[None]] = []

    def __iter__(self) -> Iterator[Runtime]:
        return iter(self.registry)

    def find(self, name: str) -> Runtime:
        """The runtime of a name or alias; `UnknownRuntime` lists the known ones."""
        return self.registry.find(name)

    def names(self) -> list[str]:
        return self.registry.names()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm interpreters now (before the service serves, so the first run finds its
        interpreter warm); the self-tests and the precompiled headers in the background
        (`health_problem` says when the self-tests are done; until headers are built, compiles
        simply parse the headers)."""
        for runtime in self.registry:
            self.sandbox.warm_zygote(warm_interpreter(runtime))
            if self.warm_sessions == "startup":
                self.sandbox.warm_zygote(session_warm_interpreter(runtime))
        self._background = [asyncio.create_task(self._run_selftests()),
                            asyncio.create_task(self._precompile())]

    async def close(self) -> None:
        """Stops what `start` began and closes the compile cache; after the last request."""
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.cache is not None:
            self.cache.close()

    def session_warm(self, runtime: Runtime) -> WarmInterpreter | None:
        """The warm interpreter the runtime's session kernels are forked from; None when it
        has none or they are turned off (each kernel then starts afresh)."""
        return None if self.warm_sessions == "off" else session_warm_interpreter(runtime)

    # ---- requests -------------------------------------------------------------------------------

    async def execute(self, request: RunRequest,
                      events: StageEvents | None = None) -> Execution:
        """One execution (see `execution.execute`); compiles go through the compile cache."""
        return await execute(self.sandbox, request, events=events, cache=self.cache)

    async def compile(self, request: RunRequest) -> Compiled:
        """One compile kept for later runs of the same files (`RunRequest.compiled`), through
        the compile cache."""
        return await compile_program(self.sandbox, request, cache=self.cache)

    # ---- status ---------------------------------------------------------------------------------

    def status(self) -> Status:
        cache = self.cache
        return Status(
            tuple(RuntimeStatus(runtime, self.selftests.get(runtime.name),
                                self._warm_status(warm_interpreter(runtime)),
                                self._warm_status(session_warm_interpreter(runtime),
                                                  self.warm_sessions == "off"))
                  for runtime in self.registry),
            CacheStatus(cache is not None, self.cache_detail,
                        cache.stats() if cache is not None else None),
            self.precompiled)

    def health_problem(self) -> str | None:
        """Why the runtimes cannot run code yet, or None when they can."""
        pending = [r.name for r in self.registry if r.name not in self.selftests]
        if pending:
            return f"self-tests have not finished for: {', '.join(pending)}"
        failed = [r for r in self.selftests.values() if not r.passed]
        if failed:
            return "; ".join(f"self-test of {r.runtime} failed: {r.detail}" for r in failed)
        return None

    def _warm_status(self, warm: WarmInterpreter | None, off: bool = False
                     ) -> WarmStatus | None:
        if warm is None:
            return None
        if off or not self.sandbox.config.warm_interpreters:
            return WarmStatus(False, "turned off by configuration")
        if self.warm_sessions == "lazy" and not self.sandbox.has_warm_zygote(warm):
            return WarmStatus(False, "not started yet: it starts with the first use",
                              warm.preload)
        zygote = self.sandbox.warm_zygote(warm)
        assert zygote is not None
        return WarmStatus(zygote.alive, "runs are forked from it" if zygote.alive
                          else "not running: runs start afresh until it is restarted",
                          warm.preload, zygote.starts, zygote.resident_bytes())

    # ---- startup work ---------------------------------------------------------------------------

    async def _run_selftests(self) -> None:
        """Runs every runtime's self-test once, a few at a time: where runs share the service's
        uid, RLIMIT_NPROC counts the threads of all of them together, and a dozen compilers and
        VMs at once (javac's JVM alone has 14) would fail each other's thread starts. Compiles
        go through the compile cache: a restart on the same machine compiles none of them."""
        running = asyncio.Semaphore(SELFTESTS_AT_ONCE)

        async def one(runtime: Runtime) -> SelfTestResult:
            async with running:
                return await run_selftest(self.sandbox, runtime, self.ceilings, self.cache)
        results = await asyncio.gather(*(one(runtime) for runtime in self.registry))
        for result in results:
            self.selftests[result.runtime] = result
            if not result.passed:
                log.error("self-test of %s failed: %s", result.runtime, result.detail)

    async def _precompile(self) -> None:
        """Builds the runtimes' precompiled headers and points the runtimes at them."""
        folder = self._precompiled_folder
        if folder is None:
            return
        built = []
        for runtime in list(self.registry):
            if runtime.compile is None or runtime.compile.precompiled is None:
                continue
            try:
                ready = await asyncio.to_thread(build_precompiled, runtime, folder)
            except (RuntimesError, OSError, subprocess.SubprocessError) as exc:
                log.error("precompile_failed", extra={"event": "precompile_failed",
                                                      "runtime": runtime.name,
                                                      "error": str(exc)})
                continue
            self.registry.replace(ready)
            built.append(f"{runtime.name}: {', '.join(runtime.compile.precompiled.headers)}")
        self.precompiled = "; ".join(built) or "none"
        log.info("precompiled", extra={"event": "precompiled", "headers": built})


async def run_selftest(sandbox: Sandbox, runtime: Runtime, ceilings: Limits,
                       cache: CompileCache | None = None) -> SelfTestResult:
    """Runs the runtime's self-test program through the whole sandbox path; its compile
    through `cache` when given (a stored compile was made by this same toolchain and flags:
    the compile cache's key covers them)."""
    run_limits, compile_limits = stage_limits(runtime, ceilings)
    test = runtime.selftest
    request = RunRequest(runtime, tuple(source_files(runtime, test.code)), run_limits,
                         compile_limits, stdin=test.stdin.encode())
    try:
        execution = await execute(sandbox, request, cache=cache)
    except (SandboxError, OSError) as exc:
        return SelfTestResult(runtime.name, False, f"the sandbox failed: {exc}")
    final = execution.final
    stdout = final.stdout.decode(errors="replace")
    if execution.ok and stdout == test.stdout:
        return SelfTestResult(runtime.name, True, f"printed {stdout!r}")
    stage = "compile" if execution.run is None else "run"
    return SelfTestResult(
        runtime.name, False,
        f"{stage} ended {final.outcome.value} (exit {final.exit_code}, signal {final.signal}); "
        f"expected stdout {test.stdout!r}, got {stdout!r}; stderr "
        f"{final.stderr.decode(errors='replace')[-500:]!r}")
