"""A language runtime, as described by one TOML file: how to compile, how to run, how to test."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox import Limits


@dataclass(frozen=True)
class Stage:
    """One step (compile or run): an argv template, extra environment, default limits.

    Templates use `{executable}` names from the runtime, `{workdir}`, `{source}` (the main file),
    and as whole elements `{sources...}` (every compilable file) and `{args...}` (request args).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    limits: Limits
    memory_error_markers: tuple[str, ...] = ()
    file_size_error_markers: tuple[str, ...] = ()
    precompiled: Precompiled | None = None
    warm: Warm | None = None
    # Files the stage writes in the working directory (the compile's program): a source file
    # of such a name would be overwritten by it, or a cached copy placed over it.
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Warm:
    """The run stage is a Python script that a warm interpreter may run (sandbox.warm): the
    argv before `{source}` starts the interpreter, which imports `preload` before any run."""

    preload: tuple[str, ...]


@dataclass(frozen=True)
class Precompiled:
    """System headers to precompile once (`argv` with `{header}` and `{output}`, the same flags
    as the compile), and the environment variable of the include path that finds them."""

    headers: tuple[str, ...]
    argv: tuple[str, ...]
    include_env: str


@dataclass(frozen=True)
class SessionStage:
    """How to start the runtime's stateful kernel: argv (with `{kernel}`, the kernel's source
    text) and extra environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    kernel: str


@dataclass(frozen=True)
class SelfTest:
    """A program the runtime must run at startup, with the exact stdout it must print."""

    code: str
    stdout: str
    stdin: str = ""


@dataclass(frozen=True)
class Runtime:
    name: str
    aliases: tuple[str, ...]
    version: str
    source_file: str
    executables: Mapping[str, str]
    run: Stage
    selftest: SelfTest
    compile: Stage | None = None
    compile_sources: tuple[str, ...] = ()
    read_paths: tuple[str, ...] = ()  # what its programs may read and execute (Landlock)
    toolchain: str | None = None  # e.g. "gcc" for c++; the TOML key is `runtime`
    session: SessionStage | None = None
    path: Path | None = None
    # (name, version) of the libraries installed for its programs (the TOML's [libraries])
    libraries: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    @property
    def extensions(self) -> tuple[str, ...]:
        """The suffixes of its source files: the main file's, then each `*.suffix` pattern of
        `compile_sources` (c++: `.cpp`, `.cc`, `.cxx`, `.c++`, `.C`), so that a client can tell
        a file's language by asking the service rather than keeping a table of its own."""
        suffixes = [PurePosixPath(self.source_file).suffix]
        suffixes += [pattern[1:] for pattern in self.compile_sources
                     if pattern.startswith("*.") and not any(c in pattern[1:] for c in "*?[")]
        return tuple(dict.fromkeys(suffix for suffix in suffixes if suffix))
