"""Turning a runtime plus source files into one or two sandbox runs (compile, then run)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from sandbox import Jail, Limits, Outcome, OutputCallback, RunResult, Sandbox

from .runtime import Runtime, Stage

# Every program starts from this environment and its runtime's `env`; nothing else reaches it.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "{workdir}",
    "TMPDIR": "{workdir}",
    "LANG": "C.UTF-8",
}
# Judged on the tail of stderr only, where runtimes report an allocation failure.
MARKER_WINDOW_BYTES = 4096


@dataclass(frozen=True)
class SourceFile:
    """One file of a submission; `name` may contain sub-folders."""

    name: str
    content: bytes


@dataclass(frozen=True)
class Execution:
    """The stages of one execution. `run` is None when compilation failed."""

    runtime: Runtime
    compile: RunResult | None
    run: RunResult | None

    @property
    def ok(self) -> bool:
        return self.run is not None and self.run.ok

    @property
    def final(self) -> RunResult:
        """The stage whose output the user should see: run, or the failed compile."""
        stage = self.run or self.compile
        assert stage is not None
        return stage


def effective_limits(defaults: Limits, ceilings: Limits, **overrides: float | None) -> Limits:
    """The limits of one stage: the runtime's defaults with the request's overrides, clamped to
    the configured ceilings. This is the one place where a request meets the ceilings."""
    return defaults.replace(**overrides).clamp(ceilings)


def _expand(stage: Stage, runtime: Runtime, jail: Jail, main: str, sources: Sequence[str],
            args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    values = {**runtime.executables, "workdir": str(jail.path), "source": main}
    argv: list[str] = []
    for arg in stage.argv:
        if arg == "{args...}":
            argv.extend(args)
        elif arg == "{sources...}":
            argv.extend(sources)
        else:
            argv.append(arg.format(**values))
    env = {name: value.format(**values) for name, value in {**BASE_ENV, **stage.env}.items()}
    return argv, env


def _classify(result: RunResult, stage: Stage) -> RunResult:
    """A program that died because an allocation failed under the memory limit, or a write
    failed under the file-size limit, reports it its own way (MemoryError, std::bad_alloc,
    Python's EFBIG OSError: interpreters ignore SIGXFSZ); the runtime names the markers."""
    if result.outcome not in (Outcome.NONZERO_EXIT, Outcome.SIGNALED):
        return result
    tail = result.stderr[-MARKER_WINDOW_BYTES:]
    for markers, outcome in ((stage.memory_error_markers, Outcome.MEMORY_LIMIT),
                             (stage.file_size_error_markers, Outcome.FILE_SIZE_LIMIT)):
        if any(marker.encode() in tail for marker in markers):
            return dataclasses.replace(result, outcome=outcome)
    return result


def _compile_sources(runtime: Runtime, files: Sequence[SourceFile]) -> list[str]:
    names = [f.name for f in files]
    return [n for n in names
            if any(fnmatch.fnmatchcase(PurePosixPath(n).name, p) for p in runtime.compile_sources)]


async def execute(
    sandbox: Sandbox,
    runtime: Runtime,
    files: Sequence[SourceFile],
    *,
    run_limits: Limits,
    compile_limits: Limits | None = None,
    stdin: bytes = b"",
    args: Sequence[str] = (),
    on_output: OutputCallback | None = None,
) -> Execution:
    """Writes `files` into a fresh jail (the first is the main file), compiles them if the
    runtime compiles, and runs the result with `stdin` and `args`."""
    if not files:
        raise ValueError("at least one source file is needed")
    async with sandbox.jail() as jail:
        for source in files:
            jail.write_file(source.name, source.content)
        main = files[0].name
        compiled: RunResult | None = None
        if runtime.compile is not None:
            argv, env = _expand(runtime.compile, runtime, jail, main,
                                _compile_sources(runtime, files), args)
            compiled = _classify(
                await jail.run(argv, env, compile_limits or runtime.compile.limits,
                               read_paths=runtime.read_paths),
                runtime.compile)
            if not compiled.ok:
                return Execution(runtime, compiled, None)
        argv, env = _expand(runtime.run, runtime, jail, main, (), args)
        result = await jail.run(argv, env, run_limits, stdin=stdin, on_output=on_output,
                                read_paths=runtime.read_paths)
        return Execution(runtime, compiled, _classify(result, runtime.run))


def source_files(runtime: Runtime, code: str | bytes) -> list[SourceFile]:
    """A one-file submission under the runtime's main file name."""
    content = code.encode() if isinstance(code, str) else code
    return [SourceFile(runtime.source_file, content)]


def stage_limits(runtime: Runtime, ceilings: Limits,
                 overrides: Mapping[str, float | None] | None = None) -> tuple[Limits, Limits | None]:
    """Run and compile limits for a request that may override run limits."""
    run = effective_limits(runtime.run.limits, ceilings, **(overrides or {}))
    compile_ = (effective_limits(runtime.compile.limits, ceilings)
                if runtime.compile is not None else None)
    return run, compile_
