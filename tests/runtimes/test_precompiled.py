"""Precompiled system headers: built once by the service, used by every sandboxed compile."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from runtimes import (
    Registry,
    RunRequest,
    RuntimesError,
    SourceFile,
    build_precompiled,
    execute,
    load_runtimes,
    stage_limits,
)
from sandbox import Sandbox

from ..utils import Server

pytestmark = pytest.mark.gxx
STDCXX = b"#include <bits/stdc++.h>\nint main(){std::vector<int> v{3,1,2};" \
         b"std::sort(v.begin(),v.end());for(int x:v)std::cout<<x;std::cout<<'\\n';}\n"


@pytest.fixture
def folder(work_root: Path) -> Path:
    # Beside the work root: runs' uids can reach it (the parent is 0711), as they must.
    return work_root.parent / "precompiled"


def test_headers_are_built_once_readable_and_found_by_the_compiler(folder: Path) -> None:
    cpp = Registry(load_runtimes()).find("c++")
    ready = build_precompiled(cpp, folder)
    assert ready.compile is not None and cpp.compile is not None
    include = Path(ready.compile.env["CPLUS_INCLUDE_PATH"])
    header = include / "bits" / "stdc++.h.gch"
    assert include.parent == folder and str(include) in ready.read_paths
    # Readable by every run, writable by none but the service.
    assert stat.S_IMODE(header.stat().st_mode) == 0o644
    assert stat.S_IMODE(include.stat().st_mode) == 0o755
    assert [p.name for p in header.parent.iterdir()] == ["stdc++.h.gch"]  # nothing partial
    built_at = header.stat().st_mtime_ns
    assert build_precompiled(cpp, folder) == ready
    assert header.stat().st_mtime_ns == built_at
    # With the compile's own flags, g++ takes the precompiled header ("!" in its -H trace).
    gxx = ready.executables["gxx"]
    traced = subprocess.run([gxx, "-std=gnu++17", "-O2", "-H", "-x", "c++", "-", "-o",
                             os.devnull], input=STDCXX, capture_output=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "CPLUS_INCLUDE_PATH": str(include)})
    assert f"! {header}".encode() in traced.stderr


def test_a_sandboxed_compile_uses_them_and_the_program_runs(folder: Path,
                                                           sandbox: Sandbox) -> None:
    ready = build_precompiled(Registry(load_runtimes()).find("c++"), folder)
    run_limits, compile_limits = stage_limits(ready, ready.run.limits)
    execution = asyncio.run(execute(sandbox, RunRequest(
        ready, (SourceFile("main.cpp", STDCXX),), run_limits, compile_limits)))
    assert execution.compile is not None and execution.compile.ok, execution.compile
    assert execution.run is not None and execution.run.stdout == b"123\n"


def test_the_service_builds_them_in_the_background_and_says_so(server: Server) -> None:
    deadline = time.monotonic() + 120
    with server.client() as client:
        while (status := client.get("/").json()["precompiledHeaders"]) == "being built":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # One per C++ standard: a header precompiled under -std=gnu++17 is ignored by a
        # -std=gnu++20 compile.
        assert status == "c++: bits/stdc++.h; c++20: bits/stdc++.h; c++23: bits/stdc++.h"
        reply = client.post("/cpp/execute", json={"properties": {"code": STDCXX.decode()}})
    assert reply.json()["properties"]["stdout"] == "123\n"


def test_a_missing_header_is_an_error_and_leaves_no_half_written_file(folder: Path) -> None:
    cpp = Registry(load_runtimes()).find("c++")
    assert cpp.compile is not None and cpp.compile.precompiled is not None
    broken = dataclasses.replace(cpp.compile.precompiled, headers=("no/such/header.h",))
    bad = dataclasses.replace(cpp, compile=dataclasses.replace(cpp.compile, precompiled=broken))
    with pytest.raises(RuntimesError, match="does not find <no/such/header.h>"):
        build_precompiled(bad, folder)
    leftovers = [p for p in folder.rglob("*") if p.is_file()]
    assert leftovers == []
    shutil.rmtree(folder, ignore_errors=True)


def test_a_header_someone_else_could_have_written_is_built_again(folder: Path) -> None:
    cpp = Registry(load_runtimes()).find("c++")
    ready = build_precompiled(cpp, folder)
    assert ready.compile is not None
    header = Path(ready.compile.env["CPLUS_INCLUDE_PATH"]) / "bits" / "stdc++.h.gch"
    header.write_bytes(b"planted")
    os.chmod(header, 0o666)  # writable by anyone: it cannot be trusted
    build_precompiled(cpp, folder)
    assert header.read_bytes() != b"planted"
    assert stat.S_IMODE(header.stat().st_mode) == 0o644
