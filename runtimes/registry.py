"""The loaded runtimes, found by name or alias, with the results of their self-tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sandbox import Limits, Sandbox, SandboxError

from .errors import UnknownRuntime
from .execution import execute, source_files, stage_limits
from .runtime import Runtime


@dataclass(frozen=True)
class SelfTestResult:
    runtime: str
    passed: bool
    detail: str


class Registry:
    """Runtimes by every name and alias (exact, case-sensitive, as Piston matches them)."""

    def __init__(self, runtimes: tuple[Runtime, ...]) -> None:
        self.runtimes = runtimes
        self._by_name = {name: runtime for runtime in runtimes for name in runtime.names}

    def __iter__(self) -> Iterator[Runtime]:
        return iter(self.runtimes)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def replace(self, runtime: Runtime) -> None:
        """Puts `runtime` in the place of the one of the same name (a new version of its data,
        such as precompiled headers once they are built)."""
        self.runtimes = tuple(runtime if rt.name == runtime.name else rt for rt in self.runtimes)
        for name in runtime.names:
            self._by_name[name] = runtime

    def find(self, name: str) -> Runtime:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownRuntime(name, self.names()) from None


async def run_selftest(sandbox: Sandbox, runtime: Runtime, ceilings: Limits) -> SelfTestResult:
    """Runs the runtime's self-test program through the whole sandbox path."""
    run_limits, compile_limits = stage_limits(runtime, ceilings)
    test = runtime.selftest
    try:
        execution = await execute(sandbox, runtime, source_files(runtime, test.code),
                                  run_limits=run_limits, compile_limits=compile_limits,
                                  stdin=test.stdin.encode())
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
