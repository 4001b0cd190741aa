"""Latency and throughput of the execute route against floors measured in the same run.

    scripts/bench [--runs N]

Prints, for `print(1)` in Python and a C++ hello: p50/p99 through HTTP at concurrency 1, req/s
at concurrency 8, and the floor: a bare spawn of the same interpreter (or compiled binary, or
g++ plus the binary) without the service; then the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from service import percentile, start_service, throughput, timed

CPP_HELLO = '#include <cstdio>\nint main(){ std::puts("1"); }\n'
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "/usr/local/bin/python3"


def row(name: str, samples: list[float]) -> None:
    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
    print(f"{name:<46} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")


def rate_row(name: str, rps: float) -> None:
    print(f"{name:<46} {rps:8.1f} req/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100, help="samples per Python figure")
    parser.add_argument("--cpp-runs", type=int, default=10, help="samples per C++ figure")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir="/tmp"))
    os.chmod(work, 0o711)
    proc, url = start_service(work)
    try:
        client = httpx.Client(base_url=url, timeout=120)

        def http(language: str, code: str) -> Callable[[], None]:
            def call() -> None:
                props = client.post(f"/{language}/execute",
                                    json={"properties": {"code": code}}).json()["properties"]
                assert props["stdout"] == "1\n", props
            return call

        print(f"{os.cpu_count()} CPUs, Python floor {PYTHON}, {options.runs} samples\n")
        http_py = http("python", "print(1)")
        http_py()  # warm up
        py_http = timed(http_py, options.runs)
        py_rps = throughput(http_py, options.runs * 2, 8)
        py_floor = timed(lambda: subprocess.run([PYTHON, "-c", "print(1)"], check=True,
                                                stdout=subprocess.DEVNULL), options.runs)
        row("python print(1) via HTTP, concurrency 1", py_http)
        rate_row("python print(1) via HTTP, concurrency 8", py_rps)
        row("floor: bare spawn of python3 -c print(1)", py_floor)

        binary = work / "hello"
        source = work / "hello.cpp"
        source.write_text(CPP_HELLO)
        gxx = shutil.which("g++") or "/usr/bin/g++"
        compile_and_run = [gxx, "-std=gnu++17", "-O2", "-pipe", "-o", str(binary), str(source)]
        http_cpp = http("cpp", CPP_HELLO)
        cpp_http = timed(http_cpp, options.cpp_runs)
        cpp_rps = throughput(http_cpp, options.cpp_runs * 2, 8)
        def build_and_run() -> None:
            subprocess.run(compile_and_run, check=True)
            subprocess.run([str(binary)], check=True, stdout=subprocess.DEVNULL)

        cpp_build_floor = timed(build_and_run, options.cpp_runs)
        cpp_run_floor = timed(lambda: subprocess.run([str(binary)], check=True,
                                                     stdout=subprocess.DEVNULL) and None,
                              options.runs)
        print()
        row("c++ hello via HTTP (compile + run), conc. 1", cpp_http)
        rate_row("c++ hello via HTTP (compile + run), conc. 8", cpp_rps)
        row("floor: bare g++ + run of the binary", cpp_build_floor)
        row("floor: bare spawn of the compiled binary", cpp_run_floor)

        print("\nratios (p50 through HTTP / p50 of the floor):")
        print(f"  python print(1):            {statistics.median(py_http) / statistics.median(py_floor):6.2f}x")
        print(f"  c++ hello vs g++ + run:     {statistics.median(cpp_http) / statistics.median(cpp_build_floor):6.2f}x")
        print(f"  c++ hello vs binary spawn:  {statistics.median(cpp_http) / statistics.median(cpp_run_floor):6.2f}x")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
