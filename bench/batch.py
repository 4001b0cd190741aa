"""Batch grading and the compile cache, through HTTP.

    .venv/bin/python bench/batch.py [--cases N] [--runs N]

Prints: a `POST /batch` of N cases (default 100) of a C++ and of a Python program (the C++ one
compiled beforehand, so the figure is the cases' alone) with the overhead per case (total / N);
then a C++ hello through `POST /cpp/execute`: the first, uncached compile, then p50 and p99 of
the cached request at concurrency 1 and req/s at concurrency 8, next to a Python print(1) for
scale.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from service import percentile, start_service, throughput, timed

CPP_SUM = ('#include <iostream>\nint main(){ long a, b; std::cin >> a >> b; '
           'std::cout << a + b << "\\n"; }\n')
PYTHON_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
CPP_HELLO = '#include <cstdio>\nint main(){ std::puts("1"); }\n'


def batch_body(language: str, code: str, cases: int) -> dict[str, Any]:
    return {"language": language, "files": [{"content": code}],
            "cases": [{"stdin": f"{i} {i}\n", "expected_output": f"{2 * i}\n"}
                      for i in range(cases)]}


def time_batch(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    reply = client.post("/batch", json=body).json()
    elapsed = time.perf_counter() - started
    assert reply["summary"]["accepted"] == len(body["cases"]), reply["summary"]
    return elapsed


def execute(client: httpx.Client, code: str) -> Callable[[], float]:
    def call() -> float:
        started = time.perf_counter()
        props = client.post("/cpp/execute",
                            json={"properties": {"code": code}}).json()["properties"]
        assert props["stdout"] == "1\n", props
        return (time.perf_counter() - started) * 1000
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100, help="cases per batch")
    parser.add_argument("--runs", type=int, default=50, help="samples of the cached hello")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir="/tmp"))
    os.chmod(work, 0o711)
    proc, url = start_service(work, {"SANDBOX_COMPILE_CACHE_DIR": str(work / "compiled")})
    try:
        client = httpx.Client(base_url=url, timeout=600)
        running = client.get("/").json()["runs"]["maxConcurrent"]
        print(f"{os.cpu_count()} CPUs, {running} runs at once, {options.cases} cases per batch\n")

        cpp = batch_body("c++", f"// {secrets.token_hex(8)}\n{CPP_SUM}", options.cases)
        compile_s = time_batch(client, {**cpp, "cases": cpp["cases"][:1]})
        print(f"{'c++ batch of 1 case, compile included':<46} {compile_s * 1000:8.0f} ms")
        for name, body in (("c++", cpp),
                           ("python", batch_body("python", PYTHON_SUM, options.cases))):
            total = time_batch(client, body)
            label = f"{name} batch of {options.cases} cases{' (compiled)' if name == 'c++' else ''}"
            print(f"{label:<46} {total * 1000:8.0f} ms   "
                  f"{total * 1000 / options.cases:6.2f} ms per case")
        print()

        hello = execute(client, f"// {secrets.token_hex(8)}\n{CPP_HELLO}")
        first = hello()
        samples = timed(hello, options.runs)
        rate = throughput(hello, options.runs * 2)
        print(f"{'c++ hello via HTTP, first (uncached) compile':<46} {first:8.2f} ms")
        print(f"{'c++ hello via HTTP, cached, concurrency 1':<46} "
              f"p50 {statistics.median(samples):8.2f} ms   p99 {percentile(samples, 0.99):8.2f} ms")
        print(f"{'c++ hello via HTTP, cached, concurrency 8':<46} {rate:8.1f} req/s")
        python = timed(lambda: client.post("/python/execute",
                                           json={"properties": {"code": "print(1)"}}),
                       options.runs)
        print(f"{'for scale: python print(1) via HTTP':<46} "
              f"p50 {statistics.median(python):8.2f} ms")
        cache = client.get("/").json()["compileCache"]
        print(f"\ncompile cache: {cache['entries']} entries, {cache['bytes']} bytes, "
              f"{cache['hits']} hits, {cache['misses']} misses")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
