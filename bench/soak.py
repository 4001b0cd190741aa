"""Soak: clients for minutes against one service, a tenth of their requests hostile.

    .venv/bin/python bench/soak.py [--minutes 5] [--clients 8] [--hostile 0.1]

Every reply is checked (status 200 and the outcome its program must have: 0 5xx, 0 surprises);
the service's resident memory and descriptors are sampled every 10 s; at the end nothing of
any run may be left: processes of the run uids, working directories, tmpfs mounts, cgroups.
As root the service runs inside a memory cgroup of its own (made under this process's, removed
afterwards), so the memory programs here hold is bounded whatever the service does.

Prints the request mix with counts and latency medians and p99, the RSS of the first and the
last minute (the figure to watch: flat within 20 MB), and what was left.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.service import percentile, start_service
from tests.utils import IS_ROOT, memory_cgroup

GiB = 1 << 30
SERVICE_MEMORY_BYTES = 4 * GiB
RUN_UIDS = range(60000, 61000)  # the service's default range


@dataclass(frozen=True)
class Request:
    name: str
    language: str
    code: str
    outcomes: frozenset[str]
    hostile: bool
    timeout_s: float = 10
    stdin: str = ""


CPP_CHILDREN = """\
#include <cstdlib>
#include <sys/wait.h>
#include <unistd.h>
int main() {
    for (int i = 0; i < 40; i++) if (fork() == 0) {
        volatile char* p = static_cast<char*>(std::malloc(30 << 20));
        for (long at = 0; p && at < (30 << 20); at += 4096) p[at] = 1;
        sleep(10); return 0;
    }
    while (wait(nullptr) > 0) {}
}
"""
MIX = [
    Request("print", "python", "print(6 * 7)", frozenset({"ok"}), False),
    Request("stdin", "python", "import sys; print(sum(map(int, sys.stdin.read().split())))",
            frozenset({"ok"}), False, stdin="1 2 3 4"),
    Request("cpp", "cpp", "#include <cstdio>\nint main(){std::puts(\"hi\");}",
            frozenset({"ok"}), False),
    Request("flood", "python", "while True: print('x' * 1000)", frozenset({"output_limit"}),
            True),
    Request("sleep", "python", "import time; time.sleep(100)", frozenset({"wall_timeout"}),
            True, timeout_s=1),
    Request("grow", "python", "b = []\nwhile True: b.append(bytearray(1 << 20))",
            frozenset({"memory_limit"}), True),
    Request("children", "cpp", CPP_CHILDREN, frozenset({"memory_limit"}), True, timeout_s=15),
    # Bounded by the per-run uid's process limit (root only).
    Request("forks", "python", "import os\nwhile True:\n    try: os.fork()\n    except OSError: "
            "pass", frozenset({"wall_timeout", "cpu_limit"}), True, timeout_s=2),
]


@dataclass
class Tally:
    count: int = 0
    wrong: int = 0
    errors: int = 0
    latencies_ms: list[float] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.latencies_ms = []


def send(client: httpx.Client, request: Request) -> tuple[bool, str]:
    reply = client.post(f"/{request.language}/execute", json={"properties": {
        "code": request.code, "stdin": request.stdin, "timeoutInSeconds": request.timeout_s}})
    if reply.status_code != 200:
        return False, f"{reply.status_code} {reply.text[:200]}"
    outcome = reply.json()["properties"]["outcome"]
    return outcome in request.outcomes, outcome


def client_loop(url: str, until: float, hostile_share: float, tallies: dict[str, Tally],
                problems: list[str], lock: threading.Lock, seed: int) -> None:
    chooser = random.Random(seed)
    honest = [r for r in MIX if not r.hostile]
    hostile = [r for r in MIX if r.hostile and (IS_ROOT or r.name != "forks")]
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            request = chooser.choice(hostile if chooser.random() < hostile_share else honest)
            started = time.perf_counter()
            try:
                right, what = send(client, request)
            except httpx.HTTPError as exc:
                right, what = False, f"transport: {exc!r}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                tally = tallies[request.name]
                tally.count += 1
                tally.latencies_ms.append(elapsed)
                if not right:
                    tally.wrong += 1
                    problems.append(f"{request.name}: {what}")


def sample(pid: int, samples: list[tuple[float, int, int]], stop: threading.Event) -> None:
    process = psutil.Process(pid)
    started = time.monotonic()
    while not stop.wait(10):
        with contextlib.suppress(psutil.Error):
            samples.append((time.monotonic() - started, process.memory_info().rss,
                            process.num_fds()))


def leftovers(work: Path, service_pid: int) -> dict[str, object]:
    runs = work / "runs"
    uids = [p.pid for p in psutil.process_iter(["uids"])
            if p.info["uids"] and p.info["uids"].real in RUN_UIDS] if IS_ROOT else []
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(runs))]
    cgroups = [str(p) for hierarchy in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids"))
               if hierarchy.exists()
               for p in hierarchy.rglob(f"sandbox-service-{service_pid}-*/run-*")]
    folders = [p.name for p in runs.iterdir()] if runs.exists() else []
    return {"processes": uids, "mounts": mounts, "cgroups": cgroups, "folders": folders}


@contextlib.contextmanager
def bounded() -> Iterator[Path | None]:
    if not IS_ROOT:
        yield None
        return
    with memory_cgroup(SERVICE_MEMORY_BYTES) as cgroup:
        yield cgroup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--hostile", type=float, default=0.1)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sandbox-soak-"))
    work.chmod(0o711)
    with bounded() as cgroup:
        service, url = start_service(work, cgroup=cgroup)
        try:
            # Warm-up: the C++ programs compiled once, so the minutes measure runs.
            with httpx.Client(base_url=url, timeout=120) as client:
                for request in MIX:
                    if request.language == "cpp":
                        send(client, request)
            tallies: dict[str, Tally] = collections.defaultdict(Tally)
            problems: list[str] = []
            lock = threading.Lock()
            samples: list[tuple[float, int, int]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample, args=(service.pid, samples, stop))
            sampler.start()
            until = time.monotonic() + options.minutes * 60
            with concurrent.futures.ThreadPoolExecutor(options.clients) as pool:
                for future in [pool.submit(client_loop, url, until, options.hostile, tallies,
                                           problems, lock, seed)
                               for seed in range(options.clients)]:
                    future.result()
            stop.set()
            sampler.join()
            alive = service.poll() is None
            time.sleep(1)
            left = leftovers(work, service.pid)
        finally:
            service.terminate()
            service.wait(30)
            shutil.rmtree(work, ignore_errors=True)
    print(f"{options.clients} clients, {options.minutes:g} min, {options.hostile:.0%} hostile; "
          f"service {'alive' if alive else 'DEAD'}")
    print(f"{'request':10} {'count':>6} {'wrong':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, tally in sorted(tallies.items()):
        print(f"{name:10} {tally.count:6} {tally.wrong:6} "
              f"{statistics.median(tally.latencies_ms):8.1f} "
              f"{percentile(tally.latencies_ms, 0.99):8.1f}")
    minute = [s for s in samples if s[0] <= 60] or samples[:1]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60] if samples else []
    first_rss = max(s[1] for s in minute) if minute else 0
    last_rss = max(s[1] for s in last) if last else 0
    print(f"service RSS: first minute {first_rss / 2**20:.1f} MiB, last minute "
          f"{last_rss / 2**20:.1f} MiB (change {(last_rss - first_rss) / 2**20:+.1f}); "
          f"descriptors {minute[0][2] if minute else '?'} -> {last[-1][2] if last else '?'}")
    print(f"left: {left}")
    for problem in problems[:20]:
        print("problem:", problem)
    flat = abs(last_rss - first_rss) <= 20 * 2**20
    clean = not any(left.values())
    return 0 if alive and not problems and flat and clean else 1


if __name__ == "__main__":
    sys.exit(main())
