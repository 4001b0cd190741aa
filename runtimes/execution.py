"""Turning a runtime plus source files into one or two sandbox runs (compile, then run)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from sandbox import Jail, Limits, Outcome, OutputCallback, Process, RunResult, Sandbox, Stream

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


class StageEvents:
    """What an interactive caller hears of an execution; every method is optional to override.

    `started` and `finished` frame each stage ("compile", "run"); `output` gets each chunk of
    the stage's stdout or stderr as it arrives; `attach` gets the running program of the run
    stage, to feed its stdin and send it signals, and must close its stdin when done (it is
    cancelled when the program ends)."""

    def started(self, stage: str) -> None:
        pass

    def output(self, stage: str, stream: Stream, data: bytes) -> None:
        pass

    def finished(self, stage: str, result: RunResult) -> None:
        pass

    async def attach(self, process: Process) -> None:
        await process.close_stdin()


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
    main: str | None = None,
    events: StageEvents | None = None,
) -> Execution:
    """Writes `files` into a fresh jail, compiles them if the runtime compiles, and runs the
    result with `args`: with `stdin` as its whole input, or interactively through `events`.
    `main` names the file to run (default: the first)."""
    if not files:
        raise ValueError("at least one source file is needed")
    main = main or files[0].name
    async with sandbox.jail() as jail:
        for source in files:
            jail.write_file(source.name, source.content)
        compiled: RunResult | None = None
        if runtime.compile is not None:
            argv, env = _expand(runtime.compile, runtime, jail, main,
                                _compile_sources(runtime, files), args)
            compiled = _classify(await _run_stage(
                jail, "compile", argv, env, compile_limits or runtime.compile.limits,
                runtime.read_paths, b"", None, events), runtime.compile)
            if events is not None:
                events.finished("compile", compiled)
            if not compiled.ok:
                return Execution(runtime, compiled, None)
        argv, env = _expand(runtime.run, runtime, jail, main, (), args)
        result = _classify(await _run_stage(jail, "run", argv, env, run_limits,
                                            runtime.read_paths, stdin, on_output, events),
                           runtime.run)
        if events is not None:
            events.finished("run", result)
        return Execution(runtime, compiled, result)


async def _run_stage(jail: Jail, stage: str, argv: list[str], env: dict[str, str],
                     limits: Limits, read_paths: Sequence[str], stdin: bytes,
                     on_output: OutputCallback | None,
                     events: StageEvents | None) -> RunResult:
    if events is None:
        return await jail.run(argv, env, limits, stdin=stdin, on_output=on_output,
                              read_paths=read_paths)
    events.started(stage)
    process = await jail.start(argv, env, limits, read_paths)
    # Only the run stage is interactive; a compiler gets an empty stdin.
    feeding = asyncio.create_task(
        events.attach(process) if stage == "run" else process.close_stdin())
    try:
        return await process.wait(lambda stream, data: events.output(stage, stream, data))
    except BaseException:
        jail.clean = False
        raise
    finally:
        feeding.cancel()
        # The feeder's own failure (its client went away) does not change how the run ended.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeding


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
