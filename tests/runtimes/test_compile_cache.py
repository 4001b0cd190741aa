"""The compile cache: hits without a compiler, misses, one compile for concurrent requests, the
bound in bytes, and programs that cannot change what is stored."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from runtimes import (
    CompileCache,
    CompileCacheError,
    Compiled,
    Execution,
    ProducedFile,
    Registry,
    RunRequest,
    SourceFile,
    cache_exposure,
    compile_program,
    execute,
    load_runtimes,
    stage_limits,
)
from runtimes.compile_cache import TEMP_PREFIX, compile_key
from sandbox import Jail, Limits, Outcome, Process, RunResult, Sandbox

from ..utils import run_folders

REGISTRY = Registry(load_runtimes())
CPP = REGISTRY.find("c++")
GXX = CPP.executables["gxx"]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CompileCache]:
    cache = CompileCache(tmp_path / "compiled", 64 << 20)
    yield cache
    cache.close()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The argv[0] of every program started in a jail from now on."""
    programs: list[str] = []
    original = Jail.start

    async def counting(self: Jail, argv: Sequence[str], *args: Any, **kwargs: Any) -> Process:
        programs.append(argv[0])
        return await original(self, argv, *args, **kwargs)

    monkeypatch.setattr(Jail, "start", counting)
    return programs


def cpp(code: str) -> list[SourceFile]:
    # A comment of its own keeps another test's (or another run's) entry from answering.
    return [SourceFile("main.cpp", f"// {secrets.token_hex(8)}\n{code}".encode())]


async def run_cpp(sandbox: Sandbox, files: list[SourceFile], cache: CompileCache | None,
                  args: tuple[str, ...] = (), compile_wall_s: float | None = None) -> Execution:
    run_limits, compile_limits = stage_limits(CPP, Limits(memory_bytes=4 << 30))
    assert compile_limits is not None
    if compile_wall_s is not None:
        compile_limits = compile_limits.replace(wall_timeout_s=compile_wall_s)
    return await execute(sandbox, RunRequest(CPP, tuple(files), run_limits, compile_limits,
                                             args=args), cache=cache)


HELLO = '#include <cstdio>\nint main(){ std::puts("hello"); }\n'


@pytest.mark.gxx
def test_a_second_identical_request_is_a_hit_without_a_compiler(
        sandbox: Sandbox, cache: CompileCache, started: list[str]) -> None:
    files = cpp('#include <cstdio>\n#include <sys/stat.h>\n#include <unistd.h>\n'
                'int main(){ struct stat s; stat("main", &s);\n'
                '  std::printf("%o %d\\n", s.st_mode & 0777, s.st_uid == getuid()); }\n')
    first = asyncio.run(run_cpp(sandbox, files, cache))
    second = asyncio.run(run_cpp(sandbox, files, cache))
    assert first.compile is not None and first.compile.ok and not first.compile_cached
    assert second.compile_cached
    # The stored result of the first compile, times and all: no compiler ran for the second.
    assert second.compile == first.compile
    assert started.count(GXX) == 1 and len(started) == 3
    # The copy in the jail is the run's own executable file.
    assert first.run is not None and second.run is not None
    assert first.run.stdout == second.run.stdout == b"700 1\n"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stores, stats.entries) == (1, 1, 1, 1)


@pytest.mark.gxx
def test_different_sources_are_misses(sandbox: Sandbox, cache: CompileCache,
                                      started: list[str]) -> None:
    one = asyncio.run(run_cpp(sandbox, cpp(HELLO), cache))
    other = asyncio.run(run_cpp(sandbox, cpp(HELLO), cache))
    assert not one.compile_cached and not other.compile_cached
    assert started.count(GXX) == 2
    assert (cache.stats().misses, cache.stats().entries) == (2, 2)


def test_the_key_covers_names_contents_main_and_the_runtime() -> None:
    files = [("main.cpp", b"int main(){}"), ("a.h", b"")]
    key = compile_key(CPP, files, "main.cpp")
    assert key == compile_key(CPP, list(files), "main.cpp")
    assert len({key, compile_key(CPP, [("main.cpp", b"int main(){} "), ("a.h", b"")], "main.cpp"),
                compile_key(CPP, [("main.cpp", b"int main(){}"), ("b.h", b"")], "main.cpp"),
                compile_key(CPP, files, "a.h"),
                compile_key(CPP, files[:1], "main.cpp")}) == 5
    # Length-prefixed: moving bytes from a name into the content is another key.
    assert compile_key(CPP, [("ab", b"c")], "ab") != compile_key(CPP, [("a", b"bc")], "ab")


@pytest.mark.gxx
def test_concurrent_identical_requests_compile_once(sandbox: Sandbox, cache: CompileCache,
                                                    started: list[str]) -> None:
    files = cpp(HELLO)

    async def four() -> list[Execution]:
        return await asyncio.gather(*(run_cpp(sandbox, files, cache) for _ in range(4)))

    executions = asyncio.run(four())
    assert started.count(GXX) == 1
    assert sorted(e.compile_cached for e in executions) == [False, True, True, True]
    assert all(e.run is not None and e.run.stdout == b"hello\n" for e in executions)
    assert cache.stats().stores == 1
    assert run_folders(sandbox.config.work_root) == []


@pytest.mark.gxx
def test_a_program_that_rewrites_its_binary_does_not_change_the_cache(
        sandbox: Sandbox, cache: CompileCache) -> None:
    # It replaces its own `main` with a script and tries to reach the cache's folder.
    files = cpp('#include <cstdio>\n#include <dirent.h>\n#include <sys/stat.h>\n'
                '#include <unistd.h>\n'
                'int main(int argc, char** argv){\n'
                '  unlink("main");\n'
                '  FILE* f = std::fopen("main", "w");\n'
                '  if (f && std::fputs("#!/bin/sh\\necho tampered\\n", f) >= 0\n'
                '      && std::fclose(f) == 0 && chmod("main", 0755) == 0)\n'
                '    std::printf("replaced; ");\n'
                '  std::printf("original %s\\n", opendir(argv[1]) ? "reached" : "kept out");\n'
                '}\n')
    folder = str(cache.folder)
    executions = [asyncio.run(run_cpp(sandbox, files, cache, args=(folder,))) for _ in range(3)]
    assert [e.compile_cached for e in executions] == [False, True, True]
    assert [e.run.stdout if e.run else None for e in executions] == [b"replaced; original kept out\n"] * 3
    key = compile_key(CPP, [(f.name, f.content) for f in files], "main.cpp", (folder,))
    stored = asyncio.run(cache.get(key))
    assert stored is not None
    assert [f.name for f in stored.files] == ["main"] and stored.files[0].executable
    assert stored.files[0].content.startswith(b"\x7fELF")


@pytest.mark.gxx
def test_failed_compiles_are_not_stored(sandbox: Sandbox, cache: CompileCache) -> None:
    files = cpp("int main() { return undeclared; }")
    executions = [asyncio.run(run_cpp(sandbox, files, cache)) for _ in range(2)]
    assert [(e.compile_cached, e.run) for e in executions] == [(False, None), (False, None)]
    assert all(e.compile is not None and e.compile.outcome is Outcome.NONZERO_EXIT
               for e in executions)
    assert cache.stats().stores == 0


@pytest.mark.gxx
def test_a_stored_compile_is_not_used_under_a_tighter_compile_limit(
        sandbox: Sandbox, cache: CompileCache) -> None:
    files = cpp("#include <bits/stdc++.h>\nint main() {}")
    first = asyncio.run(run_cpp(sandbox, files, cache))
    assert first.compile is not None and first.compile.ok
    tight = asyncio.run(run_cpp(sandbox, files, cache, compile_wall_s=0.05))
    assert not tight.compile_cached and tight.run is None
    assert tight.compile is not None and tight.compile.outcome is Outcome.WALL_TIMEOUT


@pytest.mark.gxx
def test_compile_program_keeps_the_binary_for_other_jails(sandbox: Sandbox) -> None:
    files = cpp(HELLO)
    run_limits, _ = stage_limits(CPP, Limits())

    async def compile_then_run() -> tuple[Compiled, list[Execution]]:
        compiled = await compile_program(sandbox, RunRequest(CPP, tuple(files), run_limits))
        runs = await asyncio.gather(*(execute(sandbox, RunRequest(CPP, tuple(files), run_limits,
                                                                  compiled=compiled))
                                      for _ in range(3)))
        return compiled, runs

    compiled, runs = asyncio.run(compile_then_run())
    assert [f.name for f in compiled.files] == ["main"] and not compiled.cached
    assert [r.run.stdout if r.run else None for r in runs] == [b"hello\n"] * 3
    assert all(r.compile == compiled.result for r in runs)


# ---- the store itself -----------------------------------------------------------------------

def entry(size: int) -> Compiled:
    result = RunResult(Outcome.OK, 0, None, b"", b"warning", b"warning", False, False, 0.5, 0.4,
                       1 << 20)
    return Compiled(result, (ProducedFile("main", os.urandom(size), True),
                             ProducedFile("lib/data", b"x", False)))


def key(n: int) -> str:
    return f"{n:064x}"


def test_entries_round_trip(cache: CompileCache) -> None:
    stored = entry(1000)
    assert asyncio.run(cache.put(key(1), stored))
    loaded = asyncio.run(cache.get(key(1)))
    assert loaded == Compiled(stored.result, stored.files, cached=True)
    assert asyncio.run(cache.get(key(2))) is None
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)
    assert os.stat(cache.folder).st_mode & 0o777 == 0o700
    assert os.stat(cache.folder / key(1)).st_mode & 0o777 == 0o600


def test_least_recently_used_entries_are_evicted(tmp_path: Path) -> None:
    probe = CompileCache(tmp_path / "probe", 1 << 20)
    asyncio.run(probe.put(key(0), entry(4000)))
    size = probe.stats().bytes
    probe.close()
    cache = CompileCache(tmp_path / "compiled", 2 * size + size // 2)

    async def fill() -> None:
        await cache.put(key(1), entry(4000))
        await asyncio.sleep(0.05)  # mtimes come from a coarse clock
        await cache.put(key(2), entry(4000))
        await asyncio.sleep(0.05)
        assert await cache.get(key(1)) is not None  # 1 is now used more recently than 2
        await asyncio.sleep(0.05)
        await cache.put(key(3), entry(4000))

    asyncio.run(fill())
    assert sorted(p.name for p in cache.folder.iterdir()) == [key(1), key(3)]
    stats = cache.stats()
    assert (stats.entries, stats.evictions) == (2, 1) and stats.bytes <= stats.capacity_bytes
    # An entry larger than the whole cache is not stored.
    assert not asyncio.run(cache.put(key(4), entry(3 * size)))
    cache.close()


def test_a_damaged_entry_is_a_miss_and_removed(cache: CompileCache) -> None:
    asyncio.run(cache.put(key(1), entry(100)))
    path = cache.folder / key(1)
    path.write_bytes(path.read_bytes()[:-10])
    assert asyncio.run(cache.get(key(1))) is None
    assert not path.exists()


def test_an_interrupted_store_leaves_nothing_but_a_temporary_file_removed_at_start(
        tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    CompileCache(folder, 1 << 20).close()
    (folder / f"{TEMP_PREFIX}0123").write_bytes(b"half an entry")
    cache = CompileCache(folder, 1 << 20)
    assert list(folder.iterdir()) == [] and cache.stats().entries == 0
    cache.close()


def test_keys_are_only_sha256_hex(cache: CompileCache) -> None:
    with pytest.raises(ValueError):
        asyncio.run(cache.get("../etc/passwd"))


@pytest.mark.root
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    with pytest.raises(CompileCacheError, match="belongs to uid 65534"):
        CompileCache(folder, 1 << 20)


def test_a_symlink_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "compiled").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CompileCacheError):
        CompileCache(tmp_path / "compiled", 1 << 20)


def test_the_cache_must_be_out_of_reach_of_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    work_root = sandbox.config.work_root
    assert "inside the work root" in str(cache_exposure(work_root / "cache", sandbox, ()))
    if sandbox.layers.active("per_run_uid"):
        assert cache_exposure(tmp_path / "cache", sandbox, ("/usr",)) is None
    elif sandbox.layers.landlock_abi:
        assert "which runs may read" in str(
            cache_exposure(Path("/usr/cache"), sandbox, ("/usr",)))
    else:
        assert "Landlock is off" in str(cache_exposure(tmp_path / "cache", sandbox, ()))


def test_an_unused_key_lock_is_forgotten(cache: CompileCache) -> None:
    async def hold() -> None:
        async with cache.lock(key(1)):
            await asyncio.sleep(0)

    asyncio.run(hold())
    assert cache._locks == {}
