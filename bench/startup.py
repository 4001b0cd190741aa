"""Startup time: from starting the service's process to its first 200 from /health.

    .venv/bin/python bench/startup.py [--runs N]

Each round starts `python -m adapter serve` on a free port with a fresh work root and polls
/health every 5 ms; it prints the median and max of: the port answering at all (imports,
layer probes, runtime versions) and /health answering 200 (the self-tests: a Python program and
a C++ compile and run through the whole sandbox). The floor is `python -c "import adapter"`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_start() -> tuple[float, float]:
    """Seconds until the port answered, and until /health said 200."""
    parent = Path(tempfile.mkdtemp(prefix="bench-startup-", dir="/tmp"))
    parent.chmod(0o711)
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
           "SANDBOX_WORK_ROOT": str(parent / "work"), "SANDBOX_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "adapter", "serve"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answered = 0.0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit("the service exited during startup")
                try:
                    status = client.get("/health").status_code
                except httpx.TransportError:
                    time.sleep(0.005)
                    continue
                answered = answered or time.perf_counter() - started
                if status == 200:
                    return answered, time.perf_counter() - started
                time.sleep(0.005)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    floor = []
    for _ in range(options.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import adapter"], cwd=REPO, check=True)
        floor.append(time.perf_counter() - started)
    starts = [one_start() for _ in range(options.runs)]
    rows = [("floor: python -c 'import adapter'", floor),
            ("port answers (probes, versions)", [a for a, _ in starts]),
            ("/health is 200 (self-tests passed)", [h for _, h in starts])]
    print(f"{options.runs} starts, {os.cpu_count()} CPUs, as uid {os.geteuid()}")
    for label, values in rows:
        print(f"{label:<40} median {statistics.median(values) * 1000:7.0f} ms"
              f"   max {max(values) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
