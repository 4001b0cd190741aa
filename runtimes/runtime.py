"""A language runtime, as described by one TOML file: how to compile, how to run, how to test."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox import Limits

# In a compile argv: the chosen language standard's flags (`Variant.flags`).
VARIANT_PLACEHOLDER = "{variant...}"


# Every program starts from this environment and its runtime's `env`; nothing else reaches it.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "{workdir}",
    "TMPDIR": "{workdir}",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class Stage:
    """One step (compile or run): an argv template, extra environment, default limits.

    Templates use `{executable}` names from the runtime, `{workdir}`, `{source}` (the main file),
    `{entry}` (what the runtime's `Entry` finds to run), the stage's limits as `{memory_mb}`,
    `{heap_mb}` (the memory limit less `heap_reserve_bytes`, for a VM's heap flag) and
    `{stack_mb}`, and as whole elements `{sources...}` (every compilable file) and `{args...}`
    (request args).
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
    # False: no per-process address-space limit (RLIMIT_AS), for VMs (JVM, V8) that reserve far
    # more than they touch; the run's memory bound over all its processes still holds.
    address_space: bool = True
    # What the VM needs beside its heap (code, metadata, thread stacks, GC structures).
    heap_reserve_bytes: int = 0
    # Folders the compiler writes for itself (Go's build cache): not kept with its program.
    scratch: tuple[str, ...] = ()

    def heap_bytes(self, memory_bytes: int) -> int:
        """`{heap_mb}` in bytes: the memory limit less the reserve, and at least half of it."""
        return max(memory_bytes - self.heap_reserve_bytes, memory_bytes // 2)


@dataclass(frozen=True)
class Entry:
    """A runtime that runs a class, not a file (Java): each source's public class (`class_pattern`,
    group 1) names its file (`Main.java` holding `public class Solution` is written as
    `Solution.java`, the name javac demands), and `{entry}` is the class, in its package
    (`package_pattern`), of the first source, the main file first, that declares `main_pattern`.
    """

    class_pattern: str
    main_pattern: str
    package_pattern: str


@dataclass(frozen=True)
class Variant:
    """One of a runtime's language standards: a runtime of its own that shares everything but the
    `flags` that replace `{variant...}` in its compile (and precompile) argv."""

    name: str
    aliases: tuple[str, ...]
    flags: tuple[str, ...]


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
    text) and extra environment; `address_space` as a stage's; `warm`: kernels are forked
    from a warm interpreter of their own that has imported `warm.preload` (the argv up to
    `-c` starts it)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    kernel: str
    address_space: bool = True
    warm: Warm | None = None


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
    entry: Entry | None = None
    # The language standard this runtime is (`c++20`), and the names of its default runtime,
    # which select it on Piston's route with that standard as `version`.
    variant: str | None = None
    family: tuple[str, ...] = ()
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


def with_variant(runtime: Runtime, variant: Variant, selftest: SelfTest | None,
                 default: bool) -> Runtime:
    """The runtime of one language standard: `{variant...}` replaced by its flags. The default
    keeps the runtime's name and aliases and answers to the standard's names too."""
    stage = runtime.compile
    assert stage is not None

    def expand(argv: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(part for arg in argv
                     for part in (variant.flags if arg == VARIANT_PLACEHOLDER else (arg,)))
    precompiled = stage.precompiled
    if precompiled is not None:
        precompiled = dataclasses.replace(precompiled, argv=expand(precompiled.argv))
    compile_stage = dataclasses.replace(stage, argv=expand(stage.argv), precompiled=precompiled)
    names = ((runtime.name, (*runtime.aliases, variant.name, *variant.aliases)) if default
             else (variant.name, variant.aliases))
    return dataclasses.replace(runtime, name=names[0], aliases=names[1], compile=compile_stage,
                               selftest=selftest or runtime.selftest, variant=variant.name,
                               family=runtime.names)
