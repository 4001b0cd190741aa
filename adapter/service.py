"""The state of one running service: settings, sandbox, runtimes, admission, self-tests."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtimes import (
    Execution,
    Registry,
    Runtime,
    SelfTestResult,
    SourceFile,
    execute,
    load_runtimes,
    run_selftest,
)
from sandbox import Sandbox

from .admission import Admission
from .errors import ServiceBusy, ShuttingDown
from .metrics import Metrics
from .render import outcome_name
from .sessions import Sessions
from .settings import Settings

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

    @classmethod
    def create(cls, settings: Settings) -> Service:
        """Probes the sandbox and loads the runtimes; fails loudly on any misconfiguration."""
        sandbox = Sandbox(settings.sandbox_config())
        registry = Registry(load_runtimes(*settings.runtimes_dirs))
        admission = Admission(settings.max_concurrent_runs, settings.max_queued_runs)
        metrics = Metrics(lambda: admission.running, lambda: admission.waiting)
        sessions = Sessions(settings, sandbox, registry.find("python"))
        return cls(settings, sandbox, registry, admission, metrics, sessions)

    async def execute(self, runtime: Runtime, files: Sequence[SourceFile],
                      **options: Any) -> Execution:
        """One execution (see runtimes.execute for `options`) in an admission slot, counted."""
        try:
            async with self.admission.slot():
                started = time.perf_counter()
                execution = await execute(self.sandbox, runtime, files, **options)
        except ServiceBusy:
            self.metrics.rejections.inc()
            raise
        except asyncio.CancelledError:
            # Only a shutdown past its grace period cancels a run (its jail is gone by now):
            # the caller gets a clear 503 to retry elsewhere rather than a bare 500.
            raise ShuttingDown("the service is shutting down and stopped this run; "
                               "retry on another instance") from None
        self.metrics.observe_run(runtime.name, outcome_name(execution),
                                 time.perf_counter() - started)
        return execution

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
