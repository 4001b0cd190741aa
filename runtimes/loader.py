"""Loading runtime descriptions (`*.toml`) into validated, frozen `Runtime`s.

Every mistake fails at startup with the file and the key, e.g.
``runtimes/cpp.toml: run.limits.memory_bytes: must be a positive number``.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from sandbox import LIMIT_FIELDS, Limits, UnsafeName, resolve_inside

from . import toolchain
from .errors import RuntimeConfigError
from .runtime import (
    VARIANT_PLACEHOLDER,
    Entry,
    Precompiled,
    Runtime,
    SelfTest,
    SessionStage,
    Stage,
    Variant,
    Warm,
    with_variant,
)

BUILTIN_DIR = Path(__file__).resolve().parent
LIST_PLACEHOLDERS = ("{args...}", "{sources...}", VARIANT_PLACEHOLDER)
# Known to every template: the working directory, the main file, what `[entry]` finds to run,
# and the stage's limits (sizes in MiB, rounded down), for a VM's heap and stack flags.
FIXED_PLACEHOLDERS = ("workdir", "source", "entry", "memory_mb", "heap_mb", "stack_mb")
TOP_KEYS = {"name", "aliases", "source_file", "compile_sources", "executables", "version",
            "compile", "run", "selftest", "read_paths", "runtime", "session", "entry",
            "variants", "packages", "libraries"}
STAGE_KEYS = {"argv", "env", "limits", "memory_error_markers", "file_size_error_markers", "outputs",
              "precompiled", "warm", "address_space", "heap_reserve_bytes", "scratch"}


class _Reader:
    """Reads typed values out of one TOML table, naming file and key in every error."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, message: str) -> RuntimeConfigError:
        return RuntimeConfigError(f"{self.path}: {self.prefix}{key}: {message}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def str_list(self, key: str, default: list[str] | None = None, empty: bool = True) -> list[str]:
        value = self.table.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        if not value and not empty:
            raise self.fail(key, "must not be empty")
        return value

    def sub(self, key: str, required: bool = True) -> _Reader | None:
        value = self.table.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def size(self, key: str) -> int:
        value = self.table.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(key, "must be a whole number of bytes, 0 or more")
        return value

    def pattern(self, key: str) -> str:
        value = self.text(key)
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise self.fail(key, f"is not a regular expression: {exc}") from None
        if compiled.groups < 1:
            raise self.fail(key, "needs a group: what it finds")
        return value

    def str_map(self, key: str) -> dict[str, str]:
        value = self.table.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail(key, "must be a table of strings")
        return dict(value)


def _check_template(reader: _Reader, key: str, text: str, names: Iterable[str]) -> None:
    allowed = set(names) | set(FIXED_PLACEHOLDERS)
    for _literal, field, _spec, _conv in string.Formatter().parse(text):
        if field is not None and field not in allowed:
            raise reader.fail(key, f"unknown placeholder {{{field}}} in {text!r} "
                              f"(known: {', '.join(sorted(allowed))})")


def _fields(text: str) -> set[str]:
    return {field for _literal, field, _spec, _conv in string.Formatter().parse(text)
            if field is not None}


def _read_stage(reader: _Reader, key: str, executables: Mapping[str, str]) -> Stage:
    stage = reader.sub(key)
    assert stage is not None
    stage.check_keys(STAGE_KEYS)
    argv = stage.str_list("argv", empty=False)
    for i, arg in enumerate(argv):
        if arg not in LIST_PLACEHOLDERS:
            _check_template(stage, f"argv[{i}]", arg, executables)
        elif arg == VARIANT_PLACEHOLDER and key != "compile":
            raise stage.fail(f"argv[{i}]", f"{VARIANT_PLACEHOLDER} is for the compile only")
    env = stage.str_map("env")
    for name, value in env.items():
        _check_template(stage, f"env.{name}", value, executables)
    limits_table = stage.sub("limits", required=False)
    limits = Limits()
    if limits_table is not None:
        limits_table.check_keys(set(LIMIT_FIELDS))
        for field, value in limits_table.table.items():
            try:
                limits = limits.replace(**{field: value})
            except ValueError as exc:
                raise limits_table.fail(field, str(exc)) from None
    memory_markers = stage.str_list("memory_error_markers", default=[])
    file_size_markers = stage.str_list("file_size_error_markers", default=[])
    precompiled = None
    table = stage.sub("precompiled", required=False)
    if table is not None:
        table.check_keys({"headers", "argv", "include_env"})
        pc_argv = table.str_list("argv", empty=False)
        for i, arg in enumerate(pc_argv):
            if arg != VARIANT_PLACEHOLDER:
                _check_template(table, f"argv[{i}]", arg, [*executables, "header", "output"])
        precompiled = Precompiled(tuple(table.str_list("headers", empty=False)), tuple(pc_argv),
                                  table.text("include_env"))
    return Stage(tuple(argv), env, limits, tuple(memory_markers), tuple(file_size_markers),
                 precompiled, _read_warm(stage, key, argv, executables),
                 _workdir_names(stage, "outputs"),
                 address_space=stage.flag("address_space", True),
                 heap_reserve_bytes=stage.size("heap_reserve_bytes"),
                 scratch=_workdir_names(stage, "scratch"))


def _workdir_names(stage: _Reader, key: str) -> tuple[str, ...]:
    """Names of files or folders in the working directory, which must stay inside it."""
    names = stage.str_list(key, default=[])
    for i, name in enumerate(names):
        try:
            resolve_inside(Path("/"), name)
        except UnsafeName as exc:
            raise stage.fail(f"{key}[{i}]", str(exc)) from None
    return tuple(names)


def _read_warm(stage: _Reader, key: str, argv: list[str],
               executables: Mapping[str, str]) -> Warm | None:
    table = stage.sub("warm", required=False)
    if table is None:
        return None
    table.check_keys({"preload"})
    if key not in ("run", "session"):
        raise stage.fail("warm", "is for the run stage and the session only")
    # The interpreter's own argv (what comes before the script, or before -c and the kernel)
    # must be the same on every run.
    start = "{source}" if key == "run" else "-c"
    index = argv.index(start) if start in argv else 0
    if index < 1 or any(arg in LIST_PLACEHOLDERS or _fields(arg) - set(executables)
                        for arg in argv[:index]):
        raise stage.fail("warm", f'needs an argv with "{start}" after the interpreter and its '
                         "options, which may name executables only")
    preload = table.str_list("preload", default=[])
    for name in preload:
        if not all(part.isidentifier() for part in name.split(".")):
            raise table.fail("preload", f"{name!r} is not a module name")
    return Warm(tuple(preload))


def _resolve_executables(reader: _Reader) -> dict[str, str]:
    table = reader.sub("executables")
    assert table is not None
    resolved = {}
    for name in table.table:
        if not name.isidentifier() or name in FIXED_PLACEHOLDERS:
            raise table.fail(name, "must be an identifier other than workdir or source")
        candidates = table.str_list(name, empty=False)
        for candidate in candidates:
            if not os.path.isabs(candidate):
                raise table.fail(name, f"{candidate!r} must be an absolute path")
        # Absolute paths only, never a PATH lookup: a `python3` on PATH may be a slow shim.
        found = next((c for c in candidates if os.access(c, os.X_OK)), None)
        if found is None:
            raise table.fail(name, f"none of {', '.join(candidates)} is an executable here")
        resolved[name] = os.path.realpath(found)
    return resolved


def _command(table: _Reader, executables: Mapping[str, str]) -> list[str]:
    """A table's `argv`, checked and expanded (executables only: nothing runs in a jail)."""
    argv = table.str_list("argv", empty=False)
    for i, arg in enumerate(argv):
        _check_template(table, f"argv[{i}]", arg, executables)
    return [arg.format(**dict.fromkeys(FIXED_PLACEHOLDERS, ""), **executables) for arg in argv]


def _read_version(reader: _Reader, executables: Mapping[str, str]) -> str:
    table = reader.sub("version")
    assert table is not None
    table.check_keys({"argv", "pattern"})
    pattern = table.text("pattern", r"(\d+(?:\.\d+)+)")
    try:
        return toolchain.version(_command(table, executables), pattern)
    except toolchain.ToolchainError as exc:
        raise table.fail(exc.key, str(exc)) from exc


def _read_libraries(reader: _Reader, executables: Mapping[str, str]
                    ) -> tuple[tuple[str, str], ...]:
    """The libraries installed for the runtime's programs, as `[libraries].argv` prints them."""
    table = reader.sub("libraries", required=False)
    if table is None:
        return ()
    table.check_keys({"argv"})
    try:
        return toolchain.libraries(_command(table, executables))
    except toolchain.ToolchainError as exc:
        raise table.fail(exc.key, str(exc)) from exc


def _read_paths(reader: _Reader, executables: Mapping[str, str]) -> tuple[str, ...]:
    """What the runtime's programs may read and execute under Landlock: absolute folders or
    files, which must hold every resolved executable."""
    paths = reader.str_list("read_paths", empty=False)
    for path in paths:
        if not PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            raise reader.fail("read_paths", f"{path!r} must be an absolute path without '..'")
    for name, executable in executables.items():
        real = Path(executable).resolve()
        if not any(real.is_relative_to(Path(p).resolve()) for p in paths):
            raise reader.fail("read_paths", f"covers no folder of executable {name} ({real})")
    return tuple(paths)


def _read_session(reader: _Reader, path: Path, executables: Mapping[str, str]) -> SessionStage:
    session = reader.sub("session")
    assert session is not None
    session.check_keys({"argv", "kernel", "env", "address_space", "warm"})
    kernel_name = session.text("kernel")
    kernel_path = path.parent / kernel_name
    if "/" in kernel_name or not kernel_path.is_file():
        raise session.fail("kernel", f"no file {kernel_name!r} next to the runtime")
    argv = session.str_list("argv", empty=False)
    for i, arg in enumerate(argv):
        _check_template(session, f"argv[{i}]", arg, [*executables, "kernel"])
    return SessionStage(tuple(argv), session.str_map("env"), kernel_path.read_text(),
                        session.flag("address_space", True),
                        _read_warm(session, "session", argv, executables))


def _read_entry(reader: _Reader) -> Entry | None:
    table = reader.sub("entry", required=False)
    if table is None:
        return None
    table.check_keys({"class_pattern", "main_pattern", "package_pattern"})
    main = table.text("main_pattern")
    try:
        re.compile(main)
    except re.error as exc:
        raise table.fail("main_pattern", f"is not a regular expression: {exc}") from None
    return Entry(table.pattern("class_pattern"), main, table.pattern("package_pattern"))


def _read_variants(reader: _Reader, names: set[str]) -> list[tuple[Variant, SelfTest | None]]:
    value = reader.table.get("variants", [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise reader.fail("variants", "must be an array of tables ([[variants]])")
    variants = []
    for i, table in enumerate(value):
        variant = _Reader(reader.path, table, f"variants[{i}].")
        variant.check_keys({"name", "aliases", "flags", "selftest"})
        name = variant.text("name")
        aliases = variant.str_list("aliases", default=[])
        for taken in (name, *aliases):
            if taken in names:
                raise variant.fail("name" if taken == name else "aliases",
                                   f"{taken!r} is already a name of this runtime")
            names.add(taken)
        selftest = variant.sub("selftest", required=False)
        variants.append((Variant(name, tuple(aliases), tuple(variant.str_list("flags"))),
                         _read_selftest(selftest) if selftest is not None else None))
    return variants


def _read_selftest(table: _Reader) -> SelfTest:
    table.check_keys({"code", "stdout", "stdin"})
    return SelfTest(code=table.text("code"), stdout=str(table.table.get("stdout", "")),
                    stdin=str(table.table.get("stdin", "")))


def load_runtime(path: Path) -> Runtime:
    """Loads and validates one runtime description, resolving its toolchain and version; of a
    runtime with language standards (`[[variants]]`), the default one (see `load_variants`)."""
    return load_variants(path)[0]


def load_variants(path: Path) -> tuple[Runtime, ...]:
    """Every runtime that one description makes: itself, or one per language standard, the
    default first."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RuntimeConfigError(f"{path}: {exc}") from exc
    reader = _Reader(path, data)
    reader.check_keys(TOP_KEYS)
    name = reader.text("name")
    aliases = reader.str_list("aliases", default=[])
    reader.str_list("packages", default=[])  # read by runtimes/packages.py, for installing
    source_file = reader.text("source_file")
    if "/" in source_file:
        raise reader.fail("source_file", "must be a plain file name")
    executables = _resolve_executables(reader)
    compile_stage = _read_stage(reader, "compile", executables) if "compile" in data else None
    run_stage = _read_stage(reader, "run", executables)
    compile_sources = reader.str_list("compile_sources", default=[])
    if compile_stage is not None and "{sources...}" in compile_stage.argv and not compile_sources:
        raise reader.fail("compile_sources", "is needed when compile.argv uses {sources...}")
    read_paths = _read_paths(reader, executables)
    selftest = reader.sub("selftest")
    assert selftest is not None
    runtime = Runtime(
        name=name,
        aliases=tuple(aliases),
        version=_read_version(reader, executables),
        source_file=source_file,
        executables=executables,
        compile=compile_stage,
        run=run_stage,
        compile_sources=tuple(compile_sources),
        read_paths=read_paths,
        toolchain=reader.text("runtime") if "runtime" in data else None,
        session=_read_session(reader, path, executables) if "session" in data else None,
        libraries=_read_libraries(reader, executables),
        selftest=_read_selftest(selftest),
        path=path,
        entry=_read_entry(reader),
    )
    variants = _read_variants(reader, set(runtime.names))
    uses_variant = compile_stage is not None and VARIANT_PLACEHOLDER in compile_stage.argv
    if not variants:
        if uses_variant:
            raise reader.fail("variants", f"are needed when compile.argv uses {VARIANT_PLACEHOLDER}")
        return (runtime,)
    if not uses_variant:
        raise reader.fail("variants", f"need {VARIANT_PLACEHOLDER} in compile.argv")
    return tuple(with_variant(runtime, variant, own_test, i == 0)
                 for i, (variant, own_test) in enumerate(variants))


def load_runtimes(*folders: Path) -> tuple[Runtime, ...]:
    """Every `*.toml` in `folders` (the built-in folder when none is given), checking that no
    two runtimes answer to the same name or alias."""
    runtimes: list[Runtime] = []
    owners: dict[str, Path] = {}
    for folder in folders or (BUILTIN_DIR,):
        paths = sorted(Path(folder).glob("*.toml"))
        if not paths:
            raise RuntimeConfigError(f"{folder}: no runtime files (*.toml) here")
        for path in paths:
            for runtime in load_variants(path):
                for name in runtime.names:
                    if name in owners:
                        raise RuntimeConfigError(
                            f"{path}: name {name!r} is already used by {owners[name]}")
                    owners[name] = path
                runtimes.append(runtime)
    return tuple(runtimes)
