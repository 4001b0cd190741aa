"""Hello world in every runtime: through HTTP (a compile and run, then the same program again,
answered from the compile cache) beside the bare toolchain running the same argv outside the
sandbox, measured in the same run.

    .venv/bin/python bench/runtimes.py [--runs N] [--only c,java]

It starts `python -m adapter serve` on a free port with a fresh work root and a compile cache
of its own, waits for /health, then for each runtime and round sends a hello that no earlier
round sent (a comment of its own) to POST /{language}/execute, twice. The bare figure is the
runtime's own compile and run argv (its flags, limits turned into heap flags as the service
does) in a temporary folder, without launcher, confinement or HTTP. Prints the median (p50) of
each.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtimes import Registry, Runtime, load_runtimes
from runtimes.runtime import Stage

MiB = 1 << 20
# language: (a hello world, the comment that makes each one unique)
HELLOS = {
    "python": ("print('hello')", "#"),
    "c++": ('#include <cstdio>\nint main(){std::puts("hello");}', "//"),
    "c": ('#include <stdio.h>\nint main(void){puts("hello");return 0;}', "//"),
    "java": (('public class Main { public static void main(String[] a) '
             '{ System.out.println("hello"); } }'), "//"),
    "javascript": ("console.log('hello')", "//"),
    "bash": ("echo hello", "#"),
    "go": ('package main\nimport "fmt"\nfunc main(){fmt.Println("hello")}', "//"),
    "rust": ('fn main(){println!("hello");}', "//"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expand(stage: Stage, runtime: Runtime, folder: Path, entry: str) -> tuple[list[str],
                                                                             dict[str, str]]:
    """The stage's argv and environment for `folder`, as the service expands them."""
    limits = stage.limits
    values = {**runtime.executables, "workdir": str(folder), "source": runtime.source_file,
              "entry": entry, "memory_mb": str(limits.memory_bytes // MiB),
              "heap_mb": str(stage.heap_bytes(limits.memory_bytes) // MiB),
              "stack_mb": str(limits.stack_bytes // MiB)}
    argv: list[str] = []
    for arg in stage.argv:
        if arg == "{sources...}":
            argv.append(runtime.source_file)
        elif arg != "{args...}":
            argv.append(arg.format(**values))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(folder), "TMPDIR": str(folder),
           "LANG": "C.UTF-8", **{k: v.format(**values) for k, v in stage.env.items()}}
    return argv, env


def bare(runtime: Runtime, code: str) -> float:
    """Seconds for the toolchain's own compile and run of `code`, outside the sandbox."""
    folder = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    try:
        (folder / runtime.source_file).write_text(code)
        started = time.perf_counter()
        for stage in (runtime.compile, runtime.run):
            if stage is None:
                continue
            argv, env = expand(stage, runtime, folder, "Main")
            subprocess.run(argv, cwd=folder, env=env, check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def post(client: httpx.Client, language: str, code: str) -> float:
    started = time.perf_counter()
    reply = client.post(f"/{language}/execute", json={"properties": {"code": code}})
    took = time.perf_counter() - started
    props = reply.json()["properties"]
    if props["stdout"] != "hello\n":
        raise SystemExit(f"{language}: {props['outcome']}: {props['stderr'][-500:]}")
    return took


def serve(parent: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
           "SANDBOX_WORK_ROOT": str(parent / "work"), "SANDBOX_LOG_LEVEL": "warning",
           "SANDBOX_COMPILE_CACHE_DIR": str(parent / "compiled")}
    process = subprocess.Popen([sys.executable, "-m", "adapter", "serve"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit("the service exited during startup")
            try:
                if client.get("/health").status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the service did not become healthy")


def ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated languages")
    options = parser.parse_args()
    registry = Registry(load_runtimes())
    languages = [name for name in HELLOS if not options.only or name in options.only.split(",")]
    parent = Path(tempfile.mkdtemp(prefix="bench-runtimes-", dir="/tmp"))
    parent.chmod(0o711)
    process, url = serve(parent)
    print(f"{options.runs} rounds, {os.cpu_count()} CPUs, as uid {os.geteuid()}; p50 in ms")
    print(f"{'runtime':<12}{'bare':>8}{'http':>8}{'cached':>8}   (bare: the toolchain alone; "
          "http: compile and run; cached: the same program again)")
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for language in languages:
                runtime = registry.find(language)
                code, comment = HELLOS[language]
                bares, firsts, cached = [], [], []
                for _ in range(options.runs):
                    unique = f"{comment} {secrets.token_hex(8)}\n{code}"
                    bares.append(bare(runtime, unique))
                    firsts.append(post(client, language, unique))
                    cached.append(post(client, language, unique))
                print(f"{language:<12}{ms(bares)}{ms(firsts)}{ms(cached)}")
    finally:
        process.terminate()
        process.wait(60)
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
