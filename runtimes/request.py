"""One execution as the runtimes take it: which runtime, which files, under which limits."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import Limits

from .compile_cache import Compiled
from .runtime import Runtime


@dataclass(frozen=True)
class SourceFile:
    """One file of a submission; `name` may contain sub-folders."""

    name: str
    content: bytes


@dataclass(frozen=True)
class RunRequest:
    """What a wire format asks of the runtimes, already validated against them: `files` (the
    first is the main one unless `main` names another), their run with `stdin` as its whole
    input and `args`, under `run_limits`; a compiling runtime's compile under `compile_limits`
    (None: the runtime's own). `compiled`: a compile made earlier for these files
    (`Runtimes.compile`), placed instead of compiling again."""

    runtime: Runtime
    files: tuple[SourceFile, ...]
    run_limits: Limits
    compile_limits: Limits | None = None
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    main: str | None = None
    compiled: Compiled | None = None

    @property
    def main_file(self) -> str:
        return self.main or self.files[0].name

    @property
    def compile_stage_limits(self) -> Limits | None:
        """The compile's limits: the request's, else the runtime's; None when it does not
        compile."""
        if self.runtime.compile is None:
            return None
        return self.compile_limits or self.runtime.compile.limits

    @property
    def stage_limits(self) -> tuple[Limits, ...]:
        """The limits its stages run under, as admission counts them: a cached compile is not
        known ahead, so a compiling runtime's request holds its compile's memory too."""
        compile_limits = self.compile_stage_limits
        return (self.run_limits,) if compile_limits is None else (self.run_limits, compile_limits)
