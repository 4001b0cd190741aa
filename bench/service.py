"""What the benchmarks share: the service started on a free port, and percentiles."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(work: Path, env: Mapping[str, str] | None = None,
                  cgroup: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m adapter serve` on a free port with its work root in `work`, once /health is
    200; a long waiting line, so that concurrency figures measure runs, not 503s. `cgroup`: a
    memory cgroup the service moves itself into first."""
    port = free_port()
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
                "SANDBOX_WORK_ROOT": str(work / "runs"), "SANDBOX_LOG_LEVEL": "warning",
                "SANDBOX_MAX_QUEUED_RUNS": "1000", **(env or {})}
    argv = [sys.executable, "-m", "adapter", "serve"]
    if cgroup is not None:
        argv = ["/bin/sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *argv]
    proc = subprocess.Popen(argv, cwd=REPO, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the service did not become healthy")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(action: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds each of `runs` calls of `action` took, one after another."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput(action: Callable[[], object], runs: int, concurrency: int = 8) -> float:
    """Calls per second of `action`, `runs` of them, `concurrency` at a time."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: action(), range(runs)))
    return runs / (time.perf_counter() - started)
