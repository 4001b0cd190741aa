"""Grading at speed: every figure of the grading targets, in one run, beside its floor.

    .venv/bin/python bench/grading.py [--runs N] [--cases N]

Starts the service twice (Python forked from its warm interpreter, the default; and with
SANDBOX_WARM_PYTHON=false, every run's interpreter started afresh) and measures through HTTP:
`print(1)` at concurrency 1 (p50, p99) and 8 (req/s) in each; a cached C++ hello the same way;
`POST /batch` of N cases of a C++ and of a Python program (per-case overhead: the batch's
time over N, the C++ compile done beforehand); the compile of a `<bits/stdc++.h>` program with
the precompiled header and without (a service with SANDBOX_PRECOMPILE=false). Floors, measured
in the same run without the service: a bare spawn of `python3 -c 'print(1)'`, a fork of a
warmed Python that runs `print(1)`, a spawn of the compiled hello, and bare `g++`. Each figure
is printed with its target and whether it is met.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from service import percentile, start_service, throughput, timed

PYTHON = "/usr/local/bin/python3" if os.path.exists("/usr/local/bin/python3") else "/usr/bin/python3"
CPP_HELLO = '#include <cstdio>\nint main(){ std::puts("1"); }\n'
CPP_SUM = ('#include <iostream>\nint main(){ long a, b; std::cin >> a >> b; '
           'std::cout << a + b << "\\n"; }\n')
PYTHON_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
STDCXX = ('#include <bits/stdc++.h>\nusing namespace std;\nint main(){ vector<int> v{3, 1, 2}; '
          'sort(v.begin(), v.end()); cout << v[0] << "\\n"; }\n')


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, name: str, figure: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("met" if met else "NOT met")
        self.rows.append((name, figure, f"{target} {verdict}".strip()))
        print(f"{name:<58} {figure:<30} {target} {verdict}", flush=True)


def p50_p99(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} / {percentile(samples, 0.99):.2f} ms"


def execute(client: httpx.Client, language: str, code: str, stdout: str = "1\n"
            ) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        props: dict[str, Any] = client.post(
            f"/{language}/execute", json={"properties": {"code": code}}).json()["properties"]
        assert props["stdout"] == stdout, props
        return props
    return call


def batch(client: httpx.Client, language: str, code: str, cases: int) -> float:
    body = {"language": language, "files": [{"content": code}],
            "cases": [{"stdin": f"{i} {i}\n", "expected_output": f"{2 * i}\n"}
                      for i in range(cases)]}
    started = time.perf_counter()
    reply = client.post("/batch", json=body).json()
    elapsed = time.perf_counter() - started
    assert reply["summary"]["accepted"] == cases, reply["summary"]
    return elapsed


def warm_fork_floor(runs: int) -> list[float]:
    """A pre-started Python with the same modules imported forks, the child runs print(1) into
    /dev/null and exits; the parent waits. No confinement, no HTTP."""
    code = (
        "import os, sys, time, json, random, collections, re\n"
        "program = compile('print(1)', 'main.py', 'exec')\n"
        "null = os.open(os.devnull, os.O_WRONLY)\n"
        f"for _ in range({runs}):\n"
        "    started = time.perf_counter()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.dup2(null, 1)\n"
        "        exec(program, {'__name__': '__main__'})\n"
        "        sys.stdout.flush()\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    print((time.perf_counter() - started) * 1000, file=sys.stderr)\n")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    return [float(line) for line in done.stderr.split()]


def wait_for_precompiled(client: httpx.Client) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = str(client.get("/").json()["precompiledHeaders"])
        if state != "being built":
            return state
        time.sleep(0.5)
    raise TimeoutError("the precompiled header was not built in 5 minutes")


def compile_ms(client: httpx.Client) -> float:
    """Wall time of the compile stage of a never-seen <bits/stdc++.h> program."""
    props = execute(client, "cpp", f"// {secrets.token_hex(8)}\n{STDCXX}")()
    return float(props["compile"]["executionTimeInMilliseconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="samples per latency figure")
    parser.add_argument("--cases", type=int, default=100, help="cases per batch")
    parser.add_argument("--compiles", type=int, default=3, help="samples per compile figure")
    options = parser.parse_args()
    runs = options.runs
    work = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir="/tmp"))
    os.chmod(work, 0o711)
    table = Table()
    print(f"{os.cpu_count()} CPUs, {runs} samples per latency figure, Python {PYTHON}\n")
    services = []
    try:
        warm_proc, warm_url = start_service(
            work / "warm", {"SANDBOX_COMPILE_CACHE_DIR": str(work / "warm-compiled")})
        services.append(warm_proc)
        fresh_proc, fresh_url = start_service(
            work / "fresh", {"SANDBOX_WARM_PYTHON": "false", "SANDBOX_PRECOMPILE": "false",
                             "SANDBOX_COMPILE_CACHE_DIR": str(work / "fresh-compiled")})
        services.append(fresh_proc)
        warm = httpx.Client(base_url=warm_url, timeout=600)
        fresh = httpx.Client(base_url=fresh_url, timeout=600)
        print(f"precompiled headers: {wait_for_precompiled(warm)}\n")

        for name, client, p50_target, rate_target in (
                ("warm", warm, 8.0, 200.0), ("fresh", fresh, None, None)):
            call = execute(client, "python", "print(1)")
            call()
            samples = timed(call, runs)
            rate = throughput(call, runs * 2)
            p50 = statistics.median(samples)
            table.add(f"Python print(1), {name}, concurrency 1 (p50 / p99)", p50_p99(samples),
                      f"<= {p50_target:g} ms" if p50_target else "",
                      p50 <= p50_target if p50_target else None)
            table.add(f"Python print(1), {name}, concurrency 8", f"{rate:.1f} req/s",
                      f">= {rate_target:g} req/s" if rate_target else "",
                      rate >= rate_target if rate_target else None)
        spawn = timed(lambda: subprocess.run([PYTHON, "-c", "print(1)"], check=True,
                                                  stdout=subprocess.DEVNULL), runs)
        table.add("floor: bare spawn of python3 -c 'print(1)'", p50_p99(spawn))
        table.add("floor: fork of a warmed python running print(1)",
                  p50_p99(warm_fork_floor(runs)))
        print()

        hello = execute(warm, "cpp", f"// {secrets.token_hex(8)}\n{CPP_HELLO}")
        hello()  # compiles once; every later request is a cache hit
        samples = timed(hello, runs)
        rate = throughput(hello, runs * 2)
        p50 = statistics.median(samples)
        table.add("C++ hello, cached compile, concurrency 1 (p50 / p99)", p50_p99(samples),
                  "<= 5 ms", p50 <= 5)
        table.add("C++ hello, cached compile, concurrency 8", f"{rate:.1f} req/s",
                  ">= 300 req/s", rate >= 300)
        binary, source = work / "hello", work / "hello.cpp"
        source.write_text(CPP_HELLO)
        gxx = shutil.which("g++") or "/usr/bin/g++"
        subprocess.run([gxx, "-O2", "-o", str(binary), str(source)], check=True)
        table.add("floor: bare spawn of the compiled hello", p50_p99(timed(
            lambda: subprocess.run([str(binary)], check=True, stdout=subprocess.DEVNULL), runs)))
        print()

        cases = options.cases
        cpp_sum = f"// {secrets.token_hex(8)}\n{CPP_SUM}"
        batch(warm, "c++", cpp_sum, 1)  # the compile, cached for the batch below
        for name, language, code, target in (("C++", "c++", cpp_sum, 5.0),
                                             ("Python", "python", PYTHON_SUM, 8.0)):
            per_case = batch(warm, language, code, cases) * 1000 / cases
            table.add(f"{name} batch of {cases} cases, per case", f"{per_case:.2f} ms",
                      f"<= {target:g} ms", per_case <= target)
        print()

        with_header = [compile_ms(warm) for _ in range(options.compiles)]
        without = [compile_ms(fresh) for _ in range(options.compiles)]
        std_source = work / "std.cpp"
        std_source.write_text(STDCXX)
        bare = timed(lambda: subprocess.run(
            [gxx, "-std=gnu++17", "-O2", "-o", str(work / "std"), str(std_source)], check=True),
            options.compiles)
        best = statistics.median(with_header) / 1000
        table.add("<bits/stdc++.h> compile, precompiled header (median)", f"{best:.2f} s",
                  "<= 0.7 s", best <= 0.7)
        table.add("<bits/stdc++.h> compile, no precompiled header (median)",
                  f"{statistics.median(without) / 1000:.2f} s")
        table.add("floor: bare g++ -std=gnu++17 -O2 of it (median)",
                  f"{statistics.median(bare) / 1000:.2f} s")
    finally:
        for proc in services:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print("\n| figure | measured | target |\n|---|---|---|")
    for name, figure, wanted in table.rows:
        print(f"| {name} | {figure} | {wanted} |")


if __name__ == "__main__":
    main()
