"""Helpers shared by the tests: a real server in a subprocess, process and file checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

UID_FIRST = 60000
UID_COUNT = 1000
IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    work_root: Path

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def post(self, path: str, json: object, **kwargs: object) -> httpx.Response:
        with self.client() as client:
            return client.post(path, json=json, **kwargs)  # type: ignore[arg-type]

    def health(self) -> httpx.Response:
        with self.client(timeout=5) as client:
            return client.get("/health")


@contextmanager
def run_server(work_root: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """`python -m adapter` on a free port, until /health answers 200; killed afterwards."""
    port = free_port()
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
                "SANDBOX_WORK_ROOT": str(work_root), **(env or {})}
    log = open(work_root.parent / f"server-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "adapter"], cwd=REPO, env=full_env,
                               stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, work_root)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("the server exited: " + Path(log.name).read_text()[-3000:])
            try:
                if server.health().status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server never became healthy: "
                                   + Path(log.name).read_text()[-3000:])
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_processes() -> list[psutil.Process]:
    """Live processes that belong to runs: any uid of the per-run range."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            uids = proc.info["uids"]
            if uids and any(UID_FIRST <= u < UID_FIRST + UID_COUNT for u in uids) \
                    and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_nothing_left(server: Server) -> None:
    """No process of any run survives and no working directory is left."""
    deadline = time.monotonic() + 5
    while True:
        leftovers = descendants(server.process.pid) + (run_processes() if IS_ROOT else [])
        files = list(server.work_root.iterdir())
        if not leftovers and not files:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: processes {leftovers}, files {files}")
        time.sleep(0.05)


def make_work_root() -> Path:
    """A work root whose ancestors per-run uids can search (pytest's tmp_path is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="sandbox-test-", dir="/tmp"))
    os.chmod(parent, 0o711)
    return parent / "work"
