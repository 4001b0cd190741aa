"""Turning a runtime plus source files into one or two sandbox runs (compile, then run)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import os
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox import (
    Jail,
    Limits,
    Outcome,
    Process,
    RunResult,
    Sandbox,
    Stream,
    WarmInterpreter,
    resolve_inside,
)

from .compile_cache import CompileCache, Compiled, ProducedFile, compile_key, fits
from .entry import entry_point
from .errors import ReservedSourceName
from .request import RunRequest, SourceFile
from .runtime import BASE_ENV, Runtime, Stage
from .warm import fixed_env

# Judged on the tail of stderr only, where runtimes report an allocation failure.
MARKER_WINDOW_BYTES = 4096
# What the dynamic loader says when the memory limit leaves no room to map a program's
# libraries: whatever the language, the run did not fit its memory limit.
LOADER_MEMORY_MARKERS = ("failed to map segment from shared object",)


@dataclass(frozen=True)
class Execution:
    """The stages of one execution. `run` is None when compilation failed.

    `compile_cached`: the compile stage is the stored result of an earlier compile of the same
    sources (its times and memory are that compile's); no compiler ran for this execution."""

    runtime: Runtime
    compile: RunResult | None
    run: RunResult | None
    compile_cached: bool = False

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


MiB = 1 << 20


def _expand(stage: Stage, runtime: Runtime, workdir: Path, main: str, sources: Sequence[str],
            args: Sequence[str], limits: Limits | None = None,
            entry: str = "") -> tuple[list[str], dict[str, str]]:
    limits = limits or stage.limits
    values = {**runtime.executables, "workdir": str(workdir), "source": main, "entry": entry,
              "memory_mb": str(limits.memory_bytes // MiB),
              "heap_mb": str(stage.heap_bytes(limits.memory_bytes) // MiB),
              "stack_mb": str(limits.stack_bytes // MiB)}
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


def warm_interpreter(runtime: Runtime) -> WarmInterpreter | None:
    """The warm interpreter that may run the runtime's programs, if its run stage has one: the
    run argv before the script, with the run environment (sandbox.Sandbox.warm_zygote starts
    it; call this at startup to have it ready before the first run)."""
    stage = runtime.run
    if stage.warm is None:
        return None
    # The loader checked that only the interpreter and its options come before the script, so
    # they expand one for one; what depends on the working directory is not read at start-up.
    argv, env = _expand(stage, runtime, Path("/"), "", (), ())
    return WarmInterpreter.of(argv[:stage.argv.index("{source}")], env, stage.warm.preload,
                              fixed_env(stage.env))


def _classify(result: RunResult, stage: Stage) -> RunResult:
    """A program that died because an allocation failed under the memory limit, or a write
    failed under the file-size limit, reports it its own way (MemoryError, std::bad_alloc,
    Python's EFBIG OSError: interpreters ignore SIGXFSZ); the runtime names the markers."""
    if result.outcome not in (Outcome.NONZERO_EXIT, Outcome.SIGNALED):
        return result
    tail = result.stderr[-MARKER_WINDOW_BYTES:]
    for markers, outcome in ((stage.memory_error_markers + LOADER_MEMORY_MARKERS,
                              Outcome.MEMORY_LIMIT),
                             (stage.file_size_error_markers, Outcome.FILE_SIZE_LIMIT)):
        if any(marker.encode() in tail for marker in markers):
            return dataclasses.replace(result, outcome=outcome)
    return result


def check_source_names(runtime: Runtime, names: Sequence[str]) -> None:
    """Raises `ReservedSourceName` for the first of `names` (relative paths, as a request
    sends them) that names a file the compile writes: the compile would overwrite that source,
    and a cached compile would be placed over it.

    >>> check_source_names(cpp, ["main.cpp", "./main"])  # ReservedSourceName(1, "main")
    """
    if runtime.compile is None or not runtime.compile.outputs:
        return
    outputs = {PurePosixPath(resolve_inside(Path("/"), name)) for name in runtime.compile.outputs}
    for index, name in enumerate(names):
        if PurePosixPath(resolve_inside(Path("/"), name)) in outputs:
            raise ReservedSourceName(index, str(resolve_inside(Path("/"), name).relative_to("/")))


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


async def execute(sandbox: Sandbox, request: RunRequest, *, events: StageEvents | None = None,
                  cache: CompileCache | None = None) -> Execution:
    """Writes the request's files into a fresh jail, compiles them if the runtime compiles, and
    runs the result: with the request's stdin as its whole input, or interactively through
    `events`.

    The compile comes from `request.compiled` when given (see `compile_program`), else from
    `cache` when it holds these sources, else from a real compile, stored in `cache` if it
    succeeds."""
    runtime, files, args = request.runtime, request.files, request.args
    if not files:
        raise ValueError("at least one source file is needed")
    check_source_names(runtime, [f.name for f in files])
    files, main, entry = entry_point(runtime, files, request.main_file)
    compile_limits = request.compile_stage_limits
    compiled = request.compiled
    key = None
    if runtime.compile is not None and compiled is None and cache is not None:
        key = compile_key(runtime, [(f.name, f.content) for f in files], main, args)
        # A hit needs no lock and no compiler; a miss is settled under the key's lock below.
        compiled = _usable(await cache.get(key, count_miss=False), compile_limits)
    async with sandbox.jail() as jail:
        for source in files:
            jail.write_file(source.name, source.content)
        if runtime.compile is not None:
            assert compile_limits is not None
            if compiled is not None:
                _place(jail, compiled, events)
            else:
                compiled = await _compile(jail, runtime, files, main, args, compile_limits,
                                          events, cache, key, keep_files=False)
            if events is not None:
                events.finished("compile", compiled.result)
            if not compiled.result.ok:
                return Execution(runtime, compiled.result, None, compiled.cached)
        argv, env = _expand(runtime.run, runtime, jail.path, main, (), args,
                            request.run_limits, entry)
        result = _classify(await _run_stage(jail, "run", argv, env, request.run_limits,
                                            runtime.read_paths, request.stdin, events,
                                            warm_interpreter(runtime),
                                            runtime.run.address_space),
                           runtime.run)
        if events is not None:
            events.finished("run", result)
        if compiled is None:
            return Execution(runtime, None, result)
        return Execution(runtime, compiled.result, result, compiled.cached)


async def compile_program(sandbox: Sandbox, request: RunRequest,
                          cache: CompileCache | None = None) -> Compiled:
    """Compiles the request's files once, in a jail of its own, keeping the files the compile
    produced: `execute` of a request with `compiled=` then runs the program in as many fresh
    jails as needed without compiling again. Through `cache` when given."""
    runtime, files, args = request.runtime, request.files, request.args
    if runtime.compile is None:
        raise ValueError(f"{runtime.name} does not compile")
    if not files:
        raise ValueError("at least one source file is needed")
    check_source_names(runtime, [f.name for f in files])
    files, main, _entry = entry_point(runtime, files, request.main_file)
    limits = request.compile_stage_limits
    assert limits is not None
    key = None
    if cache is not None:
        key = compile_key(runtime, [(f.name, f.content) for f in files], main, args)
        stored = _usable(await cache.get(key, count_miss=False), limits)
        if stored is not None:
            return stored
    async with sandbox.jail() as jail:
        for source in files:
            jail.write_file(source.name, source.content)
        return await _compile(jail, runtime, files, main, args, limits, None, cache, key,
                              keep_files=True)


def _usable(stored: Compiled | None, limits: Limits | None) -> Compiled | None:
    if stored is None or limits is None:
        return stored
    return stored if fits(stored.result, limits.wall_timeout_s, limits.cpu_time_s,
                          limits.memory_bytes) else None


async def _compile(jail: Jail, runtime: Runtime, files: Sequence[SourceFile], main: str,
                   args: Sequence[str], limits: Limits, events: StageEvents | None,
                   cache: CompileCache | None, key: str | None, keep_files: bool) -> Compiled:
    """The compile of the sources already written in `jail`: the stored one if another request
    stored it meanwhile (its files placed in the jail), else a real one, stored when it
    succeeds. `keep_files`: the result carries the produced files even without a cache."""
    if cache is None or key is None:
        return await _run_compiler(jail, runtime, files, main, args, limits, events, keep_files)
    async with cache.lock(key):
        stored = _usable(await cache.get(key), limits)
        if stored is not None:
            _place(jail, stored, events)
            return stored
        compiled = await _run_compiler(jail, runtime, files, main, args, limits, events,
                                       keep_files=True)
        if compiled.result.ok:
            await cache.put(key, compiled)
        return compiled


async def _run_compiler(jail: Jail, runtime: Runtime, files: Sequence[SourceFile], main: str,
                        args: Sequence[str], limits: Limits, events: StageEvents | None,
                        keep_files: bool) -> Compiled:
    assert runtime.compile is not None
    argv, env = _expand(runtime.compile, runtime, jail.path, main, _compile_sources(runtime, files),
                        args, limits)
    result = _classify(await _run_stage(jail, "compile", argv, env, limits, runtime.read_paths,
                                        b"", events,
                                        address_space=runtime.compile.address_space),
                       runtime.compile)
    if not (keep_files and result.ok):
        return Compiled(result)
    # The compiler's processes are all gone: what is in the jail now is what it produced.
    sources = {str(resolve_inside(jail.path, f.name).relative_to(jail.path)) for f in files}
    produced = await asyncio.to_thread(collect_outputs, jail.path, sources,
                                       runtime.compile.scratch)
    return Compiled(result, produced)


def collect_outputs(folder: Path, sources: Collection[str],
                    scratch: Collection[str] = ()) -> tuple[ProducedFile, ...]:
    """Every regular file under `folder` but `sources` and what is under the `scratch` folders
    (paths relative to it), after a compile.

    Opens each folder and file with O_NOFOLLOW relative to its parent's descriptor and skips
    symlinks, FIFOs and devices (O_NONBLOCK: a FIFO would block the open): what a compile left
    cannot make the service read anything outside the jail. Bounded by the jail's own disk
    bound."""
    produced: list[ProducedFile] = []
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    # Iterative: a folder tree as deep as a path allows would exhaust Python's recursion.
    pending: list[tuple[int, str]] = [(root, "")]
    try:
        while pending:
            dir_fd, prefix = pending.pop()
            try:
                for name in sorted(os.listdir(dir_fd)):
                    relative = prefix + name
                    if relative in scratch:
                        continue
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        pending.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                                | os.O_CLOEXEC, dir_fd=dir_fd), relative + "/"))
                    elif stat.S_ISREG(info.st_mode) and relative not in sources:
                        file = _read_produced(dir_fd, name, relative)
                        if file is not None:
                            produced.append(file)
            finally:
                os.close(dir_fd)
    finally:
        for dir_fd, _prefix in pending:
            os.close(dir_fd)
    return tuple(sorted(produced, key=lambda f: f.name))


def _read_produced(dir_fd: int, name: str, relative: str) -> ProducedFile | None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):  # replaced between the stat and the open
            return None
        return ProducedFile(relative, f.read(), bool(info.st_mode & stat.S_IXUSR))


def _place(jail: Jail, compiled: Compiled, events: StageEvents | None) -> None:
    """Writes a compile's produced files into `jail` as copies owned by its uid (a program
    that rewrites its binary changes its own copy only), and tells `events` of the stage."""
    for file in compiled.files:
        jail.write_file(file.name, file.content, 0o700 if file.executable else 0o600)
    if events is not None:
        events.started("compile")
        for stream, data in ((Stream.STDOUT, compiled.result.stdout),
                             (Stream.STDERR, compiled.result.stderr)):
            if data:
                events.output("compile", stream, data)


async def _run_stage(jail: Jail, stage: str, argv: list[str], env: dict[str, str],
                     limits: Limits, read_paths: Sequence[str], stdin: bytes,
                     events: StageEvents | None, warm: WarmInterpreter | None = None,
                     address_space: bool = True) -> RunResult:
    if events is None:
        process = await jail.start(argv, env, limits, read_paths, warm=warm,
                                   address_space=address_space)
        try:
            return await process.communicate(stdin)
        except BaseException:
            jail.clean = False
            raise
    events.started(stage)
    process = await jail.start(argv, env, limits, read_paths, warm=warm,
                               address_space=address_space)
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
                 overrides: Mapping[str, float | None] | None = None
                 ) -> tuple[Limits, Limits | None]:
    """Run and compile limits for a request that may override run limits."""
    run = effective_limits(runtime.run.limits, ceilings, **(overrides or {}))
    compile_ = (effective_limits(runtime.compile.limits, ceilings)
                if runtime.compile is not None else None)
    return run, compile_
